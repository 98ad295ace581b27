"""GTSRB (Traffic Signs) on fake copies built here in the published layout: GT csvs, ppm frames, tracks."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.errors import DataError, UsageError
from fewshot.data import gtsrb, load_dataset
from fewshot.data.errors import DataNotFoundError
from fewshot.data.grouped_episodes import sample_group_disjoint_episodes

TRACKS, FRAMES = 2, 3
HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def ppm(k: int, t: int) -> bytes:
    """A 12x10 frame: a 1-pixel black border around a flat sign (red = class * 5, green = track * 100)."""
    array = np.zeros((10, 12, 3), np.uint8)
    array[1:9, 1:11] = (k * 5, t * 100, 77)
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PPM")
    return out.getvalue()


def members():
    for k in range(43):
        rows = [HEADER]
        for t in range(TRACKS):
            for f in range(FRAMES):
                name = f"{t:05d}_{f:05d}.ppm"
                rows.append(f"{name};12;10;1;1;10;8;{k}")
                yield f"GTSRB/Final_Training/Images/{k:05d}/{name}", ppm(k, t)
        yield f"GTSRB/Final_Training/Images/{k:05d}/GT-{k:05d}.csv", ("\n".join(rows) + "\n").encode()


def make_zip(folder):
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "GTSRB_Final_Training_Images.zip", "w") as archive:  # test input, in tmp_path
        for name, blob in members():
            archive.writestr(name, blob)


def make_folder(folder):
    for name, blob in members():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(blob)


def test_the_published_zip_with_tracks(tmp_path):
    make_zip(tmp_path / "data" / "gtsrb")
    ds = load_dataset("gtsrb", "test", root=tmp_path / "data", image_size=10)
    assert ds.name == "gtsrb/test@10px" and ds.class_names == [f"{k:05d}" for k in range(43)]
    assert ds.data.shape == (43 * TRACKS * FRAMES, 3, 10, 10) and ds.class_counts.tolist() == [6] * 43
    assert (ds.data[:, 0, 5, 5].int() // 5).tolist() == ds.labels.tolist()
    # One track id per (class, track): frames of a track share it, and it is told apart by the green channel.
    assert len(ds.example_groups.unique()) == 43 * TRACKS
    for group in ds.example_groups.unique().tolist():
        rows = torch.nonzero(ds.example_groups == group).flatten()
        assert len(rows) == FRAMES and len(ds.labels[rows].unique()) == 1 and len(ds.data[rows, 1, 5, 5].unique()) == 1
    eps = sample_group_disjoint_episodes(ds, 5, 2, 2, episodes=20, seed=0)
    for e in range(20):
        for w in range(5):
            s = eps.support[e][eps.support_labels[e] == w]
            q = eps.query[e][eps.query_labels[e] == w]
            assert not set(ds.example_groups[s].tolist()) & set(ds.example_groups[q].tolist())


def test_the_folder_the_crop_and_the_cache(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")
    full = load_dataset("gtsrb", "test", root=tmp_path / "data", image_size=12)
    cropped = load_dataset("gtsrb", "test", root=tmp_path / "data", image_size=12, crop=True)
    assert cropped.name == "gtsrb/test@12px[crop]"
    assert full.data[:, :, 0, 0].max() < 40  # the border is in the full frames...
    assert torch.equal(cropped.data[:, 0, 0, 0], cropped.data[:, 0, 6, 6])  # ...and cropped away (flat sign)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoded images should have come from the cache")

    monkeypatch.setattr(gtsrb, "decode_images", no_decoding)
    again = load_dataset("gtsrb", "test", root=tmp_path / "data", image_size=12)
    assert torch.equal(again.data, full.data) and torch.equal(again.example_groups, full.example_groups)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"put GTSRB_Final_Training_Images.zip \(from https://sid.erda.dk/.*"
                                                r"no published checksum\) in .*gtsrb, or its extracted GTSRB/"):
        load_dataset("gtsrb", "test", root=tmp_path / "data")
    make_folder(tmp_path / "data")
    gt = tmp_path / "data" / "GTSRB" / "Final_Training" / "Images" / "00004" / "GT-00004.csv"
    gt.write_text(gt.read_text().replace(";4\n", ";5\n", 1))
    with pytest.raises(DataError, match=rf"^{gt}: row \['00000_00000.ppm', .*'5'\] is not a 00004 image annotation"):
        load_dataset("gtsrb", "test", root=tmp_path / "data")
    gt.unlink()
    with pytest.raises(DataError, match="42 class folders with a GT-<class>.csv, not GTSRB's 43"):
        load_dataset("gtsrb", "test", root=tmp_path / "data")
    with pytest.raises(UsageError, match="^gtsrb is a cross-domain target"):
        load_dataset("gtsrb", "train", root=tmp_path / "data")
