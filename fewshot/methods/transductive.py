"""Transductive fine-tuning (Dhillon, Chaudhari, Ravichandran & Soatto, ICLR 2020, "A Baseline for Few-Shot Image
Classification"), on the frozen pre-trained backbone.

Per episode a new head on L2-normalised features starts from weight imprinting (the normalised class means of the
support, times a temperature) and is trained on the support cross-entropy plus the mean Shannon entropy of the
predictions on the episode's unlabelled queries (the transductive term, weight 1 as in the paper), with Adam, batched
over episodes as ``finetune`` is. Dhillon et al. fine-tune the whole network (25 epochs, lr 5e-5); this is the
head-only version, which runs on cached features; the record names it so. A query's logits depend on the other
queries of its episode (``transductive = True``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.finetune import Params, train_heads
from fewshot.methods.protonet import class_means


@dataclass
class TransductiveConfig:
    """Adam ``steps`` full-batch steps on support cross-entropy + ``entropy_weight`` x query entropy."""

    steps: int = 100
    lr: float = 0.01
    entropy_weight: float = 1.0
    temperature: float = 10.0   # the scale of the cosine logits (features and imprinted weights have unit norm)


def episode_loss(head: Params, support: Tensor, labels: Tensor, query: Tensor, entropy_weight: float) -> Tensor:
    """One episode's objective: support cross-entropy plus ``entropy_weight`` times the mean query entropy."""
    loss = F.cross_entropy(support @ head["weight"].T + head["bias"], labels)
    log_p = F.log_softmax(query @ head["weight"].T + head["bias"], dim=-1)
    return loss - entropy_weight * (log_p.exp() * log_p).sum(-1).mean()


def imprinted_heads(support: Tensor, support_labels: Tensor, ways: int, temperature: float) -> Params:
    """Heads ``{weight: [E, ways, D], bias: [E, ways]}``: the normalised class means, scaled (weight imprinting)."""
    weight = temperature * F.normalize(class_means(support, support_labels, ways), dim=-1)
    return {"weight": weight, "bias": weight.new_zeros(weight.shape[:2])}


@register_method("finetune-transductive")
class TransductiveFineTune(FewShotMethod):
    """Supervised pre-training, then per episode an imprinted head trained with the queries' entropy (head only)."""

    paper = ("Dhillon, Chaudhari, Ravichandran & Soatto 2020, A Baseline for Few-Shot Image Classification "
             "(transductive fine-tuning; here of the head on frozen features)")
    train_kind = TrainKind.SUPERVISED
    frozen_features = True
    transductive = True
    eval_batch_size = 100
    Config = TransductiveConfig

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        cfg = self.config
        support, query = F.normalize(support.detach(), dim=-1), F.normalize(query.detach(), dim=-1)
        head = train_heads(imprinted_heads(support, support_labels, ways, cfg.temperature),
                           lambda h, s, y, q: episode_loss(h, s, y, q, cfg.entropy_weight),
                           (support, support_labels, query), cfg.steps, cfg.lr)
        return torch.einsum("eqd,ewd->eqw", query, head["weight"]) + head["bias"].unsqueeze(1)
