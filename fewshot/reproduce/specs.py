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
    id = "5w1s"; ways = 5; shots = 1     # also: label, dataset, test_dataset (learn on dataset, test on this),
                                         # train_split, test_split, fixed_episodes, seed, dataset_options,
                                         # protocol ("fixed" or "meta-dataset": ways and shots per episode)
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
import difflib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewshot.core.errors import UsageError
from fewshot.data.protocols import PROTOCOLS
from fewshot.results.records import record_name
from fewshot.runner import CellSpec

METRICS = ("accuracy", "error")


class SpecError(UsageError):
    """A benchmark spec is malformed; the message names the file and the offending entry (a ``ValueError`` too)."""


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
    dataset: str = "synthetic"            # learned from; also tested on unless `test_dataset` or `fixed_episodes`
    test_dataset: str | None = None       # a cross-domain column: learn on `dataset`, test on this one
    train_split: str = "train"
    test_split: str = "test"
    queries: int = 15
    episodes: int = 600
    seed: int = 0
    fixed_episodes: str | None = None     # a registered fixed episode set (e.g. "omniglot-runs")
    dataset_options: dict[str, Any] = field(default_factory=dict)
    protocol: str = "fixed"               # "meta-dataset": test episodes of variable ways and shots

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
        """A hash of the cell's configuration (:meth:`fewshot.runner.CellSpec.fingerprint`): a record made with
        another configuration is not this cell's."""
        return self.spec.fingerprint()

    def record_name(self) -> str:
        """The file name the record store gives this cell's record (:func:`fewshot.results.records.record_name`)."""
        return record_name(self.setting.id, self.method.title, self.fingerprint)


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
                if train_steps is not None and method_trains(m.method):
                    overrides["train_steps"] = {"used": train_steps, "spec": train.get("steps")}
                    train["steps"] = int(train_steps)
                n_episodes = setting.episodes
                if episodes is not None and not setting.fixed_episodes:
                    overrides["episodes"] = {"used": episodes, "spec": setting.episodes}
                    n_episodes = int(episodes)
                spec = CellSpec(
                    method=m.method, dataset=setting.test_dataset or setting.dataset,
                    train_dataset=setting.dataset if setting.test_dataset else None,
                    ways=setting.ways, shots=setting.shots,
                    queries=setting.queries, episodes=n_episodes, seed=setting.seed, train_seed=m.train_seed,
                    backbone=extra.get("backbone", m.backbone),
                    backbone_options={**m.backbone_options, **extra.get("backbone_options", {})},
                    method_options={**m.method_options, **extra.get("method_options", {})},
                    dataset_options={**setting.dataset_options, **m.dataset_options,
                                     **extra.get("dataset_options", {})},
                    train=train, train_split=setting.train_split, test_split=setting.test_split,
                    fixed_episodes=setting.fixed_episodes, protocol=setting.protocol,
                )
                out.append(Cell(setting, m, spec, overrides))
        return out

    def paper_value(self, row: str, setting_id: str) -> float | None:
        for p in self.paper:
            if p.label == row:
                return p.values.get(setting_id)
        return None


def method_trains(method: str) -> bool:
    """Whether ``method`` trains on the base classes (an unknown method is assumed to)."""
    from fewshot.methods import method_class

    try:
        return method_class(method).train_kind != "none"
    except KeyError:
        return True


# --------------------------------------------------------------------------------------------------------------
# Reading and checking


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            import tomllib

            with open(path, "rb") as fh:
                data = tomllib.load(fh)
    except OSError as error:
        raise SpecError(f"{path}: cannot read the spec ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not a text file ({error})") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"{path}: JSON syntax error: {error}") from None
    except ValueError as error:  # tomllib.TOMLDecodeError
        raise SpecError(f"{path}: TOML syntax error: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a table of keys, got {type(data).__name__}")
    return data


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _check_keys(where: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: should be a table (key = value pairs), got {value!r:.60}")
    return value


def _tables(where: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise SpecError(f"{where}: should be an array of tables ([[...]] sections), got {value!r:.60}")
    return [_table(f"{where}[{i}]", v) for i, v in enumerate(value)]


_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table",
          tuple: "an array", list: "an array"}


def _check_type(where: str, value: Any, kind: type | None, optional: bool = False) -> None:
    if kind is None or (optional and value is None):
        return
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if kind in (tuple, list):
        ok = isinstance(value, (tuple, list))
    if not ok:
        raise SpecError(f"{where}: should be {_TYPES.get(kind, kind.__name__)}, got {value!r:.60}")


def _check_fields(where: str, data: dict[str, Any], cls) -> None:
    """Each value of ``data`` has the type of ``cls``'s field of that name (from its annotation or default)."""
    hints = {"int": int, "float": float, "str": str, "bool": bool}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        if isinstance(f.type, type):   # a class declared without `from __future__ import annotations`
            _check_type(f"{where}.{f.name}", data[f.name], f.type if f.type in _TYPES else None)
            continue
        text = str(f.type).replace(" ", "")
        optional = "None" in text
        base = text.split("|")[0]
        kind = hints.get(base) or (dict if base.startswith("dict") else tuple if base.startswith("tuple") else None)
        _check_type(f"{where}.{f.name}", data[f.name], kind, optional)


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known: {', '.join(known)}"


def _check_dataset(where: str, name: str) -> None:
    from fewshot.data import list_datasets
    from fewshot.data.registry import known_dataset

    if known_dataset(name):     # registered, a folder of class folders, or sources a+b of those
        return
    raise SpecError(f"{where}: {_unknown('dataset', name, list_datasets())} (or a folder of class folders, or "
                    f"sources joined by '+')")


def check_fixed_episodes(where: str, name: str) -> None:
    """Raise :class:`SpecError` at ``where`` unless ``name`` is a registered fixed episode set."""
    from fewshot.data.fixed import list_fixed_episodes

    if name not in list_fixed_episodes():
        raise SpecError(f"{where}: {_unknown('fixed episode set', name, list_fixed_episodes())}")


def check_method(where: str, name: str) -> type:
    """The class of method ``name``; :class:`SpecError` at ``where`` (with close names) when none is registered."""
    from fewshot.methods import list_methods, method_class

    if name not in list_methods():
        raise SpecError(f"{where}: {_unknown('method', name, list_methods())}")
    return method_class(name)


def check_method_options(where: str, cls: type, options: dict[str, Any]) -> None:
    """Raise :class:`SpecError` at ``where`` unless every option is a field of ``cls.Config`` of the right type."""
    from fewshot.methods.base import method_options

    config = cls.Config
    known = method_options(cls)
    unknown = set(options) - known
    if unknown:
        raise SpecError(f"{where}: method {cls.name!r} has no option(s) {sorted(unknown)}; its options are "
                        f"{sorted(known)}")
    if known:
        _check_fields(where, options, config)


def check_train(where: str, train: dict[str, Any]) -> None:
    """Raise :class:`SpecError` at ``where`` unless every key is a :class:`TrainConfig` field of the right type."""
    from fewshot.train.config import TrainConfig

    keys = _fields(TrainConfig)
    unknown = set(train) - keys
    if unknown:
        raise SpecError(f"{where}: unknown training key(s) {sorted(unknown)}; TrainConfig has {sorted(keys)}")
    _check_fields(where, train, TrainConfig)


def _check_backbone(at: str, name: str | None, options: dict[str, Any]) -> None:
    """Backbone ``name`` at ``at.backbone`` is registered (or a timm one) and takes ``at.backbone_options``."""
    where = f"{at}.backbone"
    if name is None:
        return
    from fewshot.backbones import BACKBONES, list_backbones

    if name.startswith(("timm:", "pretrained:", "hf:")):
        return                                   # any timm model or model folder; checked when it is built
    if name not in list_backbones():
        raise SpecError(f"{where}: {_unknown('backbone', name, list_backbones())} (or timm:<model>, "
                        f"pretrained:<model>, hf:<folder>)")
    parameters = inspect.signature(BACKBONES.get(name)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    known = {p.name for p in parameters} - {"in_channels", "image_size"}
    unknown = set(options) - known
    if unknown:
        raise SpecError(f"{at}.backbone_options: backbone {name!r} has no option(s) {sorted(unknown)}; its options "
                        f"are {sorted(known)}")


def resolve_spec_path(name_or_path: str | os.PathLike, directory: str | os.PathLike = "benchmarks") -> Path:
    """A spec file from a path, or from a name looked up as ``<directory>/<name>.toml`` (or ``.json``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (Path(directory) / f"{name_or_path}.toml", Path(directory) / f"{name_or_path}.json"):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in Path(directory).glob("*.toml")) if Path(directory).is_dir() else []
    raise SpecError(f"no benchmark spec {str(name_or_path)!r}: not a file, nor a spec name in {directory}/" +
                    (f" (known: {', '.join(known)})" if known else ""))


def load_spec(path: str | os.PathLike) -> BenchmarkSpec:
    """Read and check the whole spec at ``path`` (TOML or JSON) before anything runs: every key, the types of
    values, method, dataset, backbone and fixed-episode names, method options and training keys. Raises
    :class:`SpecError` (a :class:`fewshot.core.errors.UsageError`) naming the file and the offending key."""
    path = Path(path)
    data = _read(path)
    where = str(path)
    top = {"name", "title", "metric", "baseline", "unpaired", "requires", "notes", "source", "defaults", "settings",
           "methods", "paper"}
    _check_keys(where, data, top)
    for key in ("name", "source", "settings", "methods"):
        if key not in data:
            raise SpecError(f"{where}: missing {key!r}")
    for key, kind in (("name", str), ("title", str), ("metric", str), ("unpaired", bool), ("requires", str),
                      ("notes", list)):
        if key in data:
            _check_type(f"{where}: {key}", data[key], kind)
    if data.get("baseline") is not None:
        _check_type(f"{where}: baseline", data["baseline"], str)
    metric = data.get("metric", "accuracy")
    if metric not in METRICS:
        raise SpecError(f"{where}: metric must be one of {METRICS}, got {metric!r}")
    src = _table(f"{where} [source]", data["source"])
    _check_keys(f"{where} [source]", src, _fields(Source))
    for key in ("paper", "table"):
        if key not in src:
            raise SpecError(f"{where} [source]: missing {key!r}")
    _check_fields(f"{where} [source]", src, Source)
    source = Source(**src)
    defaults = _table(f"{where} [defaults]", data.get("defaults", {}))
    setting_keys = _fields(SettingSpec)
    _check_keys(f"{where} [defaults]", defaults, setting_keys - {"id"})
    _check_fields(f"{where} [defaults]", defaults, SettingSpec)
    settings = []
    for i, raw in enumerate(_tables(f"{where} settings", data["settings"])):
        at = f"{where} settings[{i}]"
        _check_keys(at, raw, setting_keys)
        _check_fields(at, raw, SettingSpec)
        merged = {**defaults, **raw}
        if "dataset_options" in defaults and "dataset_options" in raw:
            merged["dataset_options"] = {**defaults["dataset_options"], **raw["dataset_options"]}
        for key in ("id", "ways", "shots"):
            if key not in merged:
                raise SpecError(f"{at}: missing {key!r}")
        setting = SettingSpec(**merged)
        _check_dataset(f"{at}.dataset", setting.dataset)
        if setting.test_dataset:
            _check_dataset(f"{at}.test_dataset", setting.test_dataset)
        if setting.fixed_episodes:
            check_fixed_episodes(f"{at}.fixed_episodes", setting.fixed_episodes)
        if setting.protocol not in PROTOCOLS:
            raise SpecError(f"{at}.protocol: {setting.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if setting.fixed_episodes and setting.protocol != "fixed":
            raise SpecError(f"{at}: a fixed episode set has its own episodes; drop protocol or fixed_episodes")
        for key in ("ways", "shots", "queries", "episodes"):
            if getattr(setting, key) < 1:
                raise SpecError(f"{at}.{key}: should be at least 1, got {getattr(setting, key)}")
        settings.append(setting)
    ids = [s.id for s in settings]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{where}: setting ids must be unique, got {ids}")
    methods = []
    for i, raw in enumerate(_tables(f"{where} methods", data["methods"])):
        at = f"{where} methods[{i}]"
        _check_keys(at, raw, _fields(MethodSpec))
        if "method" not in raw:
            raise SpecError(f"{at}: missing 'method'")
        _check_fields(at, raw, MethodSpec)
        cls = check_method(f"{at}.method", raw["method"])
        check_method_options(f"{at}.method_options", cls, raw.get("method_options", {}))
        check_train(f"{at}.train", raw.get("train", {}))
        _check_backbone(at, raw.get("backbone"), raw.get("backbone_options", {}))
        for sid, extra in _table(f"{at}.by_setting", raw.get("by_setting", {})).items():
            there = f"{at}.by_setting.{sid}"
            if sid not in ids:
                raise SpecError(f"{at}.by_setting: unknown setting {sid!r}; settings are {ids}")
            _table(there, extra)
            _check_keys(there, extra, {"train", "method_options", "backbone_options", "dataset_options", "backbone"})
            for key in ("train", "method_options", "backbone_options", "dataset_options"):
                _table(f"{there}.{key}", extra.get(key, {}))
            check_method_options(f"{there}.method_options", cls, extra.get("method_options", {}))
            check_train(f"{there}.train", extra.get("train", {}))
            _check_backbone(there, extra.get("backbone", raw.get("backbone")),
                            {**raw.get("backbone_options", {}), **extra.get("backbone_options", {})})
        if raw.get("settings") is not None:
            bad = [s for s in raw["settings"] if s not in ids]
            if bad:
                raise SpecError(f"{at}.settings: unknown setting(s) {bad}; settings are {ids}")
            raw = {**raw, "settings": tuple(raw["settings"])}
        methods.append(MethodSpec(**raw))
    titles = [m.title for m in methods]
    if len(set(titles)) != len(titles):
        raise SpecError(f"{where}: method labels must be unique (set `label`), got {titles}")
    paper = []
    for i, raw in enumerate(_tables(f"{where} paper", data.get("paper", []))):
        _check_keys(f"{where} paper[{i}]", raw, _fields(PaperRow))
        if "label" not in raw or "values" not in raw:
            raise SpecError(f"{where} paper[{i}]: needs 'label' and 'values'")
        _check_fields(f"{where} paper[{i}]", raw, PaperRow)
        for key in ("values", "ci95"):
            bad = [s for s in raw.get(key, {}) if s not in ids]
            if bad:
                raise SpecError(f"{where} paper[{i}] ({raw.get('label')}).{key}: unknown setting(s) {bad}")
            for sid, value in raw.get(key, {}).items():
                _check_type(f"{where} paper[{i}] ({raw.get('label')}).{key}.{sid}", value, float)
        paper.append(PaperRow(**raw))
    rows = {p.label for p in paper}
    for m in methods:
        if m.paper_row is not None and m.paper_row not in rows:
            raise SpecError(f"{where}: method {m.title!r} reproduces paper row {m.paper_row!r}, which is not among "
                            f"the [[paper]] rows {sorted(rows)}")
    baseline = data.get("baseline", "finetune")
    baseline = None if baseline in (None, "", "none") else baseline
    if baseline is not None and not any(baseline in (m.method, m.label) for m in methods):
        raise SpecError(f"{where}: baseline {baseline!r} is none of the [[methods]] (by method or label: "
                        f"{sorted({m.method for m in methods} | {m.label for m in methods if m.label})}); add it "
                        f"or set baseline = \"none\"")
    return BenchmarkSpec(
        name=data["name"], title=data.get("title", data["name"]), source=source, settings=tuple(settings),
        methods=tuple(methods), paper=tuple(paper), metric=metric, baseline=baseline,
        unpaired=bool(data.get("unpaired", False)), requires=data.get("requires", ""),
        notes=tuple(data.get("notes", ())), path=path,
    )


def list_specs(directory: str | os.PathLike = "benchmarks") -> list[Path]:
    """The spec files of ``directory`` (``*.toml`` and ``*.json``), sorted."""
    directory = Path(directory)
    return sorted([*directory.glob("*.toml"), *directory.glob("*.json")])
