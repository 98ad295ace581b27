"""P>M>F (Hu, Li, Stühmer, Kim & Hospedales, CVPR 2022, "Pushing the Limits of Simple Pipelines for Few-Shot
Learning"): a Pre-trained backbone, Meta-trained as a ProtoNet on the source, Fine-tuned on each test episode.

The ProtoNet has the authors' cosine head, ``scale * (cos(f, prototype) + bias)``, with ``scale`` (starting at 10)
and ``bias`` (starting at 0) learned in meta-training. The pre-trained start is the backbone the method is given,
made trainable: ``--backbone efficientnet_lite0 --backbone-option frozen=false`` (a frozen backbone leaves only
``scale`` and ``bias`` to meta-train).

Per test episode a copy of the backbone takes ``steps`` Adam steps on the support set (the authors'
``ProtoNet_Finetune``): the prototypes come from the support images and the pseudo-queries are the same images
augmented (:func:`~fewshot.data.augment.diff_augment`), and the loss is their cross-entropy. The queries are then
classified by the prototypes of the tuned copy. The authors choose ``lr`` per target domain on validation
episodes; here it is an option, and ``lr = 0`` gives P>M, no fine-tuning.

Batched over episodes like ``finetune-full``: stacked copies of the backbone driven through ``torch.func.vmap``,
with batch norm on its meta-trained running statistics (eval mode) while tuning. That is one difference from the
authors, whose ViT has no batch norm. The augmentations are drawn per episode from a generator seeded by the
episode's content, so results do not depend on the batch. Another difference: they act on the suite's [0, 1]
images, not on normalised ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad

from fewshot.core.errors import UsageError
from fewshot.data.augment import diff_augment
from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.episode_seeds import episode_generator
from fewshot.methods.finetune import BatchedAdam, Params, episode_copies
from fewshot.methods.per_task import per_episode


@dataclass
class PMFConfig:
    """Test-time fine-tuning: ``steps`` Adam steps at ``lr`` on the backbone (the authors' defaults: 50 steps;
    ``lr`` chosen on validation episodes), augmentations applied with probability ``aug_prob``, drawn from
    generators seeded by ``seed`` and each episode's content."""

    steps: int = 50
    lr: float = 1e-4
    aug_prob: float = 0.9
    seed: int = 0


def prototypes(features: Tensor, one_hot: Tensor) -> Tensor:
    """Class means ``[..., ways, D]`` of ``features [..., S, D]`` with one-hot labels ``[..., S, ways]``; a matrix
    product, so that it runs under ``vmap`` and gradients reach the features."""
    return one_hot.transpose(-1, -2) @ features / one_hot.sum(-2).unsqueeze(-1)


def cosine_logits(query: Tensor, protos: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """``scale * (cos(q, p) + bias)`` for every query ``[..., Q, D]`` and prototype ``[..., W, D]``."""
    return scale * (F.normalize(query, dim=-1) @ F.normalize(protos, dim=-1).transpose(-1, -2) + bias)


@register_method("pmf")
class PMF(FewShotMethod):
    """P>M>F: ProtoNet meta-training with a cosine head on a pre-trained backbone, then per episode fine-tuning of
    a copy of the backbone on the support set and its augmentations."""

    paper = ("Hu, Li, Stühmer, Kim & Hospedales 2022, Pushing the Limits of Simple Pipelines for Few-Shot "
             "Learning: External Data and Fine-Tuning Make a Difference (P>M>F)")
    train_kind = TrainKind.EPISODIC
    frozen_features = False
    eval_batch_size = 10
    Config = PMFConfig

    def __init__(self, backbone: nn.Module, config: Any | None = None, *,
                 backbone_spec: dict[str, Any] | None = None) -> None:
        super().__init__(backbone, config, backbone_spec=backbone_spec)
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def train_identity(self) -> dict[str, Any]:
        # Every option is a test-time one: meta-training does not depend on them, so they stay out of the key.
        return {"method": self.name}

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        cfg = self.config
        one_hot = F.one_hot(support_labels, ways).to(self.scale.dtype)
        if self.training or cfg.steps == 0 or cfg.lr == 0:
            features = self.embed(torch.cat([support, query], dim=1))
            shots = support.shape[1]
            return cosine_logits(features[:, shots:], prototypes(features[:, :shots], one_hot), self.scale,
                                 self.bias)
        if not support.is_floating_point():
            raise UsageError("pmf fine-tunes on augmented images; for text or features use its option lr=0")
        return self.fine_tuned_logits(support, support_labels, one_hot, query)

    def fine_tuned_logits(self, support: Tensor, support_labels: Tensor, one_hot: Tensor, query: Tensor) -> Tensor:
        """The logits of each episode's queries after fine-tuning a copy of the backbone on its support set."""
        cfg = self.config
        self.backbone.eval()
        episodes, shots = support_labels.shape
        generators = [episode_generator(cfg.seed, support[e], support_labels[e]) for e in range(episodes)]
        _, params, features = episode_copies(self.backbone, episodes)
        scale, bias = self.scale.detach(), self.bias.detach()

        def loss(p: Params, images: Tensor, augmented: Tensor, one_hot: Tensor, labels: Tensor) -> Tensor:
            # One backbone call for both: in eval mode the features of an image do not depend on its batch.
            feats = features(p, torch.cat([images, augmented]))
            return F.cross_entropy(cosine_logits(feats[shots:], prototypes(feats[:shots], one_hot), scale, bias),
                                   labels)

        optimiser = BatchedAdam({k: cfg.lr for k in params})
        step_grads = per_episode(grad(loss), episodes)
        with torch.enable_grad():
            for _ in range(cfg.steps):
                augmented = torch.stack([diff_augment(support[e], generators[e], cfg.aug_prob)
                                         for e in range(episodes)])
                params = optimiser.step(params, step_grads(params, support, augmented, one_hot, support_labels))
        with torch.no_grad():
            embed = per_episode(features, episodes)
            s, q = embed(params, support), embed(params, query)
        return cosine_logits(q, prototypes(s, one_hot), scale, bias)
