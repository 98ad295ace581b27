"""Shared fixtures: small in-memory datasets and the real data folder beside the checkout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fewshot.data import ClassDataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip, saying why, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (CI and developers have it beside the checkout)")
    return SHARED_DATA


def blob_dataset(classes: int = 12, per_class: int = 10, size: int = 16, seed: int = 0, noise: float = 0.6,
                 name: str = "blobs") -> ClassDataset:
    """A tiny image dataset: each class is a random pattern, each example the pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(classes, 1, size, size, generator=g)
    images = patterns.repeat_interleave(per_class, 0) + noise * torch.rand(classes * per_class, 1, size, size, generator=g)
    images = (images / images.amax() * 255).to(torch.uint8)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ClassDataset(images, labels, [f"class{i:02d}" for i in range(classes)], name)


@pytest.fixture
def blobs() -> ClassDataset:
    return blob_dataset()
