"""The miniImageNet loader on tiny fake copies, built here, of each distribution format (Ravi & Larochelle split)."""
from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.errors import DataError
from fewshot.data import miniimagenet
from fewshot.data.miniimagenet import RAVI_SPLIT, MiniImageNetNotFound, load_miniimagenet, locate_miniimagenet

PER_CLASS = 2


def colour(split: str, klass: int, j: int) -> tuple[int, int, int]:
    """A unique flat colour per image, so the test can tell which image landed where."""
    return ({"train": 10, "val": 110, "test": 210}[split] + j, 2 * klass, 100 + klass)


def classes(split: str) -> list[str]:
    return sorted(RAVI_SPLIT[split])


def flat(rgb, size) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size, size, 3)).copy()


def make_pickle(root, size=84):
    root.mkdir(parents=True)
    for split in ("train", "val", "test"):
        images, class_dict = [], {}
        # Stored in reverse class order: the loader must not assume any order.
        for k, wnid in reversed(list(enumerate(classes(split)))):
            class_dict[wnid] = list(range(len(images), len(images) + PER_CLASS))
            images += [flat(colour(split, k, j), size) for j in range(PER_CLASS)]
        with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as fh:
            pickle.dump({"image_data": np.stack(images), "class_dict": class_dict}, fh)


def make_csv(root, size=10):
    (root / "images").mkdir(parents=True)
    for split in ("train", "val", "test"):
        with open(root / f"{split}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["filename", "label"])
            for k, wnid in enumerate(classes(split)):
                for j in range(PER_CLASS):
                    name = f"{wnid}{j:08d}.jpg"
                    Image.fromarray(flat(colour(split, k, j), size)).save(root / "images" / name, quality=100)
                    writer.writerow([name, wnid])


def make_folders(root, size=10):
    for split in ("train", "val", "test"):
        for k, wnid in enumerate(classes(split)):
            (root / split / wnid).mkdir(parents=True)
            for j in range(PER_CLASS):
                Image.fromarray(flat(colour(split, k, j), size)).save(root / split / wnid / f"img{j}.png")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def check(dataset, split, size, tolerance=0):
    names = classes(split)
    assert dataset.class_names == names and dataset.num_classes == len(names)
    assert dataset.data.shape == (len(names) * PER_CLASS, 3, size, size) and str(dataset.data.dtype) == "torch.uint8"
    for row in range(len(dataset)):
        k = int(dataset.labels[row])
        pixel = dataset.data[row, :, size // 2, size // 2].tolist()
        assert any(np.abs(np.subtract(pixel, colour(split, k, j))).max() <= tolerance for j in range(PER_CLASS)), \
            (split, k, pixel)


@pytest.mark.parametrize("fmt", ["pickle", "csv", "folders"])
def test_each_format_loads_the_ravi_split(tmp_path, fmt):
    root = tmp_path / "data"
    size = 84 if fmt == "pickle" else 10
    {"pickle": make_pickle, "csv": make_csv, "folders": make_folders}[fmt](root / "miniimagenet", size)
    assert locate_miniimagenet(root, "val") == (fmt, root / "miniimagenet")
    for split in ("train", "val", "test"):
        dataset = load_miniimagenet(split, root, image_size=size)
        check(dataset, split, size, tolerance=2 if fmt == "csv" else 0)   # jpeg may move a flat colour by 1-2
        assert dataset.name == f"miniimagenet/{split}" + ("" if size == 84 else f"@{size}px")
    assert (len(RAVI_SPLIT["train"]), len(RAVI_SPLIT["val"]), len(RAVI_SPLIT["test"])) == (64, 16, 20)
    both = load_miniimagenet("trainval", root, image_size=size)
    assert both.num_classes == 80 and set(both.class_names) == RAVI_SPLIT["train"] | RAVI_SPLIT["val"]
    every = load_miniimagenet("all", root, image_size=size)
    assert every.num_classes == 100 and set(every.class_names) == set().union(*RAVI_SPLIT.values())
    assert every.class_counts.tolist() == [PER_CLASS] * 100


def test_resizing_and_the_decode_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_folders(root / "mini-imagenet", size=10)
    first = load_miniimagenet("test", root, image_size=84)
    check(first, "test", 84, tolerance=1)
    cached = list((tmp_path / "cache" / "processed" / "miniimagenet").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("84px-") and cached[0].suffix == ".arrays"
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoded images should have been read from the cache")

    with monkeypatch.context() as patch:
        patch.setattr(miniimagenet, "_decode", no_decoding)
        again = load_miniimagenet("test", root, image_size=84)
    assert torch.equal(again.data, first.data) and again.fingerprint() == first.fingerprint()
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    # A changed image changes the key: decoded again, not served stale.
    changed = sorted((root / "mini-imagenet" / "test").rglob("*.png"))[0]
    Image.fromarray(flat((1, 2, 3), 10)).save(changed)
    assert not torch.equal(load_miniimagenet("test", root, image_size=84).data, first.data)
    assert len(list((tmp_path / "cache" / "processed" / "miniimagenet").iterdir())) == 2


def test_registered_and_clear_errors(tmp_path):
    from fewshot.data import load_dataset

    root = tmp_path / "data"
    with pytest.raises(MiniImageNetNotFound, match="mini-imagenet-cache-test.pkl") as info:
        load_dataset("miniimagenet", "test", root=root)
    assert isinstance(info.value, DataError) and isinstance(info.value, FileNotFoundError)
    make_folders(root / "miniimagenet", size=8)
    assert load_dataset("miniimagenet", "val", root=root, image_size=8).num_classes == 16
    # A copy with a different class split is refused unless asked for.
    wrong = root / "miniimagenet" / "val" / sorted(RAVI_SPLIT["val"])[0]
    wrong.rename(wrong.with_name("n99999999"))
    with pytest.raises(DataError, match=r"'val' \(folders copy in .*miniimagenet\) has 16 classes, not the 16 of "
                                         r"the Ravi & Larochelle split \(missing \['n01855672'\], unexpected "
                                         r"\['n99999999'\]\)"):
        load_miniimagenet("val", root, image_size=8)
    assert "n99999999" in load_miniimagenet("val", root, image_size=8, check_split=False).class_names
    with pytest.raises(ValueError, match="unknown miniImageNet split"):
        load_miniimagenet("validation", root)
