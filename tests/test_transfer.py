"""Learn on A, test on B: records carry source and target, the target's images are brought to the backbone's
format by the recorded rule, the table says "source -> target", and the source's checkpoint is shared."""
from __future__ import annotations

from pathlib import Path

import torch

from fewshot.cli import main
from fewshot.data import ClassDataset, register_dataset
from fewshot.data.convert import RULE
from fewshot.results.records import load_records

PLUGIN = str(Path(__file__).parent / "plugins" / "tiny_plugin.py")


@register_dataset("test-rgb-blobs")
def load_rgb_blobs(split, root, **options):
    """A target in another format than tiny-blobs' 1x16x16: 6 classes of 3x20x20 patterns."""
    g = torch.Generator().manual_seed(3)
    patterns = torch.rand(6, 3, 20, 20, generator=g)
    images = patterns.repeat_interleave(10, 0) + 0.5 * torch.rand(60, 3, 20, 20, generator=g)
    images = (images / images.amax() * 255).to(torch.uint8)
    return ClassDataset(images, torch.arange(6).repeat_interleave(10), [f"rgb{i}" for i in range(6)],
                        f"test-rgb-blobs/{split}")


def run(tmp_path, *extra):
    return main(["--plugin", PLUGIN, "--method", "protonet", "--baseline", "finetune", "--backbone", "conv4",
                 "--backbone-option", "hidden=8", "--shots", "1", "--queries", "3", "--episodes", "8",
                 "--train-steps", "3", "--baseline-train-steps", "3", "--quiet", "--out", str(tmp_path / "runs"),
                 "--checkpoint-dir", str(tmp_path / "ckpt"), *extra])


def test_source_to_target_cell(tmp_path, capsys):
    assert run(tmp_path, "--train-dataset", "tiny-blobs", "--dataset", "test-rgb-blobs") == 0
    out = capsys.readouterr().out
    assert out.count("tiny-blobs -> test-rgb-blobs") == 2          # both rows: the method and the baseline
    records = {r.method: r for r in load_records(tmp_path / "runs")}
    for record in records.values():
        assert record.dataset == "test-rgb-blobs" and record.config.train_dataset == "tiny-blobs"
        assert record.config.cross_domain is True
        conversion = record.config["target_conversion"]
        assert conversion["rule"] == RULE
        assert conversion["from"] == [3, 20, 20] and conversion["to"] == [1, 16, 16]
    # Both methods were scored on the same target episodes, and the baseline is paired with them.
    assert records["protonet"].episode_hash == records["finetune"].episode_hash

    # The source's training is the in-domain one: tiny-blobs -> tiny-blobs reuses the same checkpoints.
    capsys.readouterr()
    assert run(tmp_path, "--dataset", "tiny-blobs", "--out", str(tmp_path / "in-domain")) == 0
    in_domain = {r.method: r for r in load_records(tmp_path / "in-domain")}
    assert all(r.train["loaded"] for r in in_domain.values())
    assert all(r.config.cross_domain is None and r.config.train_dataset == "tiny-blobs" for r in in_domain.values())
    assert "->" not in capsys.readouterr().out


def test_unknown_train_dataset_is_a_usage_error(tmp_path, capsys):
    assert run(tmp_path, "--train-dataset", "nosuch", "--dataset", "tiny-blobs") == 2
    assert capsys.readouterr().err.startswith("error: --train-dataset nosuch: neither a registered dataset")


def test_cross_domain_spec_columns_name_source_and_target():
    from fewshot.reproduce.specs import load_spec, resolve_spec_path

    spec = load_spec(resolve_spec_path("crossdomain-omniglot", Path(__file__).parents[1] / "benchmarks"))
    cells = {c.id: c.spec for c in spec.cells()}
    assert (cells["syn-omni-1s/ProtoNet"].train_dataset, cells["syn-omni-1s/ProtoNet"].dataset) == \
        ("synthetic", "omniglot")
    assert cells["omni-omni-5s/ProtoNet"].train_dataset is None and cells["omni-omni-5s/ProtoNet"].source == "omniglot"
    assert cells["omni-fmnist-1s/finetune"].dataset == "fashion-mnist"
    # In domain and towards Fashion-MNIST, a method trains on Omniglot the same way: one checkpoint, two targets.
    assert {k: v for k, v in vars(cells["omni-omni-1s/ANIL"]).items() if k not in ("dataset", "train_dataset")} == \
        {k: v for k, v in vars(cells["omni-fmnist-1s/ANIL"]).items() if k not in ("dataset", "train_dataset")}
