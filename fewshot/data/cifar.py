"""CIFAR-FS (Bertinetto et al. 2019, 64/16/20 classes) and FC100 (Oreshkin et al. 2018, 60/20/20 classes by
superclass), both from the CIFAR-100 python archive: 32x32 RGB, all 600 images of each class (the archive's 500
training and 100 test images together).

The archive ``cifar-100-python.tar.gz`` (sha256 pinned below; md5 ``eb9058c3a382ffc7106e4002c42a8d85`` as
published) or its extracted folder ``cifar-100-python/`` (``train``, ``test``, ``meta``) is looked for in
``<root>/cifar100``, ``<root>/cifar-100``, ``<root>/CIFAR100`` and ``<root>``, else downloaded to ``<root>/cifar100``.
Its pickles are dicts with ``b'data'`` (uint8 ``[N, 3072]``, the red, green and blue planes), ``b'fine_labels'``
and ``b'coarse_labels'``; ``meta`` names the labels. The class splits are the published ones, shipped in
``fewshot/data/splits/cifar-fs`` and ``fewshot/data/splits/fc100`` (READMEs there name the sources). The decoded
arrays are kept in the processed-data cache (``$FEWSHOT_CACHE/processed/cifar100``). The pickles are read with
:mod:`pickle`: only load files you trust (the archive's sha256 is checked first).
"""
from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.download import ChecksumError, ensure_files
from fewshot.data.errors import damaged
from fewshot.data.registry import register_dataset
from fewshot.data.sources import digest
from fewshot.data.splits import read_split, split_path

__all__ = ["ARCHIVE", "SHA256", "load_cifar_fs", "load_fc100", "locate_cifar100", "read_cifar100"]

ARCHIVE = "cifar-100-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
FOLDER = "cifar-100-python"
SUBFOLDERS = ("cifar100", "cifar-100", "CIFAR100", "")
SPLITS = ("train", "val", "test", "trainval")
CACHE = DataCache("cifar100", 1)
_ADVICE = "it is truncated, corrupt or not the CIFAR-100 python version: replace it with a good copy"


def locate_cifar100(root: str | os.PathLike, download: bool = True) -> Path:
    """The extracted ``cifar-100-python`` folder or the archive found under ``root``, else the downloaded archive."""
    root = Path(root).expanduser()
    for sub in SUBFOLDERS:
        base = root / sub if sub else root
        if all((base / FOLDER / name).is_file() for name in ("train", "test", "meta")):
            return base / FOLDER
        if (base / ARCHIVE).is_file():
            return base / ARCHIVE
    hint = (f"(or put its extracted {FOLDER}/ folder there; the data root is --data-root or $FEWSHOT_DATA)")
    return ensure_files(root / "cifar100", {ARCHIVE: (URL, SHA256)}, download=download, hint=hint)[ARCHIVE]


def _unpickle(fh, where: Path, member: str) -> dict:
    try:
        data = pickle.load(fh, encoding="bytes")
    except Exception as error:  # a damaged pickle can make the unpickler raise almost anything
        raise damaged(where, f"cannot unpickle {member}: {type(error).__name__}: {error}", _ADVICE) from error
    if not isinstance(data, dict):
        raise damaged(where, f"{member} holds a {type(data).__name__}, not a dict", _ADVICE)
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _read_pickles(source: Path) -> dict[str, dict]:
    if source.is_dir():
        out = {}
        for name in ("train", "test", "meta"):
            with open(source / name, "rb") as fh:
                out[name] = _unpickle(fh, source / name, name)
        return out
    try:
        with tarfile.open(source, "r:gz") as archive:
            out = {}
            for name in ("train", "test", "meta"):
                member = archive.extractfile(f"{FOLDER}/{name}")
                if member is None:
                    raise KeyError(f"{FOLDER}/{name}")
                out[name] = _unpickle(member, source, f"{FOLDER}/{name}")
            return out
    except DataError:
        raise
    except (tarfile.TarError, OSError, EOFError, KeyError) as error:
        raise damaged(source, f"cannot read it: {type(error).__name__}: {error}", _ADVICE) from error


def _names(meta: dict, key: str, where: Path) -> list[str]:
    if key not in meta:
        raise damaged(where, f"meta has no {key!r}", _ADVICE)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


def _decode(source: Path) -> dict[str, np.ndarray]:
    pickles = _read_pickles(source)
    images, fine, coarse = [], [], []
    for part in ("train", "test"):
        d = pickles[part]
        where = source / part if source.is_dir() else source
        missing = [k for k in ("data", "fine_labels", "coarse_labels") if k not in d]
        if missing:
            raise damaged(where, f"the {part} pickle has no {', '.join(missing)}", _ADVICE)
        x = np.asarray(d["data"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(d["fine_labels"]) != len(x):
            raise damaged(where, f"the {part} pickle's data is {x.dtype} {x.shape} for {len(d['fine_labels'])} "
                          f"labels; expected uint8 [N, 3072] with one label each", _ADVICE)
        images.append(x.reshape(-1, 3, 32, 32))
        fine.append(np.asarray(d["fine_labels"], dtype=np.int64))
        coarse.append(np.asarray(d["coarse_labels"], dtype=np.int64))
    meta_where = source / "meta" if source.is_dir() else source
    return {"images": np.concatenate(images), "fine": np.concatenate(fine), "coarse": np.concatenate(coarse),
            "fine_names": np.array(_names(pickles["meta"], "fine_label_names", meta_where)),
            "coarse_names": np.array(_names(pickles["meta"], "coarse_label_names", meta_where))}


def read_cifar100(root: str | os.PathLike, download: bool = True) -> dict[str, Any]:
    """All 60,000 CIFAR-100 images (uint8 ``[N, 3, 32, 32]``, training images first) with fine and coarse labels and
    their names, from the archive (sha256 checked) or the extracted folder; cached once decoded."""
    source = locate_cifar100(root, download)
    if source.is_dir():
        identity = {"folder": [(name, str((source / name).resolve()), (source / name).stat().st_size,
                                (source / name).stat().st_mtime_ns) for name in ("train", "test", "meta")]}
    else:
        actual = digest(source)
        if actual != SHA256:
            raise ChecksumError(f"{source}: sha256 is {actual}, expected {SHA256} (the published archive); it is "
                                f"corrupt or a different version: delete it and fetch it again from {URL}")
        identity = {"archive_sha256": actual}
    arrays = CACHE.get(CACHE.key(identity), lambda: _decode(source), label="cifar-100")
    out: dict[str, Any] = dict(arrays)
    out["fine_names"] = arrays["fine_names"].tolist()
    out["coarse_names"] = arrays["coarse_names"].tolist()
    out["source"] = source
    return out


def _check_split(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return ("train", "val") if split == "trainval" else (split,)


def _build(cifar: dict[str, Any], fine_ids: list[int], name: str, groups: list[int] | None = None,
           group_names: list[str] | None = None) -> ClassDataset:
    remap = np.full(len(cifar["fine_names"]), -1, dtype=np.int64)
    remap[fine_ids] = np.arange(len(fine_ids))
    labels = remap[cifar["fine"]]
    keep = np.flatnonzero(labels >= 0)
    return ClassDataset(torch.from_numpy(cifar["images"][keep]), torch.from_numpy(labels[keep]),
                        [cifar["fine_names"][i] for i in fine_ids], name,
                        None if groups is None else torch.tensor(groups), group_names)


def _lookup(names: list[str], wanted: list[str], family: str, split: str, what: str) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in wanted if n not in index]
    if unknown:
        raise DataError(f"{split_path(family, split)} names {what} {unknown[:5]} that the CIFAR-100 archive's meta "
                        f"does not have; the archive is not the CIFAR-100 python version, or the split file is "
                        f"damaged (reinstall the package)")
    return [index[n] for n in wanted]


@register_dataset("cifar-fs")
def load_cifar_fs(split: str, root: Path, *, download: bool = True) -> ClassDataset:
    """Split ``train`` (64 classes), ``val`` (16), ``test`` (20) or ``trainval`` of CIFAR-FS, uint8
    ``[N, 3, 32, 32]``, classes in the order of the shipped split files (sorted by name)."""
    parts = _check_split(split)
    cifar = read_cifar100(root, download)
    ids = [i for part in parts for i in _lookup(cifar["fine_names"], read_split("cifar-fs", part), "cifar-fs", part,
                                                "classes")]
    return _build(cifar, ids, f"cifar-fs/{split}")


@register_dataset("fc100")
def load_fc100(split: str, root: Path, *, download: bool = True) -> ClassDataset:
    """Split ``train`` (60 classes of 12 superclasses), ``val`` (20 of 4), ``test`` (20 of 4) or ``trainval`` of
    FC100, uint8 ``[N, 3, 32, 32]``; ``groups`` are the superclasses, classes sorted by superclass then name."""
    parts = _check_split(split)
    cifar = read_cifar100(root, download)
    supers = [s for part in parts for s in _lookup(cifar["coarse_names"], read_split("fc100", part), "fc100", part,
                                                   "superclasses")]
    fine_of = {c: sorted((i for i in range(len(cifar["fine_names"])) if _coarse_of(cifar, i) == c),
                         key=lambda i: cifar["fine_names"][i]) for c in supers}
    ids = [i for c in supers for i in fine_of[c]]
    groups = [g for g, c in enumerate(supers) for _ in fine_of[c]]
    return _build(cifar, ids, f"fc100/{split}", groups, [cifar["coarse_names"][c] for c in supers])


def _coarse_of(cifar: dict[str, Any], fine_id: int) -> int:
    """The superclass of a fine class, read from the labels (every image of a class has the same one)."""
    if "_coarse_of" not in cifar:
        table = np.full(len(cifar["fine_names"]), -1, dtype=np.int64)
        table[cifar["fine"]] = cifar["coarse"]
        cifar["_coarse_of"] = table
    return int(cifar["_coarse_of"][fine_id])
