"""Published class splits shipped with the package: ``<family>/<split>.txt``, one class name a line, with a README
in each folder naming where the split was published."""
from __future__ import annotations

from pathlib import Path

from fewshot.data.errors import reading

__all__ = ["SPLITS_DIR", "read_split", "split_path"]

SPLITS_DIR = Path(__file__).resolve().parent


def split_path(family: str, split: str) -> Path:
    """The shipped file of ``split`` of ``family`` (``splits/<family>/<split>.txt``)."""
    return SPLITS_DIR / family / f"{split}.txt"


def read_split(family: str, split: str) -> list[str]:
    """The class names of a shipped split, in file order (blank lines and ``#`` comments skipped)."""
    path = split_path(family, split)
    if not path.is_file():
        raise ValueError(f"no shipped {family} split {split!r}: {path} does not exist")
    with reading(path, advice="reinstall the package: the shipped split files are damaged"):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]
