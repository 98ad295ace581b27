"""The results page: ``python -m fewshot.bench site`` writes ``results/index.html`` from the stored records alone.

Every folder of ``results/`` becomes a section: a sortable table of our records against the paper's numbers (from
the folder's spec in ``benchmarks/``), an inline SVG plot, the learning curves records carry, and each record's
provenance one click away. The page is one static file (inline CSS, JS and SVG; no network) and is a pure function
of the records and specs: the same inputs give byte-identical HTML, so ``--check`` can tell a stale page.

This module collects what a page shows (:func:`collect`); :mod:`fewshot.site.page` renders it and
:func:`fewshot.site.build_site` joins the two.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fewshot.core.errors import DataError, UsageError
from fewshot.results.records import RunRecord, is_record_json, record_from_json
from fewshot.evaluate.stats import MeanCI, mean_ci, paired_difference, unpaired_difference

#: Files of a results folder the page links to, besides the records.
LINKED = ("table.md", "table.csv", "plot.png")


@dataclass(frozen=True)
class StoredRecord:
    """A run record and its file, relative to the results folder (POSIX separators)."""

    path: str
    record: RunRecord

    @property
    def reproduce(self) -> dict[str, Any]:
        return self.record.config.get("reproduce") or {}


@dataclass(frozen=True)
class Row:
    """A row of a folder's table: one of our records (beside its paper row's number), or a paper row alone."""

    setting: str
    order: int                              # the setting's place in the spec (records of unknown settings last)
    label: str
    paper_row: str | None = None
    paper: float | None = None              # the paper's number, in percent of the folder's metric
    stored: StoredRecord | None = None


@dataclass
class Folder:
    """One folder of ``results/``: its records, the spec they reproduce (if any) and its other result files."""

    name: str
    records: list[StoredRecord]
    spec: Any = None                        # a fewshot.reproduce.specs.BenchmarkSpec, when the folder has one
    spec_note: str = ""                     # why paper numbers are missing, when they are
    others: list[tuple[str, dict]] = field(default_factory=list)   # JSON result files that are not run records
    files: list[str] = field(default_factory=list)                 # LINKED files present, relative paths

    @property
    def metric(self) -> str:
        return self.spec.metric if self.spec is not None else "accuracy"

    @property
    def baseline(self) -> str | None:
        return self.spec.baseline if self.spec is not None else "finetune"

    @property
    def title(self) -> str:
        return self.spec.title if self.spec is not None else self.name

    def rows(self) -> list[Row]:
        """Every record as a row, plus the paper rows that no record of a setting reproduces, in spec order."""
        settings = list(self.spec.settings) if self.spec is not None else []
        ids = {s.id: i for i, s in enumerate(settings)}
        labels = _plain_setting_labels(self.records)
        method_order = {m.title: i for i, m in enumerate(self.spec.methods)} if self.spec is not None else {}
        rows = []
        for stored in self.records:
            rep = stored.reproduce
            sid = rep.get("setting")
            order = ids.get(sid, len(settings)) if sid else len(settings)
            setting = settings[order].title if order < len(settings) else rep.get("setting_label") or labels[
                stored.path]
            paper_row = rep.get("paper_row")
            paper = self.spec.paper_value(paper_row, sid) if self.spec is not None and paper_row else None
            rows.append(Row(setting, order, rep.get("row") or stored.record.method, paper_row, paper, stored))
        if not settings:
            # No spec: settings in the order of their first appearance in sorted labels.
            names = sorted({r.setting for r in rows})
            rows = [Row(r.setting, names.index(r.setting), r.label, stored=r.stored) for r in rows]
        for i, s in enumerate(settings):
            reproduced = {r.paper_row for r in rows if r.order == i and r.paper_row}
            for p in self.spec.paper:
                if s.id in p.values and p.label not in reproduced:
                    rows.append(Row(s.title, i, p.label, p.label, float(p.values[s.id])))
        return sorted(rows, key=lambda r: (r.order, r.stored is not None,
                                           method_order.get(r.label, len(method_order)), r.label,
                                           r.stored.record.created if r.stored else "", r.stored.path if r.stored
                                           else ""))


def _plain_setting_labels(records: Sequence[StoredRecord]) -> dict[str, str]:
    """Setting labels for records made outside a spec: ``dataset W-way K-shot``, plus the split, queries, episodes
    and seed when two episode sets would otherwise share a label."""
    keys = {s.path: (s.record.setting, s.record.split, s.record.queries, s.record.episodes, s.record.episode_seed)
            for s in records}
    clashes = Counter(label for label, *_ in set(keys.values()))
    return {path: label if clashes[label] == 1 else
            f"{label} ({split}, {queries} queries, {episodes} episodes, seed {seed})"
            for path, (label, split, queries, episodes, seed) in keys.items()}


# --------------------------------------------------------------------------------------------------------------
# Numbers


def score(record: RunRecord, metric: str = "accuracy") -> MeanCI:
    """The record's mean and 95% CI half-width (:func:`fewshot.evaluate.stats.mean_ci`) in percent of ``metric``."""
    s = mean_ci(record.accuracies)
    return MeanCI(100 * ((1.0 - s.mean) if metric == "error" else s.mean), 100 * s.ci95, s.n)


def difference(record: RunRecord, baseline: RunRecord, metric: str = "accuracy") -> tuple[MeanCI, bool]:
    """``record - baseline`` in percentage points of ``metric`` with its 95% CI, and whether it is paired (same
    episodes); records of different episode sets are compared as independent samples."""
    paired = record.episode_hash == baseline.episode_hash and len(record.accuracies) == len(baseline.accuracies)
    d = (paired_difference if paired else unpaired_difference)(record.accuracies, baseline.accuracies)
    sign = -100.0 if metric == "error" else 100.0
    return MeanCI(sign * d.mean, 100 * d.ci95, d.n), paired


def baseline_of(row: Row, rows: Sequence[Row], baseline: str | None) -> RunRecord | None:
    """The newest record of the ``baseline`` method in ``row``'s setting (None for the baseline itself)."""
    if not baseline or row.stored is None or row.stored.record.method == baseline:
        return None
    same = [r.stored.record for r in rows if r.stored is not None and r.setting == row.setting
            and r.stored.record.method == baseline]
    return max(same, key=lambda r: r.created, default=None)


def curve(record: RunRecord) -> list[dict[str, float]]:
    """The learning curve a record carries in ``train["curve"]`` (points with a numeric ``step`` and ``loss``)."""
    points = (record.train or {}).get("curve") or []
    ok = (int, float)
    return [p for p in points if isinstance(p, dict) and isinstance(p.get("step"), ok)
            and isinstance(p.get("loss"), ok)] if isinstance(points, list) else []


def watch_curve(record: RunRecord) -> list[tuple[float, float]]:
    """The held-out accuracy measured during training (``train["watch"]["points"]``) as ``(step, accuracy)``."""
    watch = (record.train or {}).get("watch") or {}
    points = watch.get("points") if isinstance(watch, dict) else None
    ok = (int, float)
    return [(p["step"], float(p["accuracy"])) for p in points if isinstance(p, dict)
            and isinstance(p.get("step"), ok) and isinstance(p.get("accuracy"), ok)] if isinstance(points, list) else []


# --------------------------------------------------------------------------------------------------------------
# Reading results/


def _spec_for(name: str, benchmarks: Path) -> tuple[Any, str]:
    # Imported here: specs belong to the reproduce layer above; the page only reads their paper numbers.
    from fewshot.reproduce.specs import SpecError, load_spec, resolve_spec_path

    try:
        path = resolve_spec_path(name, benchmarks)
    except (FileNotFoundError, SpecError):            # no spec of that name: the page says so
        return None, f"no spec {name!r} in {benchmarks}/: no paper numbers"
    try:
        return load_spec(path), ""
    except SpecError as error:
        raise DataError(f"{error}; fix the spec, then run `python -m fewshot.bench site` again") from error


def collect(results: str | os.PathLike, benchmarks: str | os.PathLike | None = None) -> list[Folder]:
    """The folders of ``results`` (sorted by name) with their records, specs (from ``benchmarks``, default
    ``<results>/../benchmarks``) and other result files. Folders with neither records nor results are left out."""
    results = Path(results)
    if not results.is_dir():
        raise UsageError(f"--results {results}: no such folder; pass the folder that holds the result folders "
                         f"(default: results)")
    benchmarks = Path(benchmarks) if benchmarks is not None else results.parent / "benchmarks"
    folders = []
    for folder in sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")):
        records, others = [], []
        for path in sorted(folder.rglob("*.json")):
            rel = path.relative_to(results).as_posix()
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found = [record_from_json(path, data)] if is_record_json(data) else []   # parsed once
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as error:
                raise DataError(f"{path}: not a readable JSON result ({error}); fix or remove the file") from error
            if found:
                records.extend(StoredRecord(rel, r) for r in found)
            elif isinstance(data, dict):
                others.append((rel, data))
        if not records and not others:
            continue
        # The spec the records say they reproduce (the most common one), else one named like the folder.
        names = Counter(s.reproduce.get("spec") for s in records if s.reproduce.get("spec"))
        spec, note = None, ""
        if names:
            spec, note = _spec_for(min(names, key=lambda n: (-names[n], n)), benchmarks)
        elif (benchmarks / f"{folder.name}.toml").is_file():
            spec, note = _spec_for(folder.name, benchmarks)
        files = [f"{folder.name}/{f}" for f in LINKED if (folder / f).is_file()]
        folders.append(Folder(folder.name, records, spec, note, others, files))
    return folders
