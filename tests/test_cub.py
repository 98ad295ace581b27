"""CUB-200-2011 with Chen et al.'s split, on fake copies (archive and folder) built here in the published layout."""
from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.core.errors import DataError, UsageError
from fewshot.data import cub, load_dataset
from fewshot.data.cub import chen_split, load_cub
from fewshot.data.download import ChecksumError
from fewshot.data.errors import DataNotFoundError
from fewshot.data.sources import Published

CLASSES = [f"{i:03d}.Bird_{i}" for i in range(1, 201)]
PER_CLASS = 2


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def jpeg(k: int, j: int) -> bytes:
    """A flat 12x10 image: red = class index // 2 (0..99), green = 50 + 100 * j, blue = class index % 2 * 200."""
    out = io.BytesIO()
    Image.fromarray(np.full((10, 12, 3), (k // 2, 50 + 100 * j, (k % 2) * 200), np.uint8)).save(out, "JPEG",
                                                                                                    quality=100)
    return out.getvalue()


def members():
    yield "CUB_200_2011/classes.txt", "\n".join(f"{i + 1} {c}" for i, c in enumerate(CLASSES)).encode()
    for k, c in enumerate(CLASSES):
        for j in range(PER_CLASS):
            yield f"CUB_200_2011/images/{c}/{c[4:]}_{j:04d}.jpg", jpeg(k, j)


def make_archive(folder) -> str:
    folder.mkdir(parents=True)
    path = folder / "CUB_200_2011.tgz"
    with tarfile.open(path, "w:gz") as archive:  # test input, in tmp_path
        for name, blob in members():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_folder(folder) -> None:
    for name, blob in members():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(blob)


def check(ds, split, size):
    expected = chen_split(CLASSES)[split]
    assert ds.class_names == expected and ds.class_counts.tolist() == [PER_CLASS] * len(expected)
    assert ds.data.shape == (len(expected) * PER_CLASS, 3, size, size) and ds.data.dtype == torch.uint8
    for row in range(len(ds)):
        k = CLASSES.index(ds.class_names[int(ds.labels[row])])
        r, g, b = ds.data[row, :, size // 2, size // 2].tolist()
        assert abs(r - k // 2) <= 2 and abs(b - (k % 2) * 200) <= 2 and min(abs(g - 50), abs(g - 150)) <= 2


def test_chens_rule():
    rule = chen_split(list(reversed(CLASSES)))
    assert [len(rule[s]) for s in ("train", "val", "test")] == [100, 50, 50]
    assert rule["train"][:3] == ["001.Bird_1", "003.Bird_3", "005.Bird_5"]
    assert rule["val"][:3] == ["002.Bird_2", "006.Bird_6", "010.Bird_10"]
    assert rule["test"][:3] == ["004.Bird_4", "008.Bird_8", "012.Bird_12"]
    assert sorted(rule["train"] + rule["val"] + rule["test"]) == CLASSES


def test_the_published_archive_read_in_place(tmp_path, monkeypatch):
    root = tmp_path / "data"
    sha = make_archive(root / "cub")
    monkeypatch.setattr(cub, "ARCHIVE", Published(cub.ARCHIVE.name, cub.ARCHIVE.url, sha256=sha))
    for split in ("train", "val", "test"):
        ds = load_dataset("cub", split, root=root, image_size=16)
        assert ds.name == f"cub/{split}@16px"
        check(ds, split, 16)
    assert load_cub("trainval", root, image_size=16).num_classes == 150
    assert sorted(p.name for p in root.rglob("*")) == ["CUB_200_2011.tgz", "cub"]  # nothing extracted


def test_the_extracted_folder_and_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_folder(root)
    first = load_cub("test", root, image_size=84)
    assert first.name == "cub/test"
    check(first, "test", 84)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoded images should have come from the cache")

    with monkeypatch.context() as patch:
        patch.setattr(cub, "decode_images", no_decoding)
        assert torch.equal(load_cub("test", root).data, first.data)
    changed = root / "CUB_200_2011" / "images" / CLASSES[3] / f"{CLASSES[3][4:]}_0000.jpg"
    changed.write_bytes(jpeg(0, 0))
    assert not torch.equal(load_cub("test", root).data, first.data)


def test_errors_name_the_file_and_what_to_do(tmp_path, monkeypatch):
    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError) as info:
        load_cub("test", root)
    message = str(info.value)
    assert "CUB-200-2011 not found" in message and f"in {root / 'cub'}, or its extracted CUB_200_2011/ folder" in message
    assert ("put CUB_200_2011.tgz (from https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz; sha256 "
            "0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081, md5 97eceeb196236b17998738112f37df78)"
            ) in message
    make_archive(root / "cub")
    with pytest.raises(ChecksumError, match=r"CUB_200_2011.tgz: sha256 is [0-9a-f]{64}, expected 0c685df5"):
        load_cub("test", root)
    (root / "cub" / "CUB_200_2011.tgz").unlink()
    make_folder(root / "cub")
    bad = root / "cub" / "CUB_200_2011" / "images" / CLASSES[7] / f"{CLASSES[7][4:]}_0001.jpg"
    bad.write_bytes(jpeg(7, 1)[:100])
    with pytest.raises(DataError, match=rf"^{bad}: cannot read it"):
        load_cub("test", root)
    bad.unlink()
    (bad.parent / f"{CLASSES[7][4:]}_0000.jpg").unlink()
    with pytest.raises(DataError, match="199 class folders with images, not CUB-200-2011's 200"):
        load_cub("test", root)
    with pytest.raises(UsageError, match="unknown CUB split 'novel'"):
        load_cub("novel", root)
