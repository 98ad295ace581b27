"""One function of a task over a batch of tasks: ``vmap`` in chunks sized for the device, or plain calls.

MAML-style methods adapt per-task weights, so their backbone calls cannot simply batch the tasks' images. ``vmap``
over every task at once suits an accelerator; on a CPU it sends tasks x images through each convolution, far above
the batch size at which small convolutions run fastest (Conv-4 at 28x28 slows down per image well above ~100
images), so there the tasks go in chunks near that size, and one task at a time is a plain call, with batch norm's
scale and shift fused back into ``F.batch_norm`` (:func:`~fewshot.backbones.batch_stats.fused_affine`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.func import vmap

from fewshot.backbones.batch_stats import fused_affine

#: Images per backbone call near which Conv-4 runs fastest on a CPU.
CPU_IMAGES_PER_CALL = 100


def tasks_per_call(tasks: int, images_per_task: int, device: torch.device) -> int:
    """How many tasks one call takes: all on an accelerator; on a CPU as many as keep it near 100 images."""
    if device.type != "cpu":
        return tasks
    return max(1, min(tasks, CPU_IMAGES_PER_CALL // max(1, images_per_task)))


def map_tasks(task: Callable[..., Any], *tensors: Tensor, per_call: int | None = None) -> Any:
    """``task`` over the leading (task) dimension of ``tensors``; returns its tensor, or dict of tensors, stacked.

    ``per_call`` tasks go through one ``vmap`` call (``None``: :func:`tasks_per_call`; the image count of a task is
    the second dimension summed over the floating-point tensors). Results equal one ``vmap`` over all tasks up to
    rounding."""
    count = tensors[0].shape[0]
    if per_call is None:
        images = sum(t.shape[1] for t in tensors if t.is_floating_point())
        per_call = tasks_per_call(count, images, tensors[0].device)
    if per_call == 1:
        with fused_affine():
            return _join([task(*one) for one in zip(*tensors)], torch.stack)
    chunks = zip(*(t.split(per_call) for t in tensors))
    return _join([vmap(task, randomness="different")(*chunk) for chunk in chunks], torch.cat)


def _join(outs: list, join: Callable[[list[Tensor]], Tensor]) -> Any:
    if isinstance(outs[0], dict):
        return {k: join([o[k] for o in outs]) for k in outs[0]}
    return join(outs)


def per_episode(fn: Callable[..., Any], episodes: int) -> Callable[..., Any]:
    """``vmap(fn)`` over a leading episode dimension; for a single episode a plain call of ``fn`` on the arguments
    with that dimension taken off and put back on its result (tensors, or dicts of tensors). The same values up to
    rounding, and a one-episode evaluation (a fixed episode set, such as the intent protocol's) skips vmap's
    overhead: about 6x for ``finetune-full`` of MiniLM on a BANKING77 episode
    (``benchmarks/perf/one_episode_finetune.py``)."""
    if episodes != 1:
        return vmap(fn)

    def plain(*args: Any) -> Any:
        return _map(lambda t: t.unsqueeze(0), fn(*(_map(lambda t: t.squeeze(0), a) for a in args)))

    return plain


def _map(f: Callable[[Tensor], Tensor], value: Any) -> Any:
    if isinstance(value, dict):
        return {k: f(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(f(v) for v in value)
    return f(value)
