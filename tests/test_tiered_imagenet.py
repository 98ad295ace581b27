"""tieredImageNet on fake copies of Ren et al.'s files (labels pickle, PNG pickle or BGR npz), built here."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.errors import DataError, UsageError
from fewshot.data import load_dataset, tiered_imagenet
from fewshot.data.errors import DataNotFoundError
from fewshot.data.tiered_imagenet import published_split

COUNTS = {"train": (351, 20), "val": (97, 6), "test": (160, 8)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def colour(k: int, j: int) -> tuple[int, int, int]:
    return (k % 256, (k // 256) * 100 + j, 50)


def make(folder, split: str, fmt: str = "png", per_class: int = 1, size: int = 84) -> None:
    """Ren et al.'s layout for one split: class k in category k % categories, flat images in colour(k, j)."""
    folder.mkdir(parents=True, exist_ok=True)
    classes, categories = COUNTS[split]
    specific = np.repeat(np.arange(classes), per_class)
    general = specific % categories
    labels = {b"label_specific": specific, b"label_general": general,
              b"label_specific_str": [f"class {k}".encode() for k in range(classes)],
              b"label_general_str": [f"category {c}".encode() for c in range(categories)]}
    (folder / f"{split}_labels.pkl").write_bytes(pickle.dumps(labels))
    rgb = [np.full((size, size, 3), colour(int(k), j % per_class), np.uint8) for j, k in enumerate(specific)]
    if fmt == "png":
        encoded = []
        for image in rgb:
            out = io.BytesIO()
            Image.fromarray(image).save(out, "PNG")
            encoded.append(np.frombuffer(out.getvalue(), np.uint8))
        (folder / f"{split}_images_png.pkl").write_bytes(pickle.dumps(encoded))
    else:
        with open(folder / f"{split}_images.npz", "wb") as fh:  # test input, in tmp_path
            np.savez(fh, images=np.stack(rgb)[..., ::-1])  # BGR, as OpenCV writes it


def check(ds, split: str, per_class: int = 1) -> None:
    classes, categories = COUNTS[split]
    assert ds.num_classes == classes and len(ds.group_names) == categories
    assert ds.class_counts.tolist() == [per_class] * classes
    assert ds.groups.tolist() == [k % categories for k in range(classes)]
    for row in range(0, len(ds), 7):
        k = int(ds.labels[row])
        assert tuple(ds.data[row, :, 40, 40].tolist())[0::2] == colour(k, 0)[0::2]


def test_the_published_split_has_351_97_160_classes():
    assert {s: (len(published_split(s)), len({c for _, c in published_split(s)})) for s in COUNTS} == COUNTS
    synsets = [w for s in COUNTS for w, _ in published_split(s)]
    assert len(set(synsets)) == 608 and published_split("test")[0] == ("n03314780", "n00020090")


@pytest.mark.parametrize("fmt", ["png", "npz"])
def test_each_format(tmp_path, fmt):
    make(tmp_path / "data" / "tiered-imagenet", "val", fmt)
    ds = load_dataset("tieredimagenet", "val", root=tmp_path / "data")
    assert ds.name == "tieredimagenet/val" and ds.data.shape == (97, 3, 84, 84)
    check(ds, "val")
    assert ds.class_names[:2] == ["class 0", "class 1"] and ds.group_names[0] == "category 0"


def test_trainval_resizing_and_the_cache(tmp_path, monkeypatch):
    for split in ("train", "val"):
        make(tmp_path / "data", split, "npz", size=20)
    both = load_dataset("tieredimagenet", "trainval", root=tmp_path / "data", image_size=20)
    assert both.num_classes == 448 and len(both.group_names) == 26 and both.name == "tieredimagenet/trainval@20px"
    assert int(both.groups.max()) == 25 and both.class_names[351] == "class 0"

    def no_decoding(*args):
        raise AssertionError("the decoded images should have come from the cache")

    monkeypatch.setattr(tiered_imagenet, "_images", no_decoding)
    assert torch.equal(load_dataset("tieredimagenet", "val", root=tmp_path / "data", image_size=20).data,
                       both.data[351:])


def test_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"put Ren et al.'s test_labels.pkl and test_images_png.pkl \(or "
                                                r"test_images.npz\) in .*tieredimagenet"):
        load_dataset("tieredimagenet", "test", root=tmp_path / "data")
    make(tmp_path / "data", "test")
    labels = pickle.loads((tmp_path / "data" / "test_labels.pkl").read_bytes())
    labels[b"label_general"] = labels[b"label_general"] % 7
    labels[b"label_general_str"] = labels[b"label_general_str"][:7]
    (tmp_path / "data" / "test_labels.pkl").write_bytes(pickle.dumps(labels))
    with pytest.raises(DataError, match=r"160 classes in 7 categories, not the 160 in 8 of Ren et al.'s test split"):
        load_dataset("tieredimagenet", "test", root=tmp_path / "data")
    assert len(load_dataset("tieredimagenet", "test", root=tmp_path / "data", check_split=False).group_names) == 7
    (tmp_path / "data" / "test_images_png.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"test_images_png.pkl: cannot unpickle it"):
        load_dataset("tieredimagenet", "test", root=tmp_path / "data", image_size=10)
    with pytest.raises(UsageError, match="unknown tieredImageNet split 'novel'"):
        load_dataset("tieredimagenet", "novel", root=tmp_path / "data")
