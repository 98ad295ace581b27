"""The harness: a method on a set of episodes, in batches of episodes on one device, one accuracy per episode."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet
from fewshot.evaluate.features import embed_rows
from fewshot.methods.base import FewShotMethod
from fewshot.core.progress import progress_bar
from fewshot.evaluate.stats import MeanCI, mean_ci


@dataclass
class EvalResult:
    """Per-episode accuracies on an episode set (identified by its hash), with mean, 95% CI and timings."""

    accuracies: np.ndarray
    episode_hash: str
    device: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> MeanCI:
        return mean_ci(self.accuracies)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) means CUDA when present, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def evaluate(method: FewShotMethod, dataset: ClassDataset, episodes: EpisodeSet, *,
             device: str | torch.device | None = "auto", batch_size: int | None = None,
             progress: bool = True) -> EvalResult:
    """Accuracy of ``method`` on every episode of ``episodes`` drawn from ``dataset``.

    Frozen-feature methods see each image once: the rows used by any episode are embedded first, then every
    batch of episodes is classified from those features. Other methods receive images, a batch of episodes at a
    time, and may adapt with gradients (the harness does not turn them off).
    """
    if not dataset.holds_episodes_of(episodes.dataset_fingerprint):
        raise ValueError("these episodes were drawn from another dataset (fingerprints differ)")
    device = resolve_device(device)
    method.to(device).eval()
    batch_size = batch_size or method.eval_batch_size
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if method.frozen_features:
        rows, inverse = torch.unique(torch.cat([episodes.support.flatten(), episodes.query.flatten()]),
                                     return_inverse=True)
        features = embed_rows(method, dataset, rows, device, progress=progress)
        n_support = episodes.support.numel()
        positions_s = inverse[:n_support].view_as(episodes.support)
        positions_q = inverse[n_support:].view_as(episodes.query)
        timings["embed_seconds"] = time.perf_counter() - start

        def inputs(lo: int, hi: int):
            return features[positions_s[lo:hi].to(device)], features[positions_q[lo:hi].to(device)]
    else:
        def inputs(lo: int, hi: int):
            return dataset.gather(episodes.support[lo:hi], device), dataset.gather(episodes.query[lo:hi], device)

    accuracies = []
    starts = range(0, len(episodes), batch_size)
    for lo in progress_bar(starts, desc=f"eval {method.name}", enabled=progress):
        hi = min(lo + batch_size, len(episodes))
        support, query = inputs(lo, hi)
        support_labels = episodes.support_labels[lo:hi].to(device)
        query_labels = episodes.query_labels[lo:hi].to(device)
        if method.frozen_features:
            logits = method.logits_from_features(support, support_labels, query, episodes.ways)
        else:
            logits = method(support, support_labels, query, episodes.ways)
        expected = (hi - lo, query_labels.shape[1], episodes.ways)
        if tuple(logits.shape) != expected:
            raise RuntimeError(f"{method.name} returned logits of shape {tuple(logits.shape)}, expected {expected}")
        accuracies.append((logits.argmax(-1) == query_labels).float().mean(1).detach().cpu())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return EvalResult(torch.cat(accuracies).numpy().astype(np.float64), episodes.hash, str(device), seconds, timings)
