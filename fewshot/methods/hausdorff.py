"""Modified Hausdorff Distance (Dubuisson & Jain, ICPR 1994), the no-learning baseline of Lake, Salakhutdinov &
Tenenbaum (Science 2015): 38.8% error on the 20 official one-shot runs.

Each image becomes the set of its ink pixels' coordinates, centred on their mean (as Lake et al.'s
``demo_classification.py`` does). The distance between sets ``A`` and ``B`` is
``max(mean_a min_b |a - b|, mean_b min_a |a - b|)``; a query's logit for a class is minus its distance to the
nearest support image of that class. Nothing is learned, the backbone is ignored, and all episodes of a batch are
handled together: point sets are padded into one tensor and distances computed for blocks of (query, support)
pairs from all episodes at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot.methods.base import FewShotMethod, TrainKind, config_dict, register_method


@dataclass
class HausdorffConfig:
    threshold: float = 0.5      # a pixel is ink when its value (images in [0, 1], ink bright) exceeds this
    invert: bool = False        # for datasets with dark ink on a light background
    points: str = "ink"         # "ink": every ink pixel (Lake et al.); "edge": ink pixels with a background 4-neighbour
    center: bool = True         # subtract each image's ink centroid (Lake et al.)
    block_elements: int = 1 << 24  # distance-matrix entries computed at a time (memory bound: 4 bytes each)


FAR = 1.0e4  # where padding points sit: farther from every real point than any two real points are


def point_sets(images: Tensor, config: HausdorffConfig) -> tuple[Tensor, Tensor]:
    """Coordinates ``[N, P, 2]`` (row, column) and counts ``[N]`` of the points of images ``[N, C, H, W]`` (channels
    averaged). ``P`` is the largest count; image ``i``'s points fill slots ``0 .. counts[i]-1`` and the other slots
    hold padding at ``(FAR, FAR)``, which never wins a minimum over real points."""
    gray = images.float().mean(1) if images.dim() == 4 else images.float()
    ink = (1.0 - gray if config.invert else gray) > config.threshold
    if config.points == "edge":
        # An edge pixel is ink with at least one 4-neighbour that is not ink (outside the image counts as not ink).
        padded = F.pad(ink.float().unsqueeze(1), (1, 1, 1, 1)).squeeze(1)
        inner = torch.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])
        ink = ink & (inner.amin(0) < 0.5)
    elif config.points != "ink":
        raise ValueError(f"points must be 'ink' or 'edge', got {config.points!r}")
    n, _, w = ink.shape
    counts = ink.flatten(1).sum(1)
    size = max(int(counts.max()) if n else 0, 1)
    image, flat = ink.flatten(1).nonzero(as_tuple=True)
    # Slot of each point within its image: its rank among that image's points (nonzero is row-major).
    slot = torch.arange(image.numel(), device=ink.device) - (torch.cumsum(counts, 0) - counts)[image]
    coords = torch.zeros(n, size, 2, device=ink.device)
    coords[image, slot] = torch.stack([flat // w, flat % w], 1).float()
    if config.center:
        coords[image, slot] -= (coords.sum(1) / counts.clamp_min(1).unsqueeze(1))[image]
    valid = torch.arange(size, device=ink.device) < counts.unsqueeze(1)
    coords[~valid] = FAR
    return coords, counts


def modified_hausdorff(a: Tensor, a_counts: Tensor, b: Tensor, b_counts: Tensor) -> Tensor:
    """MHD between each point set ``a[i]`` (``[M, Pa, 2]``, ``a_counts[i]`` real points first, padding at ``FAR``)
    and each of the sets ``b[i, j]`` (``[M, S, Pb, 2]``): ``[M, S]``. An empty set is infinitely far away."""
    m, s, pb = b.shape[:3]
    # Direct differences, not the matrix-product shortcut: exact for coincident points.
    d = torch.cdist(a, b.reshape(m, s * pb, 2), compute_mode="donot_use_mm_for_euclid_dist").view(m, -1, s, pb)
    a_valid = (torch.arange(a.shape[1], device=a.device) < a_counts.unsqueeze(1)).to(d.dtype)      # [M, Pa]
    b_valid = (torch.arange(pb, device=b.device) < b_counts.unsqueeze(-1)).to(d.dtype)             # [M, S, Pb]
    a_to_b = (d.amin(3) * a_valid.unsqueeze(2)).sum(1) / a_counts.clamp_min(1).unsqueeze(1)      # [M, S]
    b_to_a = (d.amin(1) * b_valid).sum(2) / b_counts.clamp_min(1)                                # [M, S]
    out = torch.maximum(a_to_b, b_to_a)
    return torch.where((a_counts.unsqueeze(1) > 0) & (b_counts > 0), out, torch.full_like(out, float("inf")))


@register_method("mhd")
class ModifiedHausdorff(FewShotMethod):
    """Nearest support image under the Modified Hausdorff Distance between ink-point sets; no training."""

    paper = ("Dubuisson & Jain 1994, A Modified Hausdorff Distance for Object Matching (ICPR); baseline of Lake, "
             "Salakhutdinov & Tenenbaum 2015, Human-level concept learning through probabilistic program induction")
    train_kind = TrainKind.NONE
    frozen_features = False
    eval_batch_size = 5
    Config = HausdorffConfig

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        e, s, q = support.shape[0], support.shape[1], query.shape[1]
        points, counts = point_sets(torch.cat([support.flatten(0, 1), query.flatten(0, 1)]), self.config)
        s_points, s_counts = points[:e * s].view(e, s, -1, 2), counts[:e * s].view(e, s)
        q_points, q_counts = points[e * s:], counts[e * s:]
        # Queries of all episodes together, largest point sets first, in blocks that bound the distance tensor;
        # each block is trimmed to the largest point counts it holds.
        order = torch.argsort(q_counts, descending=True, stable=True)
        distances = torch.empty(e * q, s, device=support.device)
        start = 0
        while start < order.numel():
            pa = max(int(q_counts[order[start]]), 1)
            pb = max(int(s_counts.max()), 1)
            block = order[start:start + max(1, self.config.block_elements // (pa * s * pb))]
            episode = block // q
            pb = max(int(s_counts[episode].max()), 1)
            distances[block] = modified_hausdorff(q_points[block, :pa], q_counts[block],
                                                  s_points[episode, :, :pb], s_counts[episode])
            start += block.numel()
        distances = distances.view(e, q, s)
        # A class's logit: minus the distance to its nearest support image.
        nearest = distances.new_full((e, q, ways), float("inf"))
        nearest.scatter_reduce_(2, support_labels.unsqueeze(1).expand(e, q, s), distances, reduce="amin")
        return -nearest

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backbone": {"name": "none (raw pixels; the backbone is not used)"},
                "config": config_dict(self.config)}
