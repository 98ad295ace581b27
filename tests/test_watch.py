"""Held-out accuracy watched during training (``--watch``): the weights are an unwatched run's, the points are the
accuracies of the model as it was, they survive checkpoints, and records and the command carry them."""
from __future__ import annotations

import pytest
import torch

from fewshot.backbones import create_backbone
from fewshot.cli import main
from fewshot.data import register_dataset, sample_episodes
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method
from fewshot.results.records import load_records
from fewshot.train import TrainConfig, Watch, fit

from conftest import blob_dataset

FULL = blob_dataset(classes=18, per_class=10, name="test-watch-blobs")
SPLITS = {"train": range(10), "val": range(10, 14), "test": range(14, 18)}


@register_dataset("test-watch-blobs")
def load_test_watch_blobs(split, root, **options):
    """Train / val / test by class, like the standard few-shot splits."""
    return FULL.select_classes(list(SPLITS[split]), name=f"test-watch-blobs/{split}")


def build(name: str):
    torch.manual_seed(0)
    return create_method(name, create_backbone("conv4", in_channels=1, image_size=16, hidden=8))


@pytest.mark.parametrize("name,config", [
    ("protonet", TrainConfig(steps=8, ways=4, shots=1, queries=3)),
    ("finetune", TrainConfig(steps=8, batch_size=16, lr=0.05, optimizer="sgd")),
])
def test_watching_changes_no_weight_and_scores_the_model_as_it_was(name, config, tmp_path):
    val = load_test_watch_blobs("val", None)
    episodes = sample_episodes(val, 4, 1, 3, episodes=10, seed=0)
    plain, watched = build(name), build(name)
    fit(plain, load_test_watch_blobs("train", None), config, seed=3, progress=False)

    seen = []

    def score() -> float:
        was = watched.training
        result = evaluate(watched, val, episodes, device="cpu", progress=False)
        watched.train(was)
        seen.append({k: v.clone() for k, v in watched.state_dict().items()})
        return float(result.accuracies.mean())

    watch = Watch(every=3, score=score, describe={"split": "val"})
    report = fit(watched, load_test_watch_blobs("train", None), config, seed=3, progress=False,
                 checkpoint_dir=tmp_path, watch=watch)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, watched.state_dict()[key]), key          # bit-identical weights
    assert [p["step"] for p in report.watch["points"]] == [3, 6, 8]        # every 3 steps and the last
    assert report.watch["split"] == "val" and report.watch["every"] == 3
    # The last point is the accuracy of the trained model; the earlier ones are not (training went on).
    final = evaluate(watched, val, episodes, device="cpu", progress=False)
    assert report.watch["points"][-1]["accuracy"] == pytest.approx(float(final.accuracies.mean()), abs=1e-12)
    assert not all(torch.equal(seen[0][k], seen[-1][k]) for k in seen[0])
    # The checkpoint keeps the curve: loading it gives the same watch.
    again = build(name)
    loaded = fit(again, load_test_watch_blobs("train", None), config, seed=3, progress=False, checkpoint_dir=tmp_path)
    assert loaded.loaded and loaded.watch == report.watch


def test_a_watch_needs_a_positive_interval():
    with pytest.raises(ValueError, match="every 1 or more steps"):
        Watch(every=0, score=lambda: 0.0)


def bench(tmp_path, *extra) -> int:
    return main(["--dataset", "test-watch-blobs", "--method", "protonet", "--train-steps", "4",
                 "--baseline-train-steps", "4", "--episodes", "6", "--queries", "3", "--shots", "1", "--ways", "4",
                 "--backbone", "conv4", "--device", "cpu", "--out", str(tmp_path / "runs"),
                 "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet", *extra])


def test_the_command_records_the_validation_curve(tmp_path):
    assert bench(tmp_path, "--watch", "5") == 0
    records = {r.method: r for r in load_records(tmp_path / "runs")}
    expected = sample_episodes(load_test_watch_blobs("val", None), 4, 1, 3, episodes=5, seed=0)
    for record in records.values():
        watch = record.train["watch"]
        assert watch["episode_hash"] == expected.hash and watch["split"] == "val" and watch["episodes"] == 5
        assert [p["step"] for p in watch["points"]] == [1, 2, 3, 4]
        assert all(0 <= p["accuracy"] <= 1 for p in watch["points"])
    # A run without --watch on the same configuration has the same fingerprint and accuracies.
    assert bench(tmp_path, "--out", str(tmp_path / "again")) == 0
    again = {r.method: r for r in load_records(tmp_path / "again")}
    for name, record in again.items():
        assert record.fingerprint == records[name].fingerprint and record.accuracies == records[name].accuracies


def test_a_loaded_checkpoint_without_a_curve_says_so(tmp_path):
    assert bench(tmp_path) == 0
    assert bench(tmp_path, "--watch", "5", "--out", str(tmp_path / "watched")) == 0
    for record in load_records(tmp_path / "watched"):
        assert record.train["watch"] == {"skipped": "not watched: the checkpoint loaded was trained without a watch"}


def test_watch_errors_are_clear_and_early(tmp_path, capsys):
    @register_dataset("test-watch-noval")
    def load_noval(split, root, **options):
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; test-watch-noval has train and test")
        return load_test_watch_blobs(split, root)

    assert main(["--dataset", "test-watch-noval", "--method", "protonet", "--baseline", "none", "--watch", "5",
                 "--ways", "4", "--shots", "1", "--queries", "3", "--train-steps", "2", "--out", str(tmp_path / "runs"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--watch needs test-watch-noval's 'val' split: unknown split 'val'" in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_training_on_train_and_val_is_not_watched_and_says_why():
    from fewshot.runner import CellSpec, Runner

    runner = Runner(device="cpu", progress=False, watch_episodes=5)
    watch, why = runner.prepare_watch(CellSpec(method="protonet", dataset="test-watch-blobs",
                                               train_split="trainval"), "here")
    assert watch is None and why == "not watched: the training split 'trainval' holds the validation classes"
    watch, why = runner.prepare_watch(CellSpec(method="protonet", dataset="test-watch-blobs", ways=4, shots=1,
                                               queries=3), "here")
    assert why is None and watch[0].num_classes == 4 and len(watch[1]) == 5
