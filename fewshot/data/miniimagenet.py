"""miniImageNet (Vinyals et al. 2016) with the Ravi & Larochelle (2017) class split: 64 train, 16 val, 20 test
classes of 600 images each, 84x84 RGB.

The data is not downloadable from an official source, so the loader reads the common distribution formats from
``<root>/miniimagenet`` (or ``mini-imagenet``, ``miniImageNet``, or ``<root>`` itself):

- ``pickle``: ``mini-imagenet-cache-{train,val,test}.pkl``, each a dict with ``image_data`` (uint8
  ``[N, 84, 84, 3]``) and ``class_dict`` (``wnid -> list of row indices``);
- ``csv``: Ravi & Larochelle's ``{train,val,test}.csv`` (``filename,label`` with a header) and an ``images/``
  folder holding the files;
- ``folders``: ``{train,val,test}/<wnid>/<image>`` (one sub-folder per class).

Images are resized to ``image_size`` (84) when they differ. Decoded image folders are kept in the processed-data
cache (:mod:`fewshot.core.cache`, ``$FEWSHOT_CACHE/processed/miniimagenet``). A damaged file fails as one
:class:`~fewshot.core.errors.DataError` naming it. Each split is checked against the Ravi & Larochelle class lists
(``check_split=False`` for other splits). The pickle format is read with :mod:`pickle`: only load files you trust.
"""
from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import DataNotFoundError, damaged, reading
from fewshot.data.registry import register_dataset

# The Ravi & Larochelle (2017) split, as distributed in their train.csv / val.csv / test.csv.
RAVI_SPLIT: dict[str, frozenset[str]] = {
    "train": frozenset("""
        n01532829 n01558993 n01704323 n01749939 n01770081 n01843383 n01910747 n02074367 n02089867 n02091831
        n02101006 n02105505 n02108089 n02108551 n02108915 n02111277 n02113712 n02120079 n02165456 n02457408
        n02606052 n02687172 n02747177 n02795169 n02823428 n02966193 n03017168 n03047690 n03062245 n03207743
        n03220513 n03337140 n03347037 n03400231 n03476684 n03527444 n03676483 n03838899 n03854065 n03888605
        n03908618 n03924679 n03998194 n04067472 n04243546 n04251144 n04258138 n04275548 n04296562 n04389033
        n04435653 n04443257 n04509417 n04515003 n04596742 n04604644 n04612504 n06794110 n07584110 n07697537
        n07747607 n09246464 n13054560 n13133613""".split()),
    "val": frozenset("""
        n01855672 n02091244 n02114548 n02138441 n02174001 n02950826 n02971356 n02981792 n03075370 n03417042
        n03535780 n03584254 n03770439 n03773504 n03980874 n09256479""".split()),
    "test": frozenset("""
        n01930112 n01981276 n02099601 n02110063 n02110341 n02116738 n02129165 n02219486 n02443484 n02871525
        n03127925 n03146219 n03272010 n03544143 n03775546 n04146614 n04149813 n04418357 n04522168 n07613480
        """.split()),
}
SPLITS = ("train", "val", "test", "trainval", "all")
_FOLDERS = ("miniimagenet", "mini-imagenet", "miniImageNet", "mini_imagenet", "")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


# Decoded (and resized) images of a csv or folders copy. The key is a sha256 of every file's path, label, size and
# modification time: hashing the contents of 60,000 JPEGs on every load would cost a large part of decoding them.
CACHE = DataCache("miniimagenet", 1)
_PICKLE_ADVICE = "it is truncated, corrupt or not a miniImageNet cache pickle: replace it with a good copy"
_CSV_ADVICE = "it is truncated or corrupt: replace it with a good copy of Ravi & Larochelle's split file"


class MiniImageNetNotFound(DataNotFoundError):
    """No miniImageNet copy in a known format under the data root."""


def locate_miniimagenet(root: str | os.PathLike, split: str) -> tuple[str, Path]:
    """``(format, folder)`` of the first copy of ``split`` found under ``root``: ``pickle``, ``csv`` or ``folders``."""
    root = Path(root).expanduser()
    for sub in _FOLDERS:
        base = root / sub if sub else root
        if (base / f"mini-imagenet-cache-{split}.pkl").is_file():
            return "pickle", base
        if (base / f"{split}.csv").is_file() and (base / "images").is_dir():
            return "csv", base
        if (base / split).is_dir() and any(p.is_dir() for p in (base / split).iterdir()):
            return "folders", base
    raise MiniImageNetNotFound(
        f"no miniImageNet {split!r} split under {root} (looked in {', '.join(str(root / s) for s in _FOLDERS if s)} "
        f"and {root}). Put one of: mini-imagenet-cache-{split}.pkl (image_data + class_dict); {split}.csv "
        f"(filename,label) with an images/ folder; or a {split}/<wnid>/*.jpg folder, in {root / 'miniimagenet'}. "
        f"The data root is --data-root, $FEWSHOT_DATA or the user cache directory")


def _unpickle(path: Path):
    with open(path, "rb") as fh:
        try:
            try:
                return pickle.load(fh)
            except UnicodeDecodeError:  # written by Python 2
                fh.seek(0)
                return pickle.load(fh, encoding="latin1")
        except Exception as error:  # a damaged pickle can make the unpickler raise almost anything
            raise damaged(path, f"cannot unpickle it: {type(error).__name__}: {error}", _PICKLE_ADVICE) from error


def _read_pickle(path: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    data = _unpickle(path)
    if not isinstance(data, dict) or not isinstance(data.get("class_dict", data.get(b"class_dict")), dict):
        raise damaged(path, f"expected a dict with 'image_data' and a 'class_dict' dict, found a "
                      f"{type(data).__name__}", _PICKLE_ADVICE)
    data = {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}
    if "image_data" not in data or "class_dict" not in data:
        raise damaged(path, f"expected a dict with 'image_data' and 'class_dict', found keys {sorted(data)}",
                      _PICKLE_ADVICE)
    with reading(path, "image_data", _PICKLE_ADVICE):
        images = np.asarray(data["image_data"])
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise damaged(path, f"image_data should be uint8 [N, H, W, 3], got {images.dtype} {images.shape}",
                      _PICKLE_ADVICE)
    with reading(path, "class_dict", _PICKLE_ADVICE):
        class_dict = {(k.decode() if isinstance(k, bytes) else str(k)): list(v)
                      for k, v in data["class_dict"].items()}
        names = sorted(class_dict)
        labels = np.full(len(images), -1, dtype=np.int64)
        for label, name in enumerate(names):
            labels[np.asarray(class_dict[name], dtype=np.int64)] = label
    keep = labels >= 0
    return images[keep], names, labels[keep]


def _list_csv(base: Path, split: str) -> list[tuple[Path, str]]:
    path = base / f"{split}.csv"
    with reading(path, advice=_CSV_ADVICE), open(path, newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.reader(fh) if row]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["filename", "label"]:
        rows = rows[1:]
    bad = [(line, row) for line, row in enumerate(rows, 2) if len(row) < 2 or not row[0].strip()
           or not row[1].strip()]
    if bad:
        raise damaged(path, f"expected 'filename,label' rows, found {bad[0][1]!r} (row {bad[0][0]})", _CSV_ADVICE)
    return [(base / "images" / row[0].strip(), row[1].strip()) for row in rows]


def _list_folders(base: Path, split: str) -> list[tuple[Path, str]]:
    return [(f, d.name) for d in sorted(p for p in (base / split).iterdir() if p.is_dir())
            for f in sorted(d.iterdir()) if f.suffix.lower() in _IMAGE_SUFFIXES]


def _decode(files: list[tuple[Path, str]], image_size: int) -> np.ndarray:
    out = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        with reading(path, advice="it is truncated or corrupt: replace it with a good copy of the image"), \
                Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
            out[i] = np.asarray(image)
    return out


def _cached_decode(files: list[tuple[Path, str]], image_size: int, cache: bool, source: Path) -> np.ndarray:
    """Decoded images, cached under a key of every file's path, label, size and modification time."""
    stats = []
    for path, label in files:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DataNotFoundError(f"miniImageNet image {path} is listed by {source} but missing; put it there "
                                    f"or remove it from the list") from None
        stats.append((str(path.resolve()), label, st.st_size, st.st_mtime_ns))
    if not cache:
        return _decode(files, image_size)
    key = CACHE.key({"image_size": image_size, "files": stats})
    return CACHE.get(key, lambda: {"images": _decode(files, image_size)}, label=f"{image_size}px")["images"]


def _load_split(root: Path, split: str, image_size: int, cache: bool) -> tuple[np.ndarray, list[str], np.ndarray]:
    fmt, base = locate_miniimagenet(root, split)
    if fmt == "pickle":
        images, names, labels = _read_pickle(base / f"mini-imagenet-cache-{split}.pkl")
        if images.shape[1:3] != (image_size, image_size):
            images = np.stack([np.asarray(Image.fromarray(im).resize((image_size, image_size),
                                                                     Image.Resampling.LANCZOS)) for im in images])
        return images, names, labels
    files = _list_csv(base, split) if fmt == "csv" else _list_folders(base, split)
    source = base / f"{split}.csv" if fmt == "csv" else base / split
    if not files:
        raise DataError(f"{source}: the {fmt} copy of split {split!r} lists no images; put the split's images there")
    names = sorted({label for _, label in files})
    lookup = {name: i for i, name in enumerate(names)}
    labels = np.array([lookup[label] for _, label in files], dtype=np.int64)
    return _cached_decode(files, image_size, cache, source), names, labels


def _check_split(split: str, names: list[str], root: Path) -> None:
    expected = RAVI_SPLIT[split]
    found = set(names)
    if found != expected:
        missing, extra = sorted(expected - found), sorted(found - expected)
        where = locate_miniimagenet(root, split)
        raise DataError(
            f"miniImageNet split {split!r} ({where[0]} copy in {where[1]}) has {len(found)} classes, not the "
            f"{len(expected)} of the Ravi & Larochelle split (missing {missing[:5]}{'...' if len(missing) > 5 else ''}"
            f", unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}); pass check_split=False to load another split")


@register_dataset("miniimagenet")
def load_miniimagenet(split: str, root: Path, *, image_size: int = 84, check_split: bool = True,
                      cache: bool = True) -> ClassDataset:
    """Split ``train`` (64 classes), ``val`` (16), ``test`` (20), ``trainval`` (80) or ``all`` (100: the source of
    the cross-domain protocols of Chen et al. 2019 and BSCD-FSL, which learn on every miniImageNet class) as uint8
    ``[N, 3, image_size, image_size]``, classes in wnid order, from any of the formats in the module docstring."""
    if split not in SPLITS:
        raise ValueError(f"unknown miniImageNet split {split!r}; expected one of {', '.join(SPLITS)}")
    parts = {"trainval": ("train", "val"), "all": ("train", "val", "test")}.get(split, (split,))
    images, names, labels = [], [], []
    for part in parts:
        x, n, y = _load_split(Path(root), part, int(image_size), cache)
        if check_split:
            _check_split(part, n, Path(root))
        images.append(x)
        labels.append(y + len(names))
        names += n
    data = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
    name = f"miniimagenet/{split}" + ("" if image_size == 84 else f"@{image_size}px")
    return ClassDataset(data, torch.from_numpy(np.concatenate(labels)), names, name)
