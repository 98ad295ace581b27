"""Several sources at once (``a+b``): the union of their splits in the first source's format, recorded; training
episodes from one source at a time, seeded per episode, independent of batching; the command end to end."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fewshot.cli import main
from fewshot.core.errors import UsageError
from fewshot.data import ClassDataset, load_dataset, register_dataset, sample_episodes
from fewshot.data.union import sample_source_episodes, source_names, union_of
from fewshot.results.records import load_records

from conftest import blob_dataset

PLUGIN = str(Path(__file__).parent / "plugins" / "tiny_plugin.py")


def rgb_blobs(classes: int = 6, size: int = 20, name: str = "rgb") -> ClassDataset:
    g = torch.Generator().manual_seed(3)
    patterns = torch.rand(classes, 3, size, size, generator=g)
    images = patterns.repeat_interleave(8, 0) + 0.5 * torch.rand(classes * 8, 3, size, size, generator=g)
    images = (images / images.amax() * 255).to(torch.uint8)
    return ClassDataset(images, torch.arange(classes).repeat_interleave(8), [f"c{i}" for i in range(classes)], name)


@register_dataset("test-union-rgb")
def load_union_rgb(split, root, **options):
    return rgb_blobs(name=f"test-union-rgb/{split}")


def test_the_union_takes_the_first_sources_format_and_records_it():
    grey, rgb = blob_dataset(classes=5, per_class=8, size=16), rgb_blobs()
    union = union_of([grey, rgb], ["grey", "rgb"])
    assert union.data.shape == (5 * 8 + 6 * 8, 1, 16, 16)
    assert union.class_names[:2] == ["grey:class00", "grey:class01"] and union.class_names[5] == "rgb:c0"
    assert union.source_of_class.tolist() == [0] * 5 + [1] * 6 and union.source_names == ["grey", "rgb"]
    assert union.conversions[0] == {"source": "grey", "steps": []}
    assert union.conversions[1]["from"] == [3, 20, 20] and union.conversions[1]["to"] == [1, 16, 16]
    assert torch.equal(union.data[:40], grey.data) and torch.equal(union.labels[40:], rgb.labels + 5)


def test_source_episodes_are_seeded_from_one_source_and_independent_of_batching():
    grey, rgb = blob_dataset(classes=5, per_class=8, size=16), rgb_blobs()
    union = union_of([grey, rgb], ["grey", "rgb"])
    every = sample_source_episodes(union, 3, 2, 2, 400, seed=7)
    again = torch.cat([sample_source_episodes(union, 3, 2, 2, 100, seed=7, start=s).support
                       for s in range(0, 400, 100)])
    assert torch.equal(every.support, again)
    assert torch.equal(every.classes, sample_source_episodes(union, 3, 2, 2, 400, seed=7).classes)
    assert not torch.equal(every.classes, sample_source_episodes(union, 3, 2, 2, 400, seed=8).classes)
    sources = union.source_of_class[every.classes.long()]                # [E, ways]
    assert (sources == sources[:, :1]).all()                             # one source per episode
    assert 150 < int((sources[:, 0] == 0).sum()) < 250                   # drawn uniformly (400 draws)
    # Each episode is the source's own episode of the same index and seed, in the union's rows and classes.
    rgb_part = union.select_classes(torch.arange(5, 11))
    e = int(torch.nonzero(sources[:, 0] == 1)[0])
    alone = sample_episodes(rgb_part, 3, 2, 2, 1, seed=7, start=e)
    assert torch.equal(every.classes[e].long(), alone.classes[0].long() + 5)
    assert torch.equal(union.data[every.support[e].long()], rgb_part.data[alone.support[0].long()])
    assert torch.equal(every.support_labels[e], alone.support_labels[0])


def test_what_cannot_be_joined_or_sampled_says_why():
    grey, rgb = blob_dataset(classes=5, per_class=8, size=16), rgb_blobs(classes=2)
    with pytest.raises(ValueError, match="need 3 classes in each source, but rgb has 2"):
        sample_source_episodes(union_of([grey, rgb], ["grey", "rgb"]), 3, 1, 1, 2, seed=0)
    features = ClassDataset(torch.randn(10, 4), torch.arange(2).repeat_interleave(5), ["a", "b"], "features")
    with pytest.raises(UsageError, match="one holds images"):
        union_of([grey, features], ["grey", "features"])
    for bad in ("a++b", "a+a"):
        with pytest.raises(UsageError, match="name\\+name"):
            source_names(bad)


def test_episodic_training_on_a_union_draws_per_source_episodes(tmp_path, monkeypatch):
    import fewshot.train.loop as loop

    drawn = []

    def spy(dataset, *args, **kwargs):
        drawn.append(kwargs["start"])
        return sample_source_episodes(dataset, *args, **kwargs)

    monkeypatch.setattr(loop, "sample_source_episodes", spy)
    assert run(tmp_path, "--train-dataset", "tiny-blobs+test-union-rgb", "--dataset", "test-union-rgb") == 0
    assert drawn == [0, 1, 2]
    (record,) = load_records(tmp_path / "runs")
    assert record.config.train_dataset == "tiny-blobs+test-union-rgb" and record.config.cross_domain is True
    sources = record.config["train_sources"]
    assert sources["sources"] == ["tiny-blobs", "test-union-rgb"] and sources["conversions"][1]["to"] == [1, 16, 16]


def run(tmp_path, *extra):
    return main(["--plugin", PLUGIN, "--method", "protonet", "--baseline", "none", "--backbone", "conv4",
                 "--backbone-option", "hidden=8", "--shots", "1", "--queries", "3", "--episodes", "8",
                 "--train-steps", "3", "--quiet", "--out", str(tmp_path / "runs"),
                 "--checkpoint-dir", str(tmp_path / "ckpt"), *extra])


def test_real_sources_end_to_end(shared_data, tmp_path, capsys):
    """Omniglot and the synthetic set together, tested on scikit-learn's digits (8x8, brought to 28x28)."""
    assert main(["--method", "protonet", "--baseline", "none", "--train-dataset", "omniglot+synthetic",
                 "--dataset", "digits", "--data-root", str(shared_data), "--shots", "1", "--episodes", "20",
                 "--train-steps", "10", "--quiet", "--out", str(tmp_path / "runs"),
                 "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    assert "omniglot+synthetic -> digits" in capsys.readouterr().out
    (record,) = load_records(tmp_path / "runs")
    assert record.config["train_sources"]["classes"] == [
        load_dataset("omniglot", "train", root=shared_data).num_classes,
        load_dataset("synthetic", "train", root=shared_data).num_classes]
    assert 0.3 < sum(record.accuracies) / len(record.accuracies) <= 1.0      # above 5-way chance (0.2)
