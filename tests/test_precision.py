"""Mixed precision: bf16 autocast on the CPU keeps the accuracies of float32, is recorded and keys its records
apart; fp16 and tf32 on the CPU are usage errors before any work."""
from __future__ import annotations

import pytest
import torch

from conftest import blob_dataset
from fewshot.cli import main
from fewshot.core.errors import UsageError
from fewshot.data import register_dataset, sample_episodes
from fewshot.evaluate.feature_cache import cached_features
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method
from fewshot.results.records import load_records


@register_dataset("precision-blobs")
def load_precision_blobs(split, root, **options):
    """24 classes of 12 blobs, split 16 / 8 by class."""
    full = blob_dataset(classes=24, per_class=12, name="precision-blobs")
    return full.select_classes(list(range(16) if split == "train" else range(16, 24)), name=f"precision-blobs/{split}")


def bench(tmp_path, out: str, *extra) -> int:
    return main(["--dataset", "precision-blobs", "--method", "protonet", "--baseline", "none", "--train-steps", "30",
                 "--episodes", "60", "--queries", "3", "--shots", "2", "--backbone", "conv4", "--device", "cpu",
                 "--out", str(tmp_path / out), "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet", *extra])


def test_bf16_keeps_the_fp32_accuracies_and_says_so_in_its_record(tmp_path):
    assert bench(tmp_path, "fp32") == 0
    assert bench(tmp_path, "bf16", "--precision", "bf16") == 0
    [fp32], [bf16] = load_records(tmp_path / "fp32"), load_records(tmp_path / "bf16")
    assert bf16.train["loaded"] is True                      # the same trained weights: only evaluation differs
    assert bf16.episode_hash == fp32.episode_hash
    assert (fp32.environment["precision"], bf16.environment["precision"]) == ("fp32", "bf16")
    assert bf16.config["precision"] == "bf16" and "precision" not in fp32.config
    # Its own identity: a bf16 record never stands in for the fp32 one (or the other way round).
    assert bf16.fingerprint != fp32.fingerprint
    assert {p.name for p in (tmp_path / "bf16").iterdir()} != {p.name for p in (tmp_path / "fp32").iterdir()}
    # The stated tolerance: the same accuracy on at least 90% of the episodes, means within one point.
    same = sum(a == b for a, b in zip(fp32.accuracies, bf16.accuracies)) / len(fp32.accuracies)
    gap = abs(fp32.summary.mean - bf16.summary.mean)
    assert same >= 0.9 and gap < 0.01, (same, gap)


def test_the_forward_runs_under_autocast_only_when_asked():
    dataset = blob_dataset()
    episodes = sample_episodes(dataset, ways=3, shots=2, queries=3, episodes=6, seed=1)
    torch.manual_seed(0)
    from fewshot.backbones import create_backbone

    for name in ("protonet", "finetune"):         # frozen features, and a method that adapts with gradients
        method = create_method(name, create_backbone("conv4", in_channels=1, image_size=16, hidden=8))
        seen: list[torch.dtype] = []
        method.backbone.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
        fp32 = evaluate(method, dataset, episodes, device="cpu", progress=False)
        assert set(seen) == {torch.float32} and fp32.used["precision"] == "fp32"
        seen.clear()
        bf16 = evaluate(method, dataset, episodes, device="cpu", progress=False, precision="bf16")
        assert set(seen) == {torch.bfloat16} and bf16.used["precision"] == "bf16", name
        assert len(bf16.accuracies) == len(fp32.accuracies) == 6


def test_fp16_on_the_cpu_is_a_usage_error(tmp_path, capsys):
    assert bench(tmp_path, "fp16", "--precision", "fp16") == 2
    assert "--precision fp16 needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()                   # refused before any training
    assert bench(tmp_path, "x", "--precision", "fp8") == 2
    assert "not a precision; use fp32, tf32, bf16, fp16" in capsys.readouterr().err
    assert bench(tmp_path, "tf32", "--precision", "tf32") == 2
    assert "--precision tf32 needs a CUDA device, and this run is on cpu; use --precision fp32" in capsys.readouterr().err
    dataset = blob_dataset()
    with pytest.raises(UsageError, match="needs a CUDA device"):
        evaluate(create_method("protonet", torch.nn.Flatten()), dataset,
                 sample_episodes(dataset, 3, 1, 1, episodes=2, seed=0), device="cpu", precision="fp16")


def test_tf32_lets_matmuls_use_tensorfloat32_only_inside_the_evaluation():
    from fewshot.evaluate.precision import autocast

    before = torch.get_float32_matmul_precision()
    with autocast("tf32", "cuda"):
        assert torch.get_float32_matmul_precision() == "high"
        assert not torch.is_autocast_enabled("cuda")           # tensors stay float32
    assert torch.get_float32_matmul_precision() == before == "highest"


class Frozen(torch.nn.Module):
    feature_cache_identity = {"name": "precision-test-projection"}

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(256, 6, generator=torch.Generator().manual_seed(0)),
                                         requires_grad=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.weight


def test_cached_features_of_each_precision_are_kept_apart(tmp_path):
    dataset, backbone, rows = blob_dataset(), Frozen(), torch.arange(30)
    fp32 = cached_features(backbone, dataset, rows, "cpu", root=tmp_path, progress=False)
    bf16 = cached_features(backbone, dataset, rows, "cpu", root=tmp_path, progress=False, precision="bf16")
    assert bf16.path != fp32.path and bf16.computed == 30          # not read from the float32 entry
    assert not torch.equal(bf16.features, fp32.features)           # computed in bfloat16, returned as float32
    torch.testing.assert_close(bf16.features, fp32.features, rtol=0.02, atol=0.5)
    again = cached_features(backbone, dataset, rows, "cpu", root=tmp_path, progress=False)
    assert again.hits == 30 and torch.equal(again.features, fp32.features)
