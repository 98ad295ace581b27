"""The BSCD-FSL targets (EuroSAT, ISIC 2018, CropDisease, ChestX-ray8) on fake copies built here in their layouts."""
from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.errors import DataError, UsageError
from fewshot.data import bscdfsl, load_dataset
from fewshot.data.bscdfsl import CHESTX_CLASSES, EUROSAT_CLASSES, ISIC_CLASSES
from fewshot.data.download import ChecksumError
from fewshot.data.errors import DataNotFoundError
from fewshot.data.sources import Published


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def image(k: int, j: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A flat image: class k in red (or the grey level), drawing j in green."""
    out = io.BytesIO()
    value = (k * 5, 100 + j, 30) if mode == "RGB" else k * 5
    Image.fromarray(np.full((9, 11, 3) if mode == "RGB" else (9, 11), value, np.uint8)).save(out, fmt)
    return out.getvalue()


def write(path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)


def red_classes(ds) -> list[int]:
    return (ds.data[:, 0, 4, 4].int() // 5).tolist()


def test_eurosat_from_the_published_zip_and_its_folder(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "eurosat").mkdir(parents=True)
    with zipfile.ZipFile(root / "eurosat" / "EuroSAT.zip", "w") as archive:  # test input, in tmp_path
        for k, c in enumerate(EUROSAT_CLASSES):
            for j in range(3):
                archive.writestr(f"2750/{c}/{c}_{j + 1}.jpg", image(k, j, "JPEG"))
    md5 = hashlib.md5((root / "eurosat" / "EuroSAT.zip").read_bytes()).hexdigest()
    with pytest.raises(ChecksumError, match="EuroSAT.zip: md5 is [0-9a-f]{32}, expected c8fa014336c82ac7804f0398fcb19387"):
        load_dataset("eurosat", "test", root=root)
    monkeypatch.setattr(bscdfsl, "EUROSAT_ZIP", Published("EuroSAT.zip", bscdfsl.EUROSAT_ZIP.url, md5=md5))
    ds = load_dataset("eurosat", "test", root=root, image_size=16)
    assert ds.name == "eurosat/test@16px" and ds.class_names == EUROSAT_CLASSES
    assert ds.data.shape == (30, 3, 16, 16) and ds.class_counts.tolist() == [3] * 10
    assert all(abs(ds.data[i, 0, 8, 8] - 5 * int(ds.labels[i])) <= 2 for i in range(len(ds)))
    # The extracted folder (what BSCD-FSL's configs.py points at) holds the same images.
    for k, c in enumerate(EUROSAT_CLASSES):
        for j in range(3):
            write(tmp_path / "other" / "EuroSAT" / "2750" / c / f"{c}_{j + 1}.png", image(k, j))
    grey = load_dataset("eurosat", "test", root=tmp_path / "other", grayscale=True)
    assert grey.data.shape == (30, 1, 84, 84) and grey.name == "eurosat/test[grey]"
    rgb = load_dataset("eurosat", "test", root=tmp_path / "other")
    assert red_classes(rgb) == rgb.labels.tolist()
    (tmp_path / "other" / "EuroSAT" / "2750" / "Forest").rename(tmp_path / "other" / "EuroSAT" / "2750" / "Woods")
    with pytest.raises(DataError, match=r"found 10 class folders .* but EuroSAT has the classes \['AnnualCrop'"):
        load_dataset("eurosat", "test", root=tmp_path / "other")


def test_isic_labels_from_the_one_hot_ground_truth(tmp_path):
    root = tmp_path / "data" / "ISIC"
    rows = ["image," + ",".join(ISIC_CLASSES)]
    for k in range(7):
        for j in range(2):
            name = f"ISIC_{k}{j:06d}"
            write(root / "ISIC2018_Task3_Training_Input" / f"{name}.jpg", image(k, j, "JPEG"))
            rows.append(name + "," + ",".join("1.0" if c == k else "0.0" for c in range(7)))
    write(root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv",
          "\n".join(rows).encode())
    ds = load_dataset("isic", "test", root=tmp_path / "data", image_size=12)
    assert ds.class_names == ISIC_CLASSES and ds.class_counts.tolist() == [2] * 7 and ds.data.shape[1:] == (3, 12, 12)
    assert all(abs(ds.data[i, 0, 6, 6] - 5 * int(ds.labels[i])) <= 2 for i in range(len(ds)))
    # The two published zips, read in place, give the same dataset.
    other = tmp_path / "zips" / "isic"
    other.mkdir(parents=True)
    for folder in ("ISIC2018_Task3_Training_Input", "ISIC2018_Task3_Training_GroundTruth"):
        with zipfile.ZipFile(other / f"{folder}.zip", "w") as archive:  # test input, in tmp_path
            for path in sorted((root / folder).iterdir()):
                archive.write(path, f"{folder}/{path.name}")
    zipped = load_dataset("isic", "test", root=tmp_path / "zips", image_size=12)
    assert torch.equal(zipped.data, ds.data) and torch.equal(zipped.labels, ds.labels)
    csv_path = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    csv_path.write_text("image,MEL,NV\nISIC_0000000,1,0\n")
    with pytest.raises(DataError, match=rf"^{csv_path}: its header is \['image', 'MEL', 'NV'\], expected image then"):
        load_dataset("isic", "test", root=tmp_path / "data", image_size=12)


def test_cropdisease_reads_dataset_train(tmp_path):
    base = tmp_path / "data" / "CropDiseases" / "dataset" / "train"
    names = [f"Plant{k:02d}___disease" for k in range(38)]
    for k, c in enumerate(names):
        write(base / c / f"{k}.png", image(k, 0))
        write(base / c / f"{k}b.JPG", image(k, 1, "JPEG"))
    ds = load_dataset("cropdisease", "test", root=tmp_path / "data", image_size=10)
    assert ds.class_names == names and ds.class_counts.tolist() == [2] * 38 and ds.name == "cropdisease/test@10px"
    (base / names[0] / "0.png").unlink()
    (base / names[0] / "0b.JPG").unlink()
    with pytest.raises(DataError, match="found 37 class folders .* but CropDisease has 38 class folders"):
        load_dataset("cropdisease", "test", root=tmp_path / "data", image_size=10)


def test_chestx_keeps_single_findings_as_bscdfsl_does(tmp_path):
    base = tmp_path / "data" / "chestX"
    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    expected = []
    for k, finding in enumerate(CHESTX_CLASSES):
        for j in range(2):
            name = f"{k:05d}_{j:03d}.png"
            # Kaggle's copy spreads the images over images_0NN/images/; BSCD-FSL's over one images/ folder.
            write(base / ("images" if j == 0 else "images_002/images") / name, image(k, j, mode="L"))
            rows.append(f"{name},{finding},0,{k}")
            expected.append((name, k))
    for name, finding in (("90000_000.png", "No Finding"), ("90001_000.png", "Pneumonia"),
                          ("90002_000.png", "Mass|Nodule")):
        write(base / "images" / name, image(0, 0, mode="L"))
        rows.append(f"{name},{finding},0,9")
    write(base / "Data_Entry_2017.csv", "\n".join(rows).encode())
    ds = load_dataset("chestx", "test", root=tmp_path / "data", image_size=8)
    assert ds.class_names == CHESTX_CLASSES and len(ds) == 14 and ds.class_counts.tolist() == [2] * 7
    assert ds.data.shape == (14, 3, 8, 8) and torch.equal(ds.data[:, 0], ds.data[:, 2])  # grey, as RGB
    assert ds.labels.tolist() == [k for _, k in expected] and red_classes(ds) == ds.labels.tolist()
    (base / "images" / "00003_000.png").unlink()
    with pytest.raises(DataError, match=r"Data_Entry_2017.csv lists 00003_000.png, which is in neither"):
        load_dataset("chestx", "test", root=tmp_path / "data", image_size=9)


@pytest.mark.parametrize("name,folder,what", [
    ("eurosat", "eurosat", "EuroSAT.zip (from https://madm.dfki.de/files/sentinel/EuroSAT.zip; md5 "
                           "c8fa014336c82ac7804f0398fcb19387)"),
    ("isic", "isic", "ISIC2018_Task3_Training_Input.zip (from https://isic-challenge-data.s3.amazonaws.com/2018/"),
    ("cropdisease", "cropdisease", "plant-disease (dataset/train/<class>/) (from https://www.kaggle.com/"),
    ("chestx", "chestx", "Data_Entry_2017.csv and images/ (from https://www.kaggle.com/nih-chest-xrays/data"),
])
def test_missing_copies_say_what_to_put_where(tmp_path, name, folder, what):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, "test", root=tmp_path / "data")
    assert f"put {what}" in str(info.value) and f"in {tmp_path / 'data' / folder}" in str(info.value)
    with pytest.raises(UsageError, match=f"^{name} is a cross-domain target: all of its"):
        load_dataset(name, "train", root=tmp_path / "data")
