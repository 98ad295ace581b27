"""Run records: one per (method, setting) run, holding everything needed to rebuild a table without re-running."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from fewshot.core.atomic import atomic_write_text
from fewshot.results.stats import MeanCI, mean_ci

RECORD_VERSION = 1


@dataclass
class RunRecord:
    """The outcome of evaluating one method in one setting on one episode set."""

    method: str
    dataset: str
    split: str
    ways: int
    shots: int
    queries: int
    episodes: int
    episode_seed: int | None
    episode_hash: str
    accuracies: list[float]
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)   # method, backbone, training configuration
    train: dict[str, Any] = field(default_factory=dict)    # checkpoint, loaded or trained, steps, seed
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    version: int = RECORD_VERSION

    @property
    def summary(self) -> MeanCI:
        return mean_ci(self.accuracies)

    @property
    def setting(self) -> str:
        return f"{self.dataset} {self.ways}-way {self.shots}-shot"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def environment(device: str) -> dict[str, Any]:
    """Versions, git revision and hardware, recorded with every result."""
    import torch

    from fewshot import __version__

    env = {
        "fewshot": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "device": device,
        "git_revision": git_revision(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    else:
        env["cpu"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record_filename(record: RunRecord) -> str:
    safe_dataset = record.dataset.replace("/", "_").replace(os.sep, "_")
    return (f"{record.method}__{safe_dataset}__{record.split}__{record.ways}w{record.shots}s{record.queries}q"
            f"__{record.episode_hash[:12]}.json")


def save_record(record: RunRecord, directory: str | os.PathLike) -> Path:
    """Write ``record`` as JSON into ``directory`` (atomically); returns its path."""
    path = Path(directory) / record_filename(record)
    atomic_write_text(path, json.dumps(record.to_json(), indent=1) + "\n")
    return path


def load_records(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> list[RunRecord]:
    """Records from JSON files and directories of them (searched recursively)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for p in map(Path, paths):
        files = sorted(p.rglob("*.json")) if p.is_dir() else [p]
        for f in files:
            data = json.loads(f.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "episode_hash" in data and "accuracies" in data:
                records.append(RunRecord.from_json(data))
    return records
