"""Cross-domain targets: datasets whose every class is a test class (BSCD-FSL's EuroSAT, ISIC, ..., Fashion-MNIST).

Such a dataset is only ever tested on, with a model trained elsewhere, so it has one split, ``test``, holding all of
its classes; asking for a training split is a usage error that says so instead of silently reusing test classes.
"""
from __future__ import annotations

from fewshot.core.errors import UsageError

__all__ = ["TARGET_SPLITS", "check_target_split"]

TARGET_SPLITS = ("test",)


def check_target_split(name: str, split: str, classes: int) -> None:
    """Raise unless ``split`` is ``test``: ``name`` is a target whose ``classes`` classes are all test classes."""
    if split in TARGET_SPLITS:
        return
    if split in ("train", "val", "trainval"):
        raise UsageError(f"{name} is a cross-domain target: all of its {classes} classes are test classes, so it "
                         f"has no {split!r} split; test on it (split 'test') with a model trained on another "
                         f"dataset (--train-dataset)")
    raise UsageError(f"unknown {name} split {split!r}; it has only {', '.join(map(repr, TARGET_SPLITS))}")
