"""Training on the base classes: episodic meta-training and supervised pre-training, with shared checkpoints.

:func:`fit` trains a method according to its ``train_kind`` or, when a checkpoint for the same configuration
exists, loads it, so re-running an evaluation does not retrain. Checkpoints are keyed by everything that decides
the weights (method, backbone, training configuration, dataset fingerprint, seed) and written atomically.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.core.atomic import atomic_torch_save as atomic_save
from fewshot.train.config import TrainConfig
from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import sample_episodes
from fewshot.methods.base import FewShotMethod
from fewshot.core.progress import progress_bar


@dataclass
class TrainReport:
    """What :func:`fit` did: trained or loaded, where the checkpoint is, how long it took, the last loss."""

    checkpoint: Path | None
    loaded: bool
    seconds: float
    steps: int
    final_loss: float | None = None


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def checkpoint_key(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig, seed: int) -> str:
    identity = {
        "method": method.train_identity(),
        "backbone": method.backbone_spec,
        "train": dataclasses.asdict(config),
        "dataset": dataset.fingerprint(),
        "seed": seed,
    }
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def fit(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig, *, seed: int = 0,
        checkpoint_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
        progress: bool = True) -> TrainReport:
    """Train ``method`` on ``dataset`` (the base classes), or load the checkpoint of an identical earlier run."""
    method.to(device)
    if method.train_kind == "none":
        return TrainReport(None, loaded=False, seconds=0.0, steps=0)
    path = None
    if checkpoint_dir is not None:
        name = f"{method.name if method.train_kind == 'episodic' else method.train_kind}-"
        path = Path(checkpoint_dir) / f"{name}{checkpoint_key(method, dataset, config, seed)}.pt"
        if path.exists():
            state = torch.load(path, map_location=device, weights_only=True)
            method.load_state_dict(state["model"])
            # The time is the original training time, so tables show what training cost, not the load.
            return TrainReport(path, loaded=True, seconds=float(state.get("seconds", 0.0)), steps=state["step"],
                               final_loss=state.get("loss"))
    start = time.perf_counter()
    trainer = train_episodic if method.train_kind == "episodic" else train_supervised
    loss = trainer(method, dataset, config, seed=seed, device=device, progress=progress, checkpoint=path)
    seconds = time.perf_counter() - start
    if path is not None:
        atomic_save({"model": method.state_dict(), "step": config.steps, "loss": loss, "seconds": seconds}, path)
        _partial(path).unlink(missing_ok=True)
    method.eval()
    return TrainReport(path, loaded=False, seconds=seconds, steps=config.steps, final_loss=loss)


def _partial(path: Path) -> Path:
    return path.with_suffix(".partial.pt")


def make_optimizer(params, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'adam' or 'sgd'")
    step_size = config.lr_decay_every if config.lr_decay_every > 0 else max(config.steps, 1) * 10
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=config.lr_decay)


def _resume(path: Path | None, modules: dict[str, nn.Module | Any], device) -> int:
    """Load a partial checkpoint of an interrupted run of the same configuration; returns the step to go on from."""
    if path is None or not _partial(path).exists():
        return 0
    state = torch.load(_partial(path), map_location=device, weights_only=False)
    for key, module in modules.items():
        module.load_state_dict(state[key])
    return int(state["step"])


def _save_partial(path: Path | None, modules: dict[str, Any], step: int) -> None:
    if path is not None:
        atomic_save({**{k: m.state_dict() for k, m in modules.items()}, "step": step}, _partial(path))


def _check_finite(loss: torch.Tensor, step: int, config: TrainConfig, path: Path | None) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        kept = f" The last good checkpoint ({_partial(path)}) is left as it was." if path is not None else ""
        raise TrainingDiverged(
            f"training loss became {value} at step {step + 1} of {config.steps} (lr {config.lr}); lower the "
            f"learning rate or check the data for NaNs.{kept}"
        )
    return value


def train_episodic(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig, *, seed: int,
                   device: torch.device | str, progress: bool = True, checkpoint: Path | None = None) -> float:
    """Meta-train on seeded episodes: step ``t`` uses training episodes ``t*meta_batch ..`` of seed ``seed``."""
    method.train()
    opt, sched = make_optimizer(method.parameters(), config)
    modules = {"model": method, "optimizer": opt, "scheduler": sched}
    first = _resume(checkpoint, modules, device)
    loss_value = float("nan")
    bar = progress_bar(range(first, config.steps), desc=f"train {method.name}", enabled=progress,
                       total=config.steps, initial=first)
    for step in bar:
        episodes = sample_episodes(dataset, config.ways, config.shots, config.queries, config.meta_batch,
                                   seed=seed, start=step * config.meta_batch)
        support = dataset.gather(episodes.support, device)
        query = dataset.gather(episodes.query, device)
        loss = method.episode_loss(support, episodes.support_labels.to(device), query,
                                   episodes.query_labels.to(device), config.ways).mean()
        loss_value = _check_finite(loss, step, config, checkpoint)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _save_partial(checkpoint, modules, step + 1)
    return loss_value


def train_supervised(method: FewShotMethod, dataset: ClassDataset, config: TrainConfig, *, seed: int,
                     device: torch.device | str, progress: bool = True, checkpoint: Path | None = None) -> float:
    """Pre-train the backbone with cross-entropy over all base classes (a linear head dropped afterwards)."""
    backbone = method.backbone
    head = nn.Linear(int(backbone.out_features), dataset.num_classes).to(device)
    method.train()
    opt, sched = make_optimizer(list(backbone.parameters()) + list(head.parameters()), config)
    modules = {"model": method, "head": head, "optimizer": opt, "scheduler": sched}
    first = _resume(checkpoint, modules, device)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)
    per_epoch = max(len(dataset) // config.batch_size, 1)
    loss_value = float("nan")
    bar = progress_bar(range(first, config.steps), desc="pre-train backbone", enabled=progress,
                       total=config.steps, initial=first)
    for step in bar:
        # The example order is a function of (seed, epoch), so a resumed run sees the same batches.
        epoch, within = divmod(step, per_epoch)
        if within == 0 or step == first:
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        rows = order[within * config.batch_size:(within + 1) * config.batch_size]
        images = dataset.gather(rows, device)
        labels = dataset.labels[rows].to(device)
        loss = F.cross_entropy(head(backbone(images)), labels)
        loss_value = _check_finite(loss, step, config, checkpoint)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _save_partial(checkpoint, modules, step + 1)
    return loss_value
