"""Folders of class folders: the seeded split rule, split files, image conversion and the errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.data import load_dataset
from fewshot.data.folder import class_folders, load_image_folder, split_classes

CLASSES = [f"class_{c:02d}" for c in range(10)]


def _snapshot(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """10 grayscale classes of 3 PNGs each (a class's index is its pixel value), of assorted sizes."""
    root = tmp_path / "glyphs"
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20 + i, 16 + 2 * c), 10 * c + i, dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / CLASSES[0] / ".hidden.png").write_bytes(b"not an image")
    (root / CLASSES[0] / "notes.txt").write_text("not an image either")
    (root / "empty_class").mkdir()
    return root


def test_seeded_split_is_deterministic_disjoint_and_recorded(folder: Path):
    before = _snapshot(folder)
    splits = {s: load_image_folder(folder, s, image_size=12) for s in ("train", "val", "test")}
    again = load_image_folder(folder, "train", image_size=12)
    assert again.fingerprint() == splits["train"].fingerprint()
    names = {s: set(ds.class_names) for s, ds in splits.items()}
    assert [len(names[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert names["train"] | names["val"] | names["test"] == set(CLASSES)
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    # The rule, by hand: sorted names, permuted by default_rng(seed), cut at round(n * cumulative fractions).
    order = [sorted(CLASSES)[i] for i in np.random.default_rng(0).permutation(10)]
    assert names["train"] == set(order[:6]) and names["val"] == set(order[6:8]) and names["test"] == set(order[8:])
    assert splits["train"].class_names == sorted(names["train"])
    assert splits["train"].name == "glyphs/train[seed0-0.64-0.16-0.2]"
    assert "default_rng(0)" in splits["train"].split_rule
    assert split_classes(CLASSES, 1) != split_classes(CLASSES, 0)
    assert load_image_folder(folder, "train", split_seed=1, image_size=12).name.startswith("glyphs/train[seed1-")
    assert _snapshot(folder) == before, "the user's folder must not be written"


def test_images_are_resized_uint8_and_labelled(folder: Path):
    ds = load_image_folder(folder, "all", image_size=(10, 8))
    assert ds.data.shape == (30, 1, 10, 8) and ds.data.dtype == torch.uint8
    assert ds.class_names == CLASSES and "empty_class" not in ds.class_names
    assert (ds.class_counts == 3).all()
    assert torch.equal(ds.data[:, 0, 0, 0].long(), 10 * ds.labels + torch.arange(30) % 3)  # constant images survive
    rgb = load_image_folder(folder, "all", image_size=6, grayscale=False)
    assert rgb.data.shape == (30, 3, 6, 6) and torch.equal(rgb.data[:, 0], rgb.data[:, 2])


def test_colour_images_give_three_channels(tmp_path: Path):
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / name).mkdir()
        Image.new("RGB", (30, 40), colour).save(tmp_path / name / "a.jpg")
        Image.new("L", (30, 40), 128).save(tmp_path / name / "b.png")
    ds = load_image_folder(tmp_path, "all", image_size=8)
    assert ds.data.shape == (4, 3, 8, 8)
    assert load_image_folder(tmp_path, "all", image_size=8, grayscale=True).data.shape == (4, 1, 8, 8)


def test_split_files_in_the_folder(folder: Path):
    (folder / "train.txt").write_text("# base classes\nclass_03\nclass_01\n\n")
    (folder / "val.txt").write_text("class_05\n")
    (folder / "test.txt").write_text("class_07\nclass_09\n")
    train = load_image_folder(folder, "train", image_size=8)
    assert train.class_names == ["class_03", "class_01"] and len(train) == 6
    assert "split file" in train.split_rule and train.name.startswith("glyphs/train[files-")
    assert load_image_folder(folder, "test", image_size=8).class_names == ["class_07", "class_09"]


def test_split_files_given_explicitly(folder: Path, tmp_path: Path):
    elsewhere = tmp_path / "splits"
    elsewhere.mkdir()
    (elsewhere / "test.txt").write_text("class_02\n")
    assert load_image_folder(folder, "test", image_size=8, split_files=elsewhere).class_names == ["class_02"]
    mapping = {"val": elsewhere / "test.txt"}
    assert load_image_folder(folder, "val", image_size=8, split_files=mapping).class_names == ["class_02"]
    with pytest.raises(FileNotFoundError, match="no split file for 'train'"):
        load_image_folder(folder, "train", split_files=elsewhere)


def test_split_file_errors(folder: Path):
    (folder / "train.txt").write_text("class_01\nclass_1\n")
    with pytest.raises(ValueError, match=r"'class_1' \(did you mean"):
        load_image_folder(folder, "train")
    (folder / "train.txt").write_text("class_01\n")
    (folder / "test.txt").write_text("class_01\nclass_02\n")
    with pytest.raises(ValueError, match="share classes"):
        load_image_folder(folder, "test")
    (folder / "test.txt").write_text("empty_class\n")
    with pytest.raises(ValueError, match="no image folder"):
        load_image_folder(folder, "test")


def test_missing_folder_and_folder_without_images(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere", "train")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.md").write_text("no images")
    with pytest.raises(ValueError, match="no images found"):
        class_folders(tmp_path)


def test_bad_arguments(folder: Path):
    with pytest.raises(ValueError, match="unknown split"):
        load_image_folder(folder, "validation")
    with pytest.raises(ValueError, match="summing to 1"):
        load_image_folder(folder, "train", split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="'val' .* is empty"):
        load_image_folder(folder, "val", split_fractions=(0.9, 0.0, 0.1))


def test_load_dataset_dispatches_folders(folder: Path):
    ds = load_dataset(str(folder), "test", image_size=8)
    assert ds.fingerprint() == load_image_folder(folder, "test", image_size=8).fingerprint()
