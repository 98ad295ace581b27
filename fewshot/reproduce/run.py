"""Published tables regenerated from specs: ``python -m fewshot.bench reproduce benchmarks/<spec>.toml``.

Runs every cell of a spec (:mod:`fewshot.reproduce.specs`) that has no stored record yet, through :class:`fewshot.runner.
Runner` (so checkpoints and datasets are reused), writes each cell's record atomically as soon as it finishes, then
writes ``results/<spec>/`` (``records/``, ``table.md``, ``table.csv``, ``plot.png``) and prints our numbers beside
the paper's with the gap. Interrupted, it continues where it stopped when run again. Options that shrink a run
(``--episodes``, ``--train-steps``) are part of each cell's configuration: they are recorded, give the cell its own
record, and the table says plainly which schedule was used.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from fewshot.data import miniimagenet  # noqa: F401  (registers the "miniimagenet" dataset the specs use)
from fewshot.results.leaderboard import Leaderboard, build_leaderboard, update_readme_section
from fewshot.core.atomic import atomic_write_text
from fewshot.results.records import RunRecord, load_records, now
from fewshot.runner import Runner
from fewshot.reproduce.specs import BenchmarkSpec, Cell, SpecError, load_spec, resolve_spec_path
from fewshot.results.stats import mean_ci

RECORDS = "records"


@dataclass
class ReproduceReport:
    """What a reproduce run did, and the table it left."""

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
        raise ValueError(f"no cell matches {list(patterns)}; cells are {[c.id for c in cells]}")
    return chosen


def check_cell(cell: Cell) -> str | None:
    """Why ``cell`` cannot run as specified (unknown method, option or training key), or None. Loads no data."""
    from fewshot.methods import method_class
    from fewshot.train.loop import TrainConfig

    try:
        cls = method_class(cell.spec.method)
    except KeyError as error:
        return str(error.args[0])
    options = {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(cls.Config) else set()
    unknown = set(cell.spec.method_options) - options
    if unknown:
        return f"method {cell.spec.method!r} has no option(s) {sorted(unknown)}; its options are {sorted(options)}"
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    if set(cell.spec.train) - keys:
        return f"unknown training key(s) {sorted(set(cell.spec.train) - keys)}; TrainConfig has {sorted(keys)}"
    if cell.spec.fixed_episodes:
        from fewshot.data.fixed import list_fixed_episodes

        if cell.spec.fixed_episodes not in list_fixed_episodes():
            return f"unknown fixed episode set {cell.spec.fixed_episodes!r}; known: {list_fixed_episodes()}"
    return None


def stored_record(cell: Cell, out: Path) -> RunRecord | None:
    path = out / RECORDS / cell.record_name()
    return load_records(path)[0] if path.is_file() else None


def table_record(cell: Cell, out: Path) -> RunRecord | None:
    """The record a table shows for ``cell``: its own, else the newest record of the same setting and method made
    with other shrinking options (cells of one table may have been run with different ``--train-steps``; each
    row's schedule is stated from its record)."""
    own = stored_record(cell, out)
    if own is not None:
        return own
    prefix = cell.record_name().rsplit("__", 1)[0] + "__"
    others = load_records(sorted((out / RECORDS).glob(prefix + "*.json"))) if (out / RECORDS).is_dir() else []
    return max(others, key=lambda r: r.created) if others else None


def reproduce(spec: BenchmarkSpec, *, out: str | Path | None = None, runner: Runner | None = None,
              episodes: int | None = None, train_steps: int | None = None, cells: Sequence[str] | None = None,
              run: bool = True, fail_fast: bool = False, command: str = "",
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> ReproduceReport:
    """Run the cells of ``spec`` that have no record (all of them, or those matching ``cells``), then write the
    tables. A cell's record is written atomically as soon as it finishes, so an interrupted run loses at most the
    cell in progress (whose training resumes from its partial checkpoint). ``run=False`` only rebuilds the tables
    from the stored records. KeyboardInterrupt is re-raised after the tables are written."""
    out = Path(out) if out is not None else Path("results") / spec.name
    planned = spec.cells(episodes=episodes, train_steps=train_steps)
    report = ReproduceReport(spec, out, planned)
    todo = select_cells(planned, cells)
    start = time.perf_counter()
    runner = runner or Runner()
    try:
        for i, cell in enumerate(todo if run else []):
            path = out / RECORDS / cell.record_name()
            if path.is_file():
                report.skipped.append(cell.id)
                continue
            problem = check_cell(cell)
            if problem:
                report.failed[cell.id] = problem
                log(f"[{i + 1}/{len(todo)}] {cell.id}: cannot run: {problem}")
                if fail_fast:
                    break
                continue
            log(f"[{i + 1}/{len(todo)}] {cell.id} ...")
            try:
                record = runner.run(cell.spec)
            except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError, OSError) as error:
                report.failed[cell.id] = f"{type(error).__name__}: {error}"
                log(f"[{i + 1}/{len(todo)}] {cell.id}: failed: {type(error).__name__}: {error}")
                if fail_fast:
                    break
                continue
            record.config["reproduce"] = {
                "spec": spec.name, "spec_file": str(spec.path) if spec.path else None, "setting": cell.setting.id,
                "setting_label": cell.setting.title, "row": cell.method.title, "paper_row": cell.method.paper_row,
                "fingerprint": cell.fingerprint, "overrides": cell.overrides, "command": command,
            }
            atomic_write_text(path, json.dumps(record.to_json(), indent=1) + "\n")
            report.ran.append(cell.id)
            value, ci = _value(record, spec.metric)
            log(f"[{i + 1}/{len(todo)}] {cell.id}: {spec.metric} {100 * value:.2f} ± {100 * ci:.2f} "
                f"(train {record.train_seconds:.0f} s, eval {record.eval_seconds:.1f} s)")
    except KeyboardInterrupt:
        report.interrupted = True
    report.seconds = time.perf_counter() - start
    for cell in planned:
        record = table_record(cell, out)
        if record is not None:
            report.records[cell.id] = record
    write_tables(report, command=command)
    if report.interrupted:
        raise KeyboardInterrupt
    return report


# --------------------------------------------------------------------------------------------------------------
# Tables


def _value(record: RunRecord, metric: str) -> tuple[float, float]:
    s = mean_ci(record.accuracies)
    return (1.0 - s.mean if metric == "error" else s.mean), s.ci95


def comparison_frame(report: ReproduceReport) -> pd.DataFrame:
    """Long table: per setting, every paper row and every method of ours, the paper's number, ours +- CI, the gap
    (ours minus paper, percentage points), all in percent of the spec's metric."""
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
                train = record.config.get("train") or {}
                entry.update({"ours": 100 * value, "ours_ci95": 100 * ci, "episodes": len(record.accuracies),
                              "gap": None if paper is None else 100 * value - paper,
                              "train_steps": train.get("steps") if record.config.get("train") else None,
                              "spec_train_steps": (cell.overrides.get("train_steps") or {}).get("spec"),
                              "episode_hash": record.episode_hash, "record": cell.record_name()})
            else:
                entry["status"] = report.failed.get(cell.id, "not run yet")
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
    unit = "error rate (%)" if metric == "error" else "accuracy (%)"
    shown = pd.DataFrame({
        "setting": frame["setting_label"],
        "row": frame["row"],
        f"paper {unit}": [_fmt(p, c) for p, c in zip(frame["paper"], frame.get("paper_ci95", [None] * len(frame)))],
        f"ours {unit}": [_fmt(o, c) if not pd.isna(o) else (s if isinstance(s, str) else "—") for o, c, s in
                         zip(frame.get("ours", [float("nan")] * len(frame)),
                             frame.get("ours_ci95", [None] * len(frame)),
                             frame.get("status", [""] * len(frame)))],
        "gap (ours − paper)": [_fmt(g, signed=True) for g in frame.get("gap", [None] * len(frame))],
    })
    return shown.to_markdown(index=False)


def _schedule_lines(report: ReproduceReport) -> list[str]:
    lines = []
    # What the stored records were actually run with (cells of one table may come from different invocations).
    used: dict[str, set] = {"train_steps": set(), "episodes": set()}
    specced: dict[str, set] = {"train_steps": set(), "episodes": set()}
    for cell in report.cells:
        record = report.records.get(cell.id)
        overrides = ((record.config.get("reproduce") or {}).get("overrides") if record else None) or {}
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
        train = (record.config.get("train") if record else None) or {}
        if not train:
            continue
        keys = ("steps", "optimizer", "lr", "lr_decay_every", "lr_decay", "weight_decay")
        keys += (("batch_size",) if record.config.get("train_kind") == "supervised" else
                 ("ways", "shots", "queries", "meta_batch"))
        text = ", ".join(f"{k} {train[k]}" for k in keys if k in train)
        key = (cell.method.title, text)
        if key in seen:
            continue
        seen.add(key)
        options = record.config.get("config") or {}
        opt = f"; method options {json.dumps(options, sort_keys=True)}" if options else ""
        lines.append(f"`{cell.method.title}` in {cell.setting.id}: trained on {cell.spec.dataset}/"
                     f"{cell.spec.train_split} with {text}{opt}.")
    return lines


def _protocol_lines(report: ReproduceReport) -> list[str]:
    lines = []
    for s in report.spec.settings:
        cell = next((c for c in report.cells if c.setting.id == s.id), None)
        episodes = cell.spec.episodes if cell else s.episodes
        test = (f"the fixed episode set `{s.fixed_episodes}`" if s.fixed_episodes else
                f"{episodes} episodes (seed {s.seed}) from {s.dataset}/{s.test_split}, {s.queries} queries per class")
        lines.append(f"{s.title}: {s.ways}-way {s.shots}-shot; learns from {s.dataset}/{s.train_split}; "
                     f"tested on {test}.")
    return lines


def _hardware_lines(report: ReproduceReport) -> list[str]:
    devices, train, evals, created = set(), {}, 0.0, []
    for record in report.records.values():
        env = record.environment or {}
        what = env.get("gpu") or f"{env.get('cpu') or 'cpu'}, {env.get('threads', '?')} threads"
        devices.add(f"{env.get('device', '?')} ({what})")
        train[(record.train or {}).get("checkpoint") or id(record)] = record.train_seconds
        evals += record.eval_seconds
        created.append(record.created)
    if not report.records:
        return ["No cell has a record yet."]
    return [f"Hardware: {'; '.join(sorted(devices))}.",
            f"Compute in the stored records: training {sum(train.values()) / 60:.1f} min (each checkpoint once), "
            f"evaluation {evals / 60:.1f} min; records made {min(created)} to {max(created)}. "
            f"This invocation: {report.seconds / 60:.1f} min wall time, {len(report.ran)} cell(s) run, "
            f"{len(report.skipped)} reused."]


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


def table_markdown(report: ReproduceReport, command: str = "") -> str:
    spec, src = report.spec, report.spec.source
    frame = comparison_frame(report)
    parts = [f"## {spec.title}", "",
             f"Source: {src.paper}, {src.table}" + (f" ({src.url})" if src.url else "") + ".",
             f"Paper's numbers checked: {src.checked}" if src.checked else "", "",
             comparison_markdown(frame, spec.metric), ""]
    board = leaderboard_of(report)
    if board is not None:
        parts += [board.to_markdown(heading_level=3), ""]
    parts += ["### Protocol and schedule", ""]
    parts += [f"- {line}" for line in _schedule_lines(report) + _protocol_lines(report) + list(spec.notes)]
    parts += [f"- {line}" for line in _hardware_lines(report)]
    missing = [c.id for c in report.cells if c.id not in report.records]
    if missing:
        parts.append(f"- Cells without a result: {', '.join(missing)}" +
                     (f" (failures: {'; '.join(f'{k}: {v}' for k, v in report.failed.items())})"
                      if report.failed else "") + ".")
    if spec.requires:
        parts.append(f"- Data: {spec.requires}")
    parts.append(f"- Regenerate: `{command or f'python -m fewshot.bench reproduce {spec.path or spec.name}'}` "
                 f"(cells with a record are reused; generated {now()}).")
    return "\n".join(p for p in parts if p is not None) + "\n"


def write_tables(report: ReproduceReport, command: str = "") -> list[Path]:
    """``table.md``, ``table.csv`` and ``plot.png`` in ``report.out`` from the stored records."""
    out = report.out
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "table.md", out / "table.csv"]
    atomic_write_text(written[0], table_markdown(report, command))
    atomic_write_text(written[1], comparison_frame(report).to_csv(index=False))
    board = leaderboard_of(report)
    if board is not None:
        references = []
        for cell in report.cells:
            paper = report.spec.paper_value(cell.method.paper_row, cell.setting.id) if cell.method.paper_row else None
            if paper is not None:
                references.append({"row": cell.method.title, "column": cell.setting.title, "value": paper / 100})
        board.references = pd.DataFrame(references)
        png = out / "plot.png"
        tmp = png.with_suffix(".png.tmp")
        tmp.write_bytes(board.plot_png())
        tmp.replace(png)
        written.append(png)
    return written


# --------------------------------------------------------------------------------------------------------------
# The `reproduce` sub-command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fewshot.bench reproduce",
        description="Regenerate published tables from benchmarks/ specs: run the cells without a stored result, "
                    "write results/<spec>/ and print ours beside the paper's numbers.")
    p.add_argument("specs", nargs="+", help="spec files, or names of specs in benchmarks/")
    p.add_argument("--out", default=None, help="results folder (default results/<spec name>; with several specs, "
                                               "OUT/<spec name>)")
    p.add_argument("--episodes", type=int, default=None, help="shrink: test episodes per cell (recorded)")
    p.add_argument("--train-steps", type=int, default=None, help="shrink: training steps per method (recorded)")
    p.add_argument("--cells", default=None,
                   help="comma-separated patterns on 'setting/method', setting id, method name or label")
    p.add_argument("--plan", action="store_true", help="list the cells and whether they have a record; run nothing")
    p.add_argument("--table-only", action="store_true", help="rebuild the tables from stored records; run nothing")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first cell that fails")
    p.add_argument("--readme", default=None,
                   help="also regenerate the README section <!-- results:begin spec=NAME --> ... <!-- results:end -->")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--eval-batch", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "python -m fewshot.bench reproduce " + " ".join(argv)
    try:
        specs = [load_spec(resolve_spec_path(s)) for s in args.specs]
    except (SpecError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    patterns = [p for p in (args.cells or "").split(",") if p] or None
    runner = None if args.plan else Runner(data_root=args.data_root, checkpoint_dir=args.checkpoint_dir,
                                           device=args.device, progress=not args.quiet,
                                           eval_batch_size=args.eval_batch)
    status = 0
    for spec in specs:
        out = Path(args.out) / spec.name if args.out and len(specs) > 1 else \
            Path(args.out) if args.out else Path("results") / spec.name
        if args.plan:
            cells = spec.cells(episodes=args.episodes, train_steps=args.train_steps)
            print(f"{spec.name}: {len(cells)} cells -> {out}")
            for cell in select_cells(cells, patterns):
                problem = check_cell(cell)
                state = "done" if (out / RECORDS / cell.record_name()).is_file() else "to run"
                print(f"  {cell.id:40s} {state:7s} {cell.record_name()}" + (f"  ! {problem}" if problem else ""))
            continue
        try:
            report = reproduce(spec, out=out, runner=runner, episodes=args.episodes, train_steps=args.train_steps,
                               cells=patterns, run=not args.table_only, fail_fast=args.fail_fast, command=command)
        except KeyboardInterrupt:
            print(f"\ninterrupted: finished cells are saved in {out / RECORDS}; run the same command again to "
                  f"continue", file=sys.stderr)
            return 130
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        frame = comparison_frame(report)
        print(f"\n{spec.title} ({spec.source.paper}, {spec.source.table})\n")
        print(comparison_markdown(frame, spec.metric))
        print(f"\n{len(report.ran)} cell(s) run, {len(report.skipped)} reused, {len(report.failed)} failed, "
              f"{report.seconds:.0f} s; tables in {out}")
        if args.readme:
            try:
                update_readme_section(args.readme, spec.name, table_markdown(report, command), command=command)
            except (ValueError, FileNotFoundError) as error:
                print(f"error: {error}", file=sys.stderr)
                status = 1
        if report.failed:
            status = 1
    return status
