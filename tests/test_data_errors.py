"""Damaged or missing data files: each fails as one DataError whose message names the file and says what to do.

Every case builds its bad file in tmp_path and calls the loader; nothing here needs the real data.
"""
from __future__ import annotations

import csv
import io
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from fewshot.core.errors import DataError
from fewshot.data import load_dataset
from fewshot.data.download import sha256_file
from fewshot.data.folder import load_image_folder
from fewshot.data.miniimagenet import RAVI_SPLIT, load_miniimagenet
from fewshot.data.omniglot import load_omniglot_characters, load_omniglot_runs, sources

ADVICE = ("replace it", "delete it", "put ", "fetch it", "remove it", "add ", "give ")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def png_bytes(value: int = 255, size: int = 40) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def noisy_png_bytes(size: int = 64) -> bytes:
    """A PNG big enough that cutting it leaves a readable header and too little pixel data."""
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


# -- Omniglot ------------------------------------------------------------------------------------------------------


def _npz(path: Path, images: np.ndarray) -> None:
    with open(path, "wb") as fh:  # test input, written in tmp_path
        np.savez_compressed(fh, images=images)


def omniglot_truncated_npz(root: Path) -> tuple[Callable, Path]:
    path = root / "images_background.npz"
    _npz(path, np.random.default_rng(0).random((4, 20, 105, 105)) < 0.5)
    path.write_bytes(path.read_bytes()[:20_000])
    return lambda: load_omniglot_characters(root, "background", download=False), path


def omniglot_garbage_npz(root: Path) -> tuple[Callable, Path]:
    (root / "omniglot_npz").mkdir()
    path = root / "omniglot_npz" / "images_background.npz"
    path.write_bytes(b"this is not a zip archive\n" * 40)
    return lambda: load_dataset("omniglot", "val", root=root, download=False), path


def omniglot_npz_short_array(root: Path) -> tuple[Callable, Path]:
    """A well-formed zip whose images.npy header promises more rows than it holds."""
    path = root / "images_evaluation.npz"
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "|b1", "fortran_order": False, "shape": (659, 20, 105, 105)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", npy.getvalue() + bytes(5000))
    return lambda: load_dataset("omniglot-evaluation", "test", root=root, download=False), path


def omniglot_npz_wrong_shape(root: Path) -> tuple[Callable, Path]:
    path = root / "images_background.npz"
    _npz(path, np.ones((3, 20, 105, 105), dtype=bool))
    return lambda: load_dataset("omniglot-background", "train", root=root, download=False), path


def omniglot_npz_without_images(root: Path) -> tuple[Callable, Path]:
    path = root / "images_background.npz"
    with open(path, "wb") as fh:
        np.savez(fh, pictures=np.zeros(3))
    return lambda: load_omniglot_characters(root, "background", download=False), path


def omniglot_corrupt_official_zip(root: Path) -> tuple[Callable, Path]:
    (root / "omniglot").mkdir()
    path = root / "omniglot" / "images_background_small1.zip"
    path.write_bytes(b"PK\x03\x04 truncated download")
    return lambda: load_dataset("omniglot-small1", "train", root=root, download=False), path


def omniglot_corrupt_runs_zip(root: Path) -> tuple[Callable, Path]:
    path = root / "all_runs.zip"
    path.write_bytes(b"\x00" * 1000)
    return lambda: load_omniglot_runs(root, download=False), path


def _unpinned(monkeypatch, path: Path) -> None:
    """Make ``path``'s sha256 the published one, so that the archive reader itself meets the damage."""
    monkeypatch.setitem(sources.OFFICIAL_FILES, path.name, (sources.OFFICIAL_FILES[path.name][0], sha256_file(path)))


def omniglot_garbage_zip_passing_the_checksum(root: Path, monkeypatch) -> tuple[Callable, Path]:
    path = root / "images_background_small2.zip"
    path.write_bytes(b"garbage" * 100)
    _unpinned(monkeypatch, path)
    return lambda: load_dataset("omniglot-small2", "train", root=root, download=False), path


def omniglot_runs_zip_with_a_corrupt_png(root: Path, monkeypatch) -> tuple[Callable, Path]:
    path = root / "all_runs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("run01/training/class01.png", b"\x89PNG\r\n\x1a\n broken")
    _unpinned(monkeypatch, path)
    return lambda: load_omniglot_runs(root, download=False), path


def omniglot_runs_zip_missing_members(root: Path, monkeypatch) -> tuple[Callable, Path]:
    path = root / "all_runs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("run01/training/class01.png", png_bytes(size=105))
    _unpinned(monkeypatch, path)
    return lambda: load_omniglot_runs(root, download=False), path


def omniglot_missing_files(root: Path) -> tuple[Callable, Path]:
    # The Vinyals test split is all evaluation characters: that set's zip is the one asked for.
    return lambda: load_dataset("omniglot", "test", root=root, download=False), root / "omniglot" / \
        "images_evaluation.zip"


# -- image folders -------------------------------------------------------------------------------------------------


def _folder(root: Path) -> Path:
    for name in ("a", "b", "c"):
        (root / "glyphs" / name).mkdir(parents=True)
        for i in range(2):
            (root / "glyphs" / name / f"{i}.png").write_bytes(png_bytes(10 * i))
    return root / "glyphs"


def folder_corrupt_png(root: Path) -> tuple[Callable, Path]:
    folder = _folder(root)
    path = folder / "b" / "1.png"
    path.write_bytes(b"not a png at all")
    return lambda: load_image_folder(folder, "all", image_size=8), path


def folder_truncated_png(root: Path) -> tuple[Callable, Path]:
    folder = _folder(root)
    path = folder / "c" / "0.png"
    whole = noisy_png_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    return lambda: load_image_folder(folder, "all", image_size=8, grayscale=True), path


def folder_truncated_png_mode_detection(root: Path) -> tuple[Callable, Path]:
    folder = _folder(root)
    path = folder / "a" / "1.png"
    path.write_bytes(png_bytes()[:20])  # the header itself is cut
    return lambda: load_dataset(str(folder), "all", image_size=8), path


def folder_binary_split_file(root: Path) -> tuple[Callable, Path]:
    folder = _folder(root)
    path = folder / "train.txt"
    path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    return lambda: load_image_folder(folder, "train", image_size=8), path


def folder_missing(root: Path) -> tuple[Callable, Path]:
    return lambda: load_image_folder(root / "nowhere", "train"), root / "nowhere"


# -- miniImageNet --------------------------------------------------------------------------------------------------


def _pickle(root: Path, data) -> Path:
    (root / "miniimagenet").mkdir()
    path = root / "miniimagenet" / "mini-imagenet-cache-val.pkl"
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return path


def _good_pickle_data() -> dict:
    wnids = sorted(RAVI_SPLIT["val"])
    return {"image_data": np.zeros((len(wnids) * 2, 84, 84, 3), dtype=np.uint8),
            "class_dict": {w: [2 * k, 2 * k + 1] for k, w in enumerate(wnids)}}


def mini_truncated_pickle(root: Path) -> tuple[Callable, Path]:
    path = _pickle(root, _good_pickle_data())
    path.write_bytes(path.read_bytes()[:5000])
    return lambda: load_miniimagenet("val", root), path


def mini_garbage_pickle(root: Path) -> tuple[Callable, Path]:
    path = _pickle(root, None)
    path.write_bytes(b"\x80\x04garbage that is no pickle" * 10)
    return lambda: load_dataset("miniimagenet", "val", root=root), path


def mini_pickle_of_a_list(root: Path) -> tuple[Callable, Path]:
    path = _pickle(root, [1, 2, 3])
    return lambda: load_miniimagenet("val", root), path


def mini_pickle_with_bad_indices(root: Path) -> tuple[Callable, Path]:
    data = _good_pickle_data()
    data["class_dict"][sorted(RAVI_SPLIT["val"])[0]] = [10_000]
    path = _pickle(root, data)
    return lambda: load_miniimagenet("val", root), path


def _csv(root: Path, rows: list[list[str]] | None = None) -> Path:
    base = root / "miniimagenet"
    (base / "images").mkdir(parents=True)
    wnids = sorted(RAVI_SPLIT["val"])
    with open(base / "val.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label"])
        for k, wnid in enumerate(wnids):
            name = f"{wnid}00000001.png"
            (base / "images" / name).write_bytes(png_bytes(k))
            writer.writerow([name, wnid])
    return base / "val.csv"


def mini_truncated_csv(root: Path) -> tuple[Callable, Path]:
    path = _csv(root)
    text = path.read_text()
    path.write_text(text[:text.index(",", len(text) // 2) - 3])  # cut inside a file name
    return lambda: load_miniimagenet("val", root, image_size=8), path


def mini_garbage_csv(root: Path) -> tuple[Callable, Path]:
    path = _csv(root)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary, not text")
    return lambda: load_miniimagenet("val", root, image_size=8), path


def mini_csv_lists_a_missing_image(root: Path) -> tuple[Callable, Path]:
    path = _csv(root)
    missing = sorted((root / "miniimagenet" / "images").iterdir())[3]
    missing.unlink()
    return lambda: load_miniimagenet("val", root, image_size=8), missing


def mini_corrupt_image(root: Path) -> tuple[Callable, Path]:
    _csv(root)
    path = sorted((root / "miniimagenet" / "images").iterdir())[5]
    path.write_bytes(noisy_png_bytes()[:300])
    return lambda: load_miniimagenet("val", root, image_size=8), path


def mini_missing(root: Path) -> tuple[Callable, Path]:
    return lambda: load_miniimagenet("test", root), root / "miniimagenet"


CASES = [omniglot_truncated_npz, omniglot_garbage_npz, omniglot_npz_short_array, omniglot_npz_wrong_shape,
         omniglot_npz_without_images, omniglot_corrupt_official_zip, omniglot_corrupt_runs_zip,
         omniglot_garbage_zip_passing_the_checksum, omniglot_runs_zip_with_a_corrupt_png,
         omniglot_runs_zip_missing_members, omniglot_missing_files,
         folder_corrupt_png, folder_truncated_png, folder_truncated_png_mode_detection, folder_binary_split_file,
         folder_missing,
         mini_truncated_pickle, mini_garbage_pickle, mini_pickle_of_a_list, mini_pickle_with_bad_indices,
         mini_truncated_csv, mini_garbage_csv, mini_csv_lists_a_missing_image, mini_corrupt_image, mini_missing]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_data_file_raises_one_clear_data_error(case, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    needs_patch = "monkeypatch" in case.__code__.co_varnames[:case.__code__.co_argcount]
    load, culprit = case(root, monkeypatch) if needs_patch else case(root)
    with pytest.raises(DataError) as info:
        load()
    message = str(info.value)
    assert str(culprit) in message, message
    assert any(advice in message.lower() for advice in ADVICE), message
    assert "\n" not in message or message.startswith("missing data file"), message
    assert not (tmp_path / "cache" / "processed").exists() or not any((tmp_path / "cache" / "processed").rglob(
        "*.arrays")), "nothing is cached from a damaged file"


def test_missing_omniglot_file_is_a_data_error_saying_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="missing data file") as info:
        load_dataset("omniglot", "val", root=tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    assert f"put {tmp_path / 'omniglot' / 'images_background.zip'}" in str(info.value)
    assert list(tmp_path.iterdir()) == []
