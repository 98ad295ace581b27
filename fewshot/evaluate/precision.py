"""Mixed precision for evaluation: the method's forward (and the embedding of images) under ``torch.autocast``.

``fp32`` (the default) runs as ever; ``bf16`` and ``fp16`` autocast to that dtype on the evaluation's device.
float16 autocast is for CUDA only: on the CPU it is slow and untested, and bf16 is the CPU's half type. Features are
handed to the classifying step as float32, so a method that fits something on them (a linear probe) keeps float32
parameters; autocast lowers only the operations it lists (matmuls, convolutions).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from fewshot.core.errors import UsageError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_PRECISION = "fp32"


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise a :class:`UsageError` naming the fix when ``precision`` is unknown or not for ``device``."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: not a precision; use {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "fp16" and kind != "cuda":
        raise UsageError(f"--precision fp16 needs a CUDA device, and this run is on {kind}; use --precision bf16 "
                         f"(or fp32) there")


def autocast(precision: str, device: torch.device | str) -> ContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
