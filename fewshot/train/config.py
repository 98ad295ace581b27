"""How a method trains on the base classes: :class:`TrainConfig`, the bottom of the training package.

It imports nothing else of the suite, so methods may declare their presets with it without an arrow back up.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """How a method trains on the base classes; one preset per dataset lives in :mod:`fewshot.train.presets`."""

    steps: int = 1000                     # optimiser steps
    lr: float = 1e-3
    optimizer: str = "adam"               # "adam" or "sgd" (momentum 0.9)
    weight_decay: float = 0.0
    lr_decay_every: int = 0               # multiply the lr by lr_decay every this many steps (0: never)
    lr_decay: float = 0.5
    # Episodic meta-training: the shape of the training episodes, and episodes per step.
    ways: int = 5
    shots: int = 5
    queries: int = 15
    meta_batch: int = 1
    # Supervised pre-training: examples per step.
    batch_size: int = 64
    checkpoint_every: int = 500

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def dataset_family(dataset: str) -> str:
    """``omniglot`` for every Omniglot variant, ``synthetic``, ``miniimagenet``, else ``default``."""
    name = dataset.lower()
    for family in ("synthetic", "omniglot", "miniimagenet"):
        if name.startswith(family):
            return family
    return "default"
