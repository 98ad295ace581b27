"""Intent classification: BANKING77, CLINC150 and HWU64, read in place, split into disjoint intents for episodes.

Each dataset pools all its published utterances (train and test files alike: the episodic splits are over
intents, not over utterances) and splits the intents:

- ``banking77`` (Casanueva et al. 2020; ``banking77/train.csv``, ``test.csv``, ``categories.json``): 13,083
  utterances of 77 intents, split by the suite's seeded rule (``split_seed``, ``split_fractions``; 49 / 13 / 15
  intents by default).
- ``clinc150`` (Larson et al. 2019; ``clinc150/data_full.json``, ``domains.json``): the 22,500 in-scope
  utterances of 150 intents, split by **domain**: the seeded rule over the 10 domains (6 / 2 / 2 by default, so 90
  / 30 / 30 intents), every intent going with its domain; the classes' groups are their domains.
  ``out_of_scope=True`` adds the class ``oos`` (last, in its own group ``oos``) holding the out-of-scope queries of
  the matching published partition (``oos_train`` for train, ``oos_val`` for val, ``oos_test`` for test, all 1,200
  for ``all``): an extra "none of these" set, never there by default.
- ``hwu64`` (Liu et al. 2019; ``hwu64/trainset/*.csv``, ``testset/*.csv``, cross-validation fold 1): 11,036
  utterances of 64 intents (``scenario_intent``, text ``answer_from_anno``), split by the seeded rule (41 / 10 / 13).

Every loader takes ``encoder=`` (default ``all-MiniLM-L6-v2``), which decides the token ids (cached once per
dataset and encoder), and the split ``all`` for every intent. Damaged files fail as one DataError naming them.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import reading
from fewshot.data.registry import register_dataset
from fewshot.data.text.common import DEFAULT_FRACTIONS, Corpus, find_files, split_rule
from fewshot.data.text.encoders import DEFAULT_ENCODER

__all__ = ["banking77_corpus", "clinc150_corpus", "hwu64_corpus", "load_banking77", "load_clinc150", "load_hwu64"]

OUT_OF_SCOPE = "oos"


def _read_json(path: Path):
    with reading(path):
        return json.loads(path.read_text(encoding="utf-8"))


def banking77_corpus(root: Path) -> Corpus:
    """Every BANKING77 utterance (train.csv, then test.csv) with its intent, checked against categories.json."""
    folder = find_files(root, "banking77", ["train.csv", "test.csv", "categories.json"], "BANKING77")
    categories = _read_json(folder / "categories.json")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise DataError(f"{folder / 'categories.json'}: expected a list of intent names")
    known = set(categories)
    texts, labels, files = [], [], []
    for name in ("train.csv", "test.csv"):
        path = folder / name
        files.append(path)
        with reading(path), open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames != ["text", "category"]:
                raise DataError(f"{path}: expected the header 'text,category', found {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                if row["category"] not in known:
                    raise DataError(f"{path} line {line}: intent {row['category']!r} is not in categories.json")
                texts.append(row["text"])
                labels.append(row["category"])
    return Corpus("banking77", texts, labels, [*files, folder / "categories.json"])


def clinc150_corpus(root: Path) -> tuple[Corpus, list[str], dict[str, str], list[str]]:
    """All CLINC150 utterances, in-scope and ``oos`` (partitions train, val, test, oos_train, oos_val, oos_test in
    turn), the published partition of each, the intent -> domain map and the domains in file order."""
    folder = find_files(root, "clinc150", ["data_full.json", "domains.json"], "CLINC150")
    data = _read_json(folder / "data_full.json")
    domains = _read_json(folder / "domains.json")
    parts = ("train", "val", "test", "oos_train", "oos_val", "oos_test")
    if not isinstance(data, dict) or any(p not in data for p in parts):
        raise DataError(f"{folder / 'data_full.json'}: expected the partitions {', '.join(parts)}")
    if not isinstance(domains, dict):
        raise DataError(f"{folder / 'domains.json'}: expected a map of domain -> intents")
    domain_of = {intent: domain for domain, intents in domains.items() for intent in intents}
    texts, labels, partition = [], [], []
    for part in parts:
        for item in data[part]:
            if not (isinstance(item, list) and len(item) == 2):
                raise DataError(f"{folder / 'data_full.json'}: {part} holds {item!r}, not [utterance, intent]")
            text, intent = item
            if part.startswith("oos") != (intent == OUT_OF_SCOPE) or (intent != OUT_OF_SCOPE
                                                                      and intent not in domain_of):
                raise DataError(f"{folder / 'data_full.json'}: intent {intent!r} in {part} is not in domains.json")
            texts.append(text)
            labels.append(intent)
            partition.append(part)
    corpus = Corpus("clinc150", texts, labels, [folder / "data_full.json", folder / "domains.json"])
    return corpus, partition, domain_of, list(domains)


def hwu64_corpus(root: Path) -> Corpus:
    """Every HWU64 utterance of fold 1 (trainset/*.csv, then testset/*.csv, files in name order)."""
    folder = find_files(root, "hwu64", ["trainset", "testset"], "HWU64")
    texts, labels, files = [], [], []
    for part in ("trainset", "testset"):
        paths = sorted((folder / part).glob("*.csv"))
        if not paths:
            raise DataError(f"{folder / part}: no .csv files; expected one per intent")
        for path in paths:
            files.append(path)
            with reading(path), open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh, delimiter=";")
                if not reader.fieldnames or not {"scenario", "intent", "answer_from_anno"} <= set(reader.fieldnames):
                    raise DataError(f"{path}: expected the columns scenario, intent, answer_from_anno")
                for row in reader:
                    texts.append(row["answer_from_anno"])
                    labels.append(f"{row['scenario']}_{row['intent']}")
    return Corpus("hwu64", texts, labels, files)


def _check_fractions(split_fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(split_fractions)
    if len(fractions) != 3:
        raise UsageError(f"split_fractions takes three numbers (train, val, test), got {split_fractions!r}")
    return fractions


@register_dataset("banking77")
def load_banking77(split: str, root: str | os.PathLike, *, encoder: str | os.PathLike = DEFAULT_ENCODER,
                   split_seed: int = 0, split_fractions: Sequence[float] = DEFAULT_FRACTIONS) -> ClassDataset:
    """BANKING77's intents of ``split`` (train / val / test by the seeded intent split, or all), as token ids."""
    corpus = banking77_corpus(Path(root))
    classes, rule, tag = split_rule(corpus.class_names(), split, split_seed, _check_fractions(split_fractions),
                                    "intents")
    return corpus.dataset(classes, f"banking77/{split}[{tag}]", encoder, rule=rule)


@register_dataset("hwu64")
def load_hwu64(split: str, root: str | os.PathLike, *, encoder: str | os.PathLike = DEFAULT_ENCODER,
               split_seed: int = 0, split_fractions: Sequence[float] = DEFAULT_FRACTIONS) -> ClassDataset:
    """HWU64's intents of ``split`` (train / val / test by the seeded intent split, or all), as token ids."""
    corpus = hwu64_corpus(Path(root))
    classes, rule, tag = split_rule(corpus.class_names(), split, split_seed, _check_fractions(split_fractions),
                                    "intents")
    return corpus.dataset(classes, f"hwu64/{split}[{tag}]", encoder, rule=rule)


@register_dataset("clinc150")
def load_clinc150(split: str, root: str | os.PathLike, *, encoder: str | os.PathLike = DEFAULT_ENCODER,
                  split_seed: int = 0, split_fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  out_of_scope: bool = False) -> ClassDataset:
    """CLINC150's intents of the domains of ``split`` (the seeded domain split, or all), grouped by domain; with
    ``out_of_scope`` also the class ``oos`` of the matching out-of-scope queries."""
    corpus, partition, domain_of, domains = clinc150_corpus(Path(root))
    chosen, rule, tag = split_rule(domains, split, split_seed, _check_fractions(split_fractions), "domains")
    classes = sorted(intent for intent, domain in domain_of.items() if domain in chosen)
    groups = [domain_of[c] for c in classes]
    rule = f"by domain ({', '.join(sorted(chosen))}); {rule}"
    if out_of_scope:
        keep = {"train": "oos_train", "val": "oos_val", "test": "oos_test"}.get(split)
        # Only the matching partition's out-of-scope queries belong to this split: relabel the others away.
        corpus = Corpus(corpus.name, corpus.texts,
                        [label if label != OUT_OF_SCOPE or keep in (None, part) else "-"
                         for label, part in zip(corpus.labels, partition)], corpus.files)
        classes, groups = [*classes, OUT_OF_SCOPE], [*groups, OUT_OF_SCOPE]
        rule += f"; plus the out-of-scope queries of {keep or 'every partition'} as class 'oos'"
        tag += "-oos"
    return corpus.dataset(classes, f"clinc150/{split}[{tag}]", encoder, rule=rule, groups=groups)
