"""A test plug-in: ``tiny-frozen``, a frozen random projection that declares a ``feature_cache_identity``, so the
harness embeds through the on-disk feature cache without any weights to download (``tests/test_distributed.py``
shares that cache between torchrun ranks)."""
from __future__ import annotations

import torch
from torch import nn

from fewshot.backbones.registry import register_backbone


class FrozenProjection(nn.Module):
    """``tanh`` of a fixed seeded random projection of the flattened image: cacheable features, no training."""

    def __init__(self, inputs: int, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("weight", torch.randn(inputs, dim, generator=generator) / inputs ** 0.5)
        self.out_features = dim
        self.feature_cache_identity = {"name": "tiny-frozen", "inputs": inputs, "dim": dim, "seed": seed}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(images.flatten(1) @ self.weight)


@register_backbone("tiny-frozen")
def tiny_frozen(in_channels: int, image_size: int, dim: int = 16, seed: int = 0) -> nn.Module:
    return FrozenProjection(in_channels * image_size * image_size, dim, seed)
