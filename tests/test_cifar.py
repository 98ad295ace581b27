"""CIFAR-FS and FC100 on a small fake CIFAR-100 python archive, built here in the exact layout."""
from __future__ import annotations

import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from fewshot.core.errors import DataError, UsageError
from fewshot.data import cifar, load_dataset
from fewshot.data.cifar import load_cifar_fs, load_fc100
from fewshot.data.download import ChecksumError
from fewshot.data.errors import DataNotFoundError
from fewshot.data.splits import read_split

# CIFAR-100's superclass table (its meta file lists the coarse names in this order, the fine names sorted).
SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}
COARSE = list(SUPERCLASSES)
FINE = sorted(f for names in SUPERCLASSES.values() for f in names.split())
COARSE_OF = {f: COARSE.index(c) for c, names in SUPERCLASSES.items() for f in names.split()}
PER_CLASS = {"train": 3, "test": 1}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def pixel(fine: int, j: int, part: str) -> tuple[int, int, int]:
    """Each image is flat: red = fine label, green = its index in its class, blue = 7 (train) or 9 (test)."""
    return fine, j, 7 if part == "train" else 9


def pickles() -> dict[str, bytes]:
    out = {}
    rng = np.random.default_rng(0)
    for part, n in PER_CLASS.items():
        fine = rng.permutation(np.repeat(np.arange(100), n))
        seen = np.zeros(100, int)
        rows = []
        for f in fine:
            rows.append(np.repeat(np.array(pixel(int(f), int(seen[f]), part), np.uint8), 1024))
            seen[f] += 1
        out[part] = pickle.dumps({b"batch_label": part.encode(), b"filenames": [b"x.png"] * len(fine),
                                  b"fine_labels": fine.tolist(), b"coarse_labels": [COARSE_OF[FINE[f]] for f in fine],
                                  b"data": np.stack(rows)}, protocol=2)
    out["meta"] = pickle.dumps({b"fine_label_names": [n.encode() for n in FINE],
                                b"coarse_label_names": [n.encode() for n in COARSE]}, protocol=2)
    return out


def make_archive(folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as archive:  # test input, in tmp_path
        for name, blob in pickles().items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_folder(folder) -> None:
    (folder / "cifar-100-python").mkdir(parents=True)
    for name, blob in pickles().items():
        (folder / "cifar-100-python" / name).write_bytes(blob)


@pytest.fixture
def archive_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setattr(cifar, "SHA256", make_archive(root / "cifar100"))
    return root


def check_images(ds) -> None:
    assert ds.data.shape == (ds.num_classes * 4, 3, 32, 32) and ds.data.dtype == torch.uint8
    assert ds.class_counts.tolist() == [4] * ds.num_classes
    for row in range(len(ds)):
        r, g, b = ds.data[row, :, 5, 7].tolist()
        assert FINE[r] == ds.class_names[int(ds.labels[row])] and b in (7, 9) and g < PER_CLASS["train"]


def test_cifar_fs_splits_from_the_archive(archive_root):
    sizes = {}
    for split in ("train", "val", "test"):
        ds = load_dataset("cifar-fs", split, root=archive_root, download=False)
        assert ds.name == f"cifar-fs/{split}" and ds.class_names == read_split("cifar-fs", split)
        check_images(ds)
        sizes[split] = ds.num_classes
    assert sizes == {"train": 64, "val": 16, "test": 20}
    both = load_cifar_fs("trainval", archive_root, download=False)
    assert both.class_names == read_split("cifar-fs", "train") + read_split("cifar-fs", "val")
    test = load_cifar_fs("test", archive_root)
    assert {"whale", "poppy", "woman", "rocket"} <= set(test.class_names)
    everything = [n for s in ("train", "val", "test") for n in read_split("cifar-fs", s)]
    assert sorted(everything) == FINE  # disjoint and complete


def test_fc100_splits_by_superclass(archive_root):
    expected = {"train": [1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19], "val": [8, 11, 13, 16], "test": [0, 7, 12, 14]}
    for split, supers in expected.items():
        ds = load_fc100(split, archive_root, download=False)
        assert ds.group_names == [COARSE[c] for c in supers]
        assert ds.num_classes == 5 * len(supers) and ds.name == f"fc100/{split}"
        assert ds.class_names == [f for c in supers for f in sorted(SUPERCLASSES[COARSE[c]].split())]
        assert [ds.group_names[g] for g in ds.groups.tolist()] == [COARSE[COARSE_OF[n]] for n in ds.class_names]
        check_images(ds)
    assert load_fc100("test", archive_root).class_names[:5] == ["beaver", "dolphin", "otter", "seal", "whale"]


def test_the_extracted_folder_gives_the_same_data(tmp_path, archive_root):
    make_folder(tmp_path / "other" / "cifar-100")
    from_folder = load_cifar_fs("test", tmp_path / "other", download=False)
    assert cifar.locate_cifar100(tmp_path / "other") == tmp_path / "other" / "cifar-100" / "cifar-100-python"
    assert torch.equal(from_folder.data, load_cifar_fs("test", archive_root).data)


def test_decoded_once_then_read_from_the_cache(archive_root, monkeypatch, tmp_path):
    first = load_fc100("val", archive_root)
    assert [p.name.split("-")[0] for p in (tmp_path / "cache" / "processed" / "cifar100").iterdir()] == ["cifar"]

    def no_decoding(*args):
        raise AssertionError("the decoded arrays should have come from the cache")

    monkeypatch.setattr(cifar, "_decode", no_decoding)
    cifar.CACHE.clear_memory()
    assert torch.equal(load_fc100("val", archive_root).data, first.data)


def test_missing_archive_says_what_to_put_where(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_cifar_fs("test", tmp_path / "data", download=False)
    message = str(info.value)
    assert f"put {tmp_path / 'data' / 'cifar100' / 'cifar-100-python.tar.gz'}" in message
    assert "downloaded from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message
    assert "sha256 85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7" in message
    assert "or put its extracted cifar-100-python/ folder there" in message


def test_a_different_or_damaged_archive_fails_naming_it(archive_root, monkeypatch):
    path = archive_root / "cifar100" / "cifar-100-python.tar.gz"
    monkeypatch.setattr(cifar, "SHA256", "0" * 64)
    with pytest.raises(ChecksumError, match=rf"^{path}: sha256 is [0-9a-f]{{64}}, expected 0{{64}} \(the published"):
        load_cifar_fs("test", archive_root)
    path.write_bytes(path.read_bytes()[:3000])
    monkeypatch.setattr(cifar, "SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=rf"^{path}: cannot (read it|unpickle)"):
        load_cifar_fs("test", archive_root)


def test_a_pickle_without_labels_is_named(tmp_path):
    make_folder(tmp_path / "data")
    bad = tmp_path / "data" / "cifar-100-python" / "test"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match=rf"^{bad}: the test pickle has no fine_labels, coarse_labels"):
        load_cifar_fs("test", tmp_path / "data")


def test_unknown_split(archive_root):
    with pytest.raises(UsageError, match="unknown split 'novel'; expected one of train, val, test, trainval"):
        load_fc100("novel", archive_root)
