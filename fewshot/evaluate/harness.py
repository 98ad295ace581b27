"""The harness: a method on a set of episodes, in batches of episodes, one accuracy per episode.

Under ``torchrun`` the episodes are sharded over the ranks (:mod:`fewshot.core.distributed`): the batches of
episodes are cut into one contiguous block per rank, each rank embeds only the images its own episodes use (or
runs only its own episodes, for methods that adapt with gradients), and the per-episode accuracies are gathered
in episode order. Every batch holds the episodes it holds in a single process, so the accuracies are those of a
single-process run. An out-of-memory error halves the batch (of episodes, or of images when embedding) and
retries (:mod:`fewshot.evaluate.backoff`); what was used is in :attr:`EvalResult.used`. ``precision`` runs the
embedding and the method's forward under autocast (:mod:`fewshot.evaluate.precision`).

Variable-shape episodes (Meta-Dataset's, :mod:`fewshot.data.meta_dataset_episodes`) are batched padded to the
widest episode of each batch for methods that declare ``takes_masks``: padding support rows carry label ``-1``,
the harness sets the logits of classes an episode lacks to ``-inf`` and scores only real queries. Other methods
get them one episode at a time, at each episode's own shape, so every method runs on either protocol.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fewshot.core import distributed
from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet, as_index
from fewshot.data.meta_dataset_episodes import VariableEpisodeSet
from fewshot.evaluate.backoff import chunked
from fewshot.evaluate.features import embed
from fewshot.evaluate.precision import DEFAULT_PRECISION, autocast, check_precision
from fewshot.evaluate.stats import MeanCI, mean_ci
from fewshot.methods.base import FewShotMethod


@dataclass
class EvalResult:
    """Per-episode accuracies on an episode set (identified by its hash), with mean, 95% CI and timings.

    ``used`` says how the work was done: episodes per batch asked for and used (smaller after an out-of-memory
    retry), images per backbone call when embedding, the retries, and how many ranks shared the episodes."""

    accuracies: np.ndarray
    episode_hash: str
    device: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    used: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> MeanCI:
        return mean_ci(self.accuracies)


_MARK_EPISODES = 4096


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) means CUDA when present, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def shard_bounds(episodes: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """The episodes ``[lo, hi)`` rank ``rank`` of ``world`` evaluates: a contiguous block of whole batches."""
    first, last = distributed.shard(math.ceil(episodes / batch_size), rank, world)
    return min(first * batch_size, episodes), min(last * batch_size, episodes)


def evaluate(method: FewShotMethod, dataset: ClassDataset, episodes: EpisodeSet | VariableEpisodeSet, *,
             device: str | torch.device | None = "auto", batch_size: int | None = None,
             embed_batch_size: int | None = None, progress: bool = True,
             precision: str = DEFAULT_PRECISION) -> EvalResult:
    """Accuracy of ``method`` on every episode of ``episodes`` drawn from ``dataset``.

    Frozen-feature methods see each image once: the rows used by any episode are embedded first (in calls of
    ``embed_batch_size`` images), then every batch of ``batch_size`` episodes is classified from those features.
    Other methods receive images, a batch of episodes at a time, and may adapt with gradients (the harness does
    not turn them off). In a distributed job every rank calls this with the same episodes and gets the same
    result. ``precision`` (``fp32``, ``bf16``, ``fp16`` on CUDA) is the autocast dtype of the forward passes.
    """
    if not dataset.holds_episodes_of(episodes.dataset_fingerprint):
        raise ValueError("these episodes were drawn from another dataset (fingerprints differ)")
    device = resolve_device(device)
    check_precision(precision, device)
    method.to(device).eval()
    batch_size = batch_size or method.eval_batch_size
    if isinstance(episodes, VariableEpisodeSet) and not method.takes_masks:
        batch_size = 1              # each episode alone at its own shape: the method never sees padding
    world, rank = distributed.world_size(), distributed.rank()
    distributed.barrier()       # start together: the time is the evaluation's, not another rank's catching up
    start = time.perf_counter()
    lo, hi = shard_bounds(len(episodes), batch_size, rank, world)
    parts = distributed.gather_results(
        lambda: _evaluate_block(method, dataset, episodes[lo:hi], device, batch_size, embed_batch_size, progress,
                                precision))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    accuracies = np.concatenate([part[0] for part in parts])
    if len(accuracies) != len(episodes):   # a bug, never a user's doing: the shards must cover every episode
        raise RuntimeError(f"gathered {len(accuracies)} accuracies for {len(episodes)} episodes")
    timings: dict[str, float] = {}
    for _, times, _ in parts:              # each phase as long as it took the slowest rank
        for key, value in times.items():
            timings[key] = max(value, timings.get(key, value))
    used = {**_merge_used(parts, batch_size), "precision": precision}
    return EvalResult(accuracies, episodes.hash, str(device), seconds, timings, used)


def _merge_used(parts: list[tuple[np.ndarray, dict, dict]], batch_size: int) -> dict[str, Any]:
    used: dict[str, Any] = {"eval_batch_size": batch_size, "world_size": len(parts)}
    shares = [p[2] for p in parts if p[2]]
    for key in ("eval_batch_used", "embed_batch_size", "embed_batch_used", "embed_channels_last"):
        values = [s[key] for s in shares if key in s]
        if values:
            used[key] = min(values)
    used["oom_retries"] = sum(s.get("oom_retries", 0) for s in shares)
    if len(parts) > 1:
        used["episodes_per_rank"] = [len(p[0]) for p in parts]
    return used


def _rows(stored: Tensor, device: torch.device | None = None) -> Tensor:
    """Stored dataset rows as an int64 index; padding (``-1``) reads row 0, which the masks then ignore."""
    return as_index(stored, device).clamp_min(0)


def _evaluate_block(method: FewShotMethod, dataset: ClassDataset, episodes: EpisodeSet | VariableEpisodeSet,
                    device: torch.device,
                    batch_size: int, embed_batch_size: int | None, progress: bool,
                    precision: str = DEFAULT_PRECISION) -> tuple[np.ndarray, dict[str, float], dict[str, Any]]:
    """Accuracies of the episodes of one rank's block, its timings and what it used."""
    if len(episodes) == 0:                  # more ranks than batches: this rank has nothing to do
        return np.zeros(0, dtype=np.float64), {}, {}
    timings: dict[str, float] = {}
    used: dict[str, Any] = {}
    retries = 0
    variable = isinstance(episodes, VariableEpisodeSet)
    start = time.perf_counter()
    if method.frozen_features:
        # The rows any episode uses, in order, and where each sits among them: a mask and a lookup over the
        # dataset's rows, so memory follows the dataset, not the episodes (a torch.unique with return_inverse
        # over every index costs ~30 bytes per index: 180 MiB at 60,000 5-way 5-shot episodes).
        needed = torch.zeros(len(dataset), dtype=torch.bool)
        for lo in range(0, len(episodes), _MARK_EPISODES):      # blocks: the int64 index a mark makes stays small
            for stored in (episodes.support[lo:lo + _MARK_EPISODES], episodes.query[lo:lo + _MARK_EPISODES]):
                needed[_rows(stored[stored >= 0] if variable else stored)] = True
        rows = torch.nonzero(needed).flatten()
        position = torch.full((len(dataset),), -1, dtype=torch.long)
        position[rows] = torch.arange(len(rows))
        del needed
        embedded = embed(method, dataset, rows, device, batch_size=embed_batch_size, progress=progress,
                         precision=precision)
        features = embedded.features.float()     # the classifying step gets float32 inputs (its own autocast)
        if embedded.chunking is not None:
            used.update(embed_batch_size=embedded.chunking.requested, embed_batch_used=embedded.chunking.used,
                        embed_channels_last=embedded.channels_last)
            retries += embedded.chunking.retries
        timings["embed_seconds"] = time.perf_counter() - start

        def inputs(batch):
            return (features[position[_rows(batch.support)].clamp_min(0).to(device)],
                    features[position[_rows(batch.query)].clamp_min(0).to(device)])
    else:
        def inputs(batch):
            return dataset.gather(_rows(batch.support), device), dataset.gather(_rows(batch.query), device)

    # Written in place: a small tensor kept per batch would pin the heap between the batches' large temporaries
    # (glibc then grows the heap by about a batch every batch: 1.4-3.5 GiB at 60,000 episodes).
    accuracies = torch.empty(len(episodes), dtype=torch.float64)

    def accuracy(lo: int, hi: int) -> None:
        batch = episodes[lo:hi].trimmed() if variable else episodes[lo:hi]
        ways = batch.classes.shape[1] if variable else episodes.ways       # the widest episode's, when padded
        support, query = inputs(batch)
        support_labels = as_index(batch.support_labels, device)
        query_labels = as_index(batch.query_labels, device)
        with autocast(precision, device):
            if method.frozen_features:
                logits = method.logits_from_features(support, support_labels, query, ways)
            else:
                logits = method(support, support_labels, query, ways)
        expected = (hi - lo, query_labels.shape[1], ways)
        if tuple(logits.shape) != expected:
            raise RuntimeError(f"{method.name} returned logits of shape {tuple(logits.shape)}, expected {expected}")
        if variable:
            absent = ~batch.class_mask.to(device).unsqueeze(1)
            real = batch.query_mask.to(device)
            hits = (logits.detach().masked_fill(absent, float("-inf")).argmax(-1) == query_labels) & real
            accuracies[lo:hi] = hits.sum(1).double() / real.sum(1)
        else:
            accuracies[lo:hi] = (logits.argmax(-1) == query_labels).float().mean(1).detach()

    _, chunking = chunked(len(episodes), batch_size, accuracy, device=device, desc=f"eval {method.name}",
                          progress=progress)
    used["eval_batch_used"] = chunking.used
    used["oom_retries"] = retries + chunking.retries
    return accuracies.numpy(), timings, used
