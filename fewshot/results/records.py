"""The record store: one JSON record per run (method x setting x episode set), enough to rebuild any table.

:class:`RunRecord` is typed: what produced the numbers is a :class:`MethodInfo` (JSON key ``config``: the method's
description, backbone, training configuration and, for a published-table cell, a :class:`ReproduceInfo`), and how
training went is a :class:`TrainInfo` (JSON key ``train``, with the ``warnings`` training raised). The JSON layout
is the one records have always had; keys a version of the suite does not know are kept (``extra``), so reading and
writing a record loses nothing. :func:`save_record` is the only writer (atomic, one naming scheme: :func:`record_name`) and
:func:`load_record` / :func:`load_records` the only readers; a truncated or foreign file raises
:class:`fewshot.core.errors.DataError` naming it.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np

from fewshot.core.atomic import atomic_write_text
from fewshot.core.errors import DataError
from fewshot.core.hashing import sha256_json
from fewshot.evaluate.stats import MeanCI, mean_ci

RECORD_VERSION = 1


class _JsonPart:
    """A typed part of a record that keeps the JSON keys it does not know in ``extra``.

    ``part["key"]`` and ``part.get("key")`` read by JSON key, so code written against the plain-dict layout of
    older records keeps working.
    """

    #: Attribute name -> JSON key, where they differ.
    _keys: ClassVar[dict[str, str]] = {}
    extra: dict[str, Any]

    @classmethod
    def _json_key(cls, attribute: str) -> str:
        return cls._keys.get(attribute, attribute)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None):
        data = dict(data or {})
        values, by_key = {}, {cls._json_key(f.name): f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        for key in list(data):
            if key in by_key:
                values[by_key[key]] = data.pop(key)
        return cls(**values, extra=data)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[self._json_key(f.name)] = value.to_json() if isinstance(value, _JsonPart) else value
        return {**out, **self.extra}

    def __getitem__(self, key: str) -> Any:
        names = {self._json_key(f.name): f.name for f in dataclasses.fields(self) if f.name != "extra"}
        if key in names:
            value = getattr(self, names[key])
            return value.to_json() if isinstance(value, _JsonPart) else value
        return self.extra[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


@dataclass
class ReproduceInfo(_JsonPart):
    """Which cell of which published-table spec a record is (JSON ``config.reproduce``)."""

    spec: str = ""
    spec_file: str | None = None
    setting: str = ""                        # the setting id (a column of the paper's table)
    setting_label: str = ""
    row: str = ""                            # our row: the method's label in the spec
    paper_row: str | None = None
    fingerprint: str = ""                    # of the cell's configuration (fewshot.runner.CellSpec.fingerprint)
    overrides: dict[str, Any] = field(default_factory=dict)   # what shrank the run: {"train_steps": {used, spec}}
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodInfo(_JsonPart):
    """What produced a record's numbers (JSON ``config``): method, options, backbone, training configuration."""

    _keys: ClassVar[dict[str, str]] = {"options": "config", "train_config": "train"}

    method: str = ""
    options: dict[str, Any] = field(default_factory=dict)        # the method's Config (JSON "config")
    backbone: dict[str, Any] = field(default_factory=dict)       # {"name": ..., **backbone options}
    train_kind: str = ""                                         # "episodic", "supervised" or "none"
    frozen_features: bool | None = None
    transductive: bool | None = None
    # The TrainConfig used, as a dict (JSON "train"; empty for a method that does not train). A dict, not a
    # TrainConfig, so that records stay readable when TrainConfig gains or loses a field.
    train_config: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train_split: str | None = None
    train_dataset: str | None = None                             # learned from (the test dataset unless it says)
    # True for a cell that learned elsewhere than it is tested ("source -> target" in tables); absent otherwise.
    cross_domain: bool | None = field(default=None, metadata={"omit_none": True})
    fixed_episodes: str | None = None
    # How variable-shape test episodes were drawn ({"protocol": "meta-dataset", its settings}); absent for fixed
    # N-way K-shot episodes, whose record has ways, shots and queries (0 for variable ones).
    protocol: dict[str, Any] | None = field(default=None, metadata={"omit_none": True})
    reproduce: ReproduceInfo | None = field(default=None, metadata={"omit_none": True})
    extra: dict[str, Any] = field(default_factory=dict)          # e.g. backbone_identity of pretrained backbones

    def __post_init__(self) -> None:
        if isinstance(self.reproduce, Mapping):
            self.reproduce = ReproduceInfo.from_json(self.reproduce)


@dataclass
class TrainInfo(_JsonPart):
    """How training went (JSON ``train``): the checkpoint, whether it was loaded, steps, seed, last loss and the
    warnings training raised (for example "loss did not fall"); tables mark a record with warnings."""

    checkpoint: str | None = None
    loaded: bool = False
    steps: int = 0
    seed: int = 0
    final_loss: float | None = None
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


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
    config: MethodInfo = field(default_factory=MethodInfo)
    train: TrainInfo = field(default_factory=TrainInfo)
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    #: The hash of the configuration that produced the record (fewshot.runner.CellSpec.fingerprint); "" if unknown.
    fingerprint: str = ""
    version: int = RECORD_VERSION
    #: Keys of the JSON this version does not know, kept so that rewriting a record loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The file it was read from (not stored).
    source: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Plain dicts (the JSON layout) are accepted wherever the typed parts are.
        if not isinstance(self.config, MethodInfo):
            self.config = MethodInfo.from_json(self.config)
        if not isinstance(self.train, TrainInfo):
            self.train = TrainInfo.from_json(self.train)
        if not self.fingerprint and self.config.reproduce is not None:
            self.fingerprint = self.config.reproduce.fingerprint

    @property
    def summary(self) -> MeanCI:
        return mean_ci(self.accuracies)

    @property
    def shape(self) -> str:
        """``"W-way K-shot"``, or the protocol that drew each episode's ways and shots."""
        if self.config.protocol:
            return f"{self.config.protocol.get('protocol', 'variable')} episodes"
        return f"{self.ways}-way {self.shots}-shot"

    @property
    def setting(self) -> str:
        return f"{self.dataset} {self.shape}"

    @property
    def key(self) -> str:
        """What tells this record's configuration apart: its fingerprint, else a hash of what it describes."""
        if self.fingerprint:
            return self.fingerprint
        identity = {k: v for k, v in self.to_json().items() if k not in
                    ("accuracies", "train_seconds", "eval_seconds", "environment", "created", "train", *self.extra)}
        return sha256_json(identity, 16)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("source", "extra"):
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_json() if isinstance(value, _JsonPart) else value
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunRecord":
        """A record from its JSON layout (the inverse of :meth:`to_json`)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"source", "extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})


# --------------------------------------------------------------------------------------------------------------
# Naming, writing and reading


def slug(text: str) -> str:
    """``text`` as a file-name part: runs of anything but letters, digits, ``.``, ``+`` and ``-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-").lower() or "x"


def record_name(setting: str, row: str, key: str) -> str:
    """The one naming scheme of record files: ``<setting>__<row>__<key[:10]>.json``."""
    return f"{slug(setting)}__{slug(row)}__{key[:10]}.json"


def record_filename(record: RunRecord) -> str:
    """A record's file name: a published-table cell is named by its setting id and row label, any other run by
    ``<dataset>-<split>-<W>w<S>s<Q>q`` and its method; both end with the configuration's key."""
    rep = record.config.reproduce
    if rep is not None and rep.setting and rep.row:
        return record_name(rep.setting, rep.row, record.key)
    shape = record.config.protocol.get("protocol", "variable") if record.config.protocol else \
        f"{record.ways}w{record.shots}s{record.queries}q"
    setting = f"{record.dataset}-{record.split}-{shape}"
    return record_name(setting, record.method, record.key)


def save_record(record: RunRecord, directory: str | os.PathLike) -> Path:
    """Write ``record`` as JSON into ``directory`` (atomically) under :func:`record_filename`; returns its path."""
    path = Path(directory) / record_filename(record)
    atomic_write_text(path, json.dumps(record.to_json(), indent=1) + "\n")
    record.source = path
    return path


_REQUIRED = {"method": str, "dataset": str, "split": str, "ways": int, "shots": int, "queries": int,
             "episodes": int, "episode_hash": str, "accuracies": list}


def is_record_json(data: Any) -> bool:
    """Whether parsed JSON ``data`` is a run record (other JSON results, like benchmarks', are not)."""
    return isinstance(data, dict) and "episode_hash" in data and "accuracies" in data


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such record file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read this record file ({error})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not a valid JSON run record ({error}; the file is {len(text)} characters, "
                        f"truncated or damaged?); delete it and run that cell again, or restore it") from None


def load_record(path: str | os.PathLike) -> RunRecord:
    """The record in the JSON file at ``path``; :class:`DataError` naming the file when it is not one."""
    path = Path(path)
    data = _parse(path)
    if not is_record_json(data):
        raise DataError(f"{path}: not a run record (a record is a JSON object with 'episode_hash' and "
                        f"'accuracies')")
    return record_from_json(path, data)


def record_from_json(path: Path, data: dict[str, Any]) -> RunRecord:
    """The record of already parsed JSON ``data`` read from ``path`` (checked as :func:`load_record` does)."""
    version = data.get("version", RECORD_VERSION)
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise DataError(f"{path}: record version {version!r} is newer than this fewshot reads ({RECORD_VERSION}); "
                        f"update fewshot")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise DataError(f"{path}: run record lacks {key!r}")
        if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
            raise DataError(f"{path}: run record field {key!r} should be {kind.__name__}, got {data[key]!r:.60}")
    accuracies = data["accuracies"]
    if not accuracies or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)
                                 and 0 <= a <= 1 for a in accuracies):
        raise DataError(f"{path}: run record field 'accuracies' should be a non-empty list of numbers in [0, 1]")
    for key in ("config", "train", "environment"):
        if not isinstance(data.get(key, {}), dict):
            raise DataError(f"{path}: run record field {key!r} should be an object, got {data[key]!r:.60}")
    try:
        record = RunRecord.from_json(data)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: malformed run record ({error})") from None
    record.source = path
    return record


def load_records(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> list[RunRecord]:
    """Records from JSON files and folders of them (searched recursively, in name order).

    In a folder, JSON files that are not records (a benchmark's own output, say) are skipped; a file that is not
    valid JSON, a file given by name that is not a record, or a missing path raises :class:`DataError` naming it.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                if f.name.startswith("."):
                    continue
                data = _parse(f)
                if is_record_json(data):
                    records.append(record_from_json(f, data))
        elif p.exists():
            records.append(load_record(p))
        else:
            raise DataError(f"{p}: no such record file or folder")
    return records


# --------------------------------------------------------------------------------------------------------------
# What every new record carries


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
