"""On-disk cache of frozen-backbone features: one file per (dataset split, backbone identity), reused by every run.

A backbone opts in with a ``feature_cache_identity`` attribute (a JSON-able dict naming its architecture, weights
sha256 and preprocessing); trained backbones have none and are never cached. The key is a sha256 of that identity
and the dataset's fingerprint; entries live in the processed-data cache (:mod:`fewshot.core.cache`, under
``$FEWSHOT_CACHE/processed/features``). An entry holds the float32 features of the split's rows computed so far
(and which rows those are): a run embeds only the rows it needs that are not there yet, so a 100-episode check
costs what it needs and every later run or method reuses it; a damaged entry is recomputed. Writes are atomic
and merge the rows another process wrote meanwhile: the read-merge-write runs under an exclusive lock on a file
beside the entry (``<entry>.lock``, POSIX ``flock``), so processes sharing the cache -- the ranks of a
``torchrun`` job, each embedding the rows of its own episodes, or independent runs -- never drop each other's
rows, and every stored row is the feature of that row. Set ``FEWSHOT_FEATURE_CACHE=0`` to turn the cache off.
Features are keyed independently of the device that computed them (CPU and CUDA results agree to float rounding),
and of the memory format: on the CPU the backbone runs in ``channels_last`` (1.6x faster for EfficientNet-Lite0 at
224 px, ``benchmarks/perf/embed_throughput.py``; features equal to float rounding); ``FEWSHOT_CHANNELS_LAST=1`` or
``0`` forces it on or off (on a GPU it stays off until measured there). Features computed under autocast
(``precision`` bf16 or fp16) are keyed with their precision, so they never stand in for float32 ones.
"""
from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from fewshot.core.cache import DataCache
from fewshot.data.dataset import ClassDataset
from fewshot.evaluate.backoff import Chunking, chunked
from fewshot.evaluate.precision import DEFAULT_PRECISION, autocast

try:
    import fcntl
except ImportError:  # not POSIX: writes stay atomic, but concurrent writers may drop each other's new rows
    fcntl = None

FORMAT = 3  # the version of the entries (rows, features, size, identity) in the processed-data cache
CACHE = DataCache("features", FORMAT)


def enabled() -> bool:
    """False when ``$FEWSHOT_FEATURE_CACHE`` is ``0``, ``off``, ``false`` or ``no``."""
    return os.environ.get("FEWSHOT_FEATURE_CACHE", "1").strip().lower() not in ("0", "off", "false", "no")


def cache_identity(backbone: nn.Module) -> dict[str, Any] | None:
    """The backbone's ``feature_cache_identity``, or None when its features must not be cached."""
    return getattr(backbone, "feature_cache_identity", None)


def _cache(root: str | os.PathLike | None) -> DataCache:
    return CACHE if root is None else DataCache("features", FORMAT, folder=root)


def _label(dataset: ClassDataset) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name).strip("_") or "dataset"


def feature_cache_key(identity: dict[str, Any], dataset: ClassDataset) -> str:
    """The cache key of ``identity``'s features of ``dataset`` (a sha256 of both and of the entry format)."""
    return CACHE.key({"dataset": dataset.fingerprint(), "backbone": identity})


def feature_cache_path(identity: dict[str, Any], dataset: ClassDataset, root: str | os.PathLike | None = None) -> Path:
    """``<root or $FEWSHOT_CACHE/processed/features>/<dataset name>-<key>.arrays``."""
    return _cache(root).path(feature_cache_key(identity, dataset), _label(dataset))


def prefer_channels_last(device: torch.device | str) -> bool:
    """Whether to embed in ``channels_last``: ``$FEWSHOT_CHANNELS_LAST`` (``1``/``0``) if set, else on the CPU,
    where it measured faster."""
    forced = os.environ.get("FEWSHOT_CHANNELS_LAST", "").strip().lower()
    if forced:
        return forced not in ("0", "off", "false", "no")
    return torch.device(device).type == "cpu"


@contextmanager
def memory_format(module: nn.Module, channels_last: bool) -> Iterator[None]:
    """Run ``module`` with its 4-D weights in ``channels_last`` (so its convolutions run in that layout), then
    give them back their own layout. A module already in ``channels_last``, or asked not to be, is left alone."""
    weights = [t for t in [*module.parameters(), *module.buffers()] if t.dim() == 4]
    if not channels_last or not weights or all(t.is_contiguous(memory_format=torch.channels_last) for t in weights):
        yield
        return
    module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(memory_format=torch.contiguous_format)


@dataclass
class CachedFeatures:
    """Features of the requested rows, with how many came from the cache and how many were computed."""

    features: Tensor
    path: Path
    hits: int
    computed: int
    seconds: float
    #: How the computed rows were chunked (None when every row came from the cache).
    chunking: Chunking | None = None
    #: Whether they were computed in ``channels_last``.
    channels_last: bool = False


def _read(cache: DataCache, key: str, label: str, size: int) -> tuple[Tensor, Tensor] | None:
    """The stored rows as dense ``features [size, D]`` and ``done [size]``, or None (absent, damaged, other size)."""
    entry = cache.load(key, label)
    if entry is None or int(entry["size"]) != size:
        return None
    features = torch.zeros(size, entry["features"].shape[1])
    done = torch.zeros(size, dtype=torch.bool)
    rows = torch.from_numpy(entry["rows"])
    features[rows] = torch.from_numpy(entry["features"])
    done[rows] = True
    return features, done


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (an empty file, never read) while merging into ``path``."""
    if fcntl is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")
    except OSError:          # a read-only cache: the store below warns and keeps nothing, no lock needed
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(cache: DataCache, key: str, label: str, identity: dict[str, Any], features: Tensor, done: Tensor) -> None:
    with _locked(cache.path(key, label)):
        on_disk = _read(cache, key, label, len(done))
        if on_disk is not None and on_disk[0].shape == features.shape:  # keep rows another run added meanwhile
            theirs = on_disk[1] & ~done
            features[theirs] = on_disk[0][theirs]
            done |= on_disk[1]
        rows = torch.nonzero(done).flatten()
        cache.store(key, {"rows": rows.numpy(), "features": features[rows].numpy(), "size": np.array(len(done)),
                          "identity": np.array(json.dumps(identity, sort_keys=True))}, label)


@torch.no_grad()
def cached_features(backbone: nn.Module, dataset: ClassDataset, rows: Tensor, device: torch.device | str, *,
                    batch_size: int = 64, progress: bool = True, root: str | os.PathLike | None = None,
                    save_every: float = 120.0, channels_last: bool | None = None,
                    precision: str = DEFAULT_PRECISION) -> CachedFeatures:
    """Features ``[len(rows), D]`` of ``dataset`` rows ``rows`` from ``backbone``, through the on-disk cache.

    Missing rows are embedded in eval mode in batches on ``device``; the file is written every ``save_every``
    seconds of embedding and at the end, so an interrupted run resumes where it stopped. ``channels_last``
    (default :func:`prefer_channels_last`) runs the backbone in that memory format; ``precision`` under that
    autocast, in entries of their own.
    """
    identity = cache_identity(backbone)
    if identity is None:
        raise ValueError(f"{type(backbone).__name__} has no feature_cache_identity: its features are not cacheable")
    if precision != DEFAULT_PRECISION:      # float32 entries keep their keys
        identity = {**identity, "precision": precision}
    start = time.perf_counter()
    cache, key, label = _cache(root), feature_cache_key(identity, dataset), _label(dataset)
    path = cache.path(key, label)
    stored = _read(cache, key, label, len(dataset))
    features, done = stored if stored is not None else (None, torch.zeros(len(dataset), dtype=torch.bool))
    rows = rows.cpu()
    needed = torch.unique(rows)
    missing = needed[~done[needed]]
    was_training = backbone.training
    backbone.eval()
    last_save = time.perf_counter()
    state: dict[str, Tensor | None] = {"features": features}

    def work(lo: int, hi: int) -> None:
        nonlocal last_save
        batch = missing[lo:hi]
        with autocast(precision, device):
            out = backbone(dataset.gather(batch, device))
        out = out.reshape(len(batch), -1).float().cpu()
        if state["features"] is None:
            state["features"] = torch.zeros(len(dataset), out.shape[1])
        state["features"][batch] = out
        done[batch] = True
        if time.perf_counter() - last_save > save_every and hi < len(missing):
            _write(cache, key, label, identity, state["features"], done)
            last_save = time.perf_counter()

    chunking = None
    channels_last = prefer_channels_last(device) if channels_last is None else channels_last
    try:
        if len(missing):
            with memory_format(backbone, channels_last):
                _, chunking = chunked(len(missing), batch_size, work, device=torch.device(device),
                                      desc="embed (cached)", progress=progress and len(missing) > 4 * batch_size)
    finally:
        backbone.train(was_training)
    features = state["features"]
    if len(missing):
        _write(cache, key, label, identity, features, done)
    if features is None:
        raise ValueError("no rows to embed")
    return CachedFeatures(features[rows].to(device), path, hits=len(needed) - len(missing), computed=len(missing),
                          seconds=time.perf_counter() - start, chunking=chunking,
                          channels_last=bool(len(missing)) and channels_last)
