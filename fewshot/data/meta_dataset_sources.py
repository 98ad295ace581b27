"""The Meta-Dataset sources with simple raw formats (Triantafillou et al. 2020), with Meta-Dataset's class splits
(``fewshot/data/splits/<name>/``, copied from its ``dataset_conversion/splits/*.json``):

- ``vgg-flowers``: VGG Flowers 102, 71/15/16 classes: ``102flowers.tgz`` (``jpg/image_NNNNN.jpg``) or its ``jpg/``
  folder, labelled by ``imagelabels.mat`` (read with scipy);
- ``dtd``: Describable Textures, 33/7/7 classes: ``dtd-r1.0.1.tar.gz`` or its ``dtd/images/<class>/`` folder;
- ``aircraft``: FGVC-Aircraft 2013b, 70/15/15 variants: ``fgvc-aircraft-2013b.tar.gz`` or its
  ``fgvc-aircraft-2013b/data/`` folder; each image cropped to its bounding box (``images_box.txt``) as
  Meta-Dataset does, which also removes the copyright banner;
- ``quickdraw``: QuickDraw's ``numpy_bitmap/<class>.npy`` (uint8 ``[N, 784]``, 28x28, ink bright), 241/52/52
  classes; the first ``per_class`` drawings of each (1,000 by default: Meta-Dataset takes all, some 50 million).

Archives are read in place, never extracted; images are resized with Lanczos to ``image_size`` (84) and cached
(``$FEWSHOT_CACHE/processed/meta-dataset``). Each is looked for in ``<root>/<name>`` and ``<root>``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError, UsageError, UserError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import DataNotFoundError, damaged, reading
from fewshot.data.imagefiles import FileTree, class_folder_files, decode_images
from fewshot.data.registry import register_dataset
from fewshot.data.sources import Published, check_published, find_first, not_found
from fewshot.data.splits import read_split, split_path

__all__ = ["load_aircraft", "load_dtd", "load_quickdraw", "load_vgg_flowers"]

SPLITS = ("train", "val", "test", "trainval")
CACHE = DataCache("meta-dataset", 1)
_VGG = "https://www.robots.ox.ac.uk/~vgg/data/"
FLOWERS_IMAGES = Published("102flowers.tgz", _VGG + "flowers/102/102flowers.tgz", md5="52808999861908f626f3c1f4e79d11fa")
FLOWERS_LABELS = Published("imagelabels.mat", _VGG + "flowers/102/imagelabels.mat",
                           md5="e0620be6f572b9609742df49c70aed4d")
DTD = Published("dtd-r1.0.1.tar.gz", _VGG + "dtd/download/dtd-r1.0.1.tar.gz", md5="fff73e5086ae6bdbea199a49dfb8a4c1")
AIRCRAFT = Published("fgvc-aircraft-2013b.tar.gz", _VGG + "fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                     md5="d4acdd33327262359767eeaa97a4f732")
QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/"


def _classes(family: str, split: str) -> list[str]:
    if split not in SPLITS:
        raise UsageError(f"unknown {family} split {split!r}; expected one of {', '.join(SPLITS)}")
    parts = ("train", "val") if split == "trainval" else (split,)
    return [c for part in parts for c in read_split(family, part)]


def _size(name: str, image_size: int) -> int:
    if int(image_size) < 1:
        raise UsageError(f"{name}: image_size must be positive, got {image_size}")
    return int(image_size)


def _dataset(name: str, split: str, identity: dict, build: Callable[[], dict], image_size: int | None,
             tag: str = "") -> ClassDataset:
    arrays = CACHE.get(CACHE.key({"dataset": name, "split": split, "source": identity}), build,
                       label=f"{name}-{split}")
    tag = ("" if image_size in (None, 84) else f"@{image_size}px") + tag
    return ClassDataset(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                        arrays["class_names"].tolist(), f"{name}/{split}{tag}")


def _missing_classes(family: str, split: str, classes: list[str], available: set[str], where: Path) -> None:
    missing = [c for c in classes if c not in available]
    if missing:
        raise DataError(f"{where}: the {family} classes {missing[:5]}{' ...' if len(missing) > 5 else ''} of "
                        f"{split_path(family, split if split != 'trainval' else 'train')}'s split are not in it; the "
                        f"copy is incomplete or another version")


def _texts(tree: FileTree, *names: str) -> dict[str, list[str]]:
    """The non-empty lines of each of the text files ``names``, read in one pass over the container."""
    out = {}
    for name, blob in tree.read(list(names)):
        with reading(tree.where(name), name if tree.kind != "folder" else "", "replace it with the published file"):
            out[name] = [line for line in blob.decode("utf-8").splitlines() if line.strip()]
    return out


def _by_class(tree: FileTree, classes: list[str]) -> dict:
    """The images of ``class/<image>`` folders, in the order of ``classes``."""
    files = class_folder_files(tree, (".jpg", ".jpeg", ".png"))
    return {"files": [f for c in classes for f in files.get(c, [])],
            "labels": np.array([k for k, c in enumerate(classes) for _ in files.get(c, [])], dtype=np.int64),
            "available": set(files)}


@register_dataset("vgg-flowers")
def load_vgg_flowers(split: str, root: Path, *, image_size: int = 84) -> ClassDataset:
    """Split ``train`` (71 classes), ``val`` (15), ``test`` (16) or ``trainval`` of VGG Flowers 102."""
    lines, size = _classes("vgg-flowers", split), _size("vgg-flowers", image_size)
    root = Path(root).expanduser()
    bases = [root / "vgg-flowers", root / "flowers102", root / "flowers", root]
    labels_path = find_first((b / FLOWERS_LABELS.name for b in bases), "file")
    folder = find_first((b / "jpg" for b in bases), "dir")
    archive = find_first((b / FLOWERS_IMAGES.name for b in bases), "file") if folder is None else None
    if labels_path is None or (folder is None and archive is None):
        raise not_found("VGG Flowers 102", root / "vgg-flowers", [FLOWERS_IMAGES, FLOWERS_LABELS],
                        "the extracted jpg/ folder and imagelabels.mat", bases)
    check_published(labels_path, FLOWERS_LABELS)
    if archive is not None:
        check_published(archive, FLOWERS_IMAGES)
    tree = FileTree(folder) if folder is not None else FileTree(archive, "jpg")
    wanted = [int(line.split(".", 1)[0]) for line in lines]

    def build() -> dict[str, np.ndarray]:
        try:
            from scipy.io import loadmat
        except ImportError as error:
            raise UserError("vgg-flowers reads its labels from imagelabels.mat with scipy, which is not installed: "
                            "pip install scipy") from error
        with reading(labels_path, advice="replace it with the published imagelabels.mat"):
            labels = np.asarray(loadmat(labels_path)["labels"]).ravel().astype(np.int64)
        _missing_classes("vgg-flowers", split, lines, {ln for ln, k in zip(lines, wanted) if (labels == k).any()},
                         labels_path)
        files = [f"image_{i + 1:05d}.jpg" for k in wanted for i in np.flatnonzero(labels == k)]
        out = np.array([j for j, k in enumerate(wanted) for _ in np.flatnonzero(labels == k)], dtype=np.int64)
        images = decode_images(tree, files, (size, size), desc=f"vgg-flowers/{split}")
        return {"images": images, "labels": out, "class_names": np.array([ln.split(".", 1)[1] for ln in lines])}

    identity = {"images": tree.identity(), "labels": str(labels_path.resolve()), "size": size,
                "labels_stat": [labels_path.stat().st_size, labels_path.stat().st_mtime_ns]}
    return _dataset("vgg-flowers", split, identity, build, size)


@register_dataset("dtd")
def load_dtd(split: str, root: Path, *, image_size: int = 84) -> ClassDataset:
    """Split ``train`` (33 classes), ``val`` (7), ``test`` (7) or ``trainval`` of the Describable Textures."""
    classes, size = _classes("dtd", split), _size("dtd", image_size)
    root = Path(root).expanduser()
    bases = [root / "dtd", root]
    folder = find_first((b / sub for b in bases for sub in ("dtd/images", "images")), "dir")
    if folder is not None:
        tree = FileTree(folder)
    else:
        archive = find_first((b / DTD.name for b in bases), "file")
        if archive is None:
            raise not_found("DTD", root / "dtd", [DTD], "its extracted dtd/ folder", bases)
        check_published(archive, DTD)
        tree = FileTree(archive, "dtd/images")

    def build() -> dict[str, np.ndarray]:
        found = _by_class(tree, classes)
        _missing_classes("dtd", split, classes, found["available"], tree.where(""))
        images = decode_images(tree, found["files"], (size, size), desc=f"dtd/{split}")
        return {"images": images, "labels": found["labels"], "class_names": np.array(classes)}

    return _dataset("dtd", split, {"tree": tree.identity(), "size": size}, build, size)


@register_dataset("aircraft")
def load_aircraft(split: str, root: Path, *, image_size: int = 84) -> ClassDataset:
    """Split ``train`` (70 variants), ``val`` (15), ``test`` (15) or ``trainval`` of FGVC-Aircraft, each image
    cropped to its bounding box."""
    classes, size = _classes("aircraft", split), _size("aircraft", image_size)
    root = Path(root).expanduser()
    bases = [root / "aircraft", root / "fgvc-aircraft", root]
    folder = find_first((b / "fgvc-aircraft-2013b" / "data" for b in bases), "dir")
    if folder is not None:
        tree = FileTree(folder)
    else:
        archive = find_first((b / AIRCRAFT.name for b in bases), "file")
        if archive is None:
            raise not_found("FGVC-Aircraft", root / "aircraft", [AIRCRAFT], "its extracted fgvc-aircraft-2013b/ "
                            "folder", bases)
        check_published(archive, AIRCRAFT)
        tree = FileTree(archive, "fgvc-aircraft-2013b/data")

    def build() -> dict[str, np.ndarray]:
        texts = _texts(tree, "images_variant_trainval.txt", "images_variant_test.txt", "images_box.txt")
        variant: dict[str, str] = {}
        for name in ("images_variant_trainval.txt", "images_variant_test.txt"):
            for line in texts[name]:
                image, _, value = line.strip().partition(" ")
                variant[image] = value
        boxes: dict[str, tuple[int, int, int, int]] = {}
        for line in texts["images_box.txt"]:
            fields = line.split()
            if len(fields) != 5 or not all(f.isdigit() for f in fields[1:]):
                raise damaged(tree.where("images_box.txt"), f"line {line!r} is not 'image xmin ymin xmax ymax'",
                              "replace it with the published file")
            boxes[fields[0]] = tuple(int(f) for f in fields[1:])
        _missing_classes("aircraft", split, classes, set(variant.values()), tree.where(""))
        images = [i for c in classes for i in sorted(i for i, v in variant.items() if v == c)]
        lacking = [i for i in images if i not in boxes]
        if lacking:
            raise damaged(tree.where("images_box.txt"), f"no bounding box for {lacking[:3]}",
                          "replace it with the published file")
        decoded = decode_images(tree, [f"images/{i}.jpg" for i in images], (size, size),
                                boxes=[boxes[i] for i in images], desc=f"aircraft/{split}")
        labels = np.array([classes.index(variant[i]) for i in images], dtype=np.int64)
        return {"images": decoded, "labels": labels, "class_names": np.array(classes)}

    return _dataset("aircraft", split, {"tree": tree.identity(), "size": size}, build, size)


@register_dataset("quickdraw")
def load_quickdraw(split: str, root: Path, *, per_class: int | None = 1000) -> ClassDataset:
    """Split ``train`` (241 classes), ``val`` (52), ``test`` (52) or ``trainval`` of QuickDraw: the first
    ``per_class`` drawings of each class (``None``: all), uint8 ``[N, 1, 28, 28]``."""
    classes = _classes("quickdraw", split)
    if per_class is not None and int(per_class) < 1:
        raise UsageError(f"quickdraw: per_class must be positive or None, got {per_class}")
    root = Path(root).expanduser()
    bases = [root / "quickdraw" / "numpy_bitmap", root / "quickdraw", root / "numpy_bitmap", root]
    base = find_first((b for b in bases if b.is_dir() and any(b.glob("*.npy"))), "dir")
    if base is None:
        raise DataNotFoundError(f"QuickDraw not found: put its numpy_bitmap/<class>.npy files (from {QUICKDRAW_URL}"
                                f"<class>.npy, e.g. 'The Eiffel Tower.npy') in {root / 'quickdraw' / 'numpy_bitmap'}; "
                                f"the data root is --data-root or $FEWSHOT_DATA")
    missing = [c for c in classes if not (base / f"{c}.npy").is_file()]
    if missing:
        raise DataNotFoundError(f"QuickDraw's {len(missing)} files {', '.join(m + '.npy' for m in missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''} are missing from {base}: put them there (from "
                                f"{QUICKDRAW_URL}<class>.npy)")
    paths = [base / f"{c}.npy" for c in classes]

    def build() -> dict[str, np.ndarray]:
        images, labels = [], []
        for k, path in enumerate(paths):
            with reading(path, advice="replace it with the published numpy_bitmap file"):
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != 784:
                    raise damaged(path, f"holds {array.dtype} {array.shape}, not uint8 [N, 784] bitmaps",
                                  "replace it with the published numpy_bitmap file")
                chunk = np.array(array[:per_class] if per_class is not None else array)
            images.append(chunk.reshape(-1, 1, 28, 28))
            labels.append(np.full(len(chunk), k, dtype=np.int64))
        return {"images": np.concatenate(images), "labels": np.concatenate(labels), "class_names": np.array(classes)}

    identity = {"files": [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths],
                "per_class": per_class}
    tag = "" if per_class == 1000 else f"[{'all' if per_class is None else int(per_class)}-per-class]"
    return _dataset("quickdraw", split, identity, build, None, tag)
