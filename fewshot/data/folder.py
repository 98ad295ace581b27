"""A folder of class folders of images as a dataset, split into disjoint train/val/test classes by a recorded rule.

The split is either seeded (class names sorted, permuted by ``numpy.random.default_rng(split_seed)``, cut by
``split_fractions``) or given by split files (``train.txt`` / ``val.txt`` / ``test.txt``, one class name a line).
Nothing is ever written into the folder. A missing folder, a bad split file or an image that cannot be read fails as
one :class:`~fewshot.core.errors.DataError` naming it.
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from fewshot.core.hashing import sha256_file
from fewshot.core.errors import DataError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import DataNotFoundError, reading

__all__ = ["IMAGE_EXTENSIONS", "class_folders", "load_image_folder", "split_classes"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
FOLDER_SPLITS = ("train", "val", "test")
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F", "La"})
_LANCZOS = getattr(Image, "Resampling", Image).LANCZOS  # Image.Resampling is Pillow >= 9.1


def class_folders(path: str | os.PathLike) -> dict[str, list[Path]]:
    """``class name -> sorted image files`` for every sub-folder of ``path`` holding images (searched recursively).

    Hidden files and folders (names starting with ``.``) are skipped; sub-folders without images are left out.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"image folder {path} does not exist or is not a folder; give a folder holding one "
                                f"sub-folder of images per class")
    classes = {}
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(sub).parts))
        if files:
            classes[sub.name] = files
    if not classes:
        raise DataError(f"no images found in {path}: expected one sub-folder per class holding image files "
                        f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return classes


def split_classes(names: Sequence[str], split_seed: int = 0,
                  split_fractions: tuple[float, float, float] = (0.64, 0.16, 0.20)) -> dict[str, list[str]]:
    """The seeded class split: ``{"train": [...], "val": [...], "test": [...]}``, each sorted.

    Rule: sort the names, permute them with ``numpy.random.default_rng(split_seed).permutation``, then the first
    ``round(n * f_train)`` are train, up to ``round(n * (f_train + f_val))`` val, the rest test.
    """
    fractions = np.asarray(split_fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers summing to 1, got {split_fractions}")
    ordered = sorted(names)
    permuted = [ordered[i] for i in np.random.default_rng(split_seed).permutation(len(ordered))]
    n = len(ordered)
    cut1, cut2 = round(n * fractions[0]), round(n * (fractions[0] + fractions[1]))
    return {"train": sorted(permuted[:cut1]), "val": sorted(permuted[cut1:cut2]), "test": sorted(permuted[cut2:])}


def _read_split_file(path: Path) -> list[str]:
    with reading(path, advice="replace it with a text file naming one class folder a line"):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _split_file_paths(folder: Path, split_files) -> dict[str, Path]:
    """The split files to use: the given mapping or folder, else ``train.txt``... found in ``folder``; may be empty."""
    if split_files is None:
        return {s: folder / f"{s}.txt" for s in FOLDER_SPLITS if (folder / f"{s}.txt").is_file()}
    if isinstance(split_files, Mapping):
        unknown = set(split_files) - set(FOLDER_SPLITS)
        if unknown:
            raise ValueError(f"split_files keys must be among {FOLDER_SPLITS}, got {sorted(unknown)}")
        paths = {s: Path(p).expanduser() for s, p in split_files.items()}
        for s, p in paths.items():
            if not p.is_file():
                raise DataNotFoundError(f"split file for {s!r} not found: {p}; give an existing file")
        return paths
    directory = Path(split_files).expanduser()
    if not directory.is_dir():
        raise DataNotFoundError(f"split_files folder {directory} does not exist; give a folder holding "
                                f"train.txt / val.txt / test.txt, or a mapping split -> file")
    paths = {s: directory / f"{s}.txt" for s in FOLDER_SPLITS if (directory / f"{s}.txt").is_file()}
    if not paths:
        raise DataNotFoundError(f"no train.txt, val.txt or test.txt in {directory}; add them (one class folder name "
                                f"a line)")
    return paths


def _classes_from_files(paths: dict[str, Path], split: str, available: Sequence[str]) -> list[str]:
    if split not in paths:
        raise DataNotFoundError(f"no split file for {split!r}: have {', '.join(str(p) for p in paths.values())}; "
                                f"add {split}.txt (one class folder name a line)")
    listed = {s: _read_split_file(p) for s, p in paths.items()}
    known = set(available)
    for s, names in listed.items():
        unknown = [n for n in names if n not in known]
        if unknown:
            hints = [f"{n!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, known, n=1))
                     else repr(n) for n in unknown[:5]]
            raise DataError(f"{paths[s]} names {len(unknown)} class{'es' if len(unknown) > 1 else ''} with no image "
                            f"folder: {', '.join(hints)}{' ...' if len(unknown) > 5 else ''}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"{paths[s]} lists classes more than once: {duplicates[:5]}; list each once")
    for a in listed:
        for b in listed:
            shared = sorted(set(listed[a]) & set(listed[b])) if a < b else []
            if shared:
                raise DataError(f"split files {paths[a]} and {paths[b]} share classes {shared[:5]}; splits must be "
                                f"class-disjoint")
    if not listed[split]:
        raise DataError(f"{paths[split]} lists no classes; add one class folder name a line")
    return listed[split]


_IMAGE_ADVICE = "it is truncated or corrupt: replace it with a good copy, or delete it (or start its name with '.')"


def _load_image(path: Path, size: tuple[int, int], grayscale: bool) -> np.ndarray:
    with reading(path, advice=_IMAGE_ADVICE), Image.open(path) as image:
        image.draft("L" if grayscale else "RGB", size)  # JPEG: decode at a reduced scale when it is much larger
        image = image.convert("L" if grayscale else "RGB")
        if image.size != size:
            image = image.resize(size, _LANCZOS)
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if grayscale else array.transpose(2, 0, 1)


def load_image_folder(path: str | os.PathLike, split: str, *, image_size: int | tuple[int, int] = 84,
                      grayscale: bool | None = None, split_seed: int = 0,
                      split_fractions: tuple[float, float, float] = (0.64, 0.16, 0.20),
                      split_files: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None) -> ClassDataset:
    """Split ``split`` (train, val, test, or all) of a folder holding one sub-folder of images per class.

    Classes are split by the split files (``split_files`` as a folder or ``{split: file}``, else ``train.txt`` /
    ``val.txt`` / ``test.txt`` found in ``path``) or, when there are none, by :func:`split_classes` with
    ``split_seed`` and ``split_fractions``. Images are resized with PIL (Lanczos) to ``image_size`` (``(height,
    width)`` or a square side) as uint8 ``[N, C, H, W]``; ``grayscale=None`` makes them one channel when every
    image of the folder is grayscale. The rule is recorded in the dataset's name and in ``dataset.split_rule``.
    """
    folder = Path(path).expanduser()
    if split not in (*FOLDER_SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; expected one of train, val, test, all")
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    files = class_folders(folder)
    paths = _split_file_paths(folder, split_files)
    if split == "all":
        chosen, rule = sorted(files), "all classes"
    elif paths:
        chosen = _classes_from_files(paths, split, list(files))
        digest = sha256_file(paths[split])[:12]
        rule = f"split file {paths[split]} (sha256 {digest}...)"
    else:
        chosen = split_classes(list(files), split_seed, split_fractions)[split]
        rule = (f"seeded: sorted class names permuted by numpy default_rng({split_seed}), fractions "
                f"{'/'.join(f'{f:g}' for f in split_fractions)}")
        if not chosen:
            raise ValueError(f"split {split!r} of {folder} is empty: {len(files)} classes with fractions "
                             f"{split_fractions} give it no class; change split_fractions or add classes")
    if grayscale is None:
        grayscale = all(_mode(f) in _GRAY_MODES for names in files.values() for f in names)
    items = [(label, f) for label, name in enumerate(chosen) for f in files[name]]
    data = np.empty((len(items), 1 if grayscale else 3, height, width), dtype=np.uint8)
    for i, (_, f) in enumerate(tqdm(items, desc=f"{folder.name}/{split}", unit="img", leave=False,
                                    disable=not sys.stderr.isatty() or len(items) < 1000)):
        data[i] = _load_image(f, (width, height), grayscale)
    tag = "all" if split == "all" else ("files-" + digest if paths else f"seed{split_seed}-"
                                        + "-".join(f"{f:g}" for f in split_fractions))
    dataset = ClassDataset(torch.from_numpy(data), torch.tensor([label for label, _ in items], dtype=torch.long),
                           list(chosen), f"{folder.name}/{split}[{tag}]")
    dataset.split_rule = rule
    return dataset


def _mode(path: Path) -> str:
    with reading(path, advice=_IMAGE_ADVICE), Image.open(path) as image:  # reads the header only
        return image.mode
