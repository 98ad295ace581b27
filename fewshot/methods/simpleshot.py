"""SimpleShot (Wang, Chao, Weinberger & van der Maaten, 2019, "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning"): nearest class centroid on transformed frozen features.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.protonet import class_means, squared_distances

TRANSFORMS = ("UN", "L2N", "CL2N")


@dataclass
class SimpleShotConfig:
    #: The paper's feature transforms: UN (unnormalised), L2N (L2-normalised), CL2N (centred, then L2-normalised).
    transform: str = "CL2N"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {self.transform!r}")


@register_method("simpleshot")
class SimpleShot(FewShotMethod):
    """SimpleShot: logits are negative squared Euclidean distances to class centroids of transformed features.

    CL2N here centres with the mean of the episode's support features, not the paper's mean over the base
    classes' training features: there is no training on base classes for a foundation backbone, and the support
    mean is available to any inductive method (no query is used).
    """

    paper = "Wang et al. 2019, SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot Learning"
    train_kind = TrainKind.NONE
    frozen_features = True
    takes_masks = True
    default_backbone = "efficientnet_lite0"
    Config = SimpleShotConfig

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        transform = self.config.transform
        if transform == "CL2N":
            real = (support_labels >= 0).to(support.dtype).unsqueeze(-1)    # padding rows (label -1) left out
            mean = support.mean(1, keepdim=True) if bool(real.all()) else \
                (support * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)
            support, query = support - mean, query - mean
        if transform != "UN":
            support, query = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
        return -squared_distances(query, class_means(support, support_labels, ways))
