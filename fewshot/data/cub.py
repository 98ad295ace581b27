"""CUB-200-2011 (Wah et al. 2011) with Chen et al. (2019, "A Closer Look at Few-shot Classification")'s class split:
200 bird species, 100 train (base), 50 val, 50 test (novel), all images of each class (11,788 in all).

The split is the rule of Chen et al.'s ``write_CUB_filelist.py``: the class folders sorted by name, class ``i`` is
train when ``i % 2 == 0``, val when ``i % 4 == 1`` and test when ``i % 4 == 3`` (``splits/cub/README.md``).

The published archive ``CUB_200_2011.tgz`` (sha256 and md5 pinned below) is read in place, or its extracted
``CUB_200_2011/images/<class>/*.jpg``, from ``<root>/cub``, ``<root>/CUB`` or ``<root>``. Images are RGB, resized
with Lanczos to ``image_size`` (84, as Chen et al.'s Conv-4) and cached (``$FEWSHOT_CACHE/processed/cub``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.imagefiles import FileTree, class_folder_files, decode_images
from fewshot.data.registry import register_dataset
from fewshot.data.sources import Published, check_published, find_first, not_found

__all__ = ["ARCHIVE", "chen_split", "load_cub", "locate_cub"]

ARCHIVE = Published("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                    sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
                    md5="97eceeb196236b17998738112f37df78")
SUBFOLDERS = ("cub", "CUB", "")
SPLITS = ("train", "val", "test", "trainval")
CLASSES = 200
CACHE = DataCache("cub", 1)
_IMAGES = (".jpg", ".jpeg", ".png")


def locate_cub(root: Path) -> FileTree:
    """The images of the first copy found: an extracted ``CUB_200_2011/images`` folder, else the archive."""
    root = Path(root).expanduser()
    bases = [root / s if s else root for s in SUBFOLDERS]
    folder = find_first((b / "CUB_200_2011" / "images" for b in bases), "dir")
    if folder is not None:
        return FileTree(folder)
    archive = find_first((b / ARCHIVE.name for b in bases), "file")
    if archive is not None:
        check_published(archive, ARCHIVE)
        return FileTree(archive, "CUB_200_2011/images")
    raise not_found("CUB-200-2011", root / "cub", [ARCHIVE], "its extracted CUB_200_2011/ folder",
                    looked=bases)


def chen_split(class_folders: list[str]) -> dict[str, list[str]]:
    """Chen et al. (2019)'s rule on the sorted class folders: ``i % 2 == 0`` train, ``i % 4 == 1`` val,
    ``i % 4 == 3`` test."""
    ordered = sorted(class_folders)
    return {"train": ordered[0::2], "val": ordered[1::4], "test": ordered[3::4]}


def _build(tree: FileTree, split: str, image_size: int, check_classes: bool) -> dict[str, np.ndarray]:
    files = class_folder_files(tree, _IMAGES)
    if check_classes and len(files) != CLASSES:
        raise DataError(f"{tree.where('')}: {len(files)} class folders with images, not CUB-200-2011's {CLASSES}; "
                        f"the copy is incomplete or not CUB-200-2011 (check_classes=False to load it anyway)")
    rule = chen_split(list(files))
    chosen = rule["train"] + rule["val"] if split == "trainval" else rule[split]
    names = [f for c in chosen for f in files[c]]
    labels = np.array([k for k, c in enumerate(chosen) for _ in files[c]], dtype=np.int64)
    images = decode_images(tree, names, (image_size, image_size), desc=f"cub/{split}")
    return {"images": images, "labels": labels, "class_names": np.array(chosen)}


@register_dataset("cub")
def load_cub(split: str, root: Path, *, image_size: int = 84, check_classes: bool = True) -> ClassDataset:
    """Split ``train`` (100 classes), ``val`` (50), ``test`` (50) or ``trainval`` of CUB-200-2011 by Chen et al.'s
    rule, uint8 ``[N, 3, image_size, image_size]``, classes in folder order."""
    if split not in SPLITS:
        raise UsageError(f"unknown CUB split {split!r}; expected one of {', '.join(SPLITS)}")
    if int(image_size) < 1:
        raise UsageError(f"cub: image_size must be positive, got {image_size}")
    tree = locate_cub(root)
    key = CACHE.key({"source": tree.identity(), "split": split, "image_size": int(image_size),
                     "check_classes": bool(check_classes)})
    arrays = CACHE.get(key, lambda: _build(tree, split, int(image_size), check_classes),
                       label=f"{split}-{int(image_size)}px")
    name = f"cub/{split}" + ("" if image_size == 84 else f"@{int(image_size)}px")
    return ClassDataset(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                        arrays["class_names"].tolist(), name)
