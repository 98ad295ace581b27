"""Baseline++ (Chen et al. 2019, "A Closer Look at Few-shot Classification", section 3.2): a cosine classifier in
supervised pre-training and, per test episode, a new cosine classifier trained on the support features.

The logit of class ``c`` is ``scale * cos(f, w_c)``; as in the authors' ``distLinear`` the scale is 2 when there
are at most 200 classes (Conv-4 on Omniglot, miniImageNet) and 10 beyond, and the weight vectors are L2-normalised
(``weight_norm`` in their code, a normalisation here). Per episode the head is trained like the Baseline's,
full-batch Adam on the support set, batched over episodes; it starts from the normalised class means, a start that
needs no random draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, vmap

from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.finetune import BatchedAdam

Params = dict[str, Tensor]


def cosine_scale(classes: int) -> float:
    """Chen et al.'s temperature: 2 for up to 200 classes, 10 above."""
    return 2.0 if classes <= 200 else 10.0


class CosineClassifier(nn.Module):
    """``scale * cos(features, w_c)`` for every class ``c`` (pre-training's head)."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Linear's initialisation
        self.scale = cosine_scale(classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.scale * F.normalize(features, dim=-1) @ F.normalize(self.weight, dim=-1).T


@dataclass
class BaselinePlusPlusConfig:
    """Per-episode training of the cosine head: Adam, ``steps`` full-batch steps on the support set."""

    steps: int = 100
    lr: float = 0.01
    weight_decay: float = 1e-3
    scale: float = 2.0          # the test-time temperature (Chen et al.: the pre-training one, 2 for few ways)


def cosine_loss(weight: Tensor, features: Tensor, labels: Tensor, scale: float) -> Tensor:
    logits = scale * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T
    return F.cross_entropy(logits, labels)


@register_method("baseline++")
class BaselinePlusPlus(FewShotMethod):
    """Baseline++: cosine-classifier pre-training, then a cosine classifier per episode on frozen features."""

    paper = "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification (Baseline++)"
    train_kind = TrainKind.SUPERVISED
    frozen_features = True
    eval_batch_size = 100
    Config = BaselinePlusPlusConfig

    def pretraining_head(self, features: int, classes: int) -> nn.Module:
        return CosineClassifier(features, classes)

    def train_identity(self) -> dict[str, Any]:
        # Not the linear-head pre-training of the other supervised methods: its own checkpoint.
        return {**super().train_identity(), "head": "cosine"}

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        cfg = self.config
        support = support.detach()
        one_hot = F.one_hot(support_labels, ways).to(support.dtype)                    # [E, S, ways]
        means = one_hot.transpose(1, 2) @ F.normalize(support, dim=-1) / one_hot.sum(1).unsqueeze(-1)
        params: Params = {"weight": means}
        optimiser = BatchedAdam({"weight": cfg.lr}, weight_decay=cfg.weight_decay)
        step = vmap(grad(lambda p, f, y: cosine_loss(p["weight"], f, y, cfg.scale)))
        for _ in range(cfg.steps):
            params = optimiser.step(params, step(params, support, support_labels))
        return cfg.scale * F.normalize(query, dim=-1) @ F.normalize(params["weight"], dim=-1).transpose(1, 2)
