"""The embedded synthetic characters: deterministic, cached atomically, class-disjoint, and not too easy."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fewshot.data import list_datasets, load_dataset, sample_episodes
from fewshot.data import synthetic
from fewshot.data.registry import SPLITS
from fewshot.data.synthetic import (DEFAULT_CONFIG, GENERATOR_VERSION, alphabet_size, cache_path, generate_split,
                                    load_synthetic, split_alphabets)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own processed-data cache: some of them generate blank drawings."""
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def val_arrays() -> dict[str, np.ndarray]:
    return generate_split("val", seed=0)


def test_same_seed_same_bytes_and_other_seed_differs(val_arrays):
    again = generate_split("val", seed=0)
    assert all(np.array_equal(val_arrays[k], again[k]) for k in val_arrays)
    other = generate_split("val", seed=1)
    assert other["images"].shape != val_arrays["images"].shape or \
        not np.array_equal(other["images"], val_arrays["images"])


def test_shapes_dtypes_and_ink(val_arrays):
    images, labels = val_arrays["images"], val_arrays["labels"]
    assert images.dtype == np.uint8 and images.shape[1:] == (1, 28, 28)
    assert labels.shape == (images.shape[0],)
    assert np.bincount(labels).min() >= DEFAULT_CONFIG.drawings
    # Bright ink on a black background: every drawing has ink, and most pixels are background.
    assert images.reshape(len(images), -1).max(1).min() == 255
    assert 0.05 < (images > 127).mean() < 0.35
    assert (images[:, :, 0, :] == 0).mean() > 0.9 and (images[:, :, :, 0] == 0).mean() > 0.9


def test_size_and_class_disjoint_alphabet_splits():
    parts = split_alphabets(0)
    every = np.concatenate([parts[s] for s in SPLITS])
    assert sorted(every.tolist()) == list(range(DEFAULT_CONFIG.alphabets))
    classes = {s: sum(alphabet_size(a) for a in parts[s].tolist()) for s in SPLITS}
    assert sum(classes.values()) >= 1000 and DEFAULT_CONFIG.drawings >= 20
    assert [len(parts[s]) for s in SPLITS] == [30, 8, 12]
    assert not np.array_equal(split_alphabets(1)["test"], parts["test"])


def test_loader_groups_names_and_cache(tmp_path, monkeypatch):
    assert "synthetic" in list_datasets()
    root = tmp_path / "data"
    root.mkdir()
    data = load_dataset("synthetic", "val", root=root)
    assert list(root.iterdir()) == []  # generated data is cached, never written into the data root
    path = cache_path("val", 0)
    assert path.parent == tmp_path / "cache" / "processed" / "synthetic" and path.name.startswith("seed0-val-")
    assert path.exists() and synthetic.CACHE.version == GENERATOR_VERSION
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind
    assert data.name == "synthetic/val" and data.data.dtype == torch.uint8 and data.data.shape[1:] == (1, 28, 28)
    assert data.class_names[0].startswith("alphabet") and "/char" in data.class_names[0]
    assert data.groups is not None and len(data.group_names) == 8
    assert all(name.split("/")[0] == data.group_names[g] for name, g in zip(data.class_names, data.groups.tolist()))

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(synthetic, "generate_split", no_generation)
    again = load_synthetic("val", root)
    assert again.fingerprint() == data.fingerprint()
    assert torch.equal(again.data, data.data) and again.class_names == data.class_names
    with pytest.raises(AssertionError):
        load_synthetic("val", root, seed=5)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert cache_path("val", 5) != path and cache_path("test", 0) != path


def test_splits_share_no_class(tmp_path, monkeypatch):
    # Blank drawings keep this quick: it is about classes, alphabets and counts, not about pixels.
    monkeypatch.setattr(synthetic, "_render", lambda rng, cps, mask, config: np.zeros(
        (len(cps) * config.drawings, config.image_size, config.image_size), np.uint8))
    splits = {s: load_synthetic(s, tmp_path) for s in SPLITS}
    assert sum(d.num_classes for d in splits.values()) >= 1000
    assert all(int(d.class_counts.min()) >= 20 for d in splits.values())
    names = {s: set(d.class_names) for s, d in splits.items()}
    alphabets = {s: {n.split("/")[0] for n in names[s]} for s in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not alphabets[a] & alphabets[b]


def test_bad_split_and_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        load_synthetic("trian", tmp_path)
    with pytest.raises(TypeError, match="unknown options"):
        load_synthetic("val", tmp_path, image_size=32)


def test_raw_pixels_leave_room(tmp_path):
    """Nearest centroid on raw pixels, 5-way 1-shot on the test split: well above chance, well below 100%."""
    test = load_synthetic("test", tmp_path)
    episodes = sample_episodes(test, ways=5, shots=1, queries=15, episodes=200, seed=0)
    support = test.gather(episodes.support).flatten(2)
    query = test.gather(episodes.query).flatten(2)
    pred = torch.cdist(query, support).argmin(-1)  # 1-shot: the support image is the centroid
    accuracy = (pred == episodes.query_labels).float().mean().item()
    assert 0.30 < accuracy < 0.60, accuracy  # 0.428 when written (chance is 0.2)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_cache_file_is_regenerated(damage, val_arrays):
    first = load_synthetic("val")
    path = cache_path("val", 0)
    whole = path.read_bytes()
    path.write_bytes({"truncated": whole[:len(whole) // 2], "garbage": b"\x93NUMPY garbage" * 99, "empty": b""}[damage])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt quietly, with no error and no warning
        again = load_synthetic("val")
    assert again.fingerprint() == first.fingerprint()
    assert np.array_equal(again.data.numpy(), val_arrays["images"])
    assert path.read_bytes() == whole  # regenerated, bit for bit


def test_unwritable_cache_still_loads_and_leaves_nothing(tmp_path, val_arrays):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "processed").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="cannot write the synthetic cache"):
        data = load_synthetic("val")
    assert np.array_equal(data.data.numpy(), val_arrays["images"])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["processed"]
