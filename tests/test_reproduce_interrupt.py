"""``reproduce`` stopped for real: the command runs in a subprocess on a tiny synthetic spec and gets SIGINT, SIGTERM
or SIGKILL once its first cell's record is on disk. SIGINT and SIGTERM end with exit code 130 and say to run again;
after any of them, running the same command again finishes the table, and its records and tables are those of a
run that was never interrupted (bar timings and the paths in the command)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Four cells; the second (fine-tuning's 300 pre-training steps) takes seconds, so a signal sent when the first
# record appears lands while the run is busy.
SPEC = """
name = "tiny-synthetic"
title = "A tiny synthetic table"
metric = "accuracy"
baseline = "finetune"

[source]
paper = "Nobody (2024). A test"
table = "Table 0"

[defaults]
dataset = "synthetic"
queries = 3
episodes = 20

[[settings]]
id = "5w1s"
ways = 5
shots = 1

[[settings]]
id = "5w5s"
ways = 5
shots = 5

[[methods]]
method = "protonet"
label = "ProtoNet"
paper_row = "Prototypical Networks"
backbone = "conv4"
backbone_options = { hidden = 8 }
train = { steps = 20, ways = 5, queries = 3 }

[[methods]]
method = "finetune"
backbone = "conv4"
backbone_options = { hidden = 8 }
train = { steps = 300, batch_size = 32 }

[[paper]]
label = "Prototypical Networks"
values = { 5w1s = 98.8, 5w5s = 99.7 }
"""
CELLS = 4
# What legitimately differs between two runs of the same cell: timings, dates, machine state, where the checkpoint
# is and whether it was loaded, and the command line (its --out and --checkpoint-dir).
VOLATILE = ("train_seconds", "eval_seconds", "created", "environment")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    spec = root / "tiny-synthetic.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEWSHOT_CACHE": str(root / "cache"),
           "FEWSHOT_DATA": str(root / "cache" / "data"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return root, spec, env


def command(spec: Path, out: Path, checkpoints: Path) -> list[str]:
    return [sys.executable, "-m", "fewshot.bench", "reproduce", str(spec), "--out", str(out), "--checkpoint-dir",
            str(checkpoints), "--device", "cpu", "--quiet"]


def run(work, name: str) -> subprocess.CompletedProcess:
    root, spec, env = work
    return subprocess.run(command(spec, root / name, root / f"{name}-ckpt"), env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def interrupt(work, name: str, sig: signal.Signals) -> tuple[int, str, int]:
    """Start the run, send ``sig`` as soon as the first record exists; (exit code, stderr, records then)."""
    root, spec, env = work
    records = root / name / "records"
    proc = subprocess.Popen(command(spec, root / name, root / f"{name}-ckpt"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 240
    try:
        while not (records.is_dir() and any(records.glob("*.json"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no record appeared (exit {proc.returncode}): {proc.communicate()[1]}")
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err, len(list(records.glob("*.json")))


def stable(path: Path) -> dict:
    """A record's JSON without what legitimately differs between two runs of the same cell."""
    data = json.loads(path.read_text())
    for key in VOLATILE:
        data.pop(key)
    data["train"]["checkpoint"] = Path(data["train"]["checkpoint"]).name if data["train"]["checkpoint"] else None
    data["train"].pop("loaded")
    data["config"]["reproduce"].pop("command")
    return data


def table_md(folder: Path) -> str:
    """``table.md`` without timings and dates, and with the output folder named OUT."""
    text = (folder / "table.md").read_text().replace(str(folder), "OUT")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("- Compute in the stored records"))
    # The leaderboard's last two columns are training and evaluation seconds.
    return re.sub(r"\|[^|\n]*\|[^|\n]*\|$", "| t | t |", text, flags=re.M)


@pytest.fixture(scope="module")
def reference(work):
    done = run(work, "reference")
    assert done.returncode == 0, done.stderr
    folder = work[0] / "reference"
    assert len(list((folder / "records").glob("*.json"))) == CELLS
    return folder


def assert_same_as_reference(folder: Path, reference: Path) -> None:
    names = sorted(p.name for p in (folder / "records").glob("*.json"))
    assert names == sorted(p.name for p in (reference / "records").glob("*.json"))
    for name in names:
        assert stable(folder / "records" / name) == stable(reference / "records" / name), name
    assert not list((folder / "records").glob(".*.tmp")), "a temporary file was left behind"
    assert (folder / "table.csv").read_bytes() == (reference / "table.csv").read_bytes()
    assert table_md(folder) == table_md(reference)
    assert (folder / "plot.png").read_bytes() == (reference / "plot.png").read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_signal_stops_with_130_and_a_rerun_finishes_the_same_table(work, reference, sig):
    name = f"stopped-{sig.name}"
    code, err, saved = interrupt(work, name, sig)
    assert code == 130, err
    assert f"interrupted (stopped by {sig.name}" in err and "run the same command again to continue" in err
    assert 1 <= saved < CELLS
    assert "Traceback" not in err
    folder = work[0] / name
    assert (folder / "table.md").is_file() and "Cells without a result" in (folder / "table.md").read_text()

    again = run(work, name)
    assert again.returncode == 0, again.stderr
    assert f"{CELLS - saved} cell(s) run, {saved} reused, 0 failed" in again.stdout
    assert_same_as_reference(folder, reference)


def test_sigkill_then_rerun_finishes_the_same_table(work, reference):
    code, err, saved = interrupt(work, "killed", signal.SIGKILL)
    assert code == -signal.SIGKILL and 1 <= saved < CELLS
    again = run(work, "killed")
    assert again.returncode == 0, again.stderr
    assert f"{CELLS - saved} cell(s) run, {saved} reused, 0 failed" in again.stdout
    assert_same_as_reference(work[0] / "killed", reference)
