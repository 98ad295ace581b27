"""Shared fixtures: small in-memory datasets and the real data folder beside the checkout."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fewshot.data import ClassDataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# -- the shared data root is never written ------------------------------------------------------------------------
# The suite must not create or change anything under a data root (it is the user's, and may be read-only or
# shared): the whole session is checked against a snapshot taken before it, and fails when anything changed.
_SNAPSHOT = pytest.StashKey[dict]()


def data_root_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (size, mtime_ns)`` of ``root`` and everything under it (symlinks not followed)."""
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in [root, *root.rglob("*")]}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SNAPSHOT] = data_root_snapshot(SHARED_DATA)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_SNAPSHOT, None)
    if before is None:
        return
    after = data_root_snapshot(SHARED_DATA)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        lines = [f"the test session wrote into the data root {SHARED_DATA}, which the suite must never do:"]
        lines += [f"  {'added' if p not in before else 'removed' if p not in after else 'modified'}: {p}"
                  for p in changed[:50]]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True, bold=True)
        else:
            print("\n".join(lines))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip, saying why, when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (CI and developers have it beside the checkout)")
    return SHARED_DATA


def shades_dataset(size: int = 28) -> ClassDataset:
    """Five classes of flat grey shades (6 images each, light noise): apart even in a random network's features."""
    g = torch.Generator().manual_seed(0)
    shade = torch.linspace(0.1, 0.9, 5).repeat_interleave(6).view(30, 1, 1, 1)
    images = ((shade + 0.05 * torch.rand(30, 1, size, size, generator=g)).clamp(0, 1) * 255).to(torch.uint8)
    return ClassDataset(images, torch.arange(5).repeat_interleave(6), [f"s{i}" for i in range(5)], name="shades")


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
