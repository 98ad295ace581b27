"""What every text dataset shares: a corpus of labelled texts, its class-disjoint splits, its token dataset.

A loader reads its files in place into a :class:`Corpus` (texts, their class names, the files' sha256 and the
options that rendered the text), picks the split's classes with :func:`split_rule` (the suite's seeded class split,
:func:`fewshot.data.folder.split_classes`, or all classes) and calls :meth:`Corpus.dataset`: the whole corpus is
tokenised once per encoder (:mod:`.tokens`) and the split keeps the rows of its classes as a
:class:`~fewshot.data.dataset.ClassDataset` of token ids ``[N, L]`` (int64, ``-1`` after each text), which records
the tokenizer that made them (``dataset.tokenizer``) and the split's rule (``dataset.split_rule``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fewshot.core.errors import UsageError
from fewshot.core.hashing import sha256_json
from fewshot.data.sources import digest
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import DataNotFoundError
from fewshot.data.folder import split_classes
from fewshot.data.text.encoders import DEFAULT_ENCODER, encoder_name, tokenizer_record
from fewshot.data.text.tokens import PAD, token_ids

__all__ = ["Corpus", "DEFAULT_FRACTIONS", "SPLITS", "find_files", "split_rule"]

SPLITS = ("train", "val", "test", "all")
DEFAULT_FRACTIONS = (0.64, 0.16, 0.20)   # the suite's default class split (as for a folder of images)


def find_files(root: Path, folder: str, names: Sequence[str], about: str) -> Path:
    """The folder holding every file of ``names``: ``root/folder`` or else ``root`` itself; else a
    :class:`~fewshot.data.errors.DataNotFoundError` saying what to put where (text data is never downloaded)."""
    root = Path(root).expanduser()
    for candidate in (root / folder, root):
        if all((candidate / name).exists() for name in names):
            return candidate
    missing = [name for name in names if not (root / folder / name).exists()]
    raise DataNotFoundError(f"{about}: {', '.join(missing)} not found in {root / folder}; put the dataset's files "
                            f"there (or pass --data-root / $FEWSHOT_DATA pointing at the folder above "
                            f"{folder}/)")


def split_rule(names: Sequence[str], split: str, split_seed: int, split_fractions: Sequence[float],
               what: str = "classes") -> tuple[list[str], str, str]:
    """``(chosen names, rule, tag)`` of ``split`` over ``names``: ``all`` of them, or the seeded split.

    The rule (in words, for ``dataset.split_rule``) and a short tag (for the dataset's name) record it."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "all":
        return sorted(names), f"all {len(names)} {what}", "all"
    fractions = tuple(float(f) for f in split_fractions)
    chosen = split_classes(list(names), int(split_seed), fractions)[split]
    if not chosen:
        raise UsageError(f"split {split!r} is empty: {len(names)} {what} with split_fractions {fractions} give it "
                         f"none; change split_fractions")
    rule = (f"seeded over {len(names)} {what}: sorted names permuted by numpy default_rng({split_seed}), "
            f"fractions {'/'.join(f'{f:g}' for f in fractions)}")
    return chosen, rule, f"seed{split_seed}-" + "-".join(f"{f:g}" for f in fractions)


def texts_fingerprint(name: str, classes: list[str], labels: list[str], texts: list[str]) -> str:
    """A sha256 of a text dataset's examples themselves (name, classes, each row's label and text), whatever the
    encoder: the token datasets of every encoder convert these, so their episodes share one hash."""
    return sha256_json({"texts of": name, "classes": classes, "labels": labels, "texts": texts})


@dataclass
class Corpus:
    """Labelled texts read from ``files`` (paths), rendered with ``options`` (e.g. FewRel's entity markers)."""

    name: str
    texts: list[str]
    labels: list[str]
    files: list[Path]
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.labels)} labels")

    @property
    def source(self) -> dict[str, Any]:
        """What the texts come from: each file's name and sha256, and the rendering options."""
        return {"corpus": self.name, "files": {p.name: digest(p) for p in self.files}, "options": self.options}

    def class_names(self) -> list[str]:
        return sorted(set(self.labels))

    def dataset(self, classes: Sequence[str], name: str, encoder: str | os.PathLike = DEFAULT_ENCODER, *,
                rule: str = "", groups: Sequence[str] | None = None) -> ClassDataset:
        """The rows of ``classes`` (labelled ``0..`` in that order) as token ids of ``encoder``.

        ``groups`` optionally names each class's group (a CLINC150 domain, say)."""
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.name}-{encoder_name(encoder)}")
        ids = token_ids(self.texts, encoder, self.source, label=label)
        lookup = {c: i for i, c in enumerate(classes)}
        rows = np.array([i for i, label in enumerate(self.labels) if label in lookup], dtype=np.int64)
        data = ids[rows]
        width = int((data != PAD).sum(1).max()) if len(rows) else 0
        group_names = list(dict.fromkeys(groups)) if groups is not None else None
        dataset = ClassDataset(
            torch.from_numpy(np.ascontiguousarray(data[:, :width])),
            torch.tensor([lookup[self.labels[i]] for i in rows], dtype=torch.long),
            list(classes), f"{name}[{encoder_name(encoder)}]",
            groups=None if groups is None else torch.tensor([group_names.index(g) for g in groups]),
            group_names=group_names, tokenizer=tokenizer_record(encoder),
            converted_from=texts_fingerprint(name, list(classes), [self.labels[i] for i in rows],
                                             [self.texts[i] for i in rows]))
        dataset.split_rule = rule
        return dataset
