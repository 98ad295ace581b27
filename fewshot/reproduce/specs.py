"""Published-table specs: what a paper's table measured (settings, protocol, training schedule) and the numbers it
printed, with their source. One TOML (or JSON) file per table lives in ``benchmarks/``; :func:`load_spec` reads and
checks one, and :meth:`BenchmarkSpec.cells` turns it into the :class:`fewshot.runner.CellSpec` of every cell.

A spec file::

    name = "snell2017-omniglot"          # also the results folder: results/<name>/
    title = "..."
    metric = "accuracy"                  # what the paper's numbers are, in percent: "accuracy" or "error"
    baseline = "finetune"                # the method every row is compared with on the same episodes
    notes = ["how the paper's protocol differs from ours", ...]

    [source]                             # where the numbers come from
    paper = "..."; table = "..."; url = "..."; checked = "how the numbers were checked against the source"

    [defaults]                           # setting fields shared by all settings (any field of [[settings]])
    dataset = "omniglot"; queries = 15; episodes = 1000

    [[settings]]                         # one column of the paper's table
    id = "5w1s"; ways = 5; shots = 1     # also: label, dataset, train_split, test_split, fixed_episodes, seed,
                                         # dataset_options
    [[methods]]                          # one of our methods (a row of our table)
    method = "protonet"; paper_row = "Prototypical Networks"
    train = { steps = 20000, ways = 60 } # the paper's schedule, over the method's preset TrainConfig
    [methods.by_setting.20w5s]           # per-setting overrides of train / method_options / backbone_options
    train = { shots = 5 }

    [[paper]]                            # one row of the paper's table, values per setting id
    label = "Prototypical Networks"; values = { 5w1s = 98.8 }; ci95 = { 5w1s = 0.2 }
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewshot.runner import CellSpec

METRICS = ("accuracy", "error")


class SpecError(ValueError):
    """A benchmark spec is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class Source:
    paper: str
    table: str
    url: str = ""
    checked: str = ""       # how the numbers were checked against the source


@dataclass(frozen=True)
class SettingSpec:
    """A column of the published table: where the method learns, what it is tested on, and how."""

    id: str
    ways: int
    shots: int
    label: str = ""
    dataset: str = "synthetic"            # learned from; also tested on unless `fixed_episodes`
    train_split: str = "train"
    test_split: str = "test"
    queries: int = 15
    episodes: int = 600
    seed: int = 0
    fixed_episodes: str | None = None     # a registered fixed episode set (e.g. "omniglot-runs")
    dataset_options: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.label or self.id


@dataclass(frozen=True)
class MethodSpec:
    """One of our methods in the table, with the training schedule that follows the paper."""

    method: str
    label: str = ""
    paper_row: str | None = None          # the row of the paper's table this method reproduces
    backbone: str | None = None
    backbone_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    train_seed: int = 0
    settings: tuple[str, ...] | None = None   # only these setting ids (default: all)
    by_setting: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""

    @property
    def title(self) -> str:
        return self.label or self.method


@dataclass(frozen=True)
class PaperRow:
    label: str
    values: dict[str, float]
    ci95: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Cell:
    """One cell to run: a method in a setting, the :class:`CellSpec` that runs it, and the fingerprint of that
    configuration (a record made with another configuration is not this cell's)."""

    setting: SettingSpec
    method: MethodSpec
    spec: CellSpec
    overrides: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.setting.id}/{self.method.title}"

    @property
    def fingerprint(self) -> str:
        """A hash of the cell's configuration: every :class:`CellSpec` field that differs from its default (so a
        field added to CellSpec later, with a default, leaves existing fingerprints and records valid)."""
        defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for f in dataclasses.fields(CellSpec)}
        changed = {k: v for k, v in dataclasses.asdict(self.spec).items() if k not in defaults or v != defaults[k]}
        blob = json.dumps(changed, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def record_name(self) -> str:
        return f"{_slug(self.setting.id)}__{_slug(self.method.title)}__{self.fingerprint[:10]}.json"


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    source: Source
    settings: tuple[SettingSpec, ...]
    methods: tuple[MethodSpec, ...]
    paper: tuple[PaperRow, ...]
    metric: str = "accuracy"
    baseline: str | None = "finetune"
    unpaired: bool = False                # compare methods scored on different episode sets as independent samples
    requires: str = ""                    # the data it needs, said plainly
    notes: tuple[str, ...] = ()
    path: Path | None = None

    def setting(self, setting_id: str) -> SettingSpec:
        for s in self.settings:
            if s.id == setting_id:
                return s
        raise KeyError(f"{self.name}: no setting {setting_id!r}; settings are {[s.id for s in self.settings]}")

    def cells(self, *, episodes: int | None = None, train_steps: int | None = None) -> list[Cell]:
        """Every (setting, method) cell, optionally shrunk: ``episodes`` test episodes instead of the spec's (not
        for fixed episode sets), ``train_steps`` optimiser steps for every method that trains (not for those
        that do not). What was shrunk is
        kept in each cell's ``overrides`` and ends up in its record and table."""
        out = []
        for setting in self.settings:
            for m in self.methods:
                if m.settings is not None and setting.id not in m.settings:
                    continue
                extra = m.by_setting.get(setting.id, {})
                train = {**m.train, **extra.get("train", {})}
                overrides: dict[str, Any] = {}
                if train_steps is not None and _trains(m.method):
                    overrides["train_steps"] = {"used": train_steps, "spec": train.get("steps")}
                    train["steps"] = int(train_steps)
                n_episodes = setting.episodes
                if episodes is not None and not setting.fixed_episodes:
                    overrides["episodes"] = {"used": episodes, "spec": setting.episodes}
                    n_episodes = int(episodes)
                spec = CellSpec(
                    method=m.method, dataset=setting.dataset, ways=setting.ways, shots=setting.shots,
                    queries=setting.queries, episodes=n_episodes, seed=setting.seed, train_seed=m.train_seed,
                    backbone=extra.get("backbone", m.backbone),
                    backbone_options={**m.backbone_options, **extra.get("backbone_options", {})},
                    method_options={**m.method_options, **extra.get("method_options", {})},
                    dataset_options={**setting.dataset_options, **m.dataset_options,
                                     **extra.get("dataset_options", {})},
                    train=train, train_split=setting.train_split, test_split=setting.test_split,
                    fixed_episodes=setting.fixed_episodes,
                )
                out.append(Cell(setting, m, spec, overrides))
        return out

    def paper_value(self, row: str, setting_id: str) -> float | None:
        for p in self.paper:
            if p.label == row:
                return p.values.get(setting_id)
        return None


def _trains(method: str) -> bool:
    """Whether ``method`` trains on the base classes (an unknown method is assumed to)."""
    from fewshot.methods import method_class

    try:
        return method_class(method).train_kind != "none"
    except KeyError:
        return True


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-").lower() or "x"


# --------------------------------------------------------------------------------------------------------------
# Reading and checking


def _read(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def resolve_spec_path(name_or_path: str | os.PathLike, directory: str | os.PathLike = "benchmarks") -> Path:
    """A spec file from a path, or from a name looked up as ``<directory>/<name>.toml`` (or ``.json``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (Path(directory) / f"{name_or_path}.toml", Path(directory) / f"{name_or_path}.json"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in Path(directory).glob("*.toml")) if Path(directory).is_dir() else []
    raise FileNotFoundError(f"no benchmark spec {str(name_or_path)!r}" +
                            (f"; known specs in {directory}/: {', '.join(known)}" if known else ""))


def load_spec(path: str | os.PathLike) -> BenchmarkSpec:
    """Read and check the spec at ``path`` (TOML or JSON); raises :class:`SpecError` naming what is wrong."""
    path = Path(path)
    data = _read(path)
    where = str(path)
    top = {"name", "title", "metric", "baseline", "unpaired", "requires", "notes", "source", "defaults", "settings",
           "methods", "paper"}
    _check_keys(where, data, top)
    for key in ("name", "source", "settings", "methods"):
        if key not in data:
            raise SpecError(f"{where}: missing {key!r}")
    metric = data.get("metric", "accuracy")
    if metric not in METRICS:
        raise SpecError(f"{where}: metric must be one of {METRICS}, got {metric!r}")
    _check_keys(f"{where} [source]", data["source"], _fields(Source))
    source = Source(**data["source"])
    defaults = data.get("defaults", {})
    setting_keys = _fields(SettingSpec)
    _check_keys(f"{where} [defaults]", defaults, setting_keys - {"id"})
    settings = []
    for i, raw in enumerate(data["settings"]):
        _check_keys(f"{where} settings[{i}]", raw, setting_keys)
        merged = {**defaults, **raw}
        if "dataset_options" in defaults and "dataset_options" in raw:
            merged["dataset_options"] = {**defaults["dataset_options"], **raw["dataset_options"]}
        for key in ("id", "ways", "shots"):
            if key not in merged:
                raise SpecError(f"{where} settings[{i}]: missing {key!r}")
        settings.append(SettingSpec(**merged))
    ids = [s.id for s in settings]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{where}: setting ids must be unique, got {ids}")
    methods = []
    for i, raw in enumerate(data["methods"]):
        _check_keys(f"{where} methods[{i}]", raw, _fields(MethodSpec))
        if "method" not in raw:
            raise SpecError(f"{where} methods[{i}]: missing 'method'")
        for sid, extra in raw.get("by_setting", {}).items():
            if sid not in ids:
                raise SpecError(f"{where} methods[{i}].by_setting: unknown setting {sid!r}; settings are {ids}")
            _check_keys(f"{where} methods[{i}].by_setting.{sid}", extra,
                        {"train", "method_options", "backbone_options", "dataset_options", "backbone"})
        if raw.get("settings") is not None:
            bad = [s for s in raw["settings"] if s not in ids]
            if bad:
                raise SpecError(f"{where} methods[{i}].settings: unknown setting(s) {bad}; settings are {ids}")
            raw = {**raw, "settings": tuple(raw["settings"])}
        methods.append(MethodSpec(**raw))
    titles = [m.title for m in methods]
    if len(set(titles)) != len(titles):
        raise SpecError(f"{where}: method labels must be unique (set `label`), got {titles}")
    paper = []
    for i, raw in enumerate(data.get("paper", [])):
        _check_keys(f"{where} paper[{i}]", raw, _fields(PaperRow))
        for key in ("values", "ci95"):
            bad = [s for s in raw.get(key, {}) if s not in ids]
            if bad:
                raise SpecError(f"{where} paper[{i}] ({raw.get('label')}).{key}: unknown setting(s) {bad}")
        paper.append(PaperRow(**raw))
    rows = {p.label for p in paper}
    for m in methods:
        if m.paper_row is not None and m.paper_row not in rows:
            raise SpecError(f"{where}: method {m.title!r} reproduces paper row {m.paper_row!r}, which is not among "
                            f"the [[paper]] rows {sorted(rows)}")
    baseline = data.get("baseline", "finetune")
    return BenchmarkSpec(
        name=data["name"], title=data.get("title", data["name"]), source=source, settings=tuple(settings),
        methods=tuple(methods), paper=tuple(paper), metric=metric,
        baseline=None if baseline in (None, "", "none") else baseline, unpaired=bool(data.get("unpaired", False)),
        requires=data.get("requires", ""), notes=tuple(data.get("notes", ())), path=path,
    )


def list_specs(directory: str | os.PathLike = "benchmarks") -> list[Path]:
    """The spec files of ``directory`` (``*.toml`` and ``*.json``), sorted."""
    directory = Path(directory)
    return sorted([*directory.glob("*.toml"), *directory.glob("*.json")])
