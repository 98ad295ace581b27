"""Fixed episode sets: published tasks whose test examples and episodes are given, not sampled (Lake et al.'s 20
one-shot runs; the published 5- and 10-shot intent splits, ``banking77-5shot`` ... ``hwu64-10shot``). A loader
returns the test :class:`ClassDataset` and the :class:`EpisodeSet` on it; a cell (:class:`fewshot.runner.CellSpec`)
names one with ``fixed_episodes`` and is then scored on exactly those episodes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from fewshot.core.registry import Registry
from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet
from fewshot.data.registry import resolve_data_root
from fewshot.data.text.encoders import DEFAULT_ENCODER

FixedLoader = Callable[..., tuple[ClassDataset, EpisodeSet]]
FIXED_EPISODES: Registry[FixedLoader] = Registry("fixed episode set")


def register_fixed_episodes(name: str) -> Callable[[FixedLoader], FixedLoader]:
    """Decorator registering ``loader(root, **options) -> (ClassDataset, EpisodeSet)`` under ``name``."""
    return FIXED_EPISODES.register(name)


def list_fixed_episodes(pattern: str = "*") -> list[str]:
    return FIXED_EPISODES.names(pattern)


def load_fixed_episodes(name: str, root: str | os.PathLike | None = None,
                        **options) -> tuple[ClassDataset, EpisodeSet]:
    """The test set and episodes of fixed task ``name``; ``root`` as for :func:`fewshot.data.load_dataset`."""
    return FIXED_EPISODES.get(name)(resolve_data_root(root), **options)


@register_fixed_episodes("omniglot-runs")
def _omniglot_runs(root: Path, *, image_size: int = 28, download: bool = True) -> tuple[ClassDataset, EpisodeSet]:
    """Lake et al. (2015)'s 20 runs of 20-way 1-shot within-alphabet classification (``all_runs.zip``)."""
    from fewshot.data.omniglot import load_omniglot_runs

    return load_omniglot_runs(root, image_size, download=download)


def _intent_loader(dataset: str, shots: int) -> FixedLoader:
    def load(root: Path, *, encoder: str = DEFAULT_ENCODER) -> tuple[ClassDataset, EpisodeSet]:
        from fewshot.data.text.intent_fewshot import load_intent_episodes

        return load_intent_episodes(root, dataset, shots, encoder=encoder)

    load.__name__ = f"_{dataset}_{shots}shot"
    load.__doc__ = (f"The published {shots}-shot intent protocol on {dataset}: train_{shots} of every intent as "
                    f"the support, the whole test split as queries (one all-way episode; intent_fewshot/).")
    return load


for _dataset in ("banking77", "clinc150", "hwu64"):
    for _shots in (5, 10):
        register_fixed_episodes(f"{_dataset}-{_shots}shot")(_intent_loader(_dataset, _shots))
