"""Sharded evaluation under ``torchrun --nproc-per-node 2`` (gloo, CPU) gives the single-process records.

The runs use the tiny plug-in dataset (``tests/plugins/tiny_plugin.py``), so each command takes seconds: ProtoNet
(episodic training, frozen features), MAML (episodic training, adapts with gradients) and full fine-tuning
(supervised pre-training, adapts with gradients) train under torchrun (ProtoNet and fine-tuning: rank 0 trains, the
other rank loads its checkpoint; MAML: the meta-batch is split over the ranks, ``tests/test_distributed_training.py``)
and are evaluated on 13 episodes in batches of 2, so the ranks get unequal blocks (6 and 7 episodes).
A frozen cacheable backbone (``tests/plugins/frozen_plugin.py``) checks that both ranks fill one feature cache.
``--data-parallel`` pre-trains fine-tuning on both ranks (a no-op on one process); a MAML job whose rank 1 is
SIGKILLed fails, and the same command resumes from rank 0's partial checkpoint to the uninterrupted run's record.
The helpers of :mod:`fewshot.core.distributed` are checked with and without a process group.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.core import distributed
from fewshot.core.cache import read_entry
from fewshot.evaluate.harness import shard_bounds

from distributed_helpers import environment, torchrun

PLUGINS = Path(__file__).parent / "plugins"
METHODS = ("protonet", "maml", "finetune-full")


def bench(folder: Path, *options: str, ranks: int, entry: tuple[str, ...] = ("-m", "fewshot.bench"),
          check: bool = True) -> subprocess.CompletedProcess:
    """``bench`` on the tiny plug-in dataset in ``folder`` (``entry``: what starts the command line)."""
    args = [*entry, "--plugin", str(PLUGINS / "tiny_plugin.py"), "--plugin",
            str(PLUGINS / "frozen_plugin.py"), "--dataset", "tiny-blobs", "--baseline", "none", "--shots", "1",
            "--queries", "3", "--episodes", "13", "--eval-batch", "2", "--quiet", "--out", str(folder / "runs"),
            "--checkpoint-dir", str(folder / "ckpt"), *options]
    command = torchrun(*args) if ranks > 1 else [sys.executable, *args]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(folder / "cache"),
                            timeout=600, cwd=folder)
    assert result.returncode == 0 or not check, result.stdout + result.stderr
    return result


def records(folder: Path) -> dict[str, dict]:
    return {(r := json.loads(p.read_text()))["method"]: r for p in sorted((folder / "runs").glob("*.json"))}


def weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.name: torch.load(p, weights_only=True)["model"] for p in sorted((folder / "ckpt").glob("*.pt"))}


TRAINED = ("--method", *METHODS, "--backbone", "conv4", "--backbone-option", "hidden=8", "--train-steps", "20")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    single, sharded = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("torchrun")
    bench(single, *TRAINED, ranks=1)
    return single, sharded, bench(sharded, *TRAINED, ranks=2)


@pytest.mark.parametrize("method", METHODS)
def test_torchrun_records_equal_the_single_process_ones(trained, method):
    single, sharded, _ = trained
    one, two = records(single)[method], records(sharded)[method]
    assert len(two["accuracies"]) == 13
    assert two["accuracies"] == one["accuracies"]            # element by element, as floats
    assert two["episode_hash"] == one["episode_hash"]
    assert two["config"] == one["config"]
    same = ("steps", "seed", "warnings") + (() if method == "maml" else ("final_loss", "curve"))
    assert {k: two["train"][k] for k in same} == {k: one["train"][k] for k in same}
    if method == "maml":        # split over the ranks: the same losses up to the order of the float sums
        assert two["train"]["final_loss"] == pytest.approx(one["train"]["final_loss"], rel=1e-5)
        assert [c["loss"] for c in two["train"]["curve"]] == pytest.approx([c["loss"] for c in one["train"]["curve"]],
                                                                            rel=1e-5)
        assert two["train"]["split"] == {"ranks": 2, "by": "meta-batch"}
    else:
        assert "split" not in two["train"]
    assert "split" not in one["train"]
    assert two["train"]["loaded"] is False                   # rank 0 trained it (and the other rank with it or after it)
    assert two["environment"]["world_size"] == 2 and two["environment"]["episodes_per_rank"] == [6, 7]
    assert one["environment"]["world_size"] == 1 and "episodes_per_rank" not in one["environment"]


def test_torchrun_writes_one_record_and_one_checkpoint_each_and_prints_one_table(trained):
    single, sharded, result = trained
    assert sorted(records(sharded)) == sorted(METHODS)
    assert len(list((sharded / "runs").iterdir())) == len(METHODS)
    theirs, ours = weights(single), weights(sharded)
    assert sorted(ours) == sorted(theirs) and len(ours) == len(METHODS)     # same names: same training keys
    for name, state in ours.items():
        assert state.keys() == theirs[name].keys()
        for key, tensor in state.items():
            if name.startswith("maml"):
                # Meta-batch split: equal up to the order of the gradient sums, except Conv-4's convolution biases:
                # batch norm cancels them, so their exact gradient is zero and Adam moves them on rounding noise
                # alone (no effect on any output; tests/test_distributed_training.py checks every weight with SGD).
                if not (key.startswith("backbone.encoder.") and key.endswith(".0.bias")):
                    torch.testing.assert_close(tensor, theirs[name][key], rtol=1e-5, atol=1e-5, msg=f"{name} {key}")
            else:
                assert torch.equal(tensor, theirs[name][key]), (name, key)
    assert not list(sharded.rglob("*.tmp")) and not list(sharded.rglob("*.partial.pt"))
    assert result.stdout.count("| method") == 1 and result.stdout.count("records in") == 1


def test_data_parallel_pre_training_from_the_command_line(trained, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "torchrun"
    options = (*TRAINED[:1], "finetune-full", *TRAINED[4:], "--data-parallel")
    for folder, ranks in ((single, 1), (sharded, 2)):
        folder.mkdir()
        bench(folder, *options, ranks=ranks)
    one, two = records(single)["finetune-full"], records(sharded)["finetune-full"]
    assert two["train"]["split"] == {"ranks": 2, "by": "batch"}
    assert two["train"]["loaded"] is False and two["environment"]["world_size"] == 2
    (checkpoint,) = weights(sharded)
    assert checkpoint.endswith("-ddp2.pt") and Path(two["train"]["checkpoint"]).name == checkpoint
    # One process: the flag changes nothing (the record and checkpoint of the run without it).
    reference = records(trained[0])["finetune-full"]
    assert "split" not in one["train"] and one["accuracies"] == reference["accuracies"]
    alone = Path(one["train"]["checkpoint"]).name
    assert alone == Path(reference["train"]["checkpoint"]).name and list(weights(single)) == [alone]
    assert checkpoint == alone.replace(".pt", "-ddp2.pt")               # the same key, kept apart
    # Other weights, so another cell: its own fingerprint and record name (never taken for the single-process one).
    assert one["fingerprint"] == reference["fingerprint"] != two["fingerprint"]
    assert {p.name for p in (single / "runs").glob("finetune-full*.json")}.isdisjoint(
        p.name for p in (sharded / "runs").glob("finetune-full*.json"))


KILL_OR_LOG = textwrap.dedent('''
    import os, signal, sys, time
    from fewshot.cli import main
    from fewshot.core import distributed
    from fewshot.train import session

    step_done, resume = session.TrainSession.step_done, session.TrainSession.resume
    def killed(self, step, modules, loss):          # rank 1 dies after step 10, once a partial checkpoint exists
        step_done(self, step, modules, loss)
        if distributed.rank() == 1 and step == 9:
            while not self.partial.exists():         # rank 0 saves after every step (--checkpoint-seconds 0)
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
    def logged(self, modules):                       # the step each rank goes on from
        first = resume(self, modules)
        with open(f"resumed-{distributed.rank()}", "w") as f:
            f.write(str(first))
        return first
    if sys.argv[1] == "kill":
        session.TrainSession.step_done = killed
    else:
        session.TrainSession.resume = logged
    sys.exit(main(sys.argv[2:]))
''')


def test_a_rank_killed_fails_the_job_and_the_rerun_resumes_to_the_uninterrupted_record(trained, tmp_path):
    script = tmp_path / "kill_or_log.py"
    script.write_text(KILL_OR_LOG)
    options = (*TRAINED[:1], "maml", *TRAINED[4:], "--checkpoint-seconds", "0")
    died = bench(tmp_path, *options, ranks=2, entry=(str(script), "kill"), check=False)
    assert died.returncode != 0 and "SIGKILL" in died.stdout + died.stderr     # torchrun names the dead rank
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    (partial,) = (tmp_path / "ckpt").iterdir()
    saved = torch.load(partial, weights_only=False)["step"]
    assert partial.name.endswith(".partial.pt") and 10 <= saved < 20
    bench(tmp_path, *options, ranks=2, entry=(str(script), "log"))              # the same command again
    assert [(tmp_path / f"resumed-{r}").read_text() for r in range(2)] == [str(saved)] * 2
    resumed, uninterrupted = records(tmp_path)["maml"], records(trained[1])["maml"]
    assert resumed["accuracies"] == uninterrupted["accuracies"]
    assert resumed["episode_hash"] == uninterrupted["episode_hash"]
    assert [c["loss"] for c in resumed["train"]["curve"]] == [c["loss"] for c in uninterrupted["train"]["curve"]]
    assert resumed["train"]["split"] == {"ranks": 2, "by": "meta-batch"}
    (checkpoint,) = (tmp_path / "ckpt").iterdir()
    assert not checkpoint.name.endswith(".partial.pt")


def feature_entry(folder: Path) -> dict[str, np.ndarray]:
    (path,) = (folder / "cache" / "processed" / "features").glob("*.arrays")
    key = path.stem.rsplit("-", 1)[1]
    entry = read_entry(path, key)
    assert entry is not None, f"{path} is damaged"
    return entry


def test_ranks_share_one_feature_cache(tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "torchrun"
    for folder, ranks in ((single, 1), (sharded, 2)):
        folder.mkdir()
        bench(folder, "--method", "simpleshot", "--backbone", "tiny-frozen", ranks=ranks)
    one, two = records(single)["simpleshot"], records(sharded)["simpleshot"]
    assert two["accuracies"] == one["accuracies"] and two["episode_hash"] == one["episode_hash"]
    theirs, ours = feature_entry(single), feature_entry(sharded)
    # Each rank embedded the rows of its own episodes; the entry holds both ranks' rows, as after one process.
    assert np.array_equal(ours["rows"], theirs["rows"])
    # Other neighbours in a backbone call may move the last bits of a matmul (BLAS blocking): equal to rounding.
    assert np.allclose(ours["features"], theirs["features"], rtol=0, atol=1e-6)
    assert not list((sharded / "cache").rglob("*.tmp"))


# -- the helpers, in one process (no process group) and under torchrun --------------------------------------------

def test_one_process_is_world_one_rank_zero():
    assert not distributed.is_initialized() and not distributed.launched()
    assert (distributed.world_size(), distributed.rank(), distributed.local_rank()) == (1, 0, 0)
    assert distributed.is_main() and distributed.shard(7) == (0, 7)
    assert distributed.all_gather({"a": 1}) == [{"a": 1}] and distributed.broadcast(3) == 3
    assert distributed.gather_results(lambda: 5) == [5] and distributed.main_first(lambda: "x") == "x"
    assert distributed.rank_device("cpu") == torch.device("cpu")
    distributed.barrier()
    assert distributed.init("cpu") is False


@pytest.mark.parametrize("episodes,batch,world", [(13, 2, 2), (600, 50, 2), (3, 4, 2), (10, 1, 3), (7, 3, 4)])
def test_shards_are_contiguous_whole_batches_covering_every_episode(episodes, batch, world):
    bounds = [shard_bounds(episodes, batch, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == episodes
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))                    # in order, no gap, no overlap
    assert all(lo % batch == 0 for lo, _ in bounds)                                 # batches as in one process
    sizes = [-(-(hi - lo) // batch) for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_bad_timeout_names_the_variable(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(distributed.UserError, match=r"\$FEWSHOT_DIST_TIMEOUT='soon' is not a number of seconds"):
        distributed.timeout()


SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import torch
    from fewshot.core import distributed
    from fewshot.data import sample_episodes
    from fewshot.evaluate.harness import _evaluate_block, evaluate
    from fewshot.methods import create_method
    from fewshot.backbones import create_backbone
    from fewshot.core.atomic import atomic_write_text
    sys.path.insert(0, sys.argv[1])
    from conftest import blob_dataset

    assert distributed.init("cpu") and distributed.world_size() == 2
    me = distributed.rank()
    out = {"gather": distributed.all_gather(me * 10), "broadcast": distributed.broadcast(f"from {me}"),
           "shard": distributed.shard(5)}
    try:
        distributed.gather_results(lambda: 1 / (me - 1))          # rank 1 divides by zero
    except Exception as error:
        out["gather_failure"] = f"{type(error).__name__}: {error}"
    def rank0_fails():
        if me == 0:
            raise ValueError("no data")
        return "ran"
    try:
        distributed.main_first(rank0_fails)
    except Exception as error:
        out["main_first_failure"] = f"{type(error).__name__}: {error}"
    dataset = blob_dataset()
    torch.manual_seed(0)
    for name, episodes, batch in (("protonet", 3, 4), ("protonet", 9, 2), ("finetune-full", 5, 2)):
        method = create_method(name, create_backbone("conv4", in_channels=1, image_size=16, hidden=8))
        if name == "finetune-full":
            method.config.steps, method.config.head_warmup_steps = 2, 5
        tasks = sample_episodes(dataset, 3, 1, 2, episodes, seed=1)
        result = evaluate(method, dataset, tasks, device="cpu", batch_size=batch, progress=False)
        alone = _evaluate_block(method, dataset, tasks, torch.device("cpu"), batch, None, False)[0]
        out[f"{name}-{episodes}"] = [result.accuracies.tolist(), alone.tolist(), result.used["episodes_per_rank"]]
    atomic_write_text(f"{sys.argv[2]}/rank-{me}.json", json.dumps(out))
''')


def test_collectives_failures_and_empty_shards_under_torchrun(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    result = subprocess.run(torchrun(str(script), str(Path(__file__).parent), str(tmp_path)),
                            capture_output=True, text=True, env=environment(tmp_path / "cache"), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for me in range(2):
        out = json.loads((tmp_path / f"rank-{me}.json").read_text())
        assert out["gather"] == [0, 10] and out["broadcast"] == "from 0"
        assert out["shard"] == [[0, 2], [2, 5]][me]
        assert out["gather_failure"] == ("RankFailed: rank 1 failed (ZeroDivisionError: division by zero); this "
                                         "rank stops too" if me == 0 else "ZeroDivisionError: division by zero")
        assert out["main_first_failure"] == ("ValueError: no data" if me == 0 else
                                             "RankFailed: rank 0 failed (ValueError: no data); this rank stops too")
        for key, split in (("protonet-3", [0, 3]), ("protonet-9", [4, 5]), ("finetune-full-5", [2, 3])):
            sharded, alone, per_rank = out[key]
            assert sharded == alone and per_rank == split, key     # rank 0 has no episode in protonet-3


SPEC = """
name = "tiny-torchrun"
title = "Tiny torchrun check"
metric = "accuracy"
baseline = "none"

[source]
paper = "none"
table = "none"

[defaults]
dataset = "tiny-blobs"
queries = 3
episodes = 13
seed = 0

[[settings]]
id = "5w1s"
label = "5-way 1-shot"
ways = 5
shots = 1

[[methods]]
method = "protonet"
label = "ProtoNet"
backbone = "conv4"
backbone_options = { hidden = 8 }
train = { steps = 20 }
"""


def test_reproduce_under_torchrun_writes_the_single_process_records(tmp_path):
    (tmp_path / "tiny.toml").write_text(SPEC)
    outputs = {}
    for ranks in (1, 2):
        args = ["-m", "fewshot.bench", "reproduce", "--plugin", str(PLUGINS / "tiny_plugin.py"), "tiny.toml",
                "--out", f"out{ranks}", "--checkpoint-dir", f"ckpt{ranks}", "--eval-batch", "2", "--quiet"]
        command = torchrun(*args) if ranks > 1 else [sys.executable, *args]
        done = subprocess.run(command, capture_output=True, text=True, env=environment(tmp_path / "cache"),
                              timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs[ranks] = done
    (one,), (two,) = [[json.loads(p.read_text()) for p in (tmp_path / f"out{r}" / "records").glob("*.json")]
                      for r in (1, 2)]
    assert two["accuracies"] == one["accuracies"] and two["episode_hash"] == one["episode_hash"]
    assert two["train"]["loaded"] is False and two["environment"]["episodes_per_rank"] == [6, 7]
    assert outputs[2].stdout.count("cell(s) run") == 1 and outputs[2].stderr.count("5w1s/ProtoNet: accuracy") == 1
    assert (tmp_path / "out2" / "table.md").is_file() and not list(tmp_path.rglob("*.tmp"))
