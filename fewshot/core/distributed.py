"""Rank, world size and the few collectives the suite needs, over :mod:`torch.distributed`.

Every helper works when no process group is initialised: a single process is world 1, rank 0, its shard is
everything, and gathering returns its own value. Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables) :func:`init` joins the process group: gloo on the CPU, NCCL when
the device is a CUDA one. The suite's collectives exchange small Python objects (accuracies, reports, records),
so they always travel on a gloo group (the default group under gloo, a second one under NCCL): no device tensors,
no device-mapping rules, and the same code path on every backend. The one exception is :func:`all_reduce_sum_`,
the gradients of training split over the ranks, which stay on the device and use the default group.

Waits are long on purpose (``$FEWSHOT_DIST_TIMEOUT`` seconds, default a day): while rank 0 trains, the other
ranks wait for its checkpoint. A rank that dies does not leave the others hanging: ``torchrun`` stops the whole
job when one worker fails, and :func:`main_first` carries rank 0's failure to the others as an error.
"""
from __future__ import annotations

import atexit
import datetime
import os
from typing import Any, Callable, TypeVar

import torch

from fewshot.core.errors import UserError

T = TypeVar("T")

TIMEOUT_ENV = "FEWSHOT_DIST_TIMEOUT"
_control: Any = None          # the gloo group the suite's collectives use (None: the default group)


class RankFailed(UserError):
    """Another rank of a distributed job failed; this one stops with its message."""


def launched() -> bool:
    """True when this process is one of several started by ``torchrun`` (``WORLD_SIZE`` above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """How many processes share the work (1 without a process group)."""
    return torch.distributed.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its node (``$LOCAL_RANK``; 0 without ``torchrun``)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_initialized() or launched() else 0


def is_main() -> bool:
    """True on rank 0, the rank that writes records and prints tables (and on a single process)."""
    return rank() == 0


def rank_device(device: torch.device | str) -> torch.device:
    """The device of this rank: ``cuda`` without an index becomes ``cuda:<local rank>`` (modulo the devices there
    are), so that the ranks of a node spread over its GPUs; any other device is kept."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched() and torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return device


def timeout() -> datetime.timedelta:
    """How long a collective waits for the other ranks (``$FEWSHOT_DIST_TIMEOUT`` seconds, default 86,400)."""
    text = os.environ.get(TIMEOUT_ENV, "86400")
    try:
        seconds = float(text)
    except ValueError:
        raise UserError(f"${TIMEOUT_ENV}={text!r} is not a number of seconds; set it to e.g. 3600") from None
    return datetime.timedelta(seconds=seconds)


def init(device: torch.device | str = "cpu") -> bool:
    """Join the process group when started by ``torchrun`` (once per process); returns whether this process is
    part of a distributed job. The backend is NCCL for a CUDA ``device``, else gloo."""
    global _control
    if is_initialized():
        return True
    if not launched():
        return False
    if not torch.distributed.is_available():
        raise UserError("started by torchrun (WORLD_SIZE > 1), but this torch build has no torch.distributed; run "
                        "a single process instead")
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend, timeout=timeout())
    _control = torch.distributed.new_group(backend="gloo", timeout=timeout()) if backend != "gloo" else None
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    """Leave the process group (registered at exit by :func:`init`)."""
    global _control
    if is_initialized():
        torch.distributed.destroy_process_group()
    _control = None


def shard(count: int, of_rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """The contiguous block ``[lo, hi)`` of ``count`` items that rank ``of_rank`` (default: this one) handles:
    blocks in rank order, sizes differing by at most one, so concatenating them in rank order gives the items
    in order."""
    of_rank = rank() if of_rank is None else of_rank
    world = world_size() if world is None else world
    return count * of_rank // world, count * (of_rank + 1) // world


def all_gather(value: T) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order, on every rank; ``[value]`` on a single process."""
    if not is_initialized():
        return [value]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, value, group=_control)
    return out


def broadcast(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` (picklable) on every rank; ``value`` itself on a single process."""
    if not is_initialized():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=src, group=_control)
    return box[0]


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place, on every rank (unchanged on a single process); returns it.

    Unlike the object collectives this one uses the default group, so a CUDA tensor travels on NCCL; every rank
    receives the same sum, bit for bit, so that ranks stepping on it stay identical."""
    if is_initialized():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait until every rank arrives here (nothing on a single process)."""
    if is_initialized():
        torch.distributed.barrier(group=_control)


def main_first(work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 first; the other ranks wait for it to finish, then run ``work`` themselves (which
    then finds what rank 0 wrote, a checkpoint say). When rank 0's ``work`` raises, the other ranks raise
    :class:`RankFailed` with its message instead of running ``work``."""
    if not is_initialized():
        return work()
    if is_main():
        try:
            result = work()
        except BaseException as error:
            broadcast(f"{type(error).__name__}: {error}")
            raise
        broadcast(None)
        return result
    failure = broadcast(None)
    if failure is not None:
        raise RankFailed(f"rank 0 failed ({failure}); this rank stops too")
    return work()


def gather_results(work: Callable[[], T]) -> list[T]:
    """Run ``work`` on every rank and return every rank's result, in rank order, on every rank (``[work()]`` on a
    single process). When ``work`` raised on any rank, every rank raises -- the failed one its own error, the
    others :class:`RankFailed` naming it -- so that no rank waits forever in a later collective."""
    if not is_initialized():
        return [work()]
    try:
        value = work()
    except BaseException as error:      # an interrupt too: the other ranks must not wait for this one
        all_gather((None, f"{type(error).__name__}: {error}"))
        raise
    gathered = all_gather((value, None))
    for where, (_, failure) in enumerate(gathered):
        if failure is not None:
            raise RankFailed(f"rank {where} failed ({failure}); this rank stops too")
    return [result for result, _ in gathered]
