"""Batch norm on the current batch's statistics only, as MAML-style methods use it under ``torch.func.vmap``.

:class:`BatchStatNorm` keeps the parameters and state-dict keys of the ``nn.BatchNorm1d/2d/3d`` it replaces, but
applies scale and shift outside ``F.batch_norm``: with per-task scale and shift under ``vmap``, torch 2.14's
``batch_norm`` gives a wrong second-order gradient for its input (``tests/test_maml.py`` would catch it). Outside
``vmap`` (one task per call) :func:`fused_affine` puts them back into ``F.batch_norm``, which saves two passes over
the activations. Other batch-norm classes only lose their running statistics
(``torch.func.replace_all_batch_norm_modules_``).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import replace_all_batch_norm_modules_


_FUSED = ContextVar("fewshot_batch_stat_norm_fused", default=False)


@contextmanager
def fused_affine() -> Iterator[None]:
    """Within this block :class:`BatchStatNorm` applies scale and shift inside ``F.batch_norm``: only for calls
    that are not under ``torch.func.vmap`` (see the module docstring)."""
    token = _FUSED.set(True)
    try:
        yield
    finally:
        _FUSED.reset(token)


class BatchStatNorm(nn.Module):
    """Batch norm on the current batch's statistics only, its scale and shift applied after ``F.batch_norm``."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.register_parameter("weight", norm.weight)
        self.register_parameter("bias", norm.bias)

    def forward(self, x: Tensor) -> Tensor:
        if _FUSED.get():
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        y = F.batch_norm(x, None, None, training=True, eps=self.eps)
        if self.weight is None:
            return y
        shape = (-1,) + (1,) * (x.dim() - 2)
        return y * self.weight.view(shape) + self.bias.view(shape)


def use_batch_statistics_(module: nn.Module) -> nn.Module:
    """Make every batch-norm layer of ``module`` use batch statistics only, in place (see the module docstring)."""
    for name, child in module.named_children():
        if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            setattr(module, name, BatchStatNorm(child))
        else:
            use_batch_statistics_(child)
    return replace_all_batch_norm_modules_(module)
