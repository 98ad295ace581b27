"""Published tables regenerated from specs: ``python -m fewshot.bench reproduce benchmarks/<spec>.toml``.

Before any cell runs, the whole spec is read and checked (:func:`fewshot.reproduce.specs.load_spec`), every stored
record is read, and the output folder is shown to be writable. Then every cell of the spec that has no stored
record yet runs through :class:`fewshot.runner.Runner` (so checkpoints and datasets are reused), and each cell's
record is saved (:func:`fewshot.results.records.save_record`, atomically) as soon as it finishes. Interrupted
(Ctrl-C or SIGTERM: :class:`fewshot.core.errors.Interrupted`), it writes the tables of what is done and says to run
the same command again, which continues with the cells still missing.

``results/<spec>/`` holds ``records/``, ``table.md``, ``table.csv`` and ``plot.png``. The tables are a function of
the spec and the stored records alone (:func:`render_tables`), so they regenerate unchanged from the records with
``--table-only``. Options that shrink a run (``--episodes``, ``--train-steps``) are part of each cell's
configuration: they are recorded, give the cell its own record, and the table says plainly which schedule was used.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from fewshot.core.atomic import atomic_write_bytes, remove_orphans
from fewshot.core.signals import stop_on_signals
from fewshot.core.errors import Interrupted, UsageError, UserError
from fewshot.data import miniimagenet  # noqa: F401  (registers the "miniimagenet" dataset the specs use)
from fewshot.reproduce.specs import (BenchmarkSpec, Cell, SpecError, check_fixed_episodes, check_method,
                                     check_method_options, check_train, method_trains)
from fewshot.results.checks import MARK, footnotes, record_warnings
from fewshot.results.leaderboard import Leaderboard, build_leaderboard
from fewshot.core.atomic import check_writable_dir
from fewshot.results.records import ReproduceInfo, RunRecord, load_records, save_record
from fewshot.evaluate.stats import mean_ci
from fewshot.runner import Runner

RECORDS = "records"
TABLES = ("table.md", "table.csv", "plot.png")


@dataclass
class ReproduceReport:
    """The cells of a spec and the stored record each table row shows; after a run, also what the run did."""

    spec: BenchmarkSpec
    out: Path
    cells: list[Cell]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0
    records: dict[str, RunRecord] = field(default_factory=dict)   # cell id -> record


def select_cells(cells: Sequence[Cell], patterns: Sequence[str] | None) -> list[Cell]:
    """Cells matching any pattern (fnmatch) on ``setting/method-label``, the setting id, the method name or label."""
    if not patterns:
        return list(cells)
    chosen = [c for c in cells if any(fnmatch.fnmatch(name, p) for p in patterns
                                      for name in (c.id, c.setting.id, c.method.method, c.method.title))]
    if not chosen:
        raise UsageError(f"--cells: no cell matches {list(patterns)}; cells are {[c.id for c in cells]}")
    return chosen


def check_cell(cell: Cell) -> str | None:
    """Why ``cell`` cannot run as specified (unknown method, option, training key or fixed episode set), or None.
    Loads no data. :func:`load_spec` makes the same checks on the whole spec; this is for cells built otherwise."""
    try:
        cls = check_method("method", cell.spec.method)
        check_method_options("method_options", cls, cell.spec.method_options)
        check_train("train", cell.spec.train)
        if cell.spec.fixed_episodes:
            check_fixed_episodes("fixed_episodes", cell.spec.fixed_episodes)
    except SpecError as error:
        return str(error)
    return None


def stored_records(out: str | Path) -> list[RunRecord]:
    """Every record in ``out/records/`` (read and checked: a damaged one raises a DataError naming it)."""
    folder = Path(out) / RECORDS
    return load_records(folder) if folder.is_dir() else []


def table_records(cells: Sequence[Cell], records: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """The record each cell's row shows: the cell's own (same configuration fingerprint), else the newest record of
    the same setting and row made with other shrinking options (the cells of one table may come from runs with
    different ``--train-steps``; each row's schedule is stated from its record)."""
    by_fingerprint = {r.fingerprint: r for r in records if r.fingerprint}
    by_place: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        rep = r.config.reproduce
        if rep is not None:
            by_place.setdefault((rep.setting, rep.row), []).append(r)
    chosen = {}
    for cell in cells:
        own = by_fingerprint.get(cell.fingerprint)
        others = by_place.get((cell.setting.id, cell.method.title), [])
        record = own or (max(others, key=lambda r: (r.created, r.source.name if r.source else "")) if others else None)
        if record is not None:
            chosen[cell.id] = record
    return chosen


def tables_from_records(spec: BenchmarkSpec, out: str | Path) -> ReproduceReport:
    """The tables' content from ``spec`` and the records stored in ``out`` alone: nothing runs."""
    out = Path(out)
    cells = spec.cells()
    return ReproduceReport(spec, out, cells, records=table_records(cells, stored_records(out)))


def reproduce(spec: BenchmarkSpec, *, out: str | Path | None = None, runner: Runner | None = None,
              episodes: int | None = None, train_steps: int | None = None, cells: Sequence[str] | None = None,
              run: bool = True, fail_fast: bool = False, command: str = "",
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> ReproduceReport:
    """Run the cells of ``spec`` that have no record (all of them, or those matching ``cells``), then write the
    tables from the stored records. Checks first: the cells, the output folder (writable) and every stored record
    (readable). A cell's record is saved atomically as soon as it finishes, so an interrupted run loses at most the
    cell in progress (whose training resumes from its partial checkpoint). ``run=False`` only rebuilds the tables.
    Interrupted (KeyboardInterrupt, SIGINT or SIGTERM), it writes the tables and raises :class:`Interrupted`."""
    out = Path(out) if out is not None else Path("results") / spec.name
    planned = spec.cells(episodes=episodes, train_steps=train_steps)
    if runner is not None:          # as the runner will run them (a data-parallel cell is another cell)
        planned = [dataclasses.replace(c, spec=runner.resolve(c.spec)) for c in planned]
    todo = select_cells(planned, cells) if run else []
    problems = [f"{c.id}: {p}" for c in todo if (p := check_cell(c))]
    if problems:
        raise SpecError(f"{spec.path or spec.name}: cannot run {'; '.join(problems)}")
    folder = check_writable_dir(out / RECORDS, "--out")
    for where in (folder, out):
        remove_orphans(where)                    # temporary files of a killed run
    done = {r.fingerprint for r in stored_records(out)}
    report = ReproduceReport(spec, out, planned)
    start = time.perf_counter()
    stopped: BaseException | None = None
    with stop_on_signals():
        try:
            runner = runner or (Runner() if todo else None)
            for i, cell in enumerate(todo):
                step = f"[{i + 1}/{len(todo)}] {cell.id}"
                if cell.fingerprint in done:
                    report.skipped.append(cell.id)
                    continue
                log(f"{step} ...")
                try:
                    record = runner.run(cell.spec)
                except (UserError, ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError, OSError) as error:
                    report.failed[cell.id] = f"{type(error).__name__}: {error}"
                    log(f"{step}: failed: {type(error).__name__}: {error}")
                    if fail_fast:
                        break
                    continue
                record.fingerprint = cell.fingerprint
                record.config.reproduce = ReproduceInfo(
                    spec=spec.name, spec_file=str(spec.path) if spec.path else None, setting=cell.setting.id,
                    setting_label=cell.setting.title, row=cell.method.title, paper_row=cell.method.paper_row,
                    fingerprint=cell.fingerprint, overrides=cell.overrides, command=command)
                save_record(record, folder)
                report.ran.append(cell.id)
                value, ci = _value(record, spec.metric)
                log(f"{step}: {spec.metric} {100 * value:.2f} ± {100 * ci:.2f} "
                    f"(train {record.train_seconds:.0f} s, eval {record.eval_seconds:.1f} s)")
                for warning in record_warnings(record):
                    log(f"{step}: (!) {warning}")
        except KeyboardInterrupt as error:       # Interrupted, from a signal or from training, is one too
            stopped = error
        report.seconds = time.perf_counter() - start
        report.records = write_tables(tables_from_records(spec, out)).records
    if stopped is not None:
        report.interrupted = True
        why = str(stopped).split(";")[0] or "interrupted"
        raise Interrupted(f"interrupted ({why}): {len(report.ran)} cell(s) finished in this run; every finished "
                          f"cell is saved in {folder}; run the same command again to continue with the cells "
                          f"still missing") from stopped
    return report


# --------------------------------------------------------------------------------------------------------------
# Tables: functions of the spec and the stored records alone


def _value(record: RunRecord, metric: str) -> tuple[float, float]:
    s = mean_ci(record.accuracies)
    return (1.0 - s.mean if metric == "error" else s.mean), s.ci95


def comparison_frame(report: ReproduceReport) -> pd.DataFrame:
    """Long table: per setting, every paper row and every method of ours, the paper's number, ours +- CI, the gap
    (ours minus paper, percentage points), all in percent of the spec's metric; the record each row comes from
    and its warnings."""
    spec = report.spec
    rows = []
    by_cell = {(c.setting.id, c.method.title): c for c in report.cells}
    for setting in spec.settings:
        ours_rows = [m for m in spec.methods if (setting.id, m.title) in by_cell]
        mapped = {m.paper_row for m in ours_rows if m.paper_row}
        for p in spec.paper:
            if setting.id in p.values and p.label not in mapped:
                rows.append({"setting": setting.id, "setting_label": setting.title, "row": p.label,
                             "method": None, "paper": p.values[setting.id], "paper_ci95": p.ci95.get(setting.id)})
        for m in ours_rows:
            cell = by_cell[setting.id, m.title]
            record = report.records.get(cell.id)
            paper = spec.paper_value(m.paper_row, setting.id) if m.paper_row else None
            entry = {"setting": setting.id, "setting_label": setting.title,
                     "row": f"{m.paper_row} — ours: {m.title}" if m.paper_row else f"ours: {m.title}",
                     "method": m.method, "paper": paper,
                     "paper_ci95": next((p.ci95.get(setting.id) for p in spec.paper if p.label == m.paper_row), None)}
            if record is not None:
                value, ci = _value(record, spec.metric)
                train = record.config.train_config
                overrides = record.config.reproduce.overrides if record.config.reproduce else {}
                entry.update({"ours": 100 * value, "ours_ci95": 100 * ci, "episodes": len(record.accuracies),
                              "gap": None if paper is None else 100 * value - paper,
                              "train_steps": train.get("steps") if train else None,
                              "spec_train_steps": (overrides.get("train_steps") or {}).get("spec"),
                              "episode_hash": record.episode_hash,
                              "record": record.source.name if record.source else cell.record_name(),
                              "warnings": "; ".join(record_warnings(record))})
            else:
                entry["status"] = "not run yet"
            rows.append(entry)
    return pd.DataFrame(rows)


def _fmt(value, ci=None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    if ci is not None and not pd.isna(ci):
        text += f" ± {ci:.2f}"
    return text


def comparison_markdown(frame: pd.DataFrame, metric: str) -> str:
    """The comparison as Markdown; a row whose record has warnings is marked ``(!)`` (see :func:`warning_lines`)."""
    unit = "error rate (%)" if metric == "error" else "accuracy (%)"
    n = len(frame)
    warned = [bool(w) and isinstance(w, str) for w in frame.get("warnings", [""] * n)]
    shown = pd.DataFrame({
        "setting": frame["setting_label"],
        "row": frame["row"],
        f"paper {unit}": [_fmt(p, c) for p, c in zip(frame["paper"], frame.get("paper_ci95", [None] * n))],
        f"ours {unit}": [(_fmt(o, c) + (MARK if w else "")) if not pd.isna(o) else
                         (s if isinstance(s, str) else "—") for o, c, s, w in
                         zip(frame.get("ours", [float("nan")] * n), frame.get("ours_ci95", [None] * n),
                             frame.get("status", [""] * n), warned)],
        "gap (ours − paper)": [_fmt(g, signed=True) for g in frame.get("gap", [None] * n)],
    })
    return shown.to_markdown(index=False)


def warning_lines(frame: pd.DataFrame) -> list[str]:
    """``(!) setting / row: warnings`` for the rows of :func:`comparison_frame` whose record has warnings."""
    if "warnings" not in frame:
        return []
    return footnotes((f"{label} / {row}", [w]) for label, row, w in
                     zip(frame["setting_label"], frame["row"], frame["warnings"]) if isinstance(w, str) and w)


def _schedule_lines(report: ReproduceReport) -> list[str]:
    lines = []
    # What the stored records were actually run with (cells of one table may come from different invocations).
    used: dict[str, set] = {"train_steps": set(), "episodes": set()}
    specced: dict[str, set] = {"train_steps": set(), "episodes": set()}
    for cell in report.cells:
        record = report.records.get(cell.id)
        overrides = (record.config.reproduce.overrides if record and record.config.reproduce else None) or {}
        for key in used:
            if key in overrides:
                used[key].add(str(overrides[key]["used"]))
                specced[key].add(str(overrides[key]["spec"] or "the preset's"))
    if used["train_steps"] or used["episodes"]:
        parts = []
        if used["train_steps"]:
            parts.append(f"methods that train ran **{' or '.join(sorted(used['train_steps'], key=int))} optimiser "
                         f"steps** (per row below) instead of the spec's paper schedule "
                         f"({', '.join(sorted(specced['train_steps']))} steps)")
        if used["episodes"]:
            parts.append(f"evaluation used **{' or '.join(sorted(used['episodes'], key=int))} test episodes** "
                         f"instead of {', '.join(sorted(specced['episodes']))}")
        lines.append("**Shortened run — not the paper's schedule:** " + "; ".join(parts) +
                     ". Numbers are not comparable with the paper's beyond a sanity check.")
    seen = set()
    for cell in report.cells:
        record = report.records.get(cell.id)
        train = record.config.train_config if record else {}
        if not train:
            continue
        keys = ("steps", "optimizer", "lr", "lr_decay_every", "lr_decay", "weight_decay")
        keys += (("batch_size",) if record.config.train_kind == "supervised" else
                 ("ways", "shots", "queries", "meta_batch"))
        text = ", ".join(f"{k} {train[k]}" for k in keys if k in train)
        key = (cell.method.title, cell.spec.source, text)
        if key in seen:
            continue
        seen.add(key)
        options = record.config.options
        opt = f"; method options {json.dumps(options, sort_keys=True)}" if options else ""
        lines.append(f"`{cell.method.title}` in {cell.setting.id}: trained on {cell.spec.source}/"
                     f"{cell.spec.train_split} with {text}{opt}.")
    return lines


def _protocol_lines(report: ReproduceReport) -> list[str]:
    lines = []
    for s in report.spec.settings:
        test = (f"the fixed episode set `{s.fixed_episodes}`" if s.fixed_episodes else
                f"{s.episodes} episodes (seed {s.seed}) from {s.test_dataset or s.dataset}/{s.test_split}, "
                f"{s.queries} queries per class")
        trained = any(method_trains(c.spec.method) for c in report.cells if c.setting.id == s.id)
        source = f"learns from {s.dataset}/{s.train_split}" if trained else \
            "no method learns from a dataset (a pretrained backbone's features, or none)"
        shape = f"{s.ways}-way {s.shots}-shot" if s.protocol == "fixed" else \
            f"Meta-Dataset episodes (ways and shots drawn per episode; meta-training {s.ways}-way {s.shots}-shot)"
        lines.append(f"{s.title}: {shape}; {source}; tested on {test}.")
    return lines


def _hardware_lines(report: ReproduceReport) -> list[str]:
    devices, train, evals, created = set(), {}, 0.0, []
    for record in report.records.values():
        env = record.environment or {}
        what = env.get("gpu") or f"{env.get('cpu') or 'cpu'}, {env.get('threads', '?')} threads"
        devices.add(f"{env.get('device', '?')} ({what})")
        train[record.train.checkpoint or id(record)] = record.train_seconds
        evals += record.eval_seconds
        created.append(record.created)
    if not report.records:
        return ["No cell has a record yet."]
    return [f"Hardware: {'; '.join(sorted(devices))}.",
            f"Compute in the stored records: training {sum(train.values()) / 60:.1f} min (each checkpoint once), "
            f"evaluation {evals / 60:.1f} min; records made {min(created)} to {max(created)}."]


def leaderboard_of(report: ReproduceReport) -> Leaderboard | None:
    spec = report.spec
    if not report.records:
        return None
    by_id = {c.id: c for c in report.cells}
    baseline = next((m.title for m in spec.methods if spec.baseline in (m.method, m.label)), None)
    records = list(report.records.values())
    ids = {id(r): cid for cid, r in report.records.items()}
    return build_leaderboard(
        records, baseline=baseline, metric=spec.metric,
        row=lambda r: by_id[ids[id(r)]].method.title, column=lambda r: by_id[ids[id(r)]].setting.title,
        row_order=[m.title for m in spec.methods], column_order=[s.title for s in spec.settings],
        unpaired=spec.unpaired, title=f"Our runs: {spec.title}")


def regenerate_command(spec: BenchmarkSpec, out: Path) -> str:
    """The command that rebuilds ``out``'s tables from its records."""
    path = spec.path
    name = spec.name if path is None or (path.parent.name == "benchmarks" and path.stem == spec.name) else str(path)
    where = "" if tuple(out.parts[-2:]) == ("results", spec.name) else f" --out {out}"
    return f"python -m fewshot.bench reproduce {name} --table-only{where}"


def table_markdown(report: ReproduceReport, frame: pd.DataFrame | None = None,
                   board: Leaderboard | None = None) -> str:
    """``table.md``; ``frame`` and ``board``, when the caller has them, are :func:`comparison_frame` and
    :func:`leaderboard_of` of ``report`` (built once for all the tables)."""
    spec, src = report.spec, report.spec.source
    frame = comparison_frame(report) if frame is None else frame
    parts = [f"## {spec.title}", "",
             f"Source: {src.paper}, {src.table}" + (f" ({src.url})" if src.url else "") + ".",
             f"Paper's numbers checked: {src.checked}" if src.checked else "", "",
             comparison_markdown(frame, spec.metric), ""]
    flagged = warning_lines(frame)
    if flagged:
        parts += flagged + [""]
    board = leaderboard_of(report) if board is None else board
    if board is not None:
        parts += [board.to_markdown(heading_level=3), ""]
    parts += ["### Protocol and schedule", ""]
    parts += [f"- {line}" for line in _schedule_lines(report) + _protocol_lines(report) + list(spec.notes)]
    parts += [f"- {line}" for line in _hardware_lines(report)]
    missing = [c.id for c in report.cells if c.id not in report.records]
    if missing:
        parts.append(f"- Cells without a result: {', '.join(missing)}.")
    if spec.requires:
        parts.append(f"- Data: {spec.requires}")
    parts.append(f"- Regenerate from the records: `{regenerate_command(spec, report.out)}`; the same command "
                 f"without `--table-only` runs the cells still missing.")
    return "\n".join(parts) + "\n"


def render_tables(report: ReproduceReport) -> dict[str, bytes]:
    """``table.md``, ``table.csv`` and (once a cell has a record) ``plot.png``, as bytes, from ``report``'s spec and
    records only (see :func:`tables_from_records`)."""
    frame, board = comparison_frame(report), leaderboard_of(report)
    files = {"table.md": table_markdown(report, frame, board).encode("utf-8"),
             "table.csv": frame.to_csv(index=False).encode("utf-8")}
    if board is not None:
        references = []
        for cell in report.cells:
            paper = report.spec.paper_value(cell.method.paper_row, cell.setting.id) if cell.method.paper_row else None
            if paper is not None:
                references.append({"row": cell.method.title, "column": cell.setting.title, "value": paper / 100})
        board.references = pd.DataFrame(references)
        files["plot.png"] = board.plot_png()
    return files


def write_tables(report: ReproduceReport) -> ReproduceReport:
    """Write :func:`render_tables` into ``report.out`` (atomically); returns ``report``."""
    for name, data in render_tables(report).items():
        atomic_write_bytes(report.out / name, data)
    return report
