"""DiffAugment's image augmentations (Zhao, Liu, Lin, Zhu & Han 2020), as P>M>F's test-time fine-tuning uses them
(Hu et al. 2022: types "color" and "translation", a left-right flip, applied with probability 0.9).

Every draw comes from an explicit generator; the values are not clamped (DiffAugment works on unbounded tensors).
"""
from __future__ import annotations

import torch
from torch import Tensor


def diff_augment(images: Tensor, generator: torch.Generator, prob: float = 0.9) -> Tensor:
    """``images [N, C, H, W]`` augmented, or unchanged with probability ``1 - prob`` (one draw for the batch, as
    P>M>F's ``DiffAugment``). When augmented: the whole batch flipped left-right with probability 1/2, then per
    image brightness ``+ U(-0.5, 0.5)``, saturation ``x U(0, 2)`` about the channel mean, contrast
    ``x U(0.5, 1.5)`` about the image mean, and :func:`translate`. ``generator`` is a CPU generator."""
    g = generator
    if float(torch.rand((), generator=g)) >= prob:
        return images
    x = images.flip(-1) if float(torch.rand((), generator=g)) < 0.5 else images
    n = x.shape[0]

    def uniform() -> Tensor:
        return torch.rand(n, 1, 1, 1, generator=g).to(x)

    x = x + (uniform() - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * (2 * uniform()) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (uniform() + 0.5) + mean
    return translate(x, g)


def translate(images: Tensor, generator: torch.Generator, ratio: float = 0.125) -> Tensor:
    """Each image of ``[N, C, H, W]`` shifted by a whole number of pixels drawn uniformly from
    ``-round(ratio * side) .. round(ratio * side)`` in each direction, the uncovered pixels zero."""
    n, _, h, w = images.shape
    dy = torch.randint(-int(h * ratio + 0.5), int(h * ratio + 0.5) + 1, (n,), generator=generator)
    dx = torch.randint(-int(w * ratio + 0.5), int(w * ratio + 0.5) + 1, (n,), generator=generator)
    rows = torch.arange(h)[None, :] + dy[:, None]                        # [N, H]: the source row of each row
    cols = torch.arange(w)[None, :] + dx[:, None]                        # [N, W]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]   # [N, H, W]
    index = torch.arange(n)[:, None, None], rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]
    device = images.device
    moved = images.permute(0, 2, 3, 1)[tuple(i.to(device) for i in index)]          # [N, H, W, C]
    return (moved * inside.to(device).unsqueeze(-1)).permute(0, 3, 1, 2)
