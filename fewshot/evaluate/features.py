"""Embedding each image once: the features a frozen-feature method classifies from.

A backbone with a ``feature_cache_identity`` (a frozen pretrained one) goes through the on-disk feature cache
(:mod:`fewshot.evaluate.feature_cache`), unless the method overrides :meth:`FewShotMethod.embed`. Either way the
images go through the backbone in chunks of ``batch_size``, halved on an out-of-memory error
(:mod:`fewshot.evaluate.backoff`). The cached path runs the backbone in ``channels_last`` on the CPU
(:func:`fewshot.evaluate.feature_cache.prefer_channels_last`). A ``precision`` other than fp32 runs the backbone
under autocast (:mod:`fewshot.evaluate.precision`), and its cached features are kept apart from float32 ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fewshot.data.dataset import ClassDataset
from fewshot.evaluate.backoff import Chunking, chunked
from fewshot.evaluate.precision import DEFAULT_PRECISION, autocast
from fewshot.methods.base import FewShotMethod


@dataclass
class Embedded:
    """Features of the requested rows, the chunking that computed them (None: all came from the cache) and
    whether they were computed in ``channels_last``."""

    features: Tensor
    chunking: Chunking | None
    channels_last: bool = False


def default_batch_size(device: torch.device | str, cached: bool = False) -> int:
    """Images per backbone call when none is given (``cached``: a frozen pretrained backbone's, whose images are
    resized to its own input size, 224 px for the named ones)."""
    if torch.device(device).type != "cpu":
        return 512      # not measured on a GPU yet
    # This CPU, one thread: Conv-4 at 28x28 runs at ~1,900 images/s in batches up to ~80 and ~1,200 at 128 and
    # more; EfficientNet-Lite0 at 224 px in channels_last at 58 images/s in batches of 4, 53 of 8, 38 of 16 and 29
    # of 64 (benchmarks/perf/embed_throughput.py): small batches stay in the caches.
    return 4 if cached else 64


@torch.no_grad()
def embed(method: FewShotMethod, dataset: ClassDataset, rows: Tensor, device: torch.device | str,
          batch_size: int | None = None, progress: bool = True, cache: bool = True,
          precision: str = DEFAULT_PRECISION) -> Embedded:
    """Features ``[len(rows), D]`` of dataset rows ``rows``, computed in eval mode in batches on ``device``, and
    how they were computed.

    With ``cache`` (and ``$FEWSHOT_FEATURE_CACHE`` not ``0``), a cacheable backbone's features are read from, and
    added to, the on-disk feature cache.
    """
    method.eval()
    if cache and type(method).embed is FewShotMethod.embed:
        from fewshot.evaluate import feature_cache

        if feature_cache.enabled() and feature_cache.cache_identity(method.backbone) is not None:
            found = feature_cache.cached_features(method.backbone, dataset, rows, device, progress=progress,
                                                  batch_size=batch_size or default_batch_size(device, cached=True),
                                                  precision=precision)
            return Embedded(found.features, found.chunking, found.channels_last)
    batch_size = batch_size or default_batch_size(device)
    if not len(rows):
        raise ValueError("no rows to embed")

    def work(lo: int, hi: int) -> Tensor:
        with autocast(precision, device):
            return method.embed(dataset.gather(rows[lo:hi], device))

    chunks, chunking = chunked(len(rows), batch_size, work,
                               device=torch.device(device), desc="embed",
                               progress=progress and len(rows) > 4 * batch_size)
    return Embedded(torch.cat(chunks), chunking)


def embed_rows(method: FewShotMethod, dataset: ClassDataset, rows: Tensor, device: torch.device | str,
               batch_size: int | None = None, progress: bool = True, cache: bool = True) -> Tensor:
    """Features ``[len(rows), D]`` of dataset rows ``rows`` (:func:`embed`'s features)."""
    return embed(method, dataset, rows, device, batch_size, progress, cache).features
