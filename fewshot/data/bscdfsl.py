"""The four BSCD-FSL targets (Guo et al. 2020, "A Broader Study of Cross-Domain Few-Shot Learning"), read as the
``IBM/cdfsl-benchmark`` repository reads them. Each is a cross-domain target: split ``test`` holds all its classes.

- ``eurosat``: EuroSAT RGB (Helber et al. 2019), 10 classes, 27,000 64x64 images: the class folders of ``2750/``
  (the published ``EuroSAT.zip``, read in place, or its extracted folder; ``EuroSAT_RGB/`` also works).
- ``isic``: ISIC 2018 task 3 (Codella et al. 2019; Tschandl et al. 2018), 7 classes, 10,015 dermoscopic images:
  ``ISIC2018_Task3_Training_Input/<image>.jpg`` labelled by the one-hot columns of
  ``ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv`` (folders or their zips).
- ``cropdisease``: PlantVillage as Kaggle's ``plant-disease`` set (Mohanty et al. 2016), 38 classes: the class
  folders of ``dataset/train/``.
- ``chestx``: ChestX-ray8 (Wang et al. 2017): ``Data_Entry_2017.csv`` and ``images/*.png`` (or Kaggle's
  ``images_0NN/images/``); like BSCD-FSL, only images with one finding, not "No Finding" nor "Pneumonia", in 7
  classes.

Each is looked for in ``<root>/<name>`` (and the folder names BSCD-FSL's ``configs.py`` uses), images are decoded
in place (never extracted), resized with Lanczos to ``image_size`` (84) in RGB (``grayscale=True`` for one
channel) and cached (``$FEWSHOT_CACHE/processed/bscdfsl``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import damaged, reading
from fewshot.data.imagefiles import FileTree, class_folder_files, decode_images
from fewshot.data.registry import register_dataset
from fewshot.data.sources import Published, check_published, find_first, not_found
from fewshot.data.targets import check_target_split

__all__ = ["CHESTX_CLASSES", "EUROSAT_CLASSES", "ISIC_CLASSES", "load_chestx", "load_cropdisease", "load_eurosat",
           "load_isic"]

CACHE = DataCache("bscdfsl", 1)

EUROSAT_ZIP = Published("EuroSAT.zip", "https://madm.dfki.de/files/sentinel/EuroSAT.zip",
                        md5="c8fa014336c82ac7804f0398fcb19387")
EUROSAT_CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake"]
ISIC_INPUT = Published("ISIC2018_Task3_Training_Input.zip",
                       "https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task3_Training_Input.zip")
ISIC_TRUTH = Published("ISIC2018_Task3_Training_GroundTruth.zip",
                       "https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task3_Training_GroundTruth.zip")
ISIC_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"
ISIC_CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
CROPDISEASE = Published("plant-disease (dataset/train/<class>/)",
                        "https://www.kaggle.com/saroz014/plant-disease (kaggle datasets download -d "
                        "saroz014/plant-disease)")
CHESTX = Published("Data_Entry_2017.csv and images/",
                   "https://www.kaggle.com/nih-chest-xrays/data (kaggle datasets download -d nih-chest-xrays/data)")
# BSCD-FSL's Chest_few_shot.py: its labels map, in its order (it drops "Pneumonia" and multi-finding images).
CHESTX_CLASSES = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax"]


def _bases(root: Path, *names: str) -> list[Path]:
    return [root / n for n in names] + [root]


def _dataset(name: str, split: str, tree: FileTree, list_files: Callable[[], tuple[list[str], list[int], list[str]]],
             image_size: int, grayscale: bool, identity: dict | None = None) -> ClassDataset:
    """The cached decoded images of ``list_files() -> (files, labels, class names)`` of ``tree`` as split ``split``;
    the cache key is ``identity`` (default: the tree's)."""
    if int(image_size) < 1:
        raise UsageError(f"{name}: image_size must be positive, got {image_size}")

    def build() -> dict[str, np.ndarray]:
        files, labels, classes = list_files()
        images = decode_images(tree, files, (int(image_size), int(image_size)), grayscale, desc=name)
        return {"images": images, "labels": np.asarray(labels, dtype=np.int64), "class_names": np.array(classes)}

    key = CACHE.key({"dataset": name, "source": identity or tree.identity(), "image_size": int(image_size),
                     "grayscale": bool(grayscale)})
    arrays = CACHE.get(key, build, label=f"{name}-{int(image_size)}px{'-grey' if grayscale else ''}")
    tag = ("" if image_size == 84 else f"@{int(image_size)}px") + ("[grey]" if grayscale else "")
    return ClassDataset(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                        arrays["class_names"].tolist(), f"{name}/{split}{tag}")


def _folder_classes(tree: FileTree, name: str, expected: list[str] | None, count: int | None):
    def list_files() -> tuple[list[str], list[int], list[str]]:
        classes = class_folder_files(tree)
        names = sorted(classes)
        if (expected is not None and names != expected) or (count is not None and len(names) != count):
            want = f"the classes {expected}" if expected is not None else f"{count} class folders"
            raise DataError(f"{tree.where('')}: found {len(names)} class folders {names[:5]}... but {name} has {want}; "
                            f"the copy is incomplete or another dataset")
        return [f for c in names for f in classes[c]], [k for k, c in enumerate(names) for _ in classes[c]], names
    return list_files


@register_dataset("eurosat")
def load_eurosat(split: str, root: Path, *, image_size: int = 84, grayscale: bool = False) -> ClassDataset:
    """Split ``test`` of EuroSAT RGB: its 10 classes (folder order), uint8 ``[27000, 3, S, S]``."""
    check_target_split("eurosat", split, len(EUROSAT_CLASSES))
    root = Path(root).expanduser()
    bases = _bases(root, "eurosat", "EuroSAT")
    folder = find_first((b / sub for b in bases for sub in ("2750", "EuroSAT_RGB")), "dir")
    if folder is not None:
        tree = FileTree(folder)
    else:
        archive = find_first((b / n for b in bases for n in ("EuroSAT.zip", "EuroSAT_RGB.zip")), "file")
        if archive is None:
            raise not_found("EuroSAT", root / "eurosat", [EUROSAT_ZIP], "its extracted 2750/ folder", bases)
        if archive.name == EUROSAT_ZIP.name:
            check_published(archive, EUROSAT_ZIP)
        tree = FileTree(archive, "2750" if archive.name == EUROSAT_ZIP.name else "EuroSAT_RGB")
    return _dataset("eurosat", split, tree, _folder_classes(tree, "EuroSAT", EUROSAT_CLASSES, None), image_size,
                    grayscale)


@register_dataset("cropdisease")
def load_cropdisease(split: str, root: Path, *, image_size: int = 84, grayscale: bool = False) -> ClassDataset:
    """Split ``test`` of CropDisease (PlantVillage, BSCD-FSL's ``dataset/train``): 38 classes in folder order."""
    check_target_split("cropdisease", split, 38)
    root = Path(root).expanduser()
    bases = _bases(root, "cropdisease", "CropDiseases", "CropDisease")
    folder = find_first((b / "dataset" / "train" for b in bases), "dir")
    if folder is None:
        raise not_found("CropDisease", root / "cropdisease", [CROPDISEASE], looked=bases)
    tree = FileTree(folder)
    return _dataset("cropdisease", split, tree, _folder_classes(tree, "CropDisease", None, 38), image_size, grayscale)


def _read_csv(tree: FileTree, name: str) -> list[list[str]]:
    (_, blob), = tree.read([name])
    with reading(tree.where(name), name if tree.kind != "folder" else "",
                 advice="replace it with the published file"):
        return [row for row in csv.reader(io.StringIO(blob.decode("utf-8-sig"))) if row]


@register_dataset("isic")
def load_isic(split: str, root: Path, *, image_size: int = 84, grayscale: bool = False) -> ClassDataset:
    """Split ``test`` of ISIC 2018 task 3: 7 classes (the ground truth's column order), uint8 ``[10015, 3, S, S]``."""
    check_target_split("isic", split, len(ISIC_CLASSES))
    root = Path(root).expanduser()
    bases = _bases(root, "isic", "ISIC")
    images = find_first((b / "ISIC2018_Task3_Training_Input" for b in bases), "dir")
    images = FileTree(images) if images else None
    truth = find_first((b / "ISIC2018_Task3_Training_GroundTruth" / ISIC_CSV for b in bases), "file")
    truth = FileTree(truth.parent) if truth else None
    for base in bases:
        if images is None and (base / ISIC_INPUT.name).is_file():
            images = FileTree(base / ISIC_INPUT.name, "ISIC2018_Task3_Training_Input")
        if truth is None and (base / ISIC_TRUTH.name).is_file():
            truth = FileTree(base / ISIC_TRUTH.name, "ISIC2018_Task3_Training_GroundTruth")
    if images is None or truth is None:
        raise not_found("ISIC 2018 task 3", root / "isic", [ISIC_INPUT, ISIC_TRUTH], "their extracted folders",
                        bases)

    def list_files() -> tuple[list[str], list[int], list[str]]:
        rows = _read_csv(truth, ISIC_CSV)
        header, body = rows[0], rows[1:]
        if [h.strip() for h in header[1:]] != ISIC_CLASSES:
            raise damaged(truth.where(ISIC_CSV), f"its header is {header}, expected image then {ISIC_CLASSES}",
                          "replace it with the published ground truth")
        try:
            labels = [int(np.argmax([float(v) != 0 for v in row[1:8]])) for row in body]
        except ValueError as error:
            raise damaged(truth.where(ISIC_CSV), f"a row is not an image name and 7 numbers: {error}",
                          "replace it with the published ground truth") from error
        return [f"{row[0].strip()}.jpg" for row in body], labels, list(ISIC_CLASSES)

    return _dataset("isic", split, images, list_files, image_size, grayscale,
                    {"images": images.identity(), "labels": truth.identity()})


@register_dataset("chestx")
def load_chestx(split: str, root: Path, *, image_size: int = 84, grayscale: bool = False) -> ClassDataset:
    """Split ``test`` of ChestX-ray8 as BSCD-FSL filters it: 7 classes (:data:`CHESTX_CLASSES`), RGB by default."""
    check_target_split("chestx", split, len(CHESTX_CLASSES))
    root = Path(root).expanduser()
    bases = _bases(root, "chestx", "chestX", "ChestX")
    base = find_first((b for b in bases if (b / "Data_Entry_2017.csv").is_file()), "dir")
    if base is None or not any((base / d).is_dir() for d in ("images", "images_001")):
        raise not_found("ChestX-ray8", root / "chestx", [CHESTX], looked=bases)
    tree = FileTree(base)

    def list_files() -> tuple[list[str], list[int], list[str]]:
        rows = _read_csv(tree, "Data_Entry_2017.csv")[1:]
        located = {n.rsplit("/", 1)[-1]: n for n in tree.names()
                   if n.startswith("images") and n.lower().endswith(".png")}
        files, labels = [], []
        for row in rows:
            findings = row[1].split("|")
            if len(findings) == 1 and findings[0] in CHESTX_CLASSES:
                if row[0] not in located:
                    raise DataError(f"{base / 'Data_Entry_2017.csv'} lists {row[0]}, which is in neither "
                                    f"{base / 'images'} nor {base}/images_0NN/images; put the image there")
                files.append(located[row[0]])
                labels.append(CHESTX_CLASSES.index(findings[0]))
        return files, labels, list(CHESTX_CLASSES)

    return _dataset("chestx", split, tree, list_files, image_size, grayscale)
