"""Exact area resizing of Omniglot's 105x105 drawings, and the ink-bright uint8 images the loaders hand out."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def check_size(image_size: int) -> int:
    """``image_size`` as an int, or a ValueError naming it when it is not a positive integer."""
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


def _area_weights(n_in: int, n_out: int) -> Tensor:
    """``[n_out, n_in]`` weights: output pixel ``i`` averages the input pixels it covers, by covered length."""
    edges = torch.arange(n_out + 1, dtype=torch.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = torch.arange(n_in, dtype=torch.float64)[None]
    overlap = (torch.minimum(hi, pixels + 1) - torch.maximum(lo, pixels)).clamp_(min=0)
    return (overlap / overlap.sum(1, keepdim=True)).float()


def area_resize(images: np.ndarray | Tensor, size: int) -> Tensor:
    """Images ``[..., H, W]`` (bool masks or [0, 1] floats) resized to ``size x size``, as uint8 0..255.

    Each output pixel is the exact area-weighted mean of the input pixels it covers (PIL's BOX filter), computed as
    two large matrix products; the weights are mirror-symmetric, so resizing commutes with 90-degree rotations.
    """
    if size < 1:
        raise ValueError(f"image_size must be a positive integer, got {size}")
    x = torch.as_tensor(images)
    *lead, h, w = x.shape
    if (h, w) == (size, size) and x.dtype == torch.bool:
        return x.to(torch.uint8).mul_(255)
    x = x.reshape(-1, h, w).to(torch.float32)
    if (h, w) != (size, size):
        n = x.shape[0]
        x = x.reshape(n * h, w) @ _area_weights(w, size).T  # [n*h, size]: rows resized
        x = x.reshape(n, h, size).transpose(1, 2).reshape(n * size, h) @ _area_weights(h, size).T
        x = x.reshape(n, size, size).transpose(1, 2)  # back to [n, row, column]
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).reshape(*lead, size, size)


def ink_bright(paper: np.ndarray | Tensor, size: int) -> Tensor:
    """uint8 ink-bright images ``[..., size, size]`` from background masks (True = paper), resized by area."""
    return 255 - area_resize(paper, size)


def resize_blocks(blocks, image_size: int) -> np.ndarray:
    """Ink-bright uint8 images of every block of background masks, concatenated along the first axis."""
    return np.concatenate([ink_bright(block, image_size).numpy() for block in blocks])
