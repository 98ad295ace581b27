"""Leaderboards from stored records: values, tied ranks and paired differences against direct computations, the
error on mixed episode sets, every output format, and README sections regenerated between markers."""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest

from fewshot.cli import main as bench_main
from fewshot.results.leaderboard import (EpisodeSetMismatch, build_leaderboard, paired_comparison, setting_columns,
                                         summary_markdown, summary_table, update_readme_section)
from fewshot.results.records import RunRecord, load_records, save_record
from fewshot.evaluate.stats import mean_ci, paired_difference, tied_ranks

EPISODES = 300


def record(method: str, shots: int, accuracies, *, hash_: str | None = None, episodes: int = EPISODES,
           created: str = "2024-01-01T00:00:00+00:00", checkpoint: str | None = None, **extra) -> RunRecord:
    return RunRecord(method=method, dataset="toy", split="test", ways=5, shots=shots, queries=15, episodes=episodes,
                     episode_seed=0, episode_hash=hash_ or f"hash-{shots}-shot-{episodes}".ljust(64, "0"),
                     accuracies=[float(a) for a in accuracies], train_seconds=100.0, eval_seconds=2.0,
                     train={"checkpoint": checkpoint or f"{method}-{shots}.pt"}, created=created, **extra)


def scenario() -> list[RunRecord]:
    rng = np.random.default_rng(0)
    out = []
    for shots in (1, 5):
        difficulty = rng.random(EPISODES)
        for method, gain in (("finetune", 0.0), ("protonet", 0.05), ("maml", 0.049), ("mhd", -0.2)):
            acc = np.clip(0.4 + 0.5 * difficulty + gain + 0.02 * rng.standard_normal(EPISODES) + 0.03 * shots, 0, 1)
            out.append(record(method, shots, acc, checkpoint=f"{method}.pt" if method == "finetune" else None))
    return out


def test_cells_match_direct_computations():
    records = scenario()
    board = build_leaderboard(records)
    assert board.columns == ["toy 5-way 1-shot", "toy 5-way 5-shot"]
    by = {(r.method, r.shots): r for r in records}
    for _, cell in board.cells.iterrows():
        r = by[cell["method"], cell["shots"]]
        s = mean_ci(r.accuracies)
        assert cell["value"] == pytest.approx(s.mean) and cell["ci95"] == pytest.approx(s.ci95)
        if cell["method"] == "finetune":
            assert pd.isna(cell["diff"])
        else:
            d = paired_difference(r.accuracies, by["finetune", r.shots].accuracies)
            assert cell["diff"] == pytest.approx(d.mean) and cell["diff_ci95"] == pytest.approx(d.ci95)
            assert cell["diff_paired"]
    for shots, column in ((1, board.columns[0]), (5, board.columns[1])):
        expected = tied_ranks({m: by[m, shots].accuracies for m in ("finetune", "protonet", "maml", "mhd")})
        got = dict(zip(board.cells[board.cells["column"] == column]["method"],
                       board.cells[board.cells["column"] == column]["rank"]))
        assert got == expected
    # protonet and maml are 0.001 apart: tied; the rows follow the average rank.
    assert board.rows[:2] == ["maml", "protonet"] and board.rows[-1] == "mhd"
    # Train time counts a shared checkpoint once (finetune's pre-training serves both shot counts).
    times = board.times()
    assert times.loc["finetune", "train"] == 100.0 and times.loc["protonet", "train"] == 200.0
    assert times.loc["protonet", "eval"] == 4.0


def test_outputs_in_every_format(tmp_path):
    board = build_leaderboard(scenario(), title="Toy board")
    md = board.to_markdown()
    assert "### Toy board" in md and "(1.5)" in md and "**" in md and "Difference to `finetune`" in md
    values, best = board.value_table()
    assert best.loc["protonet", "toy 5-way 1-shot"] and not best.loc["mhd", "toy 5-way 1-shot"]
    diff = board.difference_table()
    assert list(diff.index) == ["maml", "protonet", "mhd"] and diff.loc["mhd", "toy 5-way 1-shot"].endswith("*")
    csv = pd.read_csv(io.StringIO(board.to_csv()))
    assert len(csv) == 8 and {"value", "ci95", "rank", "diff", "diff_ci95", "episode_hash"} <= set(csv.columns)
    tex = board.to_latex()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and r"\textbf{" in tex
    paths = board.write(tmp_path, formats=("md", "csv", "tex", "html"))
    assert sorted(p.name for p in paths) == sorted(f"leaderboard.{e}" for e in ("md", "csv", "tex", "html"))
    page = (tmp_path / "leaderboard.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<strong>" in page and "<script" not in page
    png = base64.b64decode(page.split("data:image/png;base64,")[1].split('"')[0])
    assert png.startswith(b"\x89PNG")   # the plot, inside the page: nothing else to ship with it


def test_error_metric_flips_values_and_differences():
    records = scenario()
    acc = build_leaderboard(records).cells.set_index(["method", "shots"])
    err = build_leaderboard(records, metric="error").cells.set_index(["method", "shots"])
    assert err.loc[("protonet", 1), "value"] == pytest.approx(1 - acc.loc[("protonet", 1), "value"])
    assert err.loc[("protonet", 1), "diff"] == pytest.approx(-acc.loc[("protonet", 1), "diff"])
    assert (err["rank"] == acc["rank"]).all()


def test_mixed_episode_sets_are_an_error_naming_the_hashes():
    records = scenario()
    odd = record("protonet", 1, records[1].accuracies, hash_="f" * 64)
    records = [r for r in records if not (r.method == "protonet" and r.shots == 1)] + [odd]
    with pytest.raises(EpisodeSetMismatch, match=r"episode hash ffffffffffff: protonet") as error:
        build_leaderboard(records)
    assert "hash-1-shot" in str(error.value)
    with pytest.raises(EpisodeSetMismatch, match="ffffffffffff"):
        paired_comparison(odd, records[0])
    # Asked to, it compares them as independent samples and says so.
    board = build_leaderboard(records, unpaired=True)
    cell = board.cells[(board.cells["method"] == "protonet") & (board.cells["shots"] == 1)].iloc[0]
    assert not cell["diff_paired"]
    assert "†" in board.difference_table().loc["protonet", "toy 5-way 1-shot"]
    assert any("different episode sets" in note for note in board.notes)


def test_reruns_and_conflicting_duplicates():
    records = scenario()
    newer = record("protonet", 1, np.ones(EPISODES), created="2025-01-01T00:00:00+00:00")
    board = build_leaderboard(records + [newer])
    cell = board.cells[(board.cells["method"] == "protonet") & (board.cells["shots"] == 1)].iloc[0]
    assert cell["value"] == 1.0
    other_set = record("protonet", 1, np.ones(EPISODES), hash_="e" * 64)
    with pytest.raises(EpisodeSetMismatch, match="two records"):
        build_leaderboard(records + [other_set], column=lambda r: f"{r.shots}-shot")


def test_setting_labels_tell_settings_apart():
    a = record("protonet", 1, [1, 0], episodes=2)
    b = record("protonet", 1, [1, 0, 1], episodes=3)
    c = record("protonet", 5, [1, 1])
    label = setting_columns([a, b, c])
    assert label(a) == "toy 5-way 1-shot (2 episodes)" and label(b) == "toy 5-way 1-shot (3 episodes)"
    assert label(c) == "toy 5-way 5-shot"
    trained = record("protonet", 1, [1, 0], config={"train_dataset": "toy-small"})
    assert setting_columns([trained])(trained) == "toy 5-way 1-shot (trained on toy-small)"


README = """# Project

Intro text.

<!-- results:begin spec=toy -->
old table, edited by hand
<!-- results:end -->

## Other section
<!-- results:begin spec=other -->
keep me
<!-- results:end -->
"""


def test_readme_section_is_regenerated_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert update_readme_section(readme, "toy", "| new | table |\n", command="python -m fewshot.bench leaderboard x")
    text = readme.read_text()
    assert "old table" not in text and "| new | table |" in text and "keep me" in text
    assert text.startswith("# Project\n\nIntro text.\n") and text.endswith("keep me\n<!-- results:end -->\n")
    assert "generated by `python -m fewshot.bench leaderboard x`" in text
    assert not update_readme_section(readme, "toy", "| new | table |\n", command="python -m fewshot.bench "
                                                                                "leaderboard x")
    with pytest.raises(ValueError, match="spec=missing"):
        update_readme_section(readme, "missing", "x")
    readme.write_text("<!-- results:begin spec=toy -->\nno end\n")
    with pytest.raises(ValueError, match="no closing"):
        update_readme_section(readme, "toy", "x")


def test_leaderboard_subcommand_from_stored_records(tmp_path, capsys):
    for r in scenario():
        save_record(r, tmp_path / "runs")
    readme = tmp_path / "README.md"
    readme.write_text(README.replace("spec=toy", "spec=board"))
    board = build_leaderboard(scenario())

    # No --out: the table is printed (Markdown by default) and the README section regenerated.
    assert bench_main(["leaderboard", str(tmp_path / "runs"), "--readme", str(readme), "--section", "board"]) == 0
    assert capsys.readouterr().out == board.to_markdown()
    assert board.to_markdown().strip() in readme.read_text()

    # Records from two episode sets in one column: one error line naming the hash, exit code 1.
    save_record(record("maml", 1, [1.0] * EPISODES, hash_="d" * 64), tmp_path / "runs")
    assert bench_main(["leaderboard", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dddddddddddd" in err and err.count("\n") == 1
    assert str(tmp_path / "runs" / "toy-test-5w1s15q__maml__") in err   # the odd record's file


@pytest.fixture
def runs(tmp_path):
    for r in scenario():
        save_record(r, tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.parametrize("given, shown", [
    (["--format", "latex"], ["tex"]),
    (["--format", "md,csv"], ["md", "csv"]),
    (["--format", "md", "--format", "csv"], ["md", "csv"]),
    (["--formats", "html"], ["html"]),            # the old spelling still works
])
def test_format_prints_to_stdout_without_out(runs, tmp_path, capsys, given, shown):
    board = build_leaderboard(load_records(runs))
    assert bench_main(["leaderboard", str(runs), *given]) == 0
    expected = "\n".join(board.render(f).rstrip("\n") + "\n" for f in shown)
    assert capsys.readouterr().out == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]   # nothing written


def test_format_with_out_writes_files(runs, tmp_path, capsys):
    board = build_leaderboard(load_records(runs))
    assert bench_main(["leaderboard", str(runs), "--format", "latex", "--out", str(tmp_path / "x")]) == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["leaderboard.tex"]
    assert (tmp_path / "x" / "leaderboard.tex").read_text() == board.to_latex()
    captured = capsys.readouterr()
    assert captured.out == "" and "leaderboard.tex" in captured.err
    # Without --format, --out writes every format.
    assert bench_main(["leaderboard", str(runs), "--out", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(
        f"leaderboard.{e}" for e in ("md", "csv", "tex", "html", "png"))
    assert (tmp_path / "all" / "leaderboard.png").read_bytes() == board.plot_png()
    assert not list((tmp_path / "all").glob(".*.tmp"))


@pytest.mark.parametrize("given, message", [
    (["--format", "pdf"], "error: --format: unknown format 'pdf'; choose from md, csv, latex, html, png"),
    (["--format", "png"], "error: --format png makes an image file: give a folder to write it to with --out DIR"),
])
def test_bad_format_is_a_usage_error(runs, capsys, given, message):
    assert bench_main(["leaderboard", str(runs), *given]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_damaged_record_is_named(runs, capsys):
    (runs / "zz__broken__0000000000.json").write_text('{"method": "protonet", "accura')
    assert bench_main(["leaderboard", str(runs)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {runs / 'zz__broken__0000000000.json'}: not a valid JSON run record")
    assert bench_main(["leaderboard", str(runs / "nope")]) == 1
    assert f"{runs / 'nope'}: no such record file or folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# Silent failures made loud


def test_cells_with_warnings_are_marked_and_listed():
    records = scenario()
    by = {(r.method, r.shots): r for r in records}
    by["maml", 5].train.warnings = ["loss did not fall"]
    chance = record("mhd", 1, [0.2] * (EPISODES - 2) + [0.0, 0.4])   # 5-way: mean 20%, its CI includes 1/5
    records = [r for r in records if (r.method, r.shots) != ("mhd", 1)]
    board = build_leaderboard(records + [chance])
    values, _ = board.value_table()
    assert values.loc["maml", "toy 5-way 5-shot"].endswith(") (!)")
    assert values.loc["mhd", "toy 5-way 1-shot"].endswith(") (!)")
    marked = [(r, c) for r in values.index for c in board.columns if values.loc[r, c].endswith("(!)")]
    assert sorted(marked) == [("maml", "toy 5-way 5-shot"), ("mhd", "toy 5-way 1-shot")]
    ci = mean_ci(chance.accuracies).ci95
    assert board.warning_lines() == [
        "(!) `maml` in toy 5-way 5-shot: loss did not fall",
        f"(!) `mhd` in toy 5-way 1-shot: accuracy at chance: 20.00 ± {100 * ci:.2f}% includes 1/5 = 20.00%",
    ]
    md = board.to_markdown()
    assert all(f"- {line}\n" in md for line in board.warning_lines())
    csv = pd.read_csv(io.StringIO(board.to_csv()), keep_default_na=False)
    assert csv.set_index(["method", "shots"]).loc[("maml", 5), "warnings"] == "loss did not fall"
    assert (csv["warnings"] != "").sum() == 2
    # A board without warnings has no footnote and no mark.
    assert build_leaderboard(scenario()).warning_lines() == [] and "(!)" not in build_leaderboard(scenario()).to_markdown()


def test_summary_table_marks_and_lists_warnings():
    records = scenario()[:4]                                   # 1-shot: finetune, protonet, maml, mhd
    records[2].train.warnings = ["loss did not fall", "accuracy below the baseline"]
    text = summary_markdown(records)
    table = summary_table(records)
    assert list(table["accuracy (%)"].str.endswith(" (!)")) == [False, False, True, False]
    assert text == (table.to_markdown(index=False) + "\n\n(!) maml toy 5-way 1-shot: loss did not fall; "
                    "accuracy below the baseline")
    assert summary_markdown(scenario()[:4]) == summary_table(scenario()[:4]).to_markdown(index=False)
