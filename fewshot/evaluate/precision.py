"""Mixed precision for evaluation: the method's forward (and the embedding of images) under ``torch.autocast``.

``fp32`` (the default) runs as ever; ``tf32`` (CUDA only) keeps float32 tensors but lets float32 matmuls use
TensorFloat-32 (``torch.set_float32_matmul_precision("high")`` for the evaluation, restored after; cuDNN's
convolutions already default to TF32 in PyTorch); ``bf16`` and ``fp16`` autocast to that dtype on the evaluation's
device. float16 autocast is for CUDA only: on the CPU it is slow and untested, and bf16 is the CPU's half type.
Features are handed to the classifying step as float32, so a method that fits something on them (a linear probe)
keeps float32 parameters; autocast lowers only the operations it lists (matmuls, convolutions).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator

import torch

from fewshot.core.errors import UsageError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "tf32": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}
_CUDA_ONLY = {"fp16": "bf16", "tf32": "fp32"}       # and what to use elsewhere
DEFAULT_PRECISION = "fp32"


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise a :class:`UsageError` naming the fix when ``precision`` is unknown or not for ``device``."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: not a precision; use {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision in _CUDA_ONLY and kind != "cuda":
        raise UsageError(f"--precision {precision} needs a CUDA device, and this run is on {kind}; use --precision "
                         f"{_CUDA_ONLY[precision]} there")


def autocast(precision: str, device: torch.device | str) -> ContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32; TF32 matmuls for tf32)."""
    if precision == "tf32":
        return _matmul_precision("high")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def _matmul_precision(level: str) -> Iterator[None]:
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
