"""Traffic Signs: GTSRB's training images (Stallkamp et al. 2012) as Meta-Dataset's test-only source (Triantafillou
et al. 2020): 43 classes, 39,209 images, every class a test class.

The published ``GTSRB_Final_Training_Images.zip`` is read in place, or its extracted
``GTSRB/Final_Training/Images/<class>/``, from ``<root>/gtsrb``, ``<root>/GTSRB`` or ``<root>``. Each class folder
holds ``.ppm`` images and ``GT-<class>.csv`` (``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``): the
images are the csv's rows. A file ``TTTTT_FFFFF.ppm`` is frame ``FFFFF`` of track ``TTTTT``, about 30 frames of one
physical sign: the dataset's ``example_groups`` give each image its track, so that
:func:`fewshot.data.grouped_episodes.sample_group_disjoint_episodes` keeps support and query of an episode in
different tracks. Images are the full frames like Meta-Dataset's (``crop=True`` cuts them to the csv's region of
interest), resized with Lanczos to ``image_size`` (84) and cached (``$FEWSHOT_CACHE/processed/gtsrb``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import damaged, reading
from fewshot.data.imagefiles import FileTree, decode_images
from fewshot.data.registry import register_dataset
from fewshot.data.sources import Published, find_first, not_found
from fewshot.data.targets import check_target_split

__all__ = ["ARCHIVE", "load_gtsrb", "locate_gtsrb"]

# No checksum is published for it (the benchmark's page gives none), so none is checked.
ARCHIVE = Published("GTSRB_Final_Training_Images.zip", "https://sid.erda.dk/public/archives/"
                    "daaeac0d7ce1152aea9b61d9f1e19370/GTSRB_Final_Training_Images.zip")
CLASSES = 43
CACHE = DataCache("gtsrb", 1)
_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
_ADVICE = "replace it with the file from the published archive"


def locate_gtsrb(root: Path) -> FileTree:
    """The class folders of the first copy found: the extracted folder, else the published zip."""
    root = Path(root).expanduser()
    bases = [root / "gtsrb", root / "GTSRB", root]
    folder = find_first((b / sub for b in bases for sub in ("GTSRB/Final_Training/Images", "Final_Training/Images")),
                        "dir")
    if folder is not None:
        return FileTree(folder)
    archive = find_first((b / ARCHIVE.name for b in bases), "file")
    if archive is None:
        raise not_found("GTSRB (Traffic Signs)", root / "gtsrb", [ARCHIVE], "its extracted GTSRB/ folder", bases)
    return FileTree(archive, "GTSRB/Final_Training/Images")


def _annotations(tree: FileTree) -> tuple[list[str], list[str], list[int], list[tuple[int, int, int, int]]]:
    """Class folders, then per image: file, label and region of interest, from every class's GT csv."""
    csvs = sorted(n for n in tree.names() if n.count("/") == 1 and n.rsplit("/", 1)[1].startswith("GT-")
                  and n.endswith(".csv"))
    classes = [n.split("/")[0] for n in csvs]
    if len(classes) != CLASSES:
        raise DataError(f"{tree.where('')}: {len(classes)} class folders with a GT-<class>.csv, not GTSRB's "
                        f"{CLASSES}; the copy is incomplete")
    files, labels, boxes = [], [], []
    blobs = dict(tree.read(csvs))
    for label, name in enumerate(csvs):
        with reading(tree.where(name), name if tree.kind != "folder" else "", _ADVICE):
            rows = list(csv.reader(io.StringIO(blobs[name].decode("utf-8")), delimiter=";"))
        if not rows or rows[0] != _HEADER:
            raise damaged(tree.where(name), f"its header is {rows[0] if rows else None}, expected {_HEADER}", _ADVICE)
        for row in rows[1:]:
            if not row:
                continue
            if len(row) != 8 or not all(v.isdigit() for v in row[1:]) or int(row[7]) != int(classes[label]):
                raise damaged(tree.where(name), f"row {row} is not a {name.split('/')[0]} image annotation", _ADVICE)
            files.append(f"{classes[label]}/{row[0]}")
            labels.append(label)
            boxes.append((int(row[3]), int(row[4]), int(row[5]) + 1, int(row[6]) + 1))  # inclusive corners
    return classes, files, labels, boxes


def _build(tree: FileTree, image_size: int, crop: bool) -> dict[str, np.ndarray]:
    classes, files, labels, boxes = _annotations(tree)
    tracks = [(label, f.rsplit("/", 1)[1].split("_")[0]) for f, label in zip(files, labels)]
    ids = {t: i for i, t in enumerate(sorted(set(tracks)))}
    images = decode_images(tree, files, (image_size, image_size), boxes=boxes if crop else None, desc="gtsrb")
    return {"images": images, "labels": np.asarray(labels, dtype=np.int64), "class_names": np.array(classes),
            "tracks": np.array([ids[t] for t in tracks], dtype=np.int64)}


@register_dataset("gtsrb")
def load_gtsrb(split: str, root: Path, *, image_size: int = 84, crop: bool = False) -> ClassDataset:
    """Split ``test`` of GTSRB: all 43 classes (folder order), uint8 ``[39209, 3, S, S]``, with
    ``example_groups`` (a track id per image)."""
    check_target_split("gtsrb", split, CLASSES)
    if int(image_size) < 1:
        raise UsageError(f"gtsrb: image_size must be positive, got {image_size}")
    tree = locate_gtsrb(root)
    key = CACHE.key({"source": tree.identity(), "image_size": int(image_size), "crop": bool(crop)})
    arrays = CACHE.get(key, lambda: _build(tree, int(image_size), bool(crop)),
                       label=f"{int(image_size)}px{'-crop' if crop else ''}")
    name = "gtsrb/test" + ("" if image_size == 84 else f"@{int(image_size)}px") + ("[crop]" if crop else "")
    dataset = ClassDataset(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                           arrays["class_names"].tolist(), name)
    dataset.example_groups = torch.from_numpy(arrays["tracks"])
    return dataset
