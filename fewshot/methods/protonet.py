"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017): squared Euclidean distance to class means."""
from __future__ import annotations

from torch import Tensor

from fewshot.methods.base import FewShotMethod, TrainKind, register_method


def class_means(features: Tensor, labels: Tensor, ways: int) -> Tensor:
    """Per-episode class means ``[E, ways, D]`` of features ``[E, S, D]`` with labels ``[E, S]``, no episode loop.

    Rows labelled ``-1`` (padding of variable-shape episodes) count for nothing; a class without rows has mean 0."""
    weights = features.new_ones(labels.shape)
    if bool((labels < 0).any()):
        weights, labels = (labels >= 0).to(features.dtype), labels.clamp_min(0)
        features = features * weights.unsqueeze(-1)
    sums = features.new_zeros(features.shape[0], ways, features.shape[-1])
    sums.scatter_add_(1, labels.unsqueeze(-1).expand_as(features), features)
    counts = features.new_zeros(features.shape[0], ways).scatter_add_(1, labels, weights)
    return sums / counts.clamp_min(1).unsqueeze(-1)


def squared_distances(query: Tensor, prototypes: Tensor) -> Tensor:
    """``||q - p||^2`` for every query ``[E, Q, D]`` and prototype ``[E, W, D]``: ``[E, Q, W]``."""
    return (query.unsqueeze(2) - prototypes.unsqueeze(1)).pow(2).sum(-1)


@register_method("protonet")
class ProtoNet(FewShotMethod):
    """Prototypical Networks: episodic meta-training; logits are negative squared distances to class means."""

    paper = "Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning"
    train_kind = TrainKind.EPISODIC
    frozen_features = True
    takes_masks = True

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        return -squared_distances(query, class_means(support, support_labels, ways))
