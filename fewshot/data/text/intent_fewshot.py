"""The published few-shot intent detection protocol (DNNC, Zhang et al. 2020; CPFT, Zhang et al. 2021) as fixed
episode sets: one "episode" per set, whose support is the fixed ``train_5`` or ``train_10`` split (5 or 10
utterances of every intent) and whose queries are the whole ``test`` split, every intent a class (all-way).

Read in place from ``intent_fewshot/<BANKING77|CLINC150|HWU64>/<split>/seq.in`` (one utterance a line) and
``label`` (its intent on the same line). Classes are the test split's intents, sorted; the support split must
hold exactly the same intents. The episode's ``queries`` is the mean number of test utterances per intent, rounded
(HWU64's test split is not balanced); its ``shots`` is 5 or 10.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet
from fewshot.data.errors import reading
from fewshot.data.text.common import Corpus, find_files
from fewshot.data.text.encoders import DEFAULT_ENCODER

__all__ = ["INTENT_SETS", "load_intent_episodes", "read_split"]

INTENT_SETS = {"banking77": "BANKING77", "clinc150": "CLINC150", "hwu64": "HWU64"}
SHOTS = (5, 10)


def read_split(folder: Path, split: str) -> tuple[list[str], list[str], list[Path]]:
    """``(utterances, intents, files)`` of ``folder/split/seq.in`` and ``label``, checked line for line."""
    files = [folder / split / "seq.in", folder / split / "label"]
    lines = []
    for path in files:
        with reading(path):
            lines.append(path.read_text(encoding="utf-8").splitlines())
    texts, labels = lines
    if len(texts) != len(labels):
        raise DataError(f"{files[0]} has {len(texts)} lines but {files[1]} has {len(labels)}; they must match line "
                        f"for line")
    return texts, [label.strip() for label in labels], files


def load_intent_episodes(root: str | os.PathLike, dataset: str, shots: int, *,
                         encoder: str | os.PathLike = DEFAULT_ENCODER) -> tuple[ClassDataset, EpisodeSet]:
    """The test set (support rows first, then every test utterance) and the one all-way episode on it."""
    if dataset not in INTENT_SETS or shots not in SHOTS:
        raise UsageError(f"the published intent splits are {', '.join(INTENT_SETS)} with {SHOTS} shots, not "
                         f"{dataset!r} with {shots}")
    folder = find_files(Path(root), "intent_fewshot", [f"{INTENT_SETS[dataset]}/test/seq.in"],
                        "few-shot intent splits") / INTENT_SETS[dataset]
    support_texts, support_labels, support_files = read_split(folder, f"train_{shots}")
    query_texts, query_labels, query_files = read_split(folder, "test")
    classes = sorted(set(query_labels))
    if set(support_labels) != set(classes):
        odd = sorted(set(support_labels) ^ set(classes))[:5]
        raise DataError(f"{folder / f'train_{shots}' / 'label'}: its intents differ from the test split's ({odd})")
    uneven = sorted(c for c in classes if support_labels.count(c) != shots)
    if uneven:
        raise DataError(f"{folder / f'train_{shots}' / 'label'}: intent {uneven[0]!r} has "
                        f"{support_labels.count(uneven[0])} utterances, not {shots}")
    corpus = Corpus(f"intent_fewshot-{dataset}-{shots}shot", support_texts + query_texts,
                    support_labels + query_labels, support_files + query_files)
    name = f"intent_fewshot/{dataset}/train_{shots}+test"
    data = corpus.dataset(classes, name, encoder, rule=f"all {len(classes)} intents of {folder.name}")
    # Corpus.dataset keeps the corpus order: rows 0..S-1 are the support, the rest the test utterances.
    n_support, lookup = len(support_texts), {c: i for i, c in enumerate(classes)}
    episodes = EpisodeSet(
        support=torch.arange(n_support).unsqueeze(0),
        support_labels=torch.tensor([[lookup[c] for c in support_labels]]),
        query=torch.arange(n_support, len(data)).unsqueeze(0),
        query_labels=torch.tensor([[lookup[c] for c in query_labels]]),
        classes=torch.arange(len(classes)).unsqueeze(0),
        ways=len(classes), shots=shots, queries=round(len(query_texts) / len(classes)), seed=None,
        dataset_fingerprint=data.episodes_fingerprint(),
    )
    return data, episodes
