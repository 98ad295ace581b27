"""The harness: out-of-memory back-off (injected allocation errors on the CPU), the batch size on the cached
embedding path, and blocks of episodes (the shards of a distributed run) that give the accuracies of one process."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import blob_dataset
from fewshot.backbones import create_backbone
from fewshot.data import sample_episodes
from fewshot.evaluate.backoff import chunked, is_out_of_memory
from fewshot.evaluate.features import embed
from fewshot.evaluate.harness import _evaluate_block, evaluate, shard_bounds
from fewshot.methods import create_method

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"


@pytest.fixture
def setting():
    dataset = blob_dataset()
    return dataset, sample_episodes(dataset, ways=3, shots=2, queries=3, episodes=12, seed=3)


def conv4(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_backbone("conv4", in_channels=1, image_size=16, hidden=8)


def allocation_error() -> None:
    """A genuine allocation failure of the CPU allocator (``DefaultCPUAllocator: can't allocate memory``)."""
    torch.empty(1 << 50, dtype=torch.uint8)


def failing_first(function, *, when=lambda *args: True, error=allocation_error):
    """``function``, except that its first call for which ``when(*args)`` holds raises ``error`` instead."""
    calls = {"failed": 0, "sizes": []}

    def wrapped(*args, **kwargs):
        calls["sizes"].append(len(args[0]))
        if not calls["failed"] and when(*args):
            calls["failed"] += 1
            error()
        return function(*args, **kwargs)

    return wrapped, calls


def test_out_of_memory_is_recognised():
    with pytest.raises(RuntimeError) as cpu:
        allocation_error()
    assert is_out_of_memory(cpu.value)
    assert is_out_of_memory(torch.OutOfMemoryError(CUDA_OOM)) and is_out_of_memory(RuntimeError(CUDA_OOM))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_frozen_feature_batches_halve_on_out_of_memory_and_keep_the_accuracies(setting):
    dataset, episodes = setting
    method = create_method("protonet", conv4())
    reference = evaluate(method, dataset, episodes, device="cpu", batch_size=8, progress=False)
    assert reference.used["eval_batch_used"] == 8 and reference.used["oom_retries"] == 0
    method.logits_from_features, calls = failing_first(method.logits_from_features)
    result = evaluate(method, dataset, episodes, device="cpu", batch_size=8, progress=False)
    assert result.accuracies.tolist() == reference.accuracies.tolist()
    assert result.episode_hash == reference.episode_hash
    assert result.used == {**reference.used, "eval_batch_used": 4, "oom_retries": 1}
    assert calls["sizes"] == [8, 4, 4, 4]               # the failed batch of 8, then 12 episodes in fours


def test_gradient_adapting_batches_halve_on_out_of_memory_and_keep_the_accuracies(setting):
    dataset, episodes = setting
    method = create_method("finetune-full", conv4(), steps=2, head_warmup_steps=5)
    reference = evaluate(method, dataset, episodes, device="cpu", batch_size=6, progress=False)
    method.forward, calls = failing_first(method.forward, error=lambda: (_ for _ in ()).throw(
        torch.OutOfMemoryError(CUDA_OOM)))
    result = evaluate(method, dataset, episodes, device="cpu", batch_size=6, progress=False)
    assert result.accuracies.tolist() == reference.accuracies.tolist()
    assert result.used["eval_batch_used"] == 3 and result.used["oom_retries"] == 1
    assert calls["sizes"] == [6, 3, 3, 3, 3]


def test_embedding_chunks_halve_on_out_of_memory_and_keep_the_features(setting):
    dataset, episodes = setting
    method = create_method("protonet", conv4())
    rows = torch.arange(len(dataset))
    reference = embed(method, dataset, rows, "cpu", batch_size=32, progress=False)
    method.embed, calls = failing_first(method.embed, when=lambda images: len(images) > 8)
    again = embed(method, dataset, rows, "cpu", batch_size=32, progress=False)
    assert torch.allclose(again.features, reference.features, atol=1e-6, rtol=0)
    assert (again.chunking.requested, again.chunking.used, again.chunking.retries) == (32, 16, 1)
    assert calls["sizes"][:2] == [32, 16] and sum(calls["sizes"][1:]) == len(dataset)
    result = evaluate(create_method("protonet", method.backbone), dataset, episodes, device="cpu", batch_size=4,
                      progress=False)
    failing = create_method("protonet", method.backbone)
    failing.embed, _ = failing_first(failing.embed, when=lambda images: len(images) > 8)
    retried = evaluate(failing, dataset, episodes, device="cpu", batch_size=4, embed_batch_size=32, progress=False)
    assert retried.accuracies.tolist() == result.accuracies.tolist()
    assert retried.used["embed_batch_used"] == 16 and retried.used["oom_retries"] == 1


def test_a_chunk_of_one_that_still_fails_and_other_errors_are_raised():
    def always(lo, hi):
        allocation_error()

    with pytest.raises(RuntimeError, match="can't allocate memory"):
        chunked(5, 4, always)
    seen = []

    def broken(lo, hi):
        seen.append(hi - lo)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        chunked(5, 4, broken)
    assert seen == [4]                                   # not retried
    with pytest.raises(ValueError, match="chunk size must be at least 1"):
        chunked(5, 0, always)


class Frozen(nn.Module):
    """A cacheable frozen backbone that records the size of every batch it embeds."""

    feature_cache_identity = {"name": "frozen-test-projection"}

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(256, 6, generator=torch.Generator().manual_seed(0)),
                                   requires_grad=False)
        self.out_features = 6
        self.batches: list[int] = []
        self.fail_next = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(images))
        if self.fail_next:
            self.fail_next = False
            raise torch.OutOfMemoryError(CUDA_OOM)
        return images.flatten(1) @ self.weight


def test_the_cached_path_embeds_in_the_batch_size_it_is_given_and_backs_off(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_FEATURE_CACHE", raising=False)
    dataset = blob_dataset()
    backbone = Frozen()
    method = create_method("simpleshot", backbone)
    first = embed(method, dataset, torch.arange(50), "cpu", batch_size=16, progress=False)
    assert backbone.batches == [16, 16, 16, 2] and first.chunking.used == 16
    backbone.batches.clear()
    backbone.fail_next = True
    more = embed(method, dataset, torch.arange(100), "cpu", batch_size=40, progress=False)  # 50 new rows
    assert backbone.batches == [40, 20, 20, 10] and (more.chunking.used, more.chunking.retries) == (20, 1)
    assert torch.allclose(more.features[:50], first.features, atol=0, rtol=0)               # from the cache
    assert embed(method, dataset, torch.arange(100), "cpu", progress=False).chunking is None  # all cached now


@pytest.mark.parametrize("name,batch", [("protonet", 5), ("finetune", 4), ("finetune-full", 3), ("maml", 2)])
@pytest.mark.parametrize("world", [2, 3, 5])
def test_blocks_of_whole_batches_give_the_single_process_accuracies(setting, name, batch, world):
    dataset, episodes = setting
    options = {"finetune": {"steps": 5}, "finetune-full": {"steps": 2, "head_warmup_steps": 5}}.get(name, {})
    method = create_method(name, conv4(), **options)
    whole = evaluate(method, dataset, episodes, device="cpu", batch_size=batch, progress=False)
    parts = [_evaluate_block(method, dataset, episodes[slice(*shard_bounds(len(episodes), batch, r, world))],
                             torch.device("cpu"), batch, None, False)[0] for r in range(world)]
    assert [a for part in parts for a in part.tolist()] == whole.accuracies.tolist()


def test_channels_last_is_used_on_the_cpu_unless_switched_off_and_the_layout_is_given_back(monkeypatch):
    from fewshot.evaluate.feature_cache import memory_format, prefer_channels_last

    monkeypatch.delenv("FEWSHOT_CHANNELS_LAST", raising=False)
    assert prefer_channels_last("cpu") and not prefer_channels_last("cuda")
    monkeypatch.setenv("FEWSHOT_CHANNELS_LAST", "0")
    assert not prefer_channels_last("cpu")
    monkeypatch.setenv("FEWSHOT_CHANNELS_LAST", "1")
    assert prefer_channels_last("cuda")
    backbone = conv4().eval()
    convs = [p for p in backbone.parameters() if p.dim() == 4]
    images = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        reference = backbone(images)
        with memory_format(backbone, True):
            assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
            assert not any(p.is_contiguous() for p in convs[1:])      # (one input channel: both layouts at once)
            inside = backbone(images)
        with memory_format(backbone, False):
            assert all(p.is_contiguous() for p in convs)
    assert all(p.is_contiguous() for p in convs)
    assert torch.allclose(inside, reference, atol=1e-5, rtol=0)


def test_the_harness_records_what_the_cached_path_used(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path))
    monkeypatch.delenv("FEWSHOT_FEATURE_CACHE", raising=False)
    monkeypatch.delenv("FEWSHOT_CHANNELS_LAST", raising=False)
    dataset, episodes = setting
    backbone = Frozen()
    result = evaluate(create_method("simpleshot", backbone), dataset, episodes, device="cpu", progress=False)
    assert result.used == {"eval_batch_size": 50, "world_size": 1, "eval_batch_used": 50, "embed_batch_size": 4,
                           "embed_batch_used": 4, "embed_channels_last": True, "oom_retries": 0,
                           "precision": "fp32"}
    assert set(backbone.batches) <= {1, 2, 3, 4} and backbone.batches.count(4) == len(backbone.batches) - 1


MEMORY_SCRIPT = """
import json, resource, sys
import torch
from fewshot.data import ClassDataset, sample_episodes
from fewshot.evaluate.harness import evaluate
from fewshot.methods.protonet import ProtoNet

class FeatureProtoNet(ProtoNet):          # the rows are features already
    def embed(self, images):
        return images

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

g = torch.Generator().manual_seed(0)
data = ClassDataset(torch.randn(8000, 64, generator=g), torch.arange(400).repeat_interleave(20),
                    [str(i) for i in range(400)], "features")
loaded = peak()
episodes = sample_episodes(data, 5, 5, 15, int(sys.argv[1]), seed=0)
before = peak()
result = evaluate(FeatureProtoNet(torch.nn.Identity()), data, episodes, device="cpu", progress=False)
print(json.dumps({"growth_mib": peak() - before, "with_sampling_mib": peak() - loaded,
                  "episodes": len(result.accuracies)}))
"""


def test_evaluating_60000_episodes_adds_little_to_the_peak_memory(tmp_path):
    # Before: torch.unique with return_inverse over every index (+180 MiB) and one small tensor kept per batch,
    # which let glibc's heap grow by about a batch per batch (1.4-3.5 GiB, varying from run to run).
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "memory.py"
    script.write_text(MEMORY_SCRIPT)
    done = subprocess.run([sys.executable, str(script), "60000"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["episodes"] == 60000
    assert outcome["growth_mib"] < 80, outcome          # measured: 24-36 MiB (the episode hash's copies), now 13
    # The episodes themselves: int32 rows and shared labels (fewshot.data.episodes). Before: int64
    # tensors and a [E, ways, shots+queries] draft (167 MiB), 41 MiB since.
    assert outcome["with_sampling_mib"] < 90, outcome
