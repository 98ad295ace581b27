"""Training on the base classes: episodic meta-training and supervised pre-training, with shared checkpoints.

:func:`fit` trains a method according to its ``train_kind`` (or with the method's own ``train_loop``) or, when a
checkpoint for the same configuration exists, loads it, so re-running an evaluation does not retrain. Checkpoints
are named by the method (:meth:`~fewshot.methods.base.FewShotMethod.checkpoint_name`: everything that decides the
weights) and written atomically; :class:`~fewshot.train.session.TrainSession` makes an interrupted run resumable.

Under ``torchrun`` a method whose episodes are independent (``tasks_independent``, the MAML family) meta-trains on
every rank at once (:func:`split_across_ranks`): each step's meta-batch is cut into contiguous blocks, one per rank,
the gradients are summed over the ranks before the step, so every rank takes the same step, the one a single
process takes (up to the order of the float sums); rank 0 writes the checkpoints. Other methods train on rank 0
alone while the others wait (the runner's :func:`~fewshot.core.distributed.main_first`). Supervised pre-training
can be data-parallel on request (``fit(..., data_parallel=True)``), with DistributedDataParallel's semantics and
batch norm per rank: not the weights of one process, so kept apart in its own checkpoint.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from fewshot.core import distributed
from fewshot.core.atomic import atomic_torch_save as atomic_save, remove_orphans
from fewshot.core.errors import DataError, UsageError, UserError
from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import as_index, sample_episodes
from fewshot.data.union import is_union, sample_source_episodes
from fewshot.methods.base import FewShotMethod, TrainKind
from fewshot.train.config import TrainConfig
from fewshot.train.session import TrainSession, Watch, loss_curve, loss_warnings


@dataclass
class TrainReport:
    """What :func:`fit` did: trained or loaded, where the checkpoint is, how long it took, the losses."""

    checkpoint: Path | None
    loaded: bool
    seconds: float
    steps: int
    final_loss: float | None = None
    #: Window means of the training loss (:func:`~fewshot.train.session.loss_curve`).
    curve: list[dict[str, float]] = field(default_factory=list)
    #: Signs of a failed training (a loss that did not fall), shown beside the run's row in every table.
    warnings: list[str] = field(default_factory=list)
    #: How many ranks the meta-batch was split over (1: one process trained).
    ranks: int = 1
    #: Held-out accuracy during training (:class:`~fewshot.train.session.Watch`): what was scored and the points
    #: ``[{"step", "accuracy"}]``; empty when nothing was watched (or the checkpoint loaded holds no watch).
    watch: dict = field(default_factory=dict)


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite."""


def split_across_ranks(method: FewShotMethod, data_parallel: bool = False) -> bool:
    """True when every rank of the process group must call :func:`fit` for ``method`` together, each training on
    its block of every meta-batch (world size above 1, episodic training, ``method.tasks_independent``) or, with
    ``data_parallel``, on its slice of every supervised batch."""
    if distributed.world_size() == 1:
        return False
    if method.train_kind == TrainKind.SUPERVISED:
        return data_parallel
    return method.train_kind == TrainKind.EPISODIC and method.tasks_independent


def fit(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig, *, seed: int = 0,
        checkpoint_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
        progress: bool = True, checkpoint_seconds: float = 60.0, data_parallel: bool = False,
        watch: Watch | None = None) -> TrainReport:
    """Train ``method`` on ``dataset`` (the base classes), or load the checkpoint of an identical earlier run.

    An interrupted run (SIGINT, SIGTERM, or a crash) resumes from its partial checkpoint, written every
    ``config.checkpoint_every`` steps, every ``checkpoint_seconds`` and when a signal arrives. When
    :func:`split_across_ranks` holds, every rank calls this and trains its share; only rank 0 writes.

    ``data_parallel``: under ``torchrun``, supervised pre-training as DistributedDataParallel does it, every rank
    calling this: each rank takes its slice of every batch and the gradients are summed, so the ranks step
    identically, but batch norm normalises each rank's slice by its own statistics (standard DDP, no SyncBatchNorm),
    so the weights are NOT those of one process; they go to a checkpoint named with the world size, and batch
    norm's running statistics are rank 0's at the end. No effect on a single process or on other training kinds.

    ``watch``: a held-out score measured during training (:class:`~fewshot.train.session.Watch`), stored in the
    report and the checkpoint; it does not change the weights, so it is not part of the checkpoint's name."""
    method.to(device)
    frozen = not any(p.requires_grad for p in method.backbone.parameters())
    nothing = method.train_kind == TrainKind.EPISODIC and not any(p.requires_grad for p in method.parameters())
    if method.train_kind == TrainKind.NONE or (method.train_kind == TrainKind.SUPERVISED and frozen) or nothing:
        # Supervised pre-training of a frozen backbone would only train the head it drops, and episodic training
        # of a method with no trainable weight (ProtoNet on a frozen encoder) would change nothing: nothing to train.
        return TrainReport(None, loaded=False, seconds=0.0, steps=0)
    shared = split_across_ranks(method, data_parallel)
    ranks = distributed.world_size() if shared else 1
    path = None
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / method.checkpoint_name(dataset.fingerprint(), config, seed)
        if shared and method.train_kind == TrainKind.SUPERVISED:    # other weights than one process's: apart
            path = path.with_name(f"{path.stem}-ddp{ranks}{path.suffix}")
        if distributed.is_main() or not shared:
            remove_orphans(path.parent)
        # Split training: rank 0's view decides, so that no rank trains while another loads.
        if distributed.broadcast(path.exists()) if shared else path.exists():
            return _load(method, path, device)
    session = TrainSession(path, total_steps=config.steps, seed=seed, device=device, progress=progress,
                           every_steps=config.checkpoint_every, every_seconds=checkpoint_seconds, shared=shared,
                           watch=watch)
    # Training draws from the global RNG (a supervised head's initialisation, dropout, a method's own noise): fork
    # it and seed it, so that the weights depend on the seed alone, not on the process or on what ran before.
    with session.signals(), torch.random.fork_rng(devices=_cuda_indices(device)):
        torch.manual_seed(seed)
        if method.train_kind == TrainKind.EPISODIC:
            loss = train_episodic(method, dataset, config, session)
        elif method.train_kind == TrainKind.SUPERVISED:
            loss = train_supervised(method, dataset, config, session)
        else:
            loss = method.train_loop(dataset, config, session)
    watched = {**watch.describe, "every": watch.every, "points": watch.points} if watch is not None else {}
    report = TrainReport(path, loaded=False, seconds=session.seconds, steps=config.steps, final_loss=loss,
                         curve=loss_curve(session.losses), warnings=loss_warnings(session.losses), ranks=ranks,
                         watch=watched)
    if path is not None and session.writes:
        atomic_save({"model": method.state_dict(), "step": config.steps, "loss": loss, "seconds": report.seconds,
                     "curve": report.curve, "warnings": report.warnings, "ranks": ranks, "watch": watched}, path)
        session.discard_partial()
    if shared:
        distributed.barrier()       # the checkpoint exists on every rank's return
    method.eval()
    return report


def _cuda_indices(device: torch.device | str) -> list[int]:
    device = torch.device(device)
    return [device.index or 0] if device.type == "cuda" else []


def _load(method: FewShotMethod, path: Path, device: torch.device | str) -> TrainReport:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        method.load_state_dict(state["model"])
    except Exception as error:  # our own file, written atomically: unreadable means damaged or from elsewhere
        raise DataError(f"cannot load checkpoint {path} ({type(error).__name__}: {str(error)[:200]}); delete it to "
                        f"train again") from None
    method.eval()
    # The time is the original training time, so tables show what training cost, not the load.
    return TrainReport(path, loaded=True, seconds=float(state.get("seconds", 0.0)), steps=state["step"],
                       final_loss=state.get("loss"), curve=list(state.get("curve", [])),
                       warnings=list(state.get("warnings", [])), ranks=int(state.get("ranks", 1)),
                       watch=dict(state.get("watch", {})))


def make_optimizer(params, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    else:
        raise UsageError(f"unknown optimizer {config.optimizer!r}; use 'adam' or 'sgd'")
    step_size = config.lr_decay_every if config.lr_decay_every > 0 else max(config.steps, 1) * 10
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=config.lr_decay)


def _check_finite(loss: torch.Tensor, step: int, config: TrainConfig, session: TrainSession) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        kept = f" The last good checkpoint ({session.partial}) is left as it was." if session.partial else ""
        raise TrainingDiverged(
            f"training loss became {value} at step {step + 1} of {config.steps} (lr {config.lr}); lower the "
            f"learning rate (train key 'lr') or check the data for NaNs.{kept}"
        )
    return value


def train_episodic(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig, session: TrainSession) -> float:
    """Meta-train on seeded episodes: step ``t`` uses training episodes ``t*meta_batch ..`` of the session's seed
    (from one source each when ``dataset`` is a union of sources, :mod:`fewshot.data.union`).

    In a ``shared`` session this rank takes its block of them (:func:`~fewshot.core.distributed.shard`) and the
    loss and gradients are summed over the ranks: the sum of its episodes' losses divided by ``meta_batch``."""
    method.train()
    device = session.device
    opt, sched = make_optimizer(method.parameters(), config)
    modules = {"model": method, "optimizer": opt, "scheduler": sched}
    first = session.resume(modules)
    lo, hi = distributed.shard(config.meta_batch) if session.shared else (0, config.meta_batch)
    # Several sources: each episode from one of them (Meta-Dataset's training episodes).
    sample = sample_source_episodes if is_union(dataset) else sample_episodes
    loss_value = float("nan")
    for step in session.steps(first, desc=f"train {method.name}"):
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        if hi > lo:             # a rank may have no episode when the meta-batch is smaller than the world
            episodes = sample(dataset, config.ways, config.shots, config.queries, hi - lo,
                              seed=session.seed, start=step * config.meta_batch + lo)
            support = dataset.gather(episodes.support, device)
            query = dataset.gather(episodes.query, device)
            losses = method.episode_loss(support, as_index(episodes.support_labels, device), query,
                                         as_index(episodes.query_labels, device), config.ways)
            loss = losses.sum() / config.meta_batch if session.shared else losses.mean()
        loss_value = _backward(loss, method.parameters(), step, config, session)
        opt.step()
        sched.step()
        session.step_done(step, modules, loss_value)
    return loss_value


def _backward(loss: torch.Tensor, params, step: int, config: TrainConfig, session: TrainSession) -> float:
    """Backpropagate this step's loss and return its value, checked finite. On one process the check comes first
    (a NaN stops before backward); in a shared session each rank backpropagates its part (if it has one) and the
    gradients and loss are summed over the ranks, then the summed loss is checked, the same on every rank."""
    if not session.shared:
        value = _check_finite(loss, step, config, session)
        loss.backward()
        return value
    if loss.requires_grad:          # a rank with no episode of this step has a constant zero loss
        loss.backward()
    return _check_finite(_sum_over_ranks(params, loss), step, config, session)


def _sum_over_ranks(params, loss: torch.Tensor) -> torch.Tensor:
    """Sum the gradients of ``params`` and ``loss`` over the ranks, in one collective; returns the summed loss. A
    parameter keeps no gradient (``None``, skipped by the optimizer) only when it has none on every rank."""
    params = [p for p in params if p.requires_grad]
    dtype = params[0].dtype
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype) for p in params]
    had = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=loss.device)
    flat = distributed.all_reduce_sum_(torch.cat([*parts, had, loss.detach().reshape(1).to(dtype)]))
    offset = 0
    for p, count in zip(params, flat[-len(params) - 1:-1].tolist()):
        p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype) if count > 0 else None
        offset += p.numel()
    return flat[-1]


def train_supervised(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig,
                     session: TrainSession) -> float:
    """Pre-train the backbone with cross-entropy over all base classes (a linear head dropped afterwards)."""
    device, seed = session.device, session.seed
    backbone = method.backbone
    head = method.pretraining_head(int(backbone.out_features), dataset.num_classes).to(device)
    method.train()
    opt, sched = make_optimizer(list(backbone.parameters()) + list(head.parameters()), config)
    modules = {"model": method, "head": head, "optimizer": opt, "scheduler": sched}
    first = session.resume(modules)
    order = torch.empty(0, dtype=torch.long)
    per_epoch = max(len(dataset) // config.batch_size, 1)
    params = list(backbone.parameters()) + list(head.parameters())
    loss_value = float("nan")
    for step in session.steps(first, desc="pre-train backbone"):
        # The example order is a function of (seed, epoch), so a resumed run sees the same batches.
        epoch, within = divmod(step, per_epoch)
        if within == 0 or step == first:
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        rows = order[within * config.batch_size:(within + 1) * config.batch_size]
        if session.shared:      # this rank's contiguous slice; its mean loss weighted by its share of the batch
            lo, hi = distributed.shard(len(rows))
            rows, share = rows[lo:hi], (hi - lo) / len(rows)
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        if len(rows):
            images = dataset.gather(rows, device)
            labels = dataset.labels[rows].to(device)
            loss = F.cross_entropy(head(backbone(images)), labels)
            if session.shared:
                loss = loss * share
        loss_value = _backward(loss, params, step, config, session)
        opt.step()
        sched.step()
        session.step_done(step, modules, loss_value)
    if session.shared:      # as DDP's broadcast_buffers: every rank ends with rank 0's batch-norm statistics
        buffers = distributed.broadcast({k: v.cpu() for k, v in method.named_buffers()} if distributed.is_main()
                                        else None)
        with torch.no_grad():
            for name, buffer in method.named_buffers():
                buffer.copy_(buffers[name])
    return loss_value
