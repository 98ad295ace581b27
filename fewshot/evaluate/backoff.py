"""Out of memory is not a crash: work split into chunks is retried with chunks half as large.

The harness runs its batches of episodes, and embedding its chunks of images, through :func:`chunked`: on an
out-of-memory error the chunk size is halved (down to 1) and the failed chunk is run again, and the smaller size
is kept for the rest of the work. Each item's result does not depend on which chunk it was in, so the outcome is
the same; what was used is reported (:class:`Chunking`) and recorded with the run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

from fewshot.core.progress import progress_bar

T = TypeVar("T")


_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``) and for a RuntimeError that says the
    allocation failed: "out of memory" (CUDA, MPS) or the CPU allocator's "can't allocate memory"."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _MESSAGES)


@dataclass
class Chunking:
    """What :func:`chunked` used: the size it started with, the size it ended with, and how many retries."""

    requested: int
    used: int
    retries: int = 0


def _release(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()


def chunked(count: int, size: int, work: Callable[[int, int], T], *, device: torch.device | None = None,
            desc: str = "", progress: bool = False) -> tuple[list[T], Chunking]:
    """``[work(lo, hi) for each chunk [lo, hi) of range(count)]`` in chunks of ``size``, halving the size and
    retrying a chunk whose ``work`` ran out of memory; raises the error when a chunk of one still does."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    report = Chunking(requested=size, used=size)
    results: list[T] = []
    lo = 0
    with progress_bar(None, desc=desc, total=count, enabled=progress) as bar:
        while lo < count:
            hi = min(lo + report.used, count)
            try:
                results.append(work(lo, hi))
            except RuntimeError as error:          # torch.OutOfMemoryError is one
                if not is_out_of_memory(error) or report.used == 1:
                    raise
                _release(device)
                report.used = max(1, report.used // 2)
                report.retries += 1
                continue
            bar.update(hi - lo)
            lo = hi
    return results, report
