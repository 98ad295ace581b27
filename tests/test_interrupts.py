"""Interrupts lose nothing: training killed at a random step (SIGINT, SIGTERM, SIGKILL) in a subprocess resumes,
on the rerun of the same command, to bit-identical weights and records.

The runs use the tiny plug-in dataset (``tests/plugins/tiny_plugin.py``), so each takes seconds; the moment of the
signal is random (seeded per case) after the first timed partial checkpoint appeared.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

PLUGIN = Path(__file__).parent / "plugins" / "tiny_plugin.py"
STEPS = 400
# Episodic (ProtoNet), supervised (fine-tuning's pre-training) and a method with its own loop.
METHODS = ("protonet", "finetune", "tiny-noisy-protonet")


def command(method: str, out: Path, checkpoints: Path) -> list[str]:
    return [sys.executable, "-m", "fewshot.bench", "--plugin", str(PLUGIN), "--dataset", "tiny-blobs",
            "--method", method, "--baseline", "none", "--backbone", "conv4", "--backbone-option", "hidden=8",
            "--shots", "1", "--queries", "3", "--episodes", "10", "--train-steps", str(STEPS), "--quiet",
            "--out", str(out), "--checkpoint-dir", str(checkpoints), "--checkpoint-seconds", "0.2"]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run_to_end(method: str, folder: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command(method, folder / "runs", folder / "ckpt"), capture_output=True, text=True,
                            env=environment(), timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def outcome(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The run's record, less what legitimately differs between runs, and its trained weights."""
    (record_file,) = (folder / "runs").glob("*.json")
    record = json.loads(record_file.read_text())
    kept = {"accuracies": record["accuracies"], "episode_hash": record["episode_hash"], "config": record["config"],
            "train": {k: v for k, v in record["train"].items() if k not in ("checkpoint", "loaded")}}
    (checkpoint,) = [p for p in (folder / "ckpt").glob("*.pt") if not p.name.endswith(".partial.pt")]
    return kept, torch.load(checkpoint, weights_only=True)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    runs = {}
    for method in METHODS:
        folder = tmp_path_factory.mktemp(f"reference-{method}")
        run_to_end(method, folder)
        runs[method] = outcome(folder)
    return runs


CASES = [(m, s) for m in METHODS[:2] for s in ("SIGINT", "SIGTERM", "SIGKILL")] + [(METHODS[2], "SIGINT")]


@pytest.mark.parametrize("method,signame", CASES)
def test_killed_training_resumes_bit_identical(method, signame, tmp_path, uninterrupted):
    checkpoints = tmp_path / "ckpt"
    child = subprocess.Popen(command(method, tmp_path / "runs", checkpoints), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=environment())
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*.partial.pt")):
        assert child.poll() is None, f"the run ended before its first partial checkpoint: {child.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(random.Random(f"{method}-{signame}").uniform(0.0, 0.8))
    child.send_signal(getattr(signal, signame))
    stdout, stderr = child.communicate(timeout=120)
    if signame == "SIGKILL":
        assert child.returncode == -signal.SIGKILL
    else:
        assert child.returncode == 130, stderr
        assert "run the same command again to continue" in stderr and "Traceback" not in stderr
        (partial,) = checkpoints.glob("*.partial.pt")
        step = torch.load(partial, weights_only=False)["step"]
        assert 0 < step < STEPS and f"stopped by {signame} at step {step} of {STEPS}" in stderr
    assert not list((tmp_path / "runs").glob("*.json")), "no record of an unfinished run"

    run_to_end(method, tmp_path)
    record, weights = outcome(tmp_path)
    reference_record, reference_weights = uninterrupted[method]
    assert record == reference_record
    assert weights.keys() == reference_weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, reference_weights[name]), name
    assert not list(checkpoints.glob("*.partial.pt")) and not list(tmp_path.rglob("*.tmp"))


def test_a_training_whose_loss_does_not_fall_is_flagged():
    from fewshot.train.session import loss_warnings

    assert loss_warnings([2.0 - 0.01 * i for i in range(100)]) == []
    (warning,) = loss_warnings([1.6] * 100)
    assert warning.startswith("training loss did not fall: 1.600 over the first 10 steps, 1.600 over the last 10")
    assert loss_warnings([1.0] * 19) == []          # too short to judge


def test_zero_learning_rate_training_is_flagged_in_the_record(tmp_path, capsys, monkeypatch):
    from fewshot.cli import main
    from fewshot.results.records import load_records
    from fewshot.runner import Runner

    args = ["--plugin", str(PLUGIN), "--dataset", "tiny-blobs", "--method", "protonet", "--baseline", "none",
            "--backbone", "conv4", "--backbone-option", "hidden=8", "--shots", "1", "--queries", "3",
            "--episodes", "10", "--quiet", "--out", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path)]
    original = Runner.train_config
    monkeypatch.setattr(Runner, "train_config", lambda self, spec, method, train_set: original(
        self, spec, method, train_set).replace(lr=0.0, steps=40))     # an optimiser that cannot move
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "warning: [protonet] training loss did not fall" in captured.err
    assert "(!)" in captured.out and "training loss did not fall" in captured.out
    (record,) = load_records(tmp_path / "runs")
    assert record.train.warnings and record.train.warnings[0].startswith("training loss did not fall")
