"""Fashion-MNIST: the real Debian copy (all 10 classes as test classes), and fake IDX copies built here."""
from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from fewshot.core.errors import DataError, UsageError
from fewshot.data import load_dataset, sample_episodes
from fewshot.data import fashion_mnist
from fewshot.data.download import ChecksumError
from fewshot.data.errors import DataNotFoundError
from fewshot.data.fashion_mnist import CLASS_NAMES, FILES, load_fashion_mnist

SYSTEM = fashion_mnist.SYSTEM_DIRS[0]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def real():
    if not all((SYSTEM / f"{name}.gz").is_file() for name in FILES):
        pytest.skip(f"Fashion-MNIST is not installed in {SYSTEM} (apt-get install dataset-fashion-mnist; .ci/run "
                    f"installs it)")
    return SYSTEM


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def make_fake(folder, gz=True, per_class=3, seed=0):
    """A fake copy: per_class test images and 2*per_class train images a class, each image flat at a known value."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in (("t10k", per_class), ("train", 2 * per_class)):
        labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n))
        images = np.repeat((labels * 20 + np.arange(len(labels)) % 7).astype(np.uint8)[:, None, None], 28, 1)
        images = np.repeat(images, 28, 2)
        arrays[part] = (images, labels)
        for kind, a in (("images-idx3", images), ("labels-idx1", labels)):
            blob = idx_bytes(a)
            name = f"{part}-{kind}-ubyte"
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as fh:  # test input in tmp_path
                    fh.write(blob)
            else:
                (folder / name).write_bytes(blob)
    return arrays


@pytest.fixture
def fake_pins(monkeypatch):
    """Pin the fake copy's content sha256 instead of the publisher's, and hide the system copy."""
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())

    def pin(arrays):
        pins = {}
        for part, (images, labels) in arrays.items():
            pins[f"{part}-images-idx3-ubyte"] = hashlib.sha256(idx_bytes(images)).hexdigest()
            pins[f"{part}-labels-idx1-ubyte"] = hashlib.sha256(idx_bytes(labels)).hexdigest()
        monkeypatch.setattr(fashion_mnist, "FILES", pins)
    return pin


def test_the_real_test_split_holds_all_ten_classes(real, tmp_path):
    ds = load_dataset("fashion-mnist", "test", root=tmp_path / "empty-root")
    assert ds.name == "fashion-mnist/test" and ds.class_names == CLASS_NAMES
    assert ds.data.shape == (10_000, 1, 28, 28) and ds.data.dtype == torch.uint8
    assert ds.class_counts.tolist() == [1000] * 10
    # The publisher's test set starts with an ankle boot, a pullover and two trousers.
    assert ds.labels[:4].tolist() == [9, 2, 1, 1]
    # Name, labels and every pixel, pinned (the content sha256 is checked on reading, this checks the decoding).
    assert ds.fingerprint() == "f6713f796225a537070ffae65dc2cab8560560f2f59e9e7a7d7d34ca3fac241e"
    every = load_fashion_mnist("test", tmp_path, images="all")
    assert every.class_counts.tolist() == [7000] * 10 and every.name == "fashion-mnist/test[all-images]"
    # 5-way episodes from all of its classes, BSCD-FSL style.
    eps = sample_episodes(ds, 5, 5, 15, episodes=200, seed=0)
    assert set(eps.classes.flatten().tolist()) == set(range(10))


def test_the_real_copy_is_cached_once_decoded(real, tmp_path, monkeypatch):
    first = load_fashion_mnist("test", tmp_path)
    entries = list((tmp_path / "cache" / "processed" / "fashion-mnist").iterdir())
    assert [p.name.split("-")[0] for p in entries] == ["test"] and entries[0].suffix == ".arrays"

    def no_decoding(*args):
        raise AssertionError("the decoded arrays should have come from the cache")

    monkeypatch.setattr(fashion_mnist, "_decode", no_decoding)
    again = load_fashion_mnist("test", tmp_path)
    assert torch.equal(again.data, first.data) and again.fingerprint() == first.fingerprint()


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_a_fake_copy_in_the_data_root(tmp_path, fake_pins, gz):
    arrays = make_fake(tmp_path / "data" / "fashion-mnist", gz=gz)
    fake_pins(arrays)
    ds = load_fashion_mnist("test", tmp_path / "data", cache=False)
    images, labels = arrays["t10k"]
    assert torch.equal(ds.data, torch.from_numpy(images[:, None])) and ds.labels.tolist() == labels.tolist()
    both = load_fashion_mnist("test", tmp_path / "data", images="all")
    assert torch.equal(both.data[len(arrays["train"][0]):], ds.data)
    assert both.class_counts.tolist() == [9] * 10


def test_the_data_root_comes_before_the_system_copy(tmp_path, fake_pins, monkeypatch):
    fake_pins(make_fake(tmp_path / "data" / "fashion-mnist"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (tmp_path / "system",))
    make_fake(tmp_path / "system", seed=1)
    paths = fashion_mnist.locate_fashion_mnist(tmp_path / "data")
    assert set(paths.values()) == {tmp_path / "data" / "fashion-mnist" / f"{n}.gz" for n in FILES}
    (tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert fashion_mnist.locate_fashion_mnist(tmp_path / "data")["t10k-labels-idx1-ubyte"] == \
        tmp_path / "system" / "t10k-labels-idx1-ubyte.gz"


def test_missing_files_say_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("test", tmp_path / "data")
    message = str(info.value)
    assert message.startswith("Fashion-MNIST files t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte not found: put "
                              "t10k-images-idx3-ubyte.gz from http://fashion-mnist.s3-website.eu-central-1."
                              "amazonaws.com/t10k-images-idx3-ubyte.gz; ")
    assert f"in {tmp_path / 'data' / 'fashion-mnist'} (root is --data-root" in message
    assert message.endswith("or install the Debian package dataset-fashion-mnist (apt-get install "
                            "dataset-fashion-mnist)")


def test_damaged_or_different_files_fail_naming_the_file(tmp_path, fake_pins):
    folder = tmp_path / "data" / "fashion-mnist"
    fake_pins(make_fake(folder))
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match=rf"^{bad}: cannot read it: EOFError"):
        load_fashion_mnist("test", tmp_path / "data", cache=False)
    with gzip.open(bad, "wb") as fh:
        fh.write(idx_bytes(np.zeros((30, 28, 28), np.uint8)))
    with pytest.raises(ChecksumError, match=rf"^{bad}: the sha256 of its IDX content is [0-9a-f]{{64}}, expected "):
        load_fashion_mnist("test", tmp_path / "data", cache=False)


def test_it_is_a_target_only(tmp_path):
    for split in ("train", "val"):
        with pytest.raises(UsageError, match=f"^fashion-mnist is a cross-domain target: all of its 10 classes are "
                                             f"test classes, so it has no '{split}' split; test on it"):
            load_fashion_mnist(split, tmp_path)
    with pytest.raises(UsageError, match=r"^fashion-mnist: images='val'; choose one of test, train, all$"):
        load_fashion_mnist("test", tmp_path, images="val")
