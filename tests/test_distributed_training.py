"""Meta-training split over the ranks under ``torchrun --nproc-per-node 2`` (gloo, CPU) gives the single-process weights.

MAML's episodes are independent (batch norm per task), so each rank meta-trains on its block of every meta-batch
and the summed gradients give the step one process takes, up to the order of the float sums. The script below runs
:func:`fewshot.train.loop.fit` on each rank, counts every checkpoint write, and saves the rank's weights; the test
compares them with an in-process fit, checks that the ranks agree bit for bit, that only rank 0 wrote, and that a
signal to rank 0 alone stops both ranks after the same step, resumably. Data-parallel supervised pre-training is
checked against one process whose backbone sees each rank's half of every batch apart (batch norm per rank).

The runs use SGD, not Adam: Adam divides each gradient by its running magnitude, so a parameter whose gradient is
zero in exact arithmetic (a convolution's bias before batch norm, the zero-initialised head shared by all classes)
moves by about the learning rate on rounding noise alone, and any change in the order of the float sums (a split
meta-batch, or another ``tasks_per_call`` in one process) moves it differently.
"""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import blob_dataset
from distributed_helpers import environment, torchrun
from fewshot.backbones import create_backbone
from fewshot.methods import create_method
from fewshot.train.loop import TrainConfig, fit, split_across_ranks

TESTS = Path(__file__).parent
SEED = 3


def config(meta_batch: int) -> TrainConfig:
    return TrainConfig(steps=4, lr=0.05, optimizer="sgd", ways=3, shots=1, queries=2, meta_batch=meta_batch,
                       checkpoint_every=0)


def maml():
    """The same initial weights in every process."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_method("maml", create_backbone("conv4", in_channels=1, image_size=16, hidden=8))


SCRIPT = textwrap.dedent('''
    import json, os, signal, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    from fewshot.core import distributed
    from fewshot.core.atomic import atomic_torch_save, atomic_write_text
    from fewshot.core.errors import Interrupted
    from fewshot.train import loop, session
    from conftest import blob_dataset
    from test_distributed_training import SEED, config, maml

    out, checkpoints, meta_batch, stop = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "stop"
    assert distributed.init("cpu") and distributed.world_size() == 2
    me = distributed.rank()
    writes = []
    def counted(save):
        def write(obj, path):
            writes.append(Path(path).name)
            return save(obj, path)
        return write
    loop.atomic_save, session.atomic_torch_save = counted(loop.atomic_save), counted(session.atomic_torch_save)
    if stop and me == 0:        # a SIGTERM to rank 0 alone, during step 2 of 4
        step_done = session.TrainSession.step_done
        def signalled(self, step, modules, loss):
            if step == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return step_done(self, step, modules, loss)
        session.TrainSession.step_done = signalled
    method = maml()
    assert loop.split_across_ranks(method)
    result = {}
    try:
        report = loop.fit(method, blob_dataset(), config(meta_batch), seed=SEED, checkpoint_dir=checkpoints,
                          progress=False, checkpoint_seconds=1e9)
        result = {"ranks": report.ranks, "loaded": report.loaded, "loss": report.final_loss,
                  "losses": [c["loss"] for c in report.curve]}
    except Interrupted as error:
        result = {"interrupted": str(error)}
    result["writes"] = writes
    atomic_torch_save(method.state_dict(), out / f"rank-{me}.pt")
    atomic_write_text(out / f"rank-{me}.json", json.dumps(result))
''')


def launch(tmp_path: Path, name: str, checkpoints: Path, meta_batch: int, stop: bool = False) -> list[dict]:
    out = tmp_path / name
    out.mkdir()
    script = tmp_path / "split_fit.py"
    script.write_text(SCRIPT)
    done = subprocess.run(torchrun(str(script), str(TESTS), str(out), str(checkpoints), str(meta_batch),
                                   "stop" if stop else "full"),
                          capture_output=True, text=True, env=environment(tmp_path / "cache"), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return [{**json.loads((out / f"rank-{r}.json").read_text()),
             "weights": torch.load(out / f"rank-{r}.pt", weights_only=True)} for r in range(2)]


def single_process(meta_batch: int) -> tuple[dict[str, torch.Tensor], object]:
    method = maml()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # as each rank runs
    try:
        report = fit(method, blob_dataset(), config(meta_batch), seed=SEED, progress=False)
    finally:
        torch.set_num_threads(threads)
    return method.state_dict(), report


def assert_same_weights(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("meta_batch", [4, 1])      # 1: rank 0 has no episode, its gradient is zero
def test_split_meta_batch_gives_the_single_process_weights_and_one_checkpoint(tmp_path, meta_batch):
    reference, report = single_process(meta_batch)
    moved = [key for key, tensor in maml().state_dict().items() if not torch.allclose(tensor, reference[key])]
    assert len(moved) > len(reference) // 2             # training changed the weights: the comparison means something
    ranks = launch(tmp_path, "run", tmp_path / "ckpt", meta_batch)
    for rank in ranks:
        assert_same_weights(rank["weights"], reference)
        assert rank["ranks"] == 2 and rank["loaded"] is False
        assert rank["loss"] == pytest.approx(report.final_loss, rel=1e-5)
        assert rank["losses"] == pytest.approx([c["loss"] for c in report.curve], rel=1e-5)
    for key, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][key]), key        # every rank took the same steps
    (checkpoint,) = (tmp_path / "ckpt").iterdir()
    assert ranks[0]["writes"] == [checkpoint.name] and ranks[1]["writes"] == []
    assert torch.load(checkpoint, weights_only=True)["ranks"] == 2
    assert report.ranks == 1


def test_a_signal_to_one_rank_stops_both_after_the_same_step_and_the_rerun_resumes(tmp_path):
    reference, _ = single_process(4)
    checkpoints = tmp_path / "ckpt"
    stopped = launch(tmp_path, "stopped", checkpoints, 4, stop=True)
    assert stopped[0]["interrupted"].startswith("stopped by SIGTERM at step 2 of 4; the training so far is saved")
    assert stopped[1]["interrupted"].startswith("stopped by a signal to another rank at step 2 of 4")
    (partial,) = checkpoints.iterdir()
    assert partial.name.endswith(".partial.pt") and torch.load(partial, weights_only=False)["step"] == 2
    assert stopped[0]["writes"] == [partial.name] and stopped[1]["writes"] == []
    resumed = launch(tmp_path, "resumed", checkpoints, 4)
    for rank in resumed:
        assert_same_weights(rank["weights"], reference)
        assert len(rank["losses"]) == 4                  # the curve holds the steps before the stop too
    (checkpoint,) = checkpoints.iterdir()                # the partial checkpoint is gone
    assert not checkpoint.name.endswith(".partial.pt") and resumed[0]["writes"] == [checkpoint.name]


def test_one_process_never_splits():
    assert not split_across_ranks(maml())


# -- supervised pre-training, data-parallel (DistributedDataParallel's semantics) ----------------------------------

class Halves(torch.nn.Module):
    """A backbone applied to each rank's slice of the batch separately (its own batch-norm statistics), as two
    DDP ranks see it: the one-process reference of a 2-rank data-parallel pre-training."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.out_features = inner, inner.out_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cut = len(images) // 2          # fewshot.core.distributed.shard's boundary for 2 ranks
        return torch.cat([self.inner(images[:cut]), self.inner(images[cut:])])


SUPERVISED = TrainConfig(steps=30, lr=0.05, optimizer="sgd", batch_size=15, checkpoint_every=0)


def finetune(backbone: torch.nn.Module | None = None):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        inner = create_backbone("conv4", in_channels=1, image_size=16, hidden=8)
        return create_method("finetune-full", backbone(inner) if backbone else inner)


DDP_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    from fewshot.core import distributed
    from fewshot.core.atomic import atomic_torch_save, atomic_write_text
    from fewshot.train import loop
    from conftest import blob_dataset
    from test_distributed_training import SEED, SUPERVISED, finetune

    out, checkpoints = Path(sys.argv[2]), Path(sys.argv[3])
    assert distributed.init("cpu")
    writes = []
    save = loop.atomic_save
    loop.atomic_save = lambda obj, path: (writes.append(Path(path).name), save(obj, path))[1]
    method = finetune()
    report = loop.fit(method, blob_dataset(), SUPERVISED, seed=SEED, checkpoint_dir=checkpoints, progress=False,
                      checkpoint_seconds=1e9, data_parallel=True)
    me = distributed.rank()
    atomic_torch_save(method.state_dict(), out / f"rank-{me}.pt")
    atomic_write_text(out / f"rank-{me}.json", json.dumps({"ranks": report.ranks, "writes": writes,
                                                           "losses": [c["loss"] for c in report.curve]}))
''')


def test_data_parallel_pre_training_steps_every_rank_alike_with_batch_norm_per_rank(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    checkpoints = tmp_path / "ckpt"
    done = subprocess.run(torchrun(str(script), str(TESTS), str(tmp_path), str(checkpoints)), capture_output=True,
                          text=True, env=environment(tmp_path / "cache"), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [{**json.loads((tmp_path / f"rank-{r}.json").read_text()),
              "weights": torch.load(tmp_path / f"rank-{r}.pt", weights_only=True)} for r in range(2)]
    for key, tensor in ranks[0]["weights"].items():     # parameters and batch-norm buffers alike
        assert torch.equal(tensor, ranks[1]["weights"][key]), key
    losses = ranks[0]["losses"]
    assert len(losses) == 30 and sum(losses[-5:]) < 0.7 * sum(losses[:5])       # it learned
    (checkpoint,) = checkpoints.iterdir()
    assert checkpoint.name.endswith("-ddp2.pt") and ranks[0]["ranks"] == 2     # kept apart from one process's
    assert ranks[0]["writes"] == [checkpoint.name] and ranks[1]["writes"] == []

    # One process whose backbone sees each rank's half of every batch apart: the same parameters. One process on
    # the whole batch (batch norm over all of it) is another training, as DDP without SyncBatchNorm is.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        halves, whole = finetune(Halves), finetune()
        fit(halves, blob_dataset(), SUPERVISED, seed=SEED, progress=False)
        fit(whole, blob_dataset(), SUPERVISED, seed=SEED, progress=False)
    finally:
        torch.set_num_threads(threads)
    reference = {k.replace("backbone.inner.", "backbone."): v for k, v in halves.named_parameters()}
    assert reference.keys() == dict(whole.named_parameters()).keys()
    for key, tensor in reference.items():
        torch.testing.assert_close(ranks[0]["weights"][key], tensor, rtol=1e-5, atol=1e-5, msg=key)
    assert any(not torch.allclose(ranks[0]["weights"][k], v, rtol=1e-3, atol=1e-4)
               for k, v in whole.named_parameters())
