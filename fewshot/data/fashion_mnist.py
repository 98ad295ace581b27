"""Fashion-MNIST (Xiao et al. 2017) as a cross-domain target: 10 classes of 28x28 grey clothing images.

Like BSCD-FSL's targets, all 10 classes are test classes: split ``test`` holds them all and 5-way episodes are
drawn from them. The images are the publisher's test set (``t10k``, 1,000 a class) by default; ``images="train"``
(6,000 a class) or ``"all"`` (7,000) take the others.

The four IDX files (``train-images-idx3-ubyte.gz``... gzipped or not) are looked for in the data root
(``<root>/fashion-mnist``, ``<root>/fashion_mnist``, ``<root>/FashionMNIST/raw``, ``<root>``), then where the
Debian package ``dataset-fashion-mnist`` installs them (``/usr/share/datasets/fashion-mnist``). Each file's
uncompressed content is checked against the sha256 pinned below (Debian recompresses the publisher's ``.gz``
files, so the compressed files differ while their content is the same). The decoded arrays are kept in the
processed-data cache (``$FEWSHOT_CACHE/processed/fashion-mnist``), keyed by each file's path, size and time.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.core.errors import UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import DataNotFoundError, damaged
from fewshot.data.idx import read_idx
from fewshot.data.registry import register_dataset
from fewshot.data.targets import check_target_split

__all__ = ["CLASS_NAMES", "FILES", "load_fashion_mnist", "locate_fashion_mnist"]

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# name -> sha256 of the uncompressed IDX content (the publisher's .gz md5s are in its README: 8d4fb7e6...,
# 25c81989..., bef4ecab..., bb300cfd...; the sha256 here were taken from the Debian package's files and agree
# with them once decompressed).
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
IMAGES = {"test": ("t10k",), "train": ("train",), "all": ("train", "t10k")}
SUBFOLDERS = ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "")
# Where system packages put it; a module variable so that tests can point it elsewhere.
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
CACHE = DataCache("fashion-mnist", 1)


def locate_fashion_mnist(root: str | os.PathLike, names=tuple(FILES)) -> dict[str, Path]:
    """``name -> path`` of each IDX file (``name.gz`` or ``name``), in the data root first, then the system dirs."""
    root = Path(root).expanduser()
    places = [root / sub if sub else root for sub in SUBFOLDERS] + list(SYSTEM_DIRS)
    found, missing = {}, []
    for name in names:
        path = next((p / f for p in places for f in (f"{name}.gz", name) if (p / f).is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        lines = "; ".join(f"{name}.gz from {URL}{name}.gz" for name in missing)
        raise DataNotFoundError(
            f"Fashion-MNIST file{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found: put {lines} in "
            f"{root / 'fashion-mnist'} (root is --data-root or $FEWSHOT_DATA), or install the Debian package "
            f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    return found


def _decode(paths: dict[str, Path], parts: tuple[str, ...]) -> dict[str, np.ndarray]:
    images, labels = [], []
    for part in parts:
        x = read_idx(paths[f"{part}-images-idx3-ubyte"], 3, FILES[f"{part}-images-idx3-ubyte"])
        y = read_idx(paths[f"{part}-labels-idx1-ubyte"], 1, FILES[f"{part}-labels-idx1-ubyte"])
        if len(x) != len(y) or x.shape[1:] != (28, 28) or y.max(initial=0) >= len(CLASS_NAMES):
            raise damaged(paths[f"{part}-labels-idx1-ubyte"], f"{len(y)} labels (up to {y.max(initial=0)}) for "
                          f"{len(x)} images of shape {x.shape[1:]}; expected one label in 0..9 per 28x28 image")
        images.append(x)
        labels.append(y)
    return {"images": np.concatenate(images)[:, None], "labels": np.concatenate(labels).astype(np.int64)}


@register_dataset("fashion-mnist")
def load_fashion_mnist(split: str, root: Path, *, images: str = "test", cache: bool = True) -> ClassDataset:
    """Split ``test`` of Fashion-MNIST: all 10 classes, uint8 ``[N, 1, 28, 28]`` (ink bright, as published),
    labels in the publisher's order (:data:`CLASS_NAMES`); ``images`` is ``test`` (10,000), ``train`` or ``all``."""
    check_target_split("fashion-mnist", split, len(CLASS_NAMES))
    if images not in IMAGES:
        raise UsageError(f"fashion-mnist: images={images!r}; choose one of {', '.join(IMAGES)}")
    parts = IMAGES[images]
    paths = locate_fashion_mnist(root, [f"{p}-{k}-idx{n}-ubyte" for p in parts for k, n in (("images", 3),
                                                                                            ("labels", 1))])
    if cache:
        stats = sorted((name, str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for name, p in paths.items())
        arrays = CACHE.get(CACHE.key({"images": images, "files": stats}), lambda: _decode(paths, parts),
                           label=f"{images}-images")
    else:
        arrays = _decode(paths, parts)
    name = "fashion-mnist/test" + ("" if images == "test" else f"[{images}-images]")
    return ClassDataset(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                        list(CLASS_NAMES), name)
