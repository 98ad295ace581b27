"""Training on the base classes, in two layers.

Below the methods: the schedule (:mod:`.config`, :class:`TrainConfig`) and one run's checkpointing
(:mod:`.session`, :class:`TrainSession`), which methods use to declare presets and to own a training loop.
Above the methods: the per-dataset presets (:mod:`.presets`), the loops and :func:`fit` (:mod:`.loop`). Those are
imported on first use, so that importing the lower layer never pulls in the methods (no import cycle).
"""
from __future__ import annotations

import importlib
from typing import Any

from fewshot.train.config import TrainConfig, dataset_family
from fewshot.train.session import TrainSession, Watch

_UPPER = {"fit": "loop", "TrainReport": "loop", "TrainingDiverged": "loop", "train_preset": "presets"}


def __getattr__(name: str) -> Any:
    if name in _UPPER:
        return getattr(importlib.import_module(f"{__name__}.{_UPPER[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "TrainReport", "TrainSession", "TrainingDiverged", "Watch", "dataset_family", "fit",
           "train_preset"]
