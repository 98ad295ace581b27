"""The command end to end on a tiny registered dataset: table, records, checkpoint reuse, errors."""
from __future__ import annotations

import pytest

from fewshot.cli import main
from fewshot.data import register_dataset
from fewshot.results.records import load_records

from conftest import blob_dataset


@register_dataset("test-blobs")
def load_test_blobs(split, root, **options):
    """A user's dataset in a few lines: 24 classes, split 16 / 8 by class."""
    full = blob_dataset(classes=24, per_class=12, name="test-blobs")
    classes = range(16) if split == "train" else range(16, 24)
    return full.select_classes(list(classes), name=f"test-blobs/{split}")


def run(tmp_path, *extra):
    return main(["--dataset", "test-blobs", "--train-steps", "3", "--baseline-train-steps", "3",
                 "--episodes", "12", "--queries", "3",
                 "--out", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet",
                 "--backbone", "conv4", *extra])


def test_bench_prints_leaderboard_and_writes_records(tmp_path, capsys):
    assert run(tmp_path, "--method", "protonet", "--shots", "1", "2") == 0
    out = capsys.readouterr().out
    assert "| protonet" in out and "| finetune" in out and "vs finetune" in out
    records = load_records(tmp_path / "runs")
    assert sorted((r.method, r.shots) for r in records) == [("finetune", 1), ("finetune", 2),
                                                            ("protonet", 1), ("protonet", 2)]
    by = {(r.method, r.shots): r for r in records}
    # Every method of a setting is scored on the same episodes.
    assert by["protonet", 1].episode_hash == by["finetune", 1].episode_hash
    assert by["protonet", 1].episode_hash != by["protonet", 2].episode_hash
    r = by["protonet", 2]
    assert len(r.accuracies) == 12 and all(0 <= a <= 1 for a in r.accuracies)
    assert r.environment["torch"] and r.config["backbone"]["name"] == "conv4" and r.train["steps"] == 3
    # Supervised pre-training is shared across shot counts: trained once, then loaded.
    assert by["finetune", 1].train["loaded"] is False and by["finetune", 2].train["loaded"] is True

    # A second run reuses every checkpoint and reproduces the accuracies exactly.
    assert run(tmp_path, "--method", "protonet", "--shots", "1", "--out", str(tmp_path / "again")) == 0
    again = {r.method: r for r in load_records(tmp_path / "again")}
    assert again["protonet"].train["loaded"] is True
    assert again["protonet"].accuracies == by["protonet", 1].accuracies


def test_bench_errors_are_clear(tmp_path, capsys):
    assert run(tmp_path, "--method", "protonett") == 2
    assert "unknown method 'protonett'" in capsys.readouterr().err
    assert run(tmp_path, "--method", "protonet", "--shots", "10") == 1
    assert "10 shots + 3 queries need 13 examples per class" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.tmp"))


def test_train_steps_shorten_the_methods_not_the_baseline():
    from fewshot.cli import bench_cells, build_parser

    def plan(*extra):
        specs, baseline = bench_cells(build_parser().parse_args(["--method", "protonet", *extra]))
        return baseline, [(s.method, s.train, s.backbone) for s in specs]

    assert plan("--train-steps", "7", "--backbone", "resnet12") == \
        ("finetune", [("protonet", {"steps": 7}, "resnet12"), ("finetune", {}, None)])
    assert plan("--train-steps", "7", "--baseline-train-steps", "9")[1][1] == ("finetune", {"steps": 9}, None)
    # A baseline asked for as a method is one of the methods: it gets their settings.
    assert plan("finetune", "--train-steps", "7")[1] == [("protonet", {"steps": 7}, None),
                                                        ("finetune", {"steps": 7}, None)]


def test_list_subcommand(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "protonet" in out and "finetune" in out and "test-blobs" in out and "conv4" in out


def test_backbone_options_parse_numbers_and_booleans():
    from fewshot.cli import _key_value

    assert _key_value("invert=true") == ("invert", True)
    assert _key_value("input_size=112") == ("input_size", 112)
    assert _key_value("crop_pct=0.875") == ("crop_pct", 0.875)
    assert _key_value("interpolation=bilinear") == ("interpolation", "bilinear")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _key_value("invert")
