"""Random draws of a method at test time, seeded per episode from its content.

A method that draws at test time (SetFit's pairs, P>M>F's augmentations) seeds one generator per episode from the
method's ``seed`` and the episode itself, so an episode gets the same draws in any batch and at any position, and
different episodes different draws; no global random state is read.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fewshot.backbones.text_encoders import trim_padding
from fewshot.core.hashing import sha256_json, sha256_tensor


def episode_generator(seed: int, support: Tensor, support_labels: Tensor) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and one episode's ``support [S, ...]`` and ``support_labels [S]``."""
    # Token ids are hashed cut to their longest text: the same episode in a wider batch is the same episode.
    key = sha256_json([int(seed), sha256_tensor(trim_padding(support)), sha256_tensor(support_labels)])
    return torch.Generator().manual_seed(int(key[:15], 16))
