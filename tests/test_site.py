"""The results page: built from the records alone, deterministic, checked in a real headless browser."""
from __future__ import annotations

import json
import math

import re
import shutil
import struct
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from fewshot.cli import main as cli_main
from fewshot.reproduce.specs import load_spec
from fewshot.results.records import RunRecord, is_record_json, load_record, save_record
from fewshot.site import build_site
from fewshot.evaluate.stats import mean_ci
from fewshot.site.svg import Series, dot_plot, line_plot, nice_ticks

ROOT = Path(__file__).resolve().parents[1]
RESULTS, BENCHMARKS = ROOT / "results", ROOT / "benchmarks"


class _Tables(HTMLParser):
    """The result tables of a page: per table id, its attributes and rows; per row its class, each cell's
    ``data-sort`` and text, and the provenance fields (``dd`` class -> text) it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = self._row = self._cell = self._dd = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "results" in (a.get("class") or ""):
            self._table = self.tables[a["id"]] = {"attrs": a, "rows": []}
        elif self._table is not None and tag == "tr" and a.get("class"):
            self._row = {"class": a["class"], "cells": [], "dd": {}}
            self._table["rows"].append(self._row)
        elif self._row is not None and tag == "td" and self._cell is None:
            self._cell = {"sort": a.get("data-sort"), "text": "", "class": a.get("class")}
            self._row["cells"].append(self._cell)
            self._depth = 0
        elif self._cell is not None and tag == "td":
            self._depth += 1
        elif self._row is not None and tag == "dd":
            self._dd = a.get("class")
            self._row["dd"][self._dd] = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            if self._depth:
                self._depth -= 1
            else:
                self._cell = None
        elif tag == "dd":
            self._dd = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._dd is not None and self._row is not None:
            self._row["dd"][self._dd] += data


def tables_of(page: str) -> dict[str, dict]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def records_by_path(results: Path) -> dict[str, RunRecord]:
    """Every run record under ``results`` by its path relative to it, read independently of the page code."""
    out = {}
    for path in sorted(results.rglob("*.json")):
        if is_record_json(json.loads(path.read_text(encoding="utf-8"))):
            out[path.relative_to(results).as_posix()] = load_record(path)
    return out


def synthetic_record(method: str, seed: int, curve: list | None = None) -> RunRecord:
    rng = np.random.default_rng(seed)
    train = {"checkpoint": f"/somewhere/{method}-0123.pt", "loaded": False, "steps": 40, "seed": 3,
             "final_loss": 0.5}
    if curve is not None:
        train["curve"] = curve
    return RunRecord(
        method=method, dataset="synthetic", split="test", ways=5, shots=1, queries=15, episodes=30, episode_seed=0,
        episode_hash="ab" * 32, accuracies=[float(x) for x in rng.uniform(0.4, 1.0, 30)], train_seconds=12.0,
        eval_seconds=1.5, config={"method": method, "train": {"steps": 40, "lr": 0.001}, "train_dataset": "synthetic"},
        train=train, environment={"device": "cpu", "cpu": "x86_64", "threads": 1, "torch": "2.x",
                                  "git_revision": f"c0ffee{seed:034d}"},
        created=f"2026-01-0{seed}T00:00:00+00:00")


CURVE = [{"step": 10 * i, "loss": 2.0 / (i + 1), "accuracy": 0.2 + 0.15 * i} for i in range(5)]


@pytest.fixture(scope="module")
def page() -> str:
    return build_site(RESULTS, benchmarks=BENCHMARKS)


@pytest.fixture
def curve_results(tmp_path: Path) -> Path:
    """A results folder with one synthetic run carrying a learning curve and a baseline run without one."""
    save_record(synthetic_record("protonet", 1, CURVE), tmp_path / "results" / "curves")
    save_record(synthetic_record("finetune", 2), tmp_path / "results" / "curves")
    return tmp_path / "results"


# --------------------------------------------------------------------------------------------------------------
# The committed page, and determinism


def test_committed_page_equals_a_regeneration(page):
    assert (RESULTS / "index.html").read_text(encoding="utf-8") == page, \
        "results/index.html is stale: run `python -m fewshot.bench site` and commit it"
    assert cli_main(["site", "--results", str(RESULTS), "--check"]) == 0


def test_same_records_give_byte_identical_html_anywhere(tmp_path, page):
    copy = tmp_path / "elsewhere" / "results"
    shutil.copytree(RESULTS, copy)
    shutil.copytree(BENCHMARKS, copy.parent / "benchmarks")
    (copy / "index.html").unlink()
    again = build_site(copy)
    assert again.encode() == page.encode() == build_site(RESULTS, benchmarks=BENCHMARKS).encode()
    assert str(ROOT) not in page and str(tmp_path) not in again


def test_check_fails_on_a_stale_page_and_write_fixes_it(curve_results, capsys):
    out = curve_results / "index.html"
    assert cli_main(["site", "--results", str(curve_results), "--check"]) == 1
    assert capsys.readouterr().err == (f"error: {out} is missing; run `python -m fewshot.bench site --results "
                                       f"{curve_results}` and commit it\n")
    assert cli_main(["site", "--results", str(curve_results)]) == 0
    assert out.read_text(encoding="utf-8") == build_site(curve_results)
    assert cli_main(["site", "--results", str(curve_results), "--check"]) == 0
    save_record(synthetic_record("maml", 3), curve_results / "curves")
    capsys.readouterr()
    assert cli_main(["site", "--results", str(curve_results), "--check"]) == 1
    assert "differs from a regeneration from the records" in capsys.readouterr().err


def test_user_errors_are_one_line_naming_the_option_or_file(tmp_path, capsys):
    assert cli_main(["site", "--results", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == (f"error: --results {tmp_path / 'none'}: no such folder; pass the folder "
                                       f"that holds the result folders (default: results)\n")
    bad = tmp_path / "results" / "run" / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert cli_main(["site", "--results", str(tmp_path / "results")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: not a readable JSON result (") and err.endswith(
        "); fix or remove the file\n")


# --------------------------------------------------------------------------------------------------------------
# What the tables show


def test_every_folder_has_a_table_with_one_row_per_record(page):
    tables = tables_of(page)
    records = records_by_path(RESULTS)
    folders = {p.split("/")[0] for p in records}
    assert {"default-run", "finn2017-omniglot", "lake2015-omniglot-runs", "snell2017-omniglot"} <= folders
    assert folders == {p.name for p in RESULTS.iterdir() if p.is_dir() and any(p.rglob("*.json")) and p.name != "perf"}
    for folder in folders:
        table = tables[f"table-{folder}"]
        count = sum(1 for p in records if p.startswith(folder + "/"))
        rows = [r for r in table["rows"] if r["class"] == "rec"]
        assert len(rows) == count == int(table["attrs"]["data-records"])
        assert len(table["rows"]) == int(table["attrs"]["data-rows"])
        assert sorted(r["dd"]["record"] for r in rows) == sorted(p for p in records if p.startswith(folder + "/"))
    assert [(r["cells"][0]["text"], r["cells"][1]["text"]) for r in tables["table-perf-maml-throughput"]["rows"]] == [
        (m, i) for m in ("maml", "fomaml", "anil") for i in ("suite", "one vmap", "loop")]
    assert [r["cells"][0]["text"] for r in tables["table-perf-train-throughput"]["rows"]] == [
        "protonet", "protonet", "supervised", "supervised"]


def test_paper_rows_come_from_the_spec(page):
    tables = tables_of(page)
    for name in ("lake2015-omniglot-runs", "snell2017-omniglot", "finn2017-omniglot"):
        spec = load_spec(BENCHMARKS / f"{name}.toml")
        table = tables[f"table-{name}"]
        reproduced = {(m.paper_row, s.id) for m in spec.methods if m.paper_row for s in spec.settings
                      if any(r["dd"].get("record", "").split("/")[-1].startswith(f"{s.id}__") and
                             r["cells"][1]["text"] == m.title for r in table["rows"] if r["class"] == "rec")}
        alone = [(p.label, s.id) for s in spec.settings for p in spec.paper
                 if s.id in p.values and (p.label, s.id) not in reproduced]
        assert sum(1 for r in table["rows"] if r["class"] == "paper") == len(alone)
        by_label = {s.title: s.id for s in spec.settings}
        for row in table["rows"]:
            paper_row, paper = row["cells"][2]["text"], row["cells"][3]["text"]
            expected = spec.paper_value(paper_row, by_label[row["cells"][0]["text"]]) if paper_row != "—" else None
            assert paper == ("—" if expected is None else f"{expected:.2f}")


def test_cells_show_mean_and_ci_of_stats_and_the_paired_difference(page):
    tables = tables_of(page)
    records = records_by_path(RESULTS)
    seen = 0
    for table_id, table in tables.items():
        metric = "error" if table_id == "table-lake2015-omniglot-runs" else "accuracy"
        for row in table["rows"]:
            if row["class"] != "rec" or "record" not in row["dd"]:
                continue
            s = mean_ci(records[row["dd"]["record"]].accuracies)
            mean = 100 * (1 - s.mean if metric == "error" else s.mean)
            ours = next(c for c in row["cells"] if c["class"] == "ours")
            ci = f"{100 * s.ci95:.2f}" if math.isfinite(s.ci95) else "n/a"    # one-episode fixed sets
            assert ours["text"] == f"{mean:.2f} ± {ci}"
            assert float(ours["sort"]) == pytest.approx(mean, abs=1e-6)
            seen += 1
    assert seen == len(records)
    # The same numbers as the tables `reproduce` wrote (results/snell2017-omniglot/table.md, lake2015's table.md).
    snell = {(r["cells"][0]["text"], r["cells"][1]["text"]): r for r in tables["table-snell2017-omniglot"]["rows"]}
    assert snell["5-way 1-shot", "ProtoNet"]["cells"][4]["text"] == "97.21 ± 0.24"
    assert snell["5-way 1-shot", "ProtoNet"]["cells"][5]["text"] == "-1.59"
    assert snell["5-way 1-shot", "ProtoNet"]["cells"][6]["text"] == "+0.11 ± 0.23"   # a CI that holds 0: no star
    assert snell["20-way 5-shot", "ProtoNet"]["cells"][6]["text"] == "-2.51 ± 0.09 *"
    lake = {(r["cells"][0]["text"], r["cells"][1]["text"]): r for r in tables["table-lake2015-omniglot-runs"]["rows"]}
    mhd = lake["background set (30 alphabets)", "MHD"]["cells"]
    assert (mhd[3]["text"], mhd[4]["text"], mhd[5]["text"]) == ("38.80", "38.75 ± 7.62", "-0.05")
    assert mhd[6]["text"].endswith(" †")   # MHD's episodes (105x105 pixels) differ from the baseline's: unpaired


def test_provenance_names_commit_steps_seed_hash_and_hardware(page):
    records = records_by_path(RESULTS)
    rows = [r for t in tables_of(page).values() for r in t["rows"] if "record" in r["dd"]]
    assert len(rows) == len(records)
    for row in rows:
        r = records[row["dd"]["record"]]
        dd = row["dd"]
        assert dd["commit"] == r.environment["git_revision"]
        assert dd["training"].startswith(f"{r.train['steps']} steps on ")
        assert f"seed {r.train['seed']}" in dd["training"]
        if r.config.get("train"):
            assert dd["schedule"].startswith(f"steps {r.config['train']['steps']}, ")
        assert dd["episode-hash"] == r.episode_hash
        shape = "meta-dataset episodes" if r.config.protocol else f"{r.ways}-way {r.shots}-shot"
        assert f"{len(r.accuracies)} episodes of {shape}" in dd["test-episodes"]
        assert dd["hardware"] == f"cpu (x86_64, {r.environment['threads']} threads)"
        assert dd["time"].endswith(f"recorded {r.created}")
        # Records made since training stores its loss curve have one drawn; older ones say there is none.
        assert dd["learning-curve"] == ("drawn under Learning curves" if r.train.get("curve") else "no curve stored")


def test_learning_curve_drawn_from_a_record_that_carries_one(curve_results):
    page = build_site(curve_results)
    figures = re.findall(r'<figure class="curve">(.*?)</figure>', page)
    assert len(figures) == 1 and "protonet in synthetic 5-way 1-shot" in figures[0]
    loss, accuracy = re.findall(r'<svg class="plot" data-marks="1".*?</svg>', figures[0])
    for svg, values in ((loss, [p["loss"] for p in CURVE]), (accuracy, [p["accuracy"] for p in CURVE])):
        points = [tuple(map(float, xy.split(","))) for xy in
                  re.search(r'<polyline class="mark" points="([^"]+)"', svg).group(1).split()]
        assert len(points) == len(CURVE)
        assert [x for x, _ in points] == sorted(x for x, _ in points) and len({x for x, _ in points}) == 5
        # SVG y grows downwards: the larger the value, the smaller y.
        assert np.argsort([-y for _, y in points]).tolist() == np.argsort(values).tolist()
    rows = {r["cells"][1]["text"]: r for r in tables_of(page)["table-curves"]["rows"]}
    assert rows["protonet"]["dd"]["learning-curve"] == "drawn under Learning curves"
    assert rows["finetune"]["dd"]["learning-curve"] == "no curve stored"
    assert "No curve stored for 1 of 2 records" in page


def test_the_held_out_curve_of_a_watched_training_is_drawn(tmp_path):
    record = synthetic_record("protonet", 1, CURVE)
    held = [{"step": 8, "accuracy": 0.3}, {"step": 16, "accuracy": 0.5}, {"step": 20, "accuracy": 0.45}]
    record.train = {**record.train.to_json(), "watch": {"split": "val", "episodes": 50, "points": held}}
    save_record(record, tmp_path / "results" / "watched")
    page = build_site(tmp_path / "results")
    [figure] = re.findall(r'<figure class="curve">(.*?)</figure>', page)
    svgs = re.findall(r'<svg class="plot" data-marks="1".*?</svg>', figure)
    assert len(svgs) == 3 and "held-out accuracy during training" in svgs[2]
    points = [tuple(map(float, xy.split(","))) for xy in
              re.search(r'<polyline class="mark" points="([^"]+)"', svgs[2]).group(1).split()]
    assert len(points) == 3 and np.argsort([-y for _, y in points]).tolist() == [0, 2, 1]


def test_svg_ticks_and_marks():
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(38.2, 41.9) == [38.0, 39.0, 40.0, 41.0, 42.0]
    svg = dot_plot(["a", "b"], [Series("x", {"a": (50.0, 2.0), "b": (60.0, None)}, {"a": 55.0}),
                                Series("paper only", {}, {"b": 70.0})], ylabel="accuracy (%)")
    assert 'data-marks="4"' in svg and svg.count('class="mark"') == 2 and svg.count('class="mark ref"') == 2
    assert svg == dot_plot(["a", "b"], [Series("x", {"a": (50.0, 2.0), "b": (60.0, None)}, {"a": 55.0}),
                                        Series("paper only", {}, {"b": 70.0})], ylabel="accuracy (%)")
    assert line_plot([("loss", [(0, 1.0), (1, 0.5)])], xlabel="step", ylabel="loss").count("<polyline") == 1


# --------------------------------------------------------------------------------------------------------------
# In a real browser

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    profile.mkdir()
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def selftest(tmp_path: Path, html_file: Path) -> list[str]:
    dom = chromium(tmp_path, "--dump-dom", html_file.resolve().as_uri() + "#selftest")
    found = re.search(r'<pre id="selftest">(.*?)</pre>', dom, re.S)
    assert found, "the page wrote no self-test results: " + dom[:500]
    return unescape(found.group(1)).splitlines()


@pytest.fixture
def full_results(tmp_path: Path, curve_results: Path) -> Path:
    """The repository's results plus the synthetic folder with a learning curve, with its page written."""
    results = tmp_path / "all" / "results"
    shutil.copytree(RESULTS, results)
    shutil.copytree(curve_results / "curves", results / "curves")
    assert cli_main(["site", "--results", str(results), "--benchmarks", str(BENCHMARKS)]) == 0
    return results


@needs_chromium
def test_browser_selftest_passes_every_check(tmp_path, full_results):
    page = (full_results / "index.html").read_text(encoding="utf-8")
    lines = selftest(tmp_path, full_results / "index.html")
    failed = [line for line in lines if not line.startswith("PASS ")][:-1]
    assert not failed, "\n".join(lines)
    tables = tables_of(page)
    expected = {"tables", "plots"} | {f"table {t}" for t in tables} | {f"provenance {t}" for t in tables} | {
        f"sort {t}" for t, table in tables.items() if len(table["rows"]) > 1} | {
        f"plot {i}" for i in range(page.count('<svg class="plot"'))}
    assert {line[5:].split(":")[0] for line in lines[:-1]} == expected
    assert lines[-1] == f"selftest: {len(expected)} checks passed, 0 failed"
    stored = [r for r in records_by_path(full_results).values() if r.train.get("curve")]
    assert "PASS plot" in "\n".join(lines) and page.count('<figure class="curve">') == len(stored)


@needs_chromium
def test_browser_selftest_reports_a_table_that_does_not_match(tmp_path, curve_results):
    page = build_site(curve_results).replace('data-rows="2"', 'data-rows="3"', 1)
    broken = tmp_path / "broken.html"
    broken.write_text(page, encoding="utf-8")
    lines = selftest(tmp_path, broken)
    assert "FAIL table table-curves: false" in lines
    assert lines[-1].endswith(" checks passed, 1 failed")


@needs_chromium
def test_browser_screenshot_of_the_committed_page(tmp_path):
    shot = tmp_path / "page.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", (RESULTS / "index.html").as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1280, 2000)
    assert len(data) > 100_000   # a blank 1280x2000 page compresses to a few kB
