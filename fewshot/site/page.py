"""HTML of the results page (:mod:`fewshot.site.collect`): sections, sortable tables, provenance, plots, curves.

Sortable cells carry their sort key in ``data-sort``; tables carry ``data-rows`` and ``data-records`` and the body
``data-tables`` and ``data-plots``, which the page's ``#selftest`` mode checks against what the browser rendered.
"""
from __future__ import annotations

import json
import math
import re
from html import escape
from pathlib import PurePosixPath
from typing import Sequence

from fewshot.site.collect import (Folder, Row, StoredRecord, baseline_of, curve, difference, score,
                                  watch_curve)
from fewshot.site.assets import CSS, SCRIPT
from fewshot.evaluate.stats import is_significant
from fewshot.site.svg import Series, bar_plot, dot_plot, line_plot


def _id(*parts: str) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def _num(x: float | None, digits: int = 2, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _td(text: str, sort: str | float | None = None, cls: str = "", raw: bool = False) -> str:
    key = _num(sort, 6) if isinstance(sort, (int, float)) and not isinstance(sort, bool) else (sort or "")
    return (f'<td{f" class={chr(34)}{cls}{chr(34)}" if cls else ""} data-sort="{escape(key)}">'
            f'{text if raw else escape(text)}</td>')


def _table(table_id: str, headers: Sequence[tuple[str, str]], rows: Sequence[tuple[str, str]], records: int) -> str:
    """``headers``: (text, type) with type ``num``, ``text`` or ``""`` (not sortable); ``rows``: (class, cells)."""
    head = "".join(f'<th class="sortable" data-type="{t}" title="click to sort">{escape(h)}</th>' if t else
                   f"<th>{escape(h)}</th>" for h, t in headers)
    body = "".join(f'<tr class="{cls}">{cells}</tr>' for cls, cells in rows)
    return (f'<table class="results" id="{table_id}" data-rows="{len(rows)}" data-records="{records}">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


# --------------------------------------------------------------------------------------------------------------
# Provenance


def _dl(items: Sequence[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f'<dt>{escape(k)}</dt><dd class="{_id(k)}">{escape(v)}</dd>' for k, v in items) + "</dl>"


def _pairs(mapping: dict) -> str:
    return ", ".join(f"{k} {json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
                     for k, v in mapping.items())


def provenance_items(stored: StoredRecord) -> list[tuple[str, str]]:
    """What made a record's number: schedule, training, episodes, hardware, software, time, commit, command."""
    r, rep = stored.record, stored.reproduce
    config, train, env = r.config or {}, r.train or {}, r.environment or {}
    schedule = dict(config.get("train") or {})
    shortened = (rep.get("overrides") or {}).get("train_steps")
    items = [("record", stored.path), ("method", r.method)]
    backbone = config.get("backbone") or {}
    if backbone:
        items.append(("backbone", _pairs(backbone)))
    if config.get("config"):
        items.append(("method options", _pairs(config["config"])))
    if schedule:
        note = f" (the spec's schedule: {shortened['spec']} steps; shortened)" if shortened else ""
        items.append(("schedule", _pairs(schedule) + note))
    else:
        items.append(("schedule", "none: the method learns nothing from the base classes"))
    checkpoint = train.get("checkpoint")
    loss = train.get("final_loss")
    items.append(("training", f"{train.get('steps', 0)} steps on {config.get('train_dataset') or r.dataset}/"
                              f"{config.get('train_split') or 'train'}, seed {train.get('seed', '?')}"
                              + (f", checkpoint {PurePosixPath(str(checkpoint)).name} "
                                 f"({'loaded' if train.get('loaded') else 'trained in this run'})" if checkpoint
                                 else "")
                              + (f", final loss {loss:.4g}" if isinstance(loss, (int, float)) else "")))
    fixed = config.get("fixed_episodes")
    seed = "a fixed episode set" + (f" ({fixed})" if fixed else "") if r.episode_seed is None and not fixed else (
        f"the fixed episode set {fixed}" if fixed else f"seed {r.episode_seed}")
    shape = r.shape if r.config.protocol else f"{r.ways}-way {r.shots}-shot, {r.queries} queries per class"
    items.append(("test episodes", f"{len(r.accuracies)} episodes of {shape}, from {r.dataset}/{r.split}, {seed}"))
    items.append(("episode hash", r.episode_hash))
    what = env.get("gpu") or f"{env.get('cpu') or 'cpu'}, {env.get('threads', '?')} threads"
    items.append(("hardware", f"{env.get('device', '?')} ({what})"))
    items.append(("environment", ", ".join(f"{k} {env[k]}" for k in ("fewshot", "torch", "numpy", "python",
                                                                      "platform") if k in env)))
    items.append(("time", f"training {r.train_seconds:.1f} s, evaluation {r.eval_seconds:.1f} s, "
                          f"recorded {r.created or 'unknown'}"))
    items.append(("commit", str(env.get("git_revision") or "unknown")))
    if rep.get("command"):
        items.append(("command", rep["command"]))
    items.append(("learning curve", "drawn under Learning curves" if curve(r) else "no curve stored"))
    return items


def provenance(stored: StoredRecord, href: str) -> str:
    """A ``<details>`` with the record's provenance and the record itself (without its per-episode accuracies)."""
    data = {k: v for k, v in stored.record.to_json().items() if k != "accuracies"}
    return (f'<details class="provenance"><summary>record</summary>{_dl(provenance_items(stored))}'
            f'<p><a href="{escape(href)}">{escape(stored.path)}</a></p><details><summary>full record (without '
            f'the per-episode accuracies)</summary><pre>{escape(json.dumps(data, indent=1, sort_keys=True))}</pre>'
            f"</details></details>")


# --------------------------------------------------------------------------------------------------------------
# A folder's section


def _result_table(folder: Folder, rows: list[Row], link_base: str) -> str:
    unit = "error (%)" if folder.metric == "error" else "accuracy (%)"
    has_paper = folder.spec is not None
    headers = [("setting", "num"), ("row", "text")]
    headers += [("paper row", "text"), (f"paper {unit}", "num")] if has_paper else []
    headers += [(f"ours {unit}", "num")] + ([("gap (ours − paper)", "num")] if has_paper else [])
    headers += [(f"vs {folder.baseline} (pp)", "num")] if folder.baseline else []
    headers += [("episodes", "num"), ("train steps", "num"), ("train (s)", "num"), ("provenance", "")]
    out = []
    for row in rows:
        cells = [_td(row.setting, row.order), _td(row.label, row.label)]
        if has_paper:
            cells += [_td(row.paper_row or "—", row.paper_row or ""), _td(_num(row.paper) or "—", row.paper)]
        if row.stored is None:
            cells += [_td("—")] * (len(headers) - len(cells) - 1) + [_td("paper only")]
            out.append(("paper", "".join(cells)))
            continue
        r = row.stored.record
        s = score(r, folder.metric)
        ci = "n/a" if not math.isfinite(s.ci95) else f"{s.ci95:.2f}"
        cells.append(_td(f"{s.mean:.2f} ± {ci}", s.mean, "ours"))
        if has_paper:
            gap = None if row.paper is None else s.mean - row.paper
            cells.append(_td(_num(gap, signed=True) or "—", gap))
        if folder.baseline:
            base = baseline_of(row, rows, folder.baseline)
            if base is None:
                cells.append(_td("—"))
            else:
                d, paired = difference(r, base, folder.metric)
                text = f"{d.mean:+.2f} ± {_num(d.ci95) or 'n/a'}" + (" *" if is_significant(d) else "") + (
                    "" if paired else " †")
                cells.append(_td(text, d.mean))
        steps = (r.train or {}).get("steps", 0)
        cells += [_td(str(len(r.accuracies)), len(r.accuracies)), _td(str(steps), steps),
                  _td(f"{r.train_seconds:.0f}", r.train_seconds),
                  _td(provenance(row.stored, f"{link_base}/{row.stored.path}"), raw=True)]
        out.append(("rec", "".join(cells)))
    return _table(_id("table", folder.name), headers, out, sum(1 for r in rows if r.stored))


def _plot(folder: Folder, rows: list[Row]) -> str:
    settings = list(dict.fromkeys(r.setting for r in sorted(rows, key=lambda r: r.order)))
    labels = list(dict.fromkeys(r.label for r in rows))
    series = []
    for label in labels:
        mine = [r for r in rows if r.label == label]
        points = {}
        for r in sorted((r for r in mine if r.stored), key=lambda r: r.stored.record.created):
            s = score(r.stored.record, folder.metric)   # reruns: the newest record is drawn
            points[r.setting] = (s.mean, s.ci95)
        series.append(Series(label, points, {r.setting: r.paper for r in mine if r.paper is not None}))
    unit = "error (%)" if folder.metric == "error" else "accuracy (%)"
    return dot_plot(settings, series, ylabel=unit, title=f"{folder.title}: {unit} ± 95% CI; crosses: the paper")


def _curves(folder: Folder, rows: list[Row]) -> str:
    figures, without = [], []
    for row in rows:
        if row.stored is None:
            continue
        points = curve(row.stored.record)
        name = f"{row.label} in {row.setting}"
        if not points:
            without.append(name)
            continue
        plots = [line_plot([("loss", [(p["step"], float(p["loss"])) for p in points])], xlabel="step",
                           ylabel="training loss", title=f"{name}: training loss")]
        acc = [(p["step"], float(p["accuracy"])) for p in points if isinstance(p.get("accuracy"), (int, float))]
        if acc:
            plots.append(line_plot([("accuracy", acc)], xlabel="step", ylabel="accuracy",
                                   title=f"{name}: accuracy"))
        held = watch_curve(row.stored.record)
        if held:
            plots.append(line_plot([("validation accuracy", held)], xlabel="step", ylabel="accuracy",
                                   title=f"{name}: held-out accuracy during training"))
        figures.append(f'<figure class="curve">{"".join(plots)}<figcaption>{escape(name)} '
                       f'({escape(row.stored.path)})</figcaption></figure>')
    note = (f'<p class="nocurve">No curve stored for {len(without)} of {len(without) + len(figures)} records '
            f'(a record carries one in <code>train["curve"]</code>): {escape("; ".join(without))}.</p>'
            if without else "")
    return "<h3>Learning curves</h3>" + "".join(figures) + note


def _benchmark(folder: Folder, path: str, data: dict, link_base: str) -> str:
    """A result file that is not a run record: a throughput benchmark's table and bar chart, or the file.

    A throughput file has ``{"throughput": {"unit": ..., "groups": {group: {"median": {variant: rate}, "rounds":
    {variant: [rates]}, "other_cpu_percent": p}}}}`` (``benchmarks/perf/timing.py`` writes the group part)."""
    title = f"{data.get('benchmark', PurePosixPath(path).stem)} ({path})"
    throughput = data.get("throughput") or {}
    groups, unit = throughput.get("groups") or {}, str(throughput.get("unit", "per s"))
    where = _dl([("file", path), ("settings", _pairs(data.get("settings") or {})),
                 ("environment", _pairs(data.get("environment") or {})),
                 ("time", f"recorded {data.get('created', 'unknown')}"),
                 ("commit", str((data.get("environment") or {}).get("git_revision") or "unknown"))])
    if not groups:
        return (f"<h3>{escape(title)}</h3><details><summary>file</summary>"
                f"<pre>{escape(json.dumps(data, indent=1, sort_keys=True))}</pre></details>")
    provenance = _td(f'<details class="provenance"><summary>record</summary>{where}<p><a href="'
                     f'{escape(link_base + "/" + path)}">{escape(path)}</a></p></details>', raw=True)
    body, labels, values = [], [], []
    for group, timing in groups.items():
        median, rounds = timing.get("median") or {}, timing.get("rounds") or {}
        other = timing.get("other_cpu_percent")
        for name, rate in median.items():
            body.append(("rec", _td(group, group) + _td(name, name) + _td(f"{rate:.2f}", rate) +
                         _td(", ".join(f"{v:.2f}" for v in rounds.get(name, [])), len(rounds.get(name, []))) +
                         _td("" if other is None else f"{other:.0f}%", other or 0) + provenance))
            labels.append(f"{group}: {name}")
            values.append(float(rate))
    table = _table(_id("table", folder.name, PurePosixPath(path).stem),
                   [("group", "text"), ("implementation", "text"), (f"{unit} (median)", "num"), ("rounds", "num"),
                    ("other processes' CPU", "num"), ("provenance", "")], body, len(body))
    plot = bar_plot(labels, values, ylabel=f"{unit} (median)", title=title)
    return f"<h3>{escape(title)}</h3>{table}<div class=\"plots\">{plot}</div>"


def _count(folder: Folder) -> str:
    parts = [f"{len(folder.records)} record{'s' * (len(folder.records) != 1)}"] if folder.records else []
    if folder.others:
        parts.append(f"{len(folder.others)} other result file{'s' * (len(folder.others) != 1)}")
    return ", ".join(parts)


def section(folder: Folder, link_base: str) -> str:
    """A folder's ``<section>``: heading, source, table, plot, learning curves and links."""
    parts = [f'<section id="{_id(folder.name)}"><h2>{escape(folder.title)}</h2>',
             f'<p class="folder">results/{escape(folder.name)}/ — {_count(folder)}</p>']
    spec = folder.spec
    if spec is not None:
        src = spec.source
        link = f' (<a href="{escape(src.url)}">{escape(src.url)}</a>)' if src.url else ""
        parts.append(f"<p>Source: {escape(src.paper)}, {escape(src.table)}{link}.</p>")
        if src.checked:
            parts.append(f'<p class="checked">Paper\'s numbers checked: {escape(src.checked)}</p>')
    if folder.spec_note:
        parts.append(f'<p class="note">{escape(folder.spec_note)}</p>')
    shortened: dict[str, tuple[set, set]] = {}
    for stored in folder.records:
        steps = (stored.reproduce.get("overrides") or {}).get("train_steps")
        if steps:
            row = stored.reproduce.get("row") or stored.record.method
            used, spec_steps = shortened.setdefault(row, (set(), set()))
            used.add(int(steps["used"]))
            spec_steps.add(str(steps["spec"] or "the preset's"))
    if shortened:
        text = "; ".join(f"{row} {', '.join(map(str, sorted(used)))} instead of {', '.join(sorted(s))}"
                         for row, (used, s) in sorted(shortened.items()))
        parts.append(f'<p class="warn"><strong>Shortened runs, not the paper\'s schedule:</strong> training steps '
                     f'{escape(text)}. Compare with the paper only as a sanity check.</p>')
    if folder.records:
        rows = folder.rows()
        parts += [_result_table(folder, rows, link_base), f'<div class="plots">{_plot(folder, rows)}</div>',
                  _curves(folder, rows)]
    for path, data in folder.others:
        parts.append(_benchmark(folder, path, data, link_base))
    if spec is not None and spec.notes:
        parts.append("<details><summary>protocol notes</summary><ul>" +
                     "".join(f"<li>{escape(n)}</li>" for n in spec.notes) + "</ul></details>")
    if folder.files:
        parts.append("<p>Files: " + ", ".join(f'<a href="{escape(link_base + "/" + f)}">{escape(f)}</a>'
                                              for f in folder.files) + "</p>")
    return "".join(parts) + "</section>"


def render_page(folders: Sequence[Folder], link_base: str = ".") -> str:
    """The whole page: a contents list and one section per folder; a pure function of ``folders``."""
    sections = [section(f, link_base) for f in folders]
    text = "".join(sections)
    tables, plots = text.count('<table class="results"'), text.count('<svg class="plot"')
    records = sum(len(f.records) for f in folders)
    contents = "".join(f'<li><a href="#{_id(f.name)}">{escape(f.title)}</a> ({_count(f)})</li>' for f in folders)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>fewshot results</title>"
            f"<style>{CSS}</style></head>\n<body data-tables=\"{tables}\" data-plots=\"{plots}\">"
            "<h1>fewshot results</h1><p>Generated by <code>python -m fewshot.bench site</code> from the "
            f"{records} run records under <code>results/</code> and the paper numbers of the specs in "
            "<code>benchmarks/</code>; regenerate it after adding records. Click a column header to sort; open "
            "<em>record</em> in a row for its provenance. Differences to the baseline are paired over the same "
            "episodes (95% CI; * excludes 0; † compares different episode sets as independent samples).</p>"
            f"<nav><ul>{contents}</ul></nav>\n" + "\n".join(sections) +
            f"\n<script>{SCRIPT}</script>\n</body></html>\n")
