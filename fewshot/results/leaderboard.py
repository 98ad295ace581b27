"""Leaderboard tables built from stored run records alone (no re-running).

Rows are methods, columns are settings (dataset x ways x shots, plus whatever else tells two columns apart); a cell
is the accuracy (or error rate) +- its 95% CI and a rank in which statistically tied methods share a place; a
companion table gives each method's difference to the baseline (plain fine-tuning) on the same episodes with a
paired 95% CI. :class:`Leaderboard` writes Markdown, CSV, LaTeX, a self-contained HTML page and a PNG plot, and
:func:`update_readme_section` regenerates a README section between markers.

Records scored on different episode sets are never compared as paired: within one column every record must carry
the same episode hash, else :class:`EpisodeSetMismatch` names the hashes (``unpaired=True`` compares such columns
as independent samples instead, and says so in the table). A cell whose record has warnings
(:func:`fewshot.results.checks.record_warnings`: stored by training, or accuracy at chance) is marked ``(!)`` and
its warnings are listed under the table.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from fewshot.core.atomic import atomic_write_bytes, atomic_write_text
from fewshot.core.errors import DataError, UsageError
from fewshot.results.checks import MARK, footnotes, record_warnings
from fewshot.results.records import RunRecord
from fewshot.evaluate.stats import MeanCI, is_significant, mean_ci, paired_difference, tied_ranks, unpaired_difference

METRICS = ("accuracy", "error")
#: Output formats (file extension) and the names they are asked for by.
FORMATS = {"md": "md", "markdown": "md", "csv": "csv", "tex": "tex", "latex": "tex", "html": "html", "png": "png"}
ALL_FORMATS = ("md", "csv", "tex", "html", "png")


def parse_formats(values: Sequence[str] | str, option: str = "--format") -> list[str]:
    """File extensions from format names, comma-separated and/or repeated (``md,csv`` or ``latex``), in order."""
    names = [n.strip().lower() for v in ([values] if isinstance(values, str) else values) for n in v.split(",")]
    out = []
    for name in filter(None, names):
        if name not in FORMATS:
            raise UsageError(f"{option}: unknown format {name!r}; choose from md, csv, latex, html, png "
                             f"(comma-separated or repeated)")
        if FORMATS[name] not in out:
            out.append(FORMATS[name])
    if not out:
        raise UsageError(f"{option}: no format given; choose from md, csv, latex, html, png")
    return out


class EpisodeSetMismatch(DataError):
    """Two records that were to be compared as paired were scored on different episode sets."""


def paired_comparison(a: RunRecord, b: RunRecord) -> MeanCI:
    """Mean and paired 95% CI of ``a - b`` (accuracy) over the episodes both were scored on.

    Raises :class:`EpisodeSetMismatch` naming both hashes when the two records come from different episode sets.
    """
    if a.episode_hash != b.episode_hash or len(a.accuracies) != len(b.accuracies):
        raise EpisodeSetMismatch(
            f"cannot pair {a.method!r} with {b.method!r} in {a.setting}: they were scored on different episode sets "
            f"({a.method}: episode hash {a.episode_hash[:12]}, {len(a.accuracies)} episodes; {b.method}: episode "
            f"hash {b.episode_hash[:12]}, {len(b.accuracies)} episodes). Re-run one of them on the other's episodes "
            f"(same dataset, split, ways, shots, queries, episodes and seed)"
        )
    return paired_difference(a.accuracies, b.accuracies)


# --------------------------------------------------------------------------------------------------------------
# Columns: which setting a record belongs to


def train_dataset(record: RunRecord) -> str:
    """The dataset a record's method learned from (the test dataset unless the record says otherwise)."""
    return str(record.config.train_dataset or record.dataset)


def _setting_key(r: RunRecord) -> tuple:
    return (r.dataset, train_dataset(r), r.ways, r.shots, r.split, r.queries, r.episodes,
            -1 if r.episode_seed is None else r.episode_seed, r.shape)


def setting_columns(records: Sequence[RunRecord]) -> Callable[[RunRecord], str]:
    """A column labeller for ``records``: ``"dataset W-way K-shot"``, plus what tells apart columns that would
    otherwise share a label (training set, split, queries, episodes, seed), so that every label names one setting
    and therefore (for honest records) one episode set."""
    keys = sorted({_setting_key(r) for r in records}, key=lambda k: tuple(str(x) for x in k))
    base = {k: f"{k[0]} {k[8]}" for k in keys}
    labels = {}
    for k in keys:
        same = [o for o in keys if base[o] == base[k]]
        extra = []
        if k[1] != k[0]:
            extra.append(f"trained on {k[1]}")
        names = ("", "", "", "", "split {}", "{} queries", "{} episodes", "seed {}")
        for i in (4, 5, 6, 7):
            if len({o[i] for o in same}) > 1:
                extra.append(names[i].format(k[i] if k[i] != -1 else "fixed"))
        labels[k] = base[k] + (f" ({', '.join(extra)})" if extra else "")
    return lambda r: labels[_setting_key(r)]


# --------------------------------------------------------------------------------------------------------------
# The leaderboard


@dataclass
class Leaderboard:
    """The cells of a leaderboard (one row per method and setting, numbers as fractions) and how to show them."""

    cells: pd.DataFrame
    rows: list[str]
    columns: list[str]
    baseline: str | None = "finetune"
    metric: str = "accuracy"
    title: str = "Leaderboard"
    notes: list[str] = field(default_factory=list)
    #: Published numbers to mark on the plot: columns ``row``, ``column``, ``value`` (a fraction, in the metric).
    references: pd.DataFrame | None = None

    # ---- tables of strings -------------------------------------------------------------------------------
    @property
    def unit(self) -> str:
        return "error rate (%)" if self.metric == "error" else "accuracy (%)"

    def _cell(self, row: str, column: str) -> pd.Series | None:
        hit = self.cells[(self.cells["row"] == row) & (self.cells["column"] == column)]
        return None if hit.empty else hit.iloc[0]

    def value_table(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows x settings of ``"98.80 ± 0.20 (1)"`` (metric +- 95% CI, tied rank), then average rank and times;
        and a boolean frame marking each column's best rank."""
        data, best = {}, {}
        for column in self.columns:
            in_column = self.cells[self.cells["column"] == column]
            top = in_column["rank"].min() if not in_column.empty else None
            data[column], best[column] = [], []
            for row in self.rows:
                c = self._cell(row, column)
                if c is None:
                    data[column].append("")
                    best[column].append(False)
                    continue
                mark = MARK if c.get("warnings") else ""
                data[column].append(f"{_pct(c['value'], c['ci95'])} ({c['rank']:g}){mark}")
                best[column].append(bool(c["rank"] == top))
        avg = self.average_ranks()
        data["avg rank"] = [f"{avg[r]:.2f}" if r in avg else "" for r in self.rows]
        best["avg rank"] = [bool(r in avg and avg[r] == min(avg.values())) for r in self.rows]
        times = self.times()
        data["train (s)"] = [f"{times.loc[r, 'train']:.0f}" for r in self.rows]
        data["eval (s)"] = [f"{times.loc[r, 'eval']:.1f}" for r in self.rows]
        best["train (s)"] = best["eval (s)"] = [False] * len(self.rows)
        return (pd.DataFrame(data, index=pd.Index(self.rows, name="method")),
                pd.DataFrame(best, index=pd.Index(self.rows, name="method")))

    def difference_table(self) -> pd.DataFrame | None:
        """Rows (but the baseline) x settings of the difference to the baseline on the same episodes, in
        percentage points of the table's metric, with its paired 95% CI; ``*`` marks a CI that excludes zero."""
        if not self.baseline or "diff" not in self.cells or self.cells["diff"].isna().all():
            return None
        data = {}
        rows = [r for r in self.rows if not self.cells[(self.cells["row"] == r) & self.cells["diff"].notna()].empty]
        for column in self.columns:
            data[column] = []
            for row in rows:
                c = self._cell(row, column)
                if c is None or pd.isna(c["diff"]):
                    data[column].append("")
                    continue
                d = MeanCI(c["diff"], c["diff_ci95"], int(c["n"]))
                mark = " *" if is_significant(d) else ""
                dagger = "" if c["diff_paired"] else " †"
                data[column].append(f"{100 * d.mean:+.2f} ± {_ci(d.ci95)}{mark}{dagger}")
        return pd.DataFrame(data, index=pd.Index(rows, name="method")) if rows else None

    def average_ranks(self) -> dict[str, float]:
        return {row: float(group["rank"].mean()) for row, group in self.cells.groupby("row")}

    def times(self) -> pd.DataFrame:
        """Per row: training seconds (each checkpoint counted once: one pre-training serves several settings) and
        evaluation seconds, summed over the row's cells."""
        out = {}
        for row in self.rows:
            group = self.cells[self.cells["row"] == row]
            train = group.drop_duplicates("train_key")["train_seconds"].sum()
            out[row] = {"train": float(train), "eval": float(group["eval_seconds"].sum())}
        return pd.DataFrame.from_dict(out, orient="index")

    def _legend(self) -> list[str]:
        lines = [
            f"Cells: {self.unit} ± 95% CI (1.96 standard errors over episodes) and, in brackets, the rank. Methods "
            f"whose difference is not significant share a rank (meta-dataset's rule: the best remaining method and "
            f"every method within its 95% CI of the difference are tied and share the mean of their places).",
        ]
        if self.difference_table() is not None:
            lines.append(f"Differences: to `{self.baseline}` on the same episodes, in percentage points of the "
                         f"{'error rate' if self.metric == 'error' else 'accuracy'}, with the paired 95% CI; "
                         f"`*` marks a CI that excludes 0.")
        lines.append("Train time counts each checkpoint once (a loaded checkpoint reports its original training "
                     "time); eval time is summed over the row's settings.")
        return lines + self.notes + self.warning_lines()

    def warning_lines(self) -> list[str]:
        """``(!) `row` in column: warnings`` for every cell whose record has warnings, in table order."""
        if "warnings" not in self.cells:
            return []
        flagged = []
        for row in self.rows:
            for column in self.columns:
                c = self._cell(row, column)
                if c is not None and c["warnings"]:
                    flagged.append((f"`{row}` in {column}", [str(c["warnings"])]))
        return footnotes(flagged)

    # ---- writers -----------------------------------------------------------------------------------------
    def to_markdown(self, heading_level: int = 3) -> str:
        values, best = self.value_table()
        shown = values.where(~best, "**" + values + "**")
        parts = [f"{'#' * heading_level} {self.title}", "", shown.reset_index().to_markdown(index=False)]
        diff = self.difference_table()
        if diff is not None:
            parts += ["", f"Difference to `{self.baseline}` (percentage points, paired 95% CI):", "",
                      diff.reset_index().to_markdown(index=False)]
        parts += [""] + [f"- {line}" for line in self._legend()]
        return "\n".join(parts) + "\n"

    def to_csv(self) -> str:
        """The cells in long form, numbers as fractions (mean, ci95, rank, diff, diff_ci95, times, hashes)."""
        return self.cells.drop(columns=["train_key"]).to_csv(index=False)

    def to_latex(self) -> str:
        values, best = self.value_table()
        out = [f"% {self.title} -- generated from run records by fewshot.results.leaderboard; do not edit by hand",
               _latex_tabular(values, best)]
        diff = self.difference_table()
        if diff is not None:
            out += [f"% Difference to {self.baseline} (percentage points, paired 95% CI)",
                    _latex_tabular(diff, pd.DataFrame(False, index=diff.index, columns=diff.columns))]
        return "\n".join(out) + "\n"

    def to_html(self, plot: bool = True) -> str:
        """A self-contained page: both tables, the legend and (when ``plot``) the plot as an inline PNG."""
        values, best = self.value_table()
        body = [f"<h1>{html.escape(self.title)}</h1>", f"<h2>{html.escape(self.unit)}</h2>",
                _html_table(values, best)]
        diff = self.difference_table()
        if diff is not None:
            body += [f"<h2>Difference to {html.escape(self.baseline or '')} (percentage points, paired 95% CI)</h2>",
                     _html_table(diff, pd.DataFrame(False, index=diff.index, columns=diff.columns))]
        if plot:
            png = base64.b64encode(self.plot_png()).decode("ascii")
            body.append(f'<p><img alt="{html.escape(self.unit)} against shots" src="data:image/png;base64,{png}"></p>')
        body.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in self._legend()) + "</ul>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}"
                f"</title>\n<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")

    def plot_png(self) -> bytes:
        """Accuracy (or error) against shots with 95% CI bars: one panel per dataset, ways and training set, one
        line per method. Rendered with matplotlib's Agg canvas (no display, no global backend change)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        groups = list(dict.fromkeys(self.cells["panel"]))
        ncols = min(len(groups), 3) or 1
        nrows = max(math.ceil(len(groups) / ncols), 1)
        fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows), layout="constrained")
        FigureCanvasAgg(fig)
        for i, panel in enumerate(groups or ["(no records)"]):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            part = self.cells[self.cells["panel"] == panel]
            shots = sorted(set(part["shots"]))
            # Methods side by side around each shot count, so that their CI bars do not hide one another.
            gap = min((b - a for a, b in zip(shots, shots[1:])), default=1)
            present = [row for row in self.rows if (part["row"] == row).any()]
            for j, row in enumerate(self.rows):
                line = part[part["row"] == row].sort_values("shots")
                if line.empty:
                    continue
                dodge = 0.5 * gap * (present.index(row) - (len(present) - 1) / 2) / max(len(present), 1)
                ci = (100 * line["ci95"]).fillna(0)
                ax.errorbar(line["shots"] + dodge, 100 * line["value"], yerr=ci, marker="o", capsize=3, label=row,
                            linestyle="-" if len(line) > 1 else "none", color=f"C{j % 10}")
                if self.references is not None and not self.references.empty:
                    ref = self.references[self.references["row"] == row].merge(
                        line[["column", "shots"]], on="column")
                    if not ref.empty:
                        ax.scatter(ref["shots"] + dodge, 100 * ref["value"], marker="x", s=60, color=f"C{j % 10}",
                                   label=f"{row}: paper", zorder=3)
            ax.set_title(panel, fontsize=9)
            ax.set_xlabel("shots")
            ax.set_ylabel(self.unit)
            if shots:
                ax.set_xticks(shots)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.legend(fontsize=7)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        return buffer.getvalue()

    def write(self, directory: str | Path, stem: str = "leaderboard",
              formats: Sequence[str] = ("md", "csv", "tex", "html", "png")) -> list[Path]:
        """Write the chosen formats (names as :func:`parse_formats` takes them) as ``directory/stem.<ext>``
        (atomically); returns the paths."""
        directory = Path(directory)
        written = []
        for ext in parse_formats(list(formats), option="formats"):
            path = directory / f"{stem}.{ext}"
            if ext == "png":
                atomic_write_bytes(path, self.plot_png())
            else:
                atomic_write_text(path, self.render(ext))
            written.append(path)
        return written

    def render(self, fmt: str) -> str:
        """The table as text in format ``fmt`` (md, csv, latex or tex, html)."""
        ext = parse_formats(fmt, option="format")[0]
        writer = {"md": self.to_markdown, "csv": self.to_csv, "tex": self.to_latex, "html": self.to_html}
        if ext not in writer:
            raise UsageError(f"format {fmt!r} is an image, not text: write it to a file (--out DIR)")
        return writer[ext]()


def build_leaderboard(records: Sequence[RunRecord], *, baseline: str | None = "finetune", metric: str = "accuracy",
                      row: Callable[[RunRecord], str] | None = None,
                      column: Callable[[RunRecord], str] | None = None,
                      row_order: Sequence[str] | None = None, column_order: Sequence[str] | None = None,
                      unpaired: bool = False, title: str = "Leaderboard") -> Leaderboard:
    """A :class:`Leaderboard` of ``records`` (from :func:`fewshot.results.load_records`, say).

    ``row`` labels a record's row (default: its method; ``baseline`` names a row label), ``column`` its setting
    (default :func:`setting_columns`). Within a column all records must share one episode set: a different
    episode hash raises :class:`EpisodeSetMismatch` naming it, unless ``unpaired``, which ranks that column and
    compares it with the baseline as independent samples (marked ``†``). Two records for the same row and column
    on the same episodes are reruns: the newest (by ``created``) is kept.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not records:
        raise ValueError("no run records to build a leaderboard from")
    row = row or (lambda r: r.method)
    column = column or setting_columns(records)
    chosen: dict[tuple[str, str], RunRecord] = {}
    for r in sorted(records, key=lambda r: r.created or ""):
        key = (row(r), column(r))
        previous = chosen.get(key)
        if previous is not None and previous.episode_hash != r.episode_hash:
            raise EpisodeSetMismatch(
                f"{key[0]!r} has two records in {key[1]!r} from different episode sets (episode hashes "
                f"{previous.episode_hash[:12]}{_file(previous)} and {r.episode_hash[:12]}{_file(r)}); keep the "
                f"records of one episode set (for example one results folder per set)")
        chosen[key] = r
    columns = list(column_order) if column_order else sorted({c for _, c in chosen}, key=_natural)
    columns = [c for c in columns if any(k[1] == c for k in chosen)]
    rows_found = {r for r, _ in chosen}
    notes: list[str] = []
    rows_data = []
    sign = -1.0 if metric == "error" else 1.0
    for col in columns:
        members = {r: rec for (r, c), rec in chosen.items() if c == col}
        hashes = {rec.episode_hash for rec in members.values()}
        paired = len(hashes) == 1
        if not paired and not unpaired:
            by_hash: dict[str, list[str]] = {}
            for name, rec in sorted(members.items()):
                by_hash.setdefault(rec.episode_hash, []).append(name + _file(rec))
            detail = "; ".join(f"episode hash {h[:12]}: {', '.join(names)}" for h, names in by_hash.items())
            raise EpisodeSetMismatch(
                f"{col!r} mixes records from different episode sets ({detail}); records from different episode sets "
                f"are never compared as paired. Re-run the odd ones on the same episodes, or pass unpaired=True "
                f"(--unpaired) to compare them as independent samples")
        if not paired:
            notes.append(f"{col}: methods were scored on different episode sets; its ranks and differences (†) "
                         f"treat them as independent samples (unpaired 95% CI).")
        ranks = tied_ranks({name: rec.accuracies for name, rec in members.items()}, paired=paired)
        base = members.get(baseline) if baseline else None
        for name, rec in members.items():
            s = mean_ci(rec.accuracies)
            diff = None
            same = base is not None and base.episode_hash == rec.episode_hash
            if base is not None and name != baseline:
                diff = paired_comparison(rec, base) if same else unpaired_difference(rec.accuracies, base.accuracies)
            rows_data.append({
                "row": name, "column": col, "method": rec.method, "dataset": rec.dataset,
                "train_dataset": train_dataset(rec), "split": rec.split, "ways": rec.ways, "shots": rec.shots,
                "queries": rec.queries, "episodes": len(rec.accuracies), "episode_seed": rec.episode_seed,
                "episode_hash": rec.episode_hash, "metric": metric,
                "value": (1.0 - s.mean) if metric == "error" else s.mean, "ci95": s.ci95, "n": s.n,
                "rank": ranks[name],
                "diff": None if diff is None else sign * diff.mean, "diff_ci95": None if diff is None else diff.ci95,
                "diff_paired": bool(same) if diff is not None else None,
                "train_seconds": rec.train_seconds, "eval_seconds": rec.eval_seconds,
                "train_key": rec.train.checkpoint or f"{name}|{col}",
                "panel": _panel(rec), "created": rec.created,
                "warnings": "; ".join(record_warnings(rec)),
            })
    cells = pd.DataFrame(rows_data)
    avg = {r: float(g["rank"].mean()) for r, g in cells.groupby("row")}
    if row_order:
        rows = [r for r in row_order if r in rows_found] + sorted(rows_found - set(row_order))
    else:
        rows = sorted(rows_found, key=lambda r: (avg[r], r))
    if baseline and baseline not in rows_found:
        notes.append(f"No `{baseline}` records: no differences to the baseline.")
    return Leaderboard(cells, rows, columns, baseline, metric, title, notes)


def _file(r: RunRecord) -> str:
    """`` (file name)`` of a record read from a file, for error messages."""
    return f" ({r.source})" if r.source else ""


def _panel(r: RunRecord) -> str:
    trained = train_dataset(r)
    shape = r.shape if r.config.protocol else f"{r.ways}-way"
    return f"{r.dataset} {shape}" + (f" (trained on {trained})" if trained != r.dataset else "")


def _natural(label: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", label)]


def _ci(ci95: float) -> str:
    return "n/a" if ci95 is None or not math.isfinite(ci95) else f"{100 * ci95:.2f}"


def _pct(value: float, ci95: float) -> str:
    return f"{100 * value:.2f} ± {_ci(ci95)}"


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}"
        "th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3}li{margin:.3em 0}")


def _html_table(values: pd.DataFrame, best: pd.DataFrame) -> str:
    head = "<tr><th>method</th>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in values.columns) + "</tr>"
    body = []
    for row in values.index:
        cells = "".join(
            f"<td>{'<strong>' if best.loc[row, c] else ''}{html.escape(str(values.loc[row, c]))}"
            f"{'</strong>' if best.loc[row, c] else ''}</td>" for c in values.columns)
        body.append(f"<tr><td>{html.escape(str(row))}</td>{cells}</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _latex_escape(text: str) -> str:
    text = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("†", r"$^\dagger$")


def _latex_tabular(values: pd.DataFrame, best: pd.DataFrame) -> str:
    lines = [r"\begin{tabular}{l" + "r" * len(values.columns) + "}", r"\hline",
             " & ".join(["Method"] + [_latex_escape(c) for c in values.columns]) + r" \\", r"\hline"]
    for row in values.index:
        cells = [(r"\textbf{%s}" if best.loc[row, c] else "%s") % _latex_escape(values.loc[row, c])
                 for c in values.columns]
        lines.append(" & ".join([_latex_escape(row)] + cells) + r" \\")
    return "\n".join(lines + [r"\hline", r"\end{tabular}"])


# --------------------------------------------------------------------------------------------------------------
# README sections regenerated between markers

BEGIN = "<!-- results:begin spec={name} -->"
END = "<!-- results:end -->"


def update_readme_section(path: str | Path, name: str, content: str, command: str = "") -> bool:
    """Replace what lies between ``<!-- results:begin spec=NAME -->`` and the next ``<!-- results:end -->`` in the
    file at ``path`` with ``content`` (and a note saying which command generated it). Returns whether the file
    changed. Raises :class:`DataError` (a ``ValueError``) when the file is missing or the section's markers are
    missing, repeated or unterminated."""
    path = Path(path)
    text, start, stop = _section(path, name)
    new = text[:start] + readme_section(content, command) + text[stop:]
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


def readme_section(content: str, command: str = "") -> str:
    """What :func:`update_readme_section` puts between the markers: a note naming the command, then ``content``."""
    note = (f"<!-- generated by `{command}`; do not edit by hand -->\n" if command else
            "<!-- generated from run records; do not edit by hand -->\n")
    return "\n" + note + content.strip() + "\n"


def check_readme_section(path: str | Path, name: str) -> None:
    """Raise :class:`DataError` unless ``path`` has exactly one section ``name`` (checked before any work)."""
    _section(Path(path), name)


def _section(path: Path, name: str) -> tuple[str, int, int]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(f"{path}: cannot read the file whose section to regenerate (--readme): "
                        f"{error.strerror or error}") from None
    begin = BEGIN.format(name=name)
    count = text.count(begin)
    if count != 1:
        raise DataError(f"{path}: expected one line {begin!r} (followed later by {END!r}) marking where the "
                        f"section goes, found {count}")
    start = text.index(begin) + len(begin)
    stop = text.find(END, start)
    if stop < 0:
        raise DataError(f"{path}: section {name!r} has no closing {END!r}")
    return text, start, stop


# --------------------------------------------------------------------------------------------------------------
# Summary rows for the command (one row per record, as the default benchmark prints)


def summary_table(records: Sequence[RunRecord], baseline: str | None = "finetune") -> pd.DataFrame:
    """One row per record: accuracy +- 95% CI (marked ``(!)`` when the record has warnings), the paired difference
    to ``baseline`` on the same episodes, times."""
    rows = []
    by_setting = {(r.dataset, r.split, r.ways, r.shots, r.queries, r.episode_hash, r.method): r for r in records}
    for r in records:
        s, warned = r.summary, record_warnings(r)
        ref = by_setting.get((r.dataset, r.split, r.ways, r.shots, r.queries, r.episode_hash, baseline))
        diff = "" if ref is None or ref is r else _fmt_signed(paired_comparison(r, ref))
        learned = r.config.train_dataset
        rows.append({
            "method": r.method,
            # "source -> target" for a cell that learned elsewhere than it is tested (a cross-domain cell)
            "dataset": f"{learned} -> {r.dataset}" if r.config.cross_domain else r.dataset,
            # drawn per episode under a variable protocol (Meta-Dataset's)
            **({"ways": r.ways, "shots": r.shots} if not r.config.protocol else
               {"ways": r.config.protocol.get("protocol", "variable"), "shots": "variable"}),
            "accuracy (%)": f"{100 * s.mean:.2f} ± {100 * s.ci95:.2f}" + (MARK if warned else ""),
            f"vs {baseline} (%)" if baseline else "vs baseline": diff,
            "train (s)": round(r.train_seconds, 1), "eval (s)": round(r.eval_seconds, 1),
        })
    return pd.DataFrame(rows)


def summary_markdown(records: Sequence[RunRecord], baseline: str | None = "finetune") -> str:
    """:func:`summary_table` as Markdown, followed by the ``(!)`` footnotes of the records that have warnings."""
    notes = footnotes((f"{r.method} {r.setting}", record_warnings(r)) for r in records)
    text = summary_table(records, baseline).to_markdown(index=False)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def _fmt_signed(d) -> str:
    return f"{100 * d.mean:+.2f} ± {100 * d.ci95:.2f}"


# --------------------------------------------------------------------------------------------------------------
# The `leaderboard` sub-command
