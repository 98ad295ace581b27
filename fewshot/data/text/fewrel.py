"""FewRel relation classification (Han et al. 2018; FewRel 2.0's PubMed set, Gao et al. 2019), read in place.

An instance is a tokenised sentence with a head and a tail entity; its class is the relation between them. The text
the encoder sees marks both entities (``markers``, recorded in the dataset's name and cache key), since relation
classification without knowing which two entities are meant is a different task:

- ``"punct"`` (default): ``@ head @`` and ``# tail #``, Zhou & Chen 2021's "entity marker (punct)", made of tokens
  every vocabulary has (a pretrained sentence encoder has no embeddings for new marker tokens);
- ``"brackets"``: ``[E1] head [/E1]`` and ``[E2] tail [/E2]``, Baldini Soares et al. 2019's entity markers;
- ``"none"``: the bare sentence.

As in the FewRel reference code, an entity's first mention (``h[2][0]``) is the one marked. Tokens are joined by
spaces.

Only the validation sets are public (``fewrel/val_wiki.json``, 16 Wikidata relations x 700; ``val_pubmed.json``,
10 biomedical relations x 100): the 64 training relations are not here and the test sets were never released.
Datasets:

- ``fewrel``: the 16 wiki relations, split by the seeded rule with fractions 0.25 / 0.125 / 0.625 (4 / 2 / 10
  relations, so 10-way episodes fit the test split); split ``all`` holds all 16 (the validation protocol of the
  FewRel leaderboard, where nothing is meta-trained on them).
- ``fewrel-pubmed``: FewRel 2.0's domain shift in one dataset: ``train`` is the 16 wiki relations, ``test`` (and
  ``all``) the 10 PubMed relations; there is no ``val`` split.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from fewshot.core.errors import DataError, UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.errors import reading
from fewshot.data.registry import register_dataset
from fewshot.data.text.common import Corpus, find_files, split_rule
from fewshot.data.text.encoders import DEFAULT_ENCODER

__all__ = ["FEWREL_FRACTIONS", "MARKERS", "fewrel_corpus", "load_fewrel", "load_fewrel_pubmed", "mark_entities"]

MARKERS = {
    "punct": (("@", "@"), ("#", "#")),
    "brackets": (("[E1]", "[/E1]"), ("[E2]", "[/E2]")),
    "none": None,
}
FEWREL_FRACTIONS = (0.25, 0.125, 0.625)


def _check_markers(markers: str) -> str:
    if markers not in MARKERS:
        raise UsageError(f"markers must be one of {', '.join(MARKERS)}, not {markers!r}")
    return markers


def mark_entities(tokens: Sequence[str], head: Sequence[int], tail: Sequence[int], markers: str = "punct") -> str:
    """The sentence ``tokens`` joined by spaces, with the head span (token positions ``head``) and the tail span
    marked as ``markers`` says."""
    style = MARKERS[_check_markers(markers)]
    if style is None:
        return " ".join(tokens)
    (h_open, h_close), (t_open, t_close) = style
    before: dict[int, list[str]] = {}
    after: dict[int, list[str]] = {}
    for span, opening, closing in ((head, h_open, h_close), (tail, t_open, t_close)):
        before.setdefault(min(span), []).append(opening)
        after.setdefault(max(span), []).insert(0, closing)
    words = []
    for i, token in enumerate(tokens):
        words += before.get(i, []) + [token] + after.get(i, [])
    return " ".join(words)


def fewrel_corpus(root: Path, which: str, markers: str = "punct") -> Corpus:
    """Every instance of ``val_<which>.json`` (``wiki`` or ``pubmed``), relation by relation in file order."""
    name = f"val_{which}.json"
    path = find_files(root, "fewrel", [name], "FewRel") / name
    with reading(path):
        data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a map of relation -> instances")
    texts, labels = [], []
    for relation, instances in data.items():
        for n, item in enumerate(instances):
            try:
                tokens, head, tail = item["tokens"], item["h"][2][0], item["t"][2][0]
                if not (head and tail and all(0 <= i < len(tokens) for i in (*head, *tail))):
                    raise ValueError("an entity position lies outside the sentence")
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise DataError(f"{path}: instance {n} of {relation} is not {{tokens, h, t}} with entity positions "
                                f"({type(error).__name__}: {error})") from None
            texts.append(mark_entities(tokens, head, tail, markers))
            labels.append(relation)
    return Corpus(f"fewrel-{which}", texts, labels, [path], {"markers": markers})


@register_dataset("fewrel")
def load_fewrel(split: str, root: str | os.PathLike, *, encoder: str | os.PathLike = DEFAULT_ENCODER,
                markers: str = "punct", split_seed: int = 0,
                split_fractions: Sequence[float] = FEWREL_FRACTIONS) -> ClassDataset:
    """The FewRel 1.0 validation relations of ``split`` (seeded relation split, or all 16), entities marked."""
    corpus = fewrel_corpus(Path(root), "wiki", _check_markers(markers))
    classes, rule, tag = split_rule(corpus.class_names(), split, split_seed, split_fractions, "relations")
    return corpus.dataset(classes, f"fewrel/{split}[{tag}-{markers}]", encoder, rule=rule)


@register_dataset("fewrel-pubmed")
def load_fewrel_pubmed(split: str, root: str | os.PathLike, *, encoder: str | os.PathLike = DEFAULT_ENCODER,
                       markers: str = "punct") -> ClassDataset:
    """FewRel 2.0 domain adaptation: ``train`` = the 16 wiki relations, ``test`` / ``all`` = the 10 PubMed ones."""
    if split not in ("train", "test", "all"):
        raise UsageError(f"fewrel-pubmed has the splits train (the wiki relations) and test (the PubMed relations), "
                         f"not {split!r}")
    which = "wiki" if split == "train" else "pubmed"
    corpus = fewrel_corpus(Path(root), which, _check_markers(markers))
    classes = corpus.class_names()
    rule = f"all {len(classes)} relations of val_{which}.json (FewRel 2.0: learn on wiki, test on PubMed)"
    return corpus.dataset(classes, f"fewrel-pubmed/{split}[{which}-{markers}]", encoder, rule=rule)
