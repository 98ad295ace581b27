"""The official one-shot classification task of Lake et al. (2015): 20 runs of 20-way 1-shot, from all_runs.zip."""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet
from fewshot.data.errors import damaged, reading
from fewshot.data.omniglot import archives, sources
from fewshot.data.omniglot.alphabets import characters
from fewshot.data.omniglot.loaders import dataset_name
from fewshot.data.omniglot.resize import check_size, ink_bright

RUNS = 20
RUN_WAYS = 20
RAW_SIZE = archives.RAW_SIZE


def _read_runs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background masks of the training images ``[20 runs, 20 classes]`` and test items ``[20, 20]``, and the class
    (0-based) of each test item ``[20, 20]``."""
    train = np.empty((RUNS, RUN_WAYS, RAW_SIZE, RAW_SIZE), dtype=bool)
    test = np.empty_like(train)
    labels = np.empty((RUNS, RUN_WAYS), dtype=np.int64)
    with reading(path), zipfile.ZipFile(path) as archive:
        for r in range(RUNS):
            run = f"run{r + 1:02d}"
            for k in range(RUN_WAYS):
                train[r, k] = archives.decode_png(archive, f"{run}/training/class{k + 1:02d}.png")
                test[r, k] = archives.decode_png(archive, f"{run}/test/item{k + 1:02d}.png")
            pairs = [line.split() for line in archive.read(f"{run}/class_labels.txt").decode().splitlines() if line]
            for item, klass in pairs:
                item_no = re.fullmatch(rf"{run}/test/item(\d+)\.png", item)
                class_no = re.fullmatch(rf"{run}/training/class(\d+)\.png", klass)
                if item_no is None or class_no is None:
                    raise damaged(path, f"{run}/class_labels.txt has the line {item} {klass!r}, expected "
                                  f"'{run}/test/itemMM.png {run}/training/classKK.png'")
                labels[r, int(item_no.group(1)) - 1] = int(class_no.group(1)) - 1
            if len(pairs) != RUN_WAYS:
                raise damaged(path, f"{run}/class_labels.txt has {len(pairs)} lines, expected {RUN_WAYS}")
    return train, test, labels


def load_omniglot_runs(root: str | os.PathLike, image_size: int = 28, *,
                       download: bool = True) -> tuple[ClassDataset, EpisodeSet]:
    """The official one-shot task (Lake et al. 2015): 20 runs of 20-way 1-shot with 20 queries, from all_runs.zip.

    The dataset holds the 400 training images (rows ``20*r + k``: run ``r+1``, ``classKK`` with ``KK = k+1``) and
    the 400 test items (rows ``400 + 20*r + m``: ``itemMM`` with ``MM = m+1``) as 400 classes ``runRR/classKK`` of
    two images each, the test item labelled with the class ``class_labels.txt`` gives it; groups are the runs. The
    episode set holds the 20 runs as fixed episodes (``seed=None``): support = the run's 20 training images,
    labels 0..19; query = its 20 test items in item order, labels from ``class_labels.txt``. The score is the error
    rate over the 400 queries.
    """
    image_size = check_size(image_size)
    root = Path(root).expanduser()
    train, test, labels = _read_runs(sources.official_file(root, "all_runs.zip", download))
    n = RUNS * RUN_WAYS
    images = ink_bright(np.concatenate([train.reshape(n, RAW_SIZE, RAW_SIZE), test.reshape(n, RAW_SIZE, RAW_SIZE)]),
                        image_size).unsqueeze(1)
    run_offset = torch.arange(RUNS).unsqueeze(1) * RUN_WAYS
    class_of = torch.cat([torch.arange(n), (torch.from_numpy(labels) + run_offset).flatten()])
    dataset = ClassDataset(
        images, class_of,
        [f"run{r + 1:02d}/class{k + 1:02d}" for r in range(RUNS) for k in range(RUN_WAYS)],
        dataset_name("omniglot-runs", "test", image_size),
        groups=torch.arange(RUNS).repeat_interleave(RUN_WAYS),
        group_names=[f"run{r + 1:02d}" for r in range(RUNS)],
    )
    episodes = EpisodeSet(
        support=run_offset + torch.arange(RUN_WAYS),
        support_labels=torch.arange(RUN_WAYS).expand(RUNS, -1).clone(),
        query=n + run_offset + torch.arange(RUN_WAYS),
        query_labels=torch.from_numpy(labels).clone(),
        classes=run_offset + torch.arange(RUN_WAYS),
        ways=RUN_WAYS, shots=1, queries=1, seed=None,
        dataset_fingerprint=dataset.episodes_fingerprint(),
    )
    return dataset, episodes


@dataclass(frozen=True)
class RunImage:
    """Where one image of the 20-run task comes from in the evaluation set."""

    file: str  # as in all_runs.zip, e.g. "run01/training/class01.png"
    alphabet: str
    character: str
    drawer: int  # 1..20


def locate_omniglot_runs(root: str | os.PathLike, *, download: bool = True) -> list[RunImage]:
    """Find each of the 800 images of the 20-run task in the official evaluation set, pixel for pixel.

    Returns one :class:`RunImage` per image (run-major, the 20 training images then the 20 test items of each
    run); raises ``ValueError`` if an image is not in the evaluation set.
    """
    root = Path(root).expanduser()
    train, test, _ = _read_runs(sources.official_file(root, "all_runs.zip", download))
    names = characters("evaluation")
    where: dict[bytes, tuple[int, int]] = {}
    row = 0
    for block in archives.paper_chunks(sources.locate_set(root, "evaluation", download), "evaluation"):
        packed = np.packbits(block.reshape(*block.shape[:2], -1), axis=-1)
        for c in range(block.shape[0]):
            for d in range(archives.DRAWERS):
                where.setdefault(hashlib.sha1(packed[c, d].tobytes()).digest(), (row + c, d + 1))
        row += block.shape[0]
    out = []
    for r in range(RUNS):
        for kind, images, stem in (("training", train, "class"), ("test", test, "item")):
            for k in range(RUN_WAYS):
                file = f"run{r + 1:02d}/{kind}/{stem}{k + 1:02d}.png"
                found = where.get(hashlib.sha1(np.packbits(images[r, k].reshape(-1)).tobytes()).digest())
                if found is None:
                    raise ValueError(f"{file} does not occur in the Omniglot evaluation set")
                alphabet, character = names[found[0]]
                out.append(RunImage(file, alphabet, character, found[1]))
    return out
