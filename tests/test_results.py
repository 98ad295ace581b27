"""Run records: written atomically, read back whole, carrying what rebuilds a table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fewshot.results.checks import at_chance, record_warnings
from fewshot.results.records import RunRecord, load_records, save_record
from fewshot.evaluate.stats import mean_ci, paired_difference
from fewshot.train.loop import TrainConfig, TrainingDiverged, fit
from fewshot.methods import create_method
from fewshot.backbones import create_backbone


def make_record(**changes) -> RunRecord:
    base = dict(method="protonet", dataset="toy", split="test", ways=5, shots=1, queries=15, episodes=3,
                episode_seed=0, episode_hash="ab" * 32, accuracies=[0.5, 0.75, 1.0])
    return RunRecord(**{**base, **changes})


def test_record_roundtrip(tmp_path):
    path = save_record(make_record(), tmp_path)
    assert json.loads(path.read_text())["episode_hash"] == "ab" * 32
    [back] = load_records(tmp_path)
    assert back == make_record()
    assert back.summary.mean == pytest.approx(0.75)
    assert not list(tmp_path.glob("*.tmp"))


def test_ci_matches_direct_formula():
    acc = np.array([0.2, 0.4, 0.9, 0.6, 0.55])
    s = mean_ci(acc)
    assert s.mean == pytest.approx(acc.mean())
    assert s.ci95 == pytest.approx(1.959964 * acc.std(ddof=1) / np.sqrt(5), rel=1e-6)
    d = paired_difference(acc, acc[::-1])
    assert d.mean == pytest.approx(0.0, abs=1e-12)


def test_nan_loss_stops_training_with_the_step(blobs, tmp_path, monkeypatch):
    method = create_method("protonet", create_backbone("conv4", in_channels=1, image_size=16, hidden=8))
    monkeypatch.setattr(type(method), "episode_loss", lambda self, *a: (a[0].sum() * float("nan")).expand(1))
    with pytest.raises(TrainingDiverged, match=r"training loss became nan at step 1 of 5"):
        fit(method, blobs, TrainConfig(steps=5, ways=3, shots=1, queries=2), checkpoint_dir=tmp_path,
            progress=False)
    assert not list(tmp_path.glob("*.pt")), "a diverged run must not leave a checkpoint"


def test_accuracy_at_chance_is_computed_from_the_record():
    # 5-way: chance is 20%. Mean 22% with a 95% CI of +- 7.3 points includes it: flagged.
    near = make_record(accuracies=[0.1, 0.2, 0.3, 0.2, 0.3], episodes=5)
    s = mean_ci(near.accuracies)
    assert abs(s.mean - 0.2) <= s.ci95 and at_chance(near)
    assert record_warnings(near) == [f"accuracy at chance: 22.00 ± {100 * s.ci95:.2f}% includes 1/5 = 20.00%"]
    # Far above chance, or exactly at chance with no CI (one episode): not flagged.
    assert not at_chance(make_record()) and record_warnings(make_record()) == []
    assert not at_chance(make_record(accuracies=[0.2], episodes=1))
    # 20-way: chance is 5%; stored warnings come first.
    low = make_record(ways=20, accuracies=[0.05, 0.0, 0.1, 0.05], episodes=4, train={"warnings": ["loss did not fall"]})
    assert record_warnings(low)[0] == "loss did not fall" and record_warnings(low)[1].endswith("includes 1/20 = 5.00%")
