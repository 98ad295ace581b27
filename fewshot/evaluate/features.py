"""Embedding each image once: the features a frozen-feature method classifies from.

A backbone with a ``feature_cache_identity`` (a frozen pretrained one) goes through the on-disk feature cache
(:mod:`fewshot.evaluate.feature_cache`), unless the method overrides :meth:`FewShotMethod.embed`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fewshot.data.dataset import ClassDataset
from fewshot.methods.base import FewShotMethod
from fewshot.core.progress import progress_bar


@torch.no_grad()
def embed_rows(method: FewShotMethod, dataset: ClassDataset, rows: Tensor, device: torch.device | str,
               batch_size: int | None = None, progress: bool = True, cache: bool = True) -> Tensor:
    """Features ``[len(rows), D]`` of dataset rows ``rows``, computed in eval mode in batches on ``device``.

    With ``cache`` (and ``$FEWSHOT_FEATURE_CACHE`` not ``0``), a cacheable backbone's features are read from, and
    added to, the on-disk feature cache.
    """
    method.eval()
    if batch_size is None:
        # This CPU runs Conv-4 at 28x28 at ~1,900 images/s in batches up to ~80 and ~1,200 at 128 and more.
        batch_size = 64 if torch.device(device).type == "cpu" else 512
    if cache and type(method).embed is FewShotMethod.embed:
        from fewshot.evaluate import feature_cache

        if feature_cache.enabled() and feature_cache.cache_identity(method.backbone) is not None:
            return feature_cache.cached_features(method.backbone, dataset, rows, device, progress=progress).features
    chunks = []
    starts = range(0, len(rows), batch_size)
    for start in progress_bar(starts, desc="embed", enabled=progress and len(starts) > 4):
        chunks.append(method.embed(dataset.gather(rows[start:start + batch_size], device)))
    if not chunks:
        raise ValueError("no rows to embed")
    return torch.cat(chunks)
