"""ClassDataset from arrays, its class index, fingerprints, and where data lives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.data import ClassDataset, sample_episodes
from fewshot.data.registry import resolve_data_root


def test_from_numpy_arrays_with_string_labels():
    images = np.random.default_rng(0).integers(0, 255, size=(9, 8, 8), dtype=np.uint8)
    labels = ["cat", "dog", "emu"] * 3
    ds = ClassDataset.from_arrays(images, labels, name="pets")
    assert ds.class_names == ["cat", "dog", "emu"]
    assert ds.data.shape == (9, 1, 8, 8) and ds.is_images
    assert ds.class_counts.tolist() == [3, 3, 3]
    # The class index lists exactly the rows of each class.
    for c, name in enumerate(ds.class_names):
        rows = ds.class_index[c][ds.class_index[c] >= 0].tolist()
        assert sorted(rows) == [i for i, label in enumerate(labels) if label == name]


def test_feature_vectors_from_tensors():
    features = torch.randn(12, 5)
    ds = ClassDataset.from_arrays(features, torch.arange(4).repeat(3))
    assert not ds.is_images and ds.num_classes == 4
    eps = sample_episodes(ds, 4, 1, 2, episodes=2, seed=0)
    torch.testing.assert_close(ds.gather(eps.query), features[eps.query])


def test_invalid_datasets_are_rejected():
    with pytest.raises(ValueError, match="3 examples but 2 labels"):
        ClassDataset(torch.zeros(3, 4), torch.tensor([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="without any example"):
        ClassDataset(torch.zeros(2, 4), torch.tensor([0, 0]), ["a", "b"])


def test_select_classes_and_fingerprint(blobs):
    sub = blobs.select_classes([3, 1], name="two")
    assert sub.class_names == ["class03", "class01"] and len(sub) == 20
    assert torch.equal(sub.data[sub.labels == 0], blobs.data[blobs.labels == 3])
    assert sub.fingerprint() != blobs.fingerprint()
    assert blobs.fingerprint() == ClassDataset(blobs.data.clone(), blobs.labels, blobs.class_names,
                                               blobs.name).fingerprint()


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("FEWSHOT_DATA")
    monkeypatch.delenv("FEWSHOT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root(None) == Path(tmp_path / "cache" / "fewshot" / "data")
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "mine"))
    assert resolve_data_root(None) == Path(tmp_path / "mine" / "data")


def test_formats_of_the_same_examples_share_their_episodes():
    """Two conversions of the same examples (say the token ids of two encoders for the same texts) hold other data
    but carry one episode fingerprint, so their episodes hash alike; a subset of classes keeps that property and
    differs from the whole."""
    labels = torch.arange(6).repeat_interleave(4)
    one = ClassDataset(torch.arange(24).view(24, 1), labels, [f"c{i}" for i in range(6)], "t[a]", converted_from="texts")
    two = ClassDataset(torch.arange(24).view(24, 1) * 7, labels, [f"c{i}" for i in range(6)], "t[b]",
                       converted_from="texts")
    assert one.fingerprint() != two.fingerprint() and one.episodes_fingerprint() == two.episodes_fingerprint()
    assert sample_episodes(one, 3, 1, 2, 5, seed=1).hash == sample_episodes(two, 3, 1, 2, 5, seed=1).hash
    assert two.holds_episodes_of(sample_episodes(one, 3, 1, 2, 5, seed=1).dataset_fingerprint)
    sub_one, sub_two = one.select_classes([1, 3, 5]), two.select_classes([1, 3, 5])
    assert sub_one.episodes_fingerprint() == sub_two.episodes_fingerprint() != one.episodes_fingerprint()
    assert sub_one.episodes_fingerprint() != one.select_classes([0, 2, 4]).episodes_fingerprint()
    plain = ClassDataset(torch.arange(24).view(24, 1).float(), labels, [f"c{i}" for i in range(6)], "p")
    assert plain.episodes_fingerprint() == plain.fingerprint()      # no conversion: the data's own fingerprint
