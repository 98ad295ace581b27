"""tieredImageNet (Ren et al. 2018): 608 ILSVRC-12 classes in 34 categories, split by category into 351 train
(20 categories), 97 val (6) and 160 test (8) classes; 84x84 RGB.

It is distributed as Ren et al.'s preprocessed files (no official download; ImageNet's terms apply), read from
``<root>/tieredimagenet``, ``<root>/tiered-imagenet``, ``<root>/tieredImageNet`` or ``<root>``:

- ``{split}_labels.pkl``: a dict with ``label_specific`` (class per image), ``label_general`` (category per image),
  ``label_specific_str`` and ``label_general_str`` (their names);
- ``{split}_images_png.pkl``: a list of PNG-encoded images, or ``{split}_images.npz`` (``images``, uint8
  ``[N, 84, 84, 3]``, which Ren et al.'s ``decompress`` writes with OpenCV, so in BGR order: flipped to RGB here).

Each split is checked against the published class split (``splits/tieredimagenet``): its number of classes and
categories. ``groups`` are the categories. Decoded images are cached (``$FEWSHOT_CACHE/processed/tieredimagenet``).
The pickles are read with :mod:`pickle`: only load files you trust.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import DataNotFoundError, damaged, reading
from fewshot.data.registry import register_dataset
from fewshot.data.splits import read_split

__all__ = ["load_tiered_imagenet", "published_split"]

SPLITS = ("train", "val", "test", "trainval")
FOLDERS = ("tieredimagenet", "tiered-imagenet", "tieredImageNet", "tiered_imagenet", "")
CACHE = DataCache("tieredimagenet", 1)
_ADVICE = "it is truncated, corrupt or not one of Ren et al.'s tieredImageNet files: replace it with a good copy"


def published_split(split: str) -> list[tuple[str, str]]:
    """``(synset, category)`` of each class of a split, as Ren et al. published it."""
    return [tuple(line.split(",", 1)) for line in read_split("tieredimagenet", split)]


def _locate(root: Path, split: str) -> tuple[Path, Path]:
    for sub in FOLDERS:
        base = root / sub if sub else root
        labels = base / f"{split}_labels.pkl"
        images = next((p for p in (base / f"{split}_images_png.pkl", base / f"{split}_images.npz") if p.is_file()),
                      None)
        if labels.is_file() and images is not None:
            return labels, images
    raise DataNotFoundError(
        f"tieredImageNet {split!r} not found: put Ren et al.'s {split}_labels.pkl and {split}_images_png.pkl (or "
        f"{split}_images.npz) in {root / 'tieredimagenet'}; they come from their preprocessing of ILSVRC-12 "
        f"(github.com/renmengye/few-shot-ssl-public), not from an official download. The data root is --data-root "
        f"or $FEWSHOT_DATA")


def _unpickle(path: Path):
    with open(path, "rb") as fh:
        try:
            return pickle.load(fh, encoding="bytes")
        except Exception as error:  # a damaged pickle can make the unpickler raise almost anything
            raise damaged(path, f"cannot unpickle it: {type(error).__name__}: {error}", _ADVICE) from error


def _labels(path: Path) -> dict:
    data = _unpickle(path)
    if not isinstance(data, dict):
        raise damaged(path, f"holds a {type(data).__name__}, not a dict of labels", _ADVICE)
    data = {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}
    missing = [k for k in ("label_specific", "label_general", "label_specific_str", "label_general_str")
               if k not in data]
    if missing:
        raise damaged(path, f"has no {', '.join(missing)}", _ADVICE)
    text = lambda names: [n.decode() if isinstance(n, bytes) else str(n) for n in names]  # noqa: E731
    return {"specific": np.asarray(data["label_specific"], dtype=np.int64),
            "general": np.asarray(data["label_general"], dtype=np.int64),
            "specific_str": text(data["label_specific_str"]), "general_str": text(data["label_general_str"])}


def _images(path: Path, image_size: int) -> np.ndarray:
    if path.suffix == ".npz":
        with reading(path, "images", _ADVICE), np.load(path, allow_pickle=False) as npz:
            images = np.ascontiguousarray(npz["images"][..., ::-1])  # BGR (OpenCV) to RGB
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise damaged(path, f"images is {images.dtype} {images.shape}, not uint8 [N, H, W, 3]", _ADVICE)
        if images.shape[1:3] != (image_size, image_size):
            images = np.stack([np.asarray(Image.fromarray(im).resize((image_size, image_size), Image.Resampling.LANCZOS))
                               for im in images])
        return images.transpose(0, 3, 1, 2)
    encoded = _unpickle(path)
    out = np.empty((len(encoded), 3, image_size, image_size), dtype=np.uint8)
    for i, blob in enumerate(encoded):
        with reading(path, f"image {i}", _ADVICE), Image.open(io.BytesIO(np.asarray(blob).tobytes())) as image:
            image = image.convert("RGB")
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
            out[i] = np.asarray(image).transpose(2, 0, 1)
    return out


def _load_part(root: Path, part: str, image_size: int, check_split: bool) -> dict[str, np.ndarray]:
    labels_path, images_path = _locate(root, part)
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in (labels_path, images_path)]

    def build() -> dict[str, np.ndarray]:
        labels = _labels(labels_path)
        images = _images(images_path, image_size)
        if len(images) != len(labels["specific"]) or len(images) != len(labels["general"]):
            raise DataError(f"{images_path} holds {len(images)} images but {labels_path} labels "
                            f"{len(labels['specific'])}: the two files are from different copies")
        # Each class's category, from its images.
        category = np.full(len(labels["specific_str"]), -1, dtype=np.int64)
        category[labels["specific"]] = labels["general"]
        return {"images": images, "labels": labels["specific"], "class_names": np.array(labels["specific_str"]),
                "groups": category, "group_names": np.array(labels["general_str"])}

    arrays = CACHE.get(CACHE.key({"files": stats, "image_size": image_size}), build, label=f"{part}-{image_size}px")
    if check_split:
        published = published_split(part)
        classes, categories = len(published), len({c for _, c in published})
        found = (len(arrays["class_names"]), len(arrays["group_names"]))
        if found != (classes, categories):
            raise DataError(f"{labels_path}: {found[0]} classes in {found[1]} categories, not the {classes} in "
                            f"{categories} of Ren et al.'s {part} split; pass check_split=False to load it anyway")
    return arrays


@register_dataset("tieredimagenet")
def load_tiered_imagenet(split: str, root: Path, *, image_size: int = 84, check_split: bool = True) -> ClassDataset:
    """Split ``train`` (351 classes), ``val`` (97), ``test`` (160) or ``trainval`` of tieredImageNet, uint8
    ``[N, 3, S, S]`` in the order of the files, ``groups`` the categories."""
    if split not in SPLITS:
        raise UsageError(f"unknown tieredImageNet split {split!r}; expected one of {', '.join(SPLITS)}")
    if int(image_size) < 1:
        raise UsageError(f"tieredimagenet: image_size must be positive, got {image_size}")
    parts = ("train", "val") if split == "trainval" else (split,)
    images, labels, names, groups, group_names = [], [], [], [], []
    for part in parts:
        arrays = _load_part(Path(root).expanduser(), part, int(image_size), check_split)
        images.append(arrays["images"])
        labels.append(arrays["labels"] + len(names))
        groups.append(arrays["groups"] + len(group_names))
        names += arrays["class_names"].tolist()
        group_names += arrays["group_names"].tolist()
    name = f"tieredimagenet/{split}" + ("" if image_size == 84 else f"@{int(image_size)}px")
    # One part is used as it is: the train split alone is 9.5 GB, a copy would double it.
    join = (lambda a: a[0]) if len(parts) == 1 else np.concatenate  # noqa: E731
    return ClassDataset(torch.from_numpy(join(images)), torch.from_numpy(join(labels)), names, name,
                        torch.from_numpy(join(groups)), group_names)
