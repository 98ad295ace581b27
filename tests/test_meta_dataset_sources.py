"""VGG Flowers, DTD, FGVC-Aircraft and QuickDraw with Meta-Dataset's splits, on fake copies built here."""
from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.errors import DataError, UsageError
from fewshot.data import load_dataset, meta_dataset_sources as mds
from fewshot.data.download import ChecksumError
from fewshot.data.errors import DataNotFoundError
from fewshot.data.sources import Published
from fewshot.data.splits import read_split


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def jpeg(k: int, size=(10, 12), banner: int = 0) -> bytes:
    """A flat image, red = k (0..255) and green = 200, with a black banner of ``banner`` rows at the bottom."""
    array = np.full((*size, 3), (k, 200, 40), np.uint8)
    if banner:
        array[-banner:] = 0
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=100)
    return out.getvalue()


def tgz(path, files: dict[str, bytes]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:  # test input, in tmp_path
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write(root, files: dict[str, bytes]) -> None:
    for name, blob in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)


def near(values, expected, tolerance=3) -> bool:
    return bool((torch.as_tensor(values).int() - torch.as_tensor(expected).int()).abs().max() <= tolerance)


def test_vgg_flowers_labels_from_imagelabels_mat(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    labels = np.repeat(np.arange(1, 103), 2)  # 1-based, as published
    files = {f"jpg/image_{i + 1:05d}.jpg": jpeg(int(k)) for i, k in enumerate(labels)}
    root = tmp_path / "data" / "vgg-flowers"
    md5 = tgz(root / "102flowers.tgz", files)
    scipy_io.savemat(root / "imagelabels.mat", {"labels": labels[None]})
    with pytest.raises(ChecksumError, match="imagelabels.mat: md5 is [0-9a-f]{32}, expected e0620be6f572"):
        load_dataset("vgg-flowers", "test", root=tmp_path / "data")
    monkeypatch.setattr(mds, "FLOWERS_LABELS", Published("imagelabels.mat", "x", md5=hashlib.md5(
        (root / "imagelabels.mat").read_bytes()).hexdigest()))
    monkeypatch.setattr(mds, "FLOWERS_IMAGES", Published("102flowers.tgz", "x", md5=md5))
    sizes = {}
    for split in ("train", "val", "test"):
        ds = load_dataset("vgg-flowers", split, root=tmp_path / "data", image_size=8)
        lines = read_split("vgg-flowers", split)
        assert ds.class_names == [ln.split(".", 1)[1] for ln in lines] and ds.name == f"vgg-flowers/{split}@8px"
        # Label j of the split is published label NNN of its line j: the red channel says which.
        expected = [int(lines[j].split(".")[0]) for j in ds.labels.tolist()]
        assert near(ds.data[:, 0, 4, 4], expected) and ds.class_counts.tolist() == [2] * len(lines)
        sizes[split] = ds.num_classes
    assert sizes == {"train": 71, "val": 15, "test": 16}
    assert load_dataset("vgg-flowers", "test", root=tmp_path / "data", image_size=8).class_names[:2] == \
        ["english marigold", "monkshood"]


def test_dtd_from_its_archive_and_folder(tmp_path, monkeypatch):
    classes = [c for s in ("train", "val", "test") for c in read_split("dtd", s)]
    assert len(classes) == 47
    files = {f"dtd/images/{c}/{c}_{j:04d}.jpg": jpeg(k) for k, c in enumerate(sorted(classes)) for j in range(2)}
    files["dtd/images/waffled/.directory"] = b"[Dolphin]"  # a leftover hidden file, as in the real archive
    md5 = tgz(tmp_path / "data" / "dtd" / "dtd-r1.0.1.tar.gz", files)
    monkeypatch.setattr(mds, "DTD", Published(mds.DTD.name, mds.DTD.url, md5=md5))
    ds = load_dataset("dtd", "val", root=tmp_path / "data", image_size=6)
    assert ds.class_names == read_split("dtd", "val") == ["gauzy", "grid", "lined", "paisley", "porous", "scaly",
                                                          "spiralled"]
    assert near(ds.data[:, 0, 3, 3], [sorted(classes).index(ds.class_names[j]) for j in ds.labels.tolist()])
    write(tmp_path / "other", {k: v for k, v in files.items() if "banded" not in k})
    assert load_dataset("dtd", "train", root=tmp_path / "other", image_size=6).num_classes == 33
    with pytest.raises(DataError, match=r"the dtd classes \['banded'\] of .*test.txt's split are not in it"):
        load_dataset("dtd", "test", root=tmp_path / "other", image_size=6)


def test_aircraft_crops_to_the_bounding_box(tmp_path):
    variants = [c for s in ("train", "val", "test") for c in read_split("aircraft", s)]
    files, box, trainval, test = {}, [], [], []
    for k, v in enumerate(sorted(variants)):
        for j in range(2):
            image = f"{1000000 + 10 * k + j:07d}"
            files[f"fgvc-aircraft-2013b/data/images/{image}.jpg"] = jpeg(k, (20, 16), banner=5)
            box.append(f"{image} 2 3 14 11")  # stops well above the banner (JPEG blurs its edge)
            (trainval if j == 0 else test).append(f"{image} {v}")
    for name, lines in (("images_box.txt", box), ("images_variant_trainval.txt", trainval),
                        ("images_variant_test.txt", test)):
        files[f"fgvc-aircraft-2013b/data/{name}"] = ("\n".join(lines) + "\n").encode()
    write(tmp_path / "data", files)
    ds = load_dataset("aircraft", "test", root=tmp_path / "data", image_size=12)
    assert ds.class_names == read_split("aircraft", "test") and ds.class_counts.tolist() == [2] * 15
    assert ds.data.shape == (30, 3, 12, 12) and int(ds.data[:, 1].min()) > 190  # no banner left: green everywhere
    assert near(ds.data[:, 0, 6, 6], [sorted(variants).index(ds.class_names[j]) for j in ds.labels.tolist()])
    trainval_set = load_dataset("aircraft", "trainval", root=tmp_path / "data", image_size=12)
    assert trainval_set.num_classes == 85 and "F/A-18" in trainval_set.class_names
    (tmp_path / "data" / "fgvc-aircraft-2013b" / "data" / "images_box.txt").write_text("1000000 2 3\n")
    with pytest.raises(DataError, match=r"images_box.txt: line '1000000 2 3' is not 'image xmin ymin xmax ymax'"):
        load_dataset("aircraft", "val", root=tmp_path / "data", image_size=12)


def test_quickdraw_reads_the_first_drawings_of_each_class(tmp_path):
    classes = sorted(c for s in ("train", "val", "test") for c in read_split("quickdraw", s))
    folder = tmp_path / "data" / "quickdraw" / "numpy_bitmap"
    folder.mkdir(parents=True)
    for k, c in enumerate(classes):
        drawings = np.zeros((3, 784), np.uint8)
        drawings[:, 0] = k % 256
        drawings[:, 1] = np.arange(3)
        np.save(folder / f"{c}.npy", drawings)
    ds = load_dataset("quickdraw", "test", root=tmp_path / "data", per_class=2)
    assert ds.name == "quickdraw/test[2-per-class]" and ds.class_names == read_split("quickdraw", "test")
    assert ds.data.shape == (104, 1, 28, 28) and ds.data[:, 0, 0, 1].tolist() == [0, 1] * 52
    assert ds.data[:, 0, 0, 0].tolist() == [classes.index(ds.class_names[j]) % 256 for j in ds.labels.tolist()]
    assert load_dataset("quickdraw", "val", root=tmp_path / "data").class_counts.tolist() == [3] * 52
    (folder / "The Eiffel Tower.npy").unlink()
    with pytest.raises(DataNotFoundError, match=r"QuickDraw's 1 files The Eiffel Tower.npy are missing from"):
        load_dataset("quickdraw", "train", root=tmp_path / "data")
    np.save(folder / "yoga.npy", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"yoga.npy: holds uint8 \(3, 28, 28\), not uint8 \[N, 784\] bitmaps"):
        load_dataset("quickdraw", "test", root=tmp_path / "data")


@pytest.mark.parametrize("name,expected", [
    ("vgg-flowers", "put 102flowers.tgz (from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz; "
                    "md5 52808999861908f626f3c1f4e79d11fa) and imagelabels.mat"),
    ("dtd", "put dtd-r1.0.1.tar.gz (from https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz; md5 "
            "fff73e5086ae6bdbea199a49dfb8a4c1)"),
    ("aircraft", "put fgvc-aircraft-2013b.tar.gz (from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                 "fgvc-aircraft-2013b.tar.gz; md5 d4acdd33327262359767eeaa97a4f732)"),
    ("quickdraw", "put its numpy_bitmap/<class>.npy files (from https://storage.googleapis.com/quickdraw_dataset/"),
])
def test_missing_copies_say_what_to_put_where(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, "test", root=tmp_path / "data")
    assert expected in str(info.value)
    with pytest.raises(UsageError, match=f"unknown {name} split 'novel'"):
        load_dataset(name, "novel", root=tmp_path / "data")
