"""The Omniglot datasets: the Vinyals split (``omniglot``) and Lake's sets (``omniglot-background``,
``-evaluation``, ``-small1``, ``-small2``), built from characters resized once and kept in the processed-data cache."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fewshot.core.cache import DataCache
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import reading
from fewshot.data.omniglot import archives, sources
from fewshot.data.omniglot.alphabets import (ROTATIONS, VINYALS_SPLITS, characters, check_choice,
                                             vinyals_characters, vinyals_class_names)
from fewshot.data.omniglot.resize import check_size, resize_blocks
from fewshot.data.registry import register_dataset

# Bump when the processed images change (resizing, decoding): old entries are then never read.
CACHE_VERSION = 2
# Characters resized at one size, keyed by the source file's sha256; 512 MB of them stay in memory.
CACHE = DataCache("omniglot", CACHE_VERSION, memory_bytes=512 << 20)


def _cached(which: str, image_size: int, source: Path, build) -> np.ndarray:
    key = CACHE.key({"set": which, "image_size": image_size, "source_sha256": sources.check_official(source)})
    return CACHE.get(key, lambda: {"images": build()}, label=f"{which}-{image_size}px")["images"]


def _full_set(root: Path, which: str, image_size: int, download: bool) -> np.ndarray:
    """uint8 ``[characters, 20, S, S]`` of set ``which`` (ink bright), row ``r`` = ``characters(which)[r]``."""
    path = sources.locate_set(root, which, download)
    return _cached(which, image_size, path, lambda: resize_blocks(archives.paper_chunks(path, which), image_size))


def _small_set(root: Path, which: str, image_size: int, download: bool) -> tuple[list[tuple[str, str]], np.ndarray]:
    path = sources.official_file(root, f"images_background_{which}.zip", download)
    with reading(path), zipfile.ZipFile(path) as archive:
        index = archives.png_zip_index(archive)
        images = _cached(which, image_size, path,
                         lambda: resize_blocks(archives.decode_characters(archive, index), image_size))
    return [(alphabet, character) for _, alphabet, character, _ in index], images


def load_omniglot_characters(root: str | os.PathLike, which: str, *, image_size: int = 28,
                             download: bool = True) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Every character of an official Omniglot set, rebuilt from the official layout.

    ``which`` is ``"background"`` (964 characters), ``"evaluation"`` (659), ``"small1"`` or ``"small2"`` (the
    minimal background sets). Returns ``(alphabet, "characterNN")`` per character, in id order, and uint8 images
    ``[characters, 20, image_size, image_size]`` (ink bright; index 1 is drawer ``02``), read-only because it is
    shared with the in-memory cache.
    """
    which = check_choice(which, ("background", "evaluation", "small1", "small2"))
    image_size = check_size(image_size)
    root = Path(root).expanduser()
    if which in ("small1", "small2"):
        return _small_set(root, which, image_size, download)
    return characters(which), _full_set(root, which, image_size, download)


def _dataset(name: str, images: np.ndarray | Tensor, class_names: list[str], alphabets: list[str]) -> ClassDataset:
    """A ClassDataset from ``[classes, examples, S, S]`` images; groups are the alphabets."""
    images = torch.as_tensor(images)
    classes, per_class = images.shape[:2]
    group_names = list(dict.fromkeys(alphabets))
    lookup = {g: i for i, g in enumerate(group_names)}
    return ClassDataset(
        images.reshape(classes * per_class, 1, *images.shape[2:]),
        torch.arange(classes).repeat_interleave(per_class),
        class_names, name,
        groups=torch.tensor([lookup[a] for a in alphabets], dtype=torch.long),
        group_names=group_names,
    )


def dataset_name(base: str, split: str, image_size: int) -> str:
    """``base/split``, with ``@<size>px`` unless the images have the papers' 28 pixels."""
    return f"{base}/{split}" + ("" if image_size == 28 else f"@{image_size}px")


@register_dataset("omniglot")
def load_omniglot(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """The Vinyals et al. (2016) split (Matching Networks; Prototypical Networks' ``splits/vinyals``).

    ``split`` is train (4112 classes), val (688), test (1692) or trainval (4800): characters in id order, each in
    rotations 0/90/180/270 degrees counter-clockwise (as PIL's ``Image.rotate``) as four classes named
    ``alphabet/characterNN/rotDDD``, 20 drawings each, ``image_size`` pixels square (28 in the papers). Snell et
    al.'s loader also transposes every image, a fixed reflection of all classes alike; these stay upright.
    """
    split = check_choice(split, VINYALS_SPLITS)
    image_size = check_size(image_size)
    root = Path(root).expanduser()
    chosen = vinyals_characters(split)
    parts = []
    for which in ("background", "evaluation"):
        rows = [row for w, row, _, _ in chosen if w == which]
        if rows:
            parts.append(torch.from_numpy(_full_set(root, which, image_size, download)[rows]))
    base = torch.cat(parts)  # [characters, 20, S, S]
    images = torch.stack([torch.rot90(base, k=deg // 90, dims=(-2, -1)) for deg in ROTATIONS], dim=1)
    images = images.reshape(-1, *base.shape[1:])  # [characters * 4, 20, S, S], rotations inner
    alphabets = [alphabet for _, _, alphabet, _ in chosen for _ in ROTATIONS]
    return _dataset(dataset_name("omniglot", split, image_size), images, vinyals_class_names(split), alphabets)


_LAKE_SPLITS = {"omniglot-background": ("train", "all"), "omniglot-evaluation": ("test", "all"),
                "omniglot-small1": ("train", "all"), "omniglot-small2": ("train", "all")}


def _lake_dataset(dataset: str, which: str, split: str, root: Path, image_size: int, download: bool) -> ClassDataset:
    if split not in _LAKE_SPLITS[dataset]:
        raise ValueError(
            f"{dataset} has no {split!r} split: in Lake's setting the background set (omniglot-background, or "
            f"omniglot-small1/-small2) is only for learning (split 'train' or 'all') and the evaluation set "
            f"(omniglot-evaluation, or the 20 runs of load_omniglot_runs) only for testing (split 'test' or 'all'); "
            f"hold out background alphabets yourself for validation, or use 'omniglot' for the Vinyals split")
    names, images = load_omniglot_characters(root, which, image_size=image_size, download=download)
    return _dataset(dataset_name(dataset, split, image_size), images.copy(), [f"{a}/{c}" for a, c in names],
                    [a for a, _ in names])


@register_dataset("omniglot-background")
def load_omniglot_background(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """Lake et al.'s background set: 964 characters of 30 alphabets, no rotations, for learning only (split train)."""
    return _lake_dataset("omniglot-background", "background", split, root, check_size(image_size), download)


@register_dataset("omniglot-evaluation")
def load_omniglot_evaluation(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """Lake et al.'s evaluation set: 659 characters of 20 alphabets, no rotations, for testing only (split test)."""
    return _lake_dataset("omniglot-evaluation", "evaluation", split, root, check_size(image_size), download)


@register_dataset("omniglot-small1")
def load_omniglot_small1(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """The minimal background set "small 1": 136 characters of 5 alphabets, for learning only (split train)."""
    return _lake_dataset("omniglot-small1", "small1", split, root, check_size(image_size), download)


@register_dataset("omniglot-small2")
def load_omniglot_small2(split: str, root: Path, *, image_size: int = 28, download: bool = True) -> ClassDataset:
    """The minimal background set "small 2": 156 characters of 5 alphabets, for learning only (split train)."""
    return _lake_dataset("omniglot-small2", "small2", split, root, check_size(image_size), download)
