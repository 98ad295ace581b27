"""Learning on several sources at once (Meta-Dataset's all-sources setting, Triantafillou et al. 2020): the union
of their training splits, and training episodes drawn from one source at a time.

A source list is written ``a+b+c`` wherever a dataset name goes (``--train-dataset omniglot+fashion-mnist``); records
and tables carry it as written. :func:`union_of` joins the splits into one :class:`ClassDataset`: the classes of
each source in turn, named ``source:class``; images are brought to the first source's format by the recorded rule of
:mod:`fewshot.data.convert` (grey to RGB or back, Lanczos resizing), never silently, so list first the source whose
format the backbone should take. Supervised pre-training sees the union as one set of classes;
:func:`sample_source_episodes` gives each training episode one source, drawn uniformly and seeded per episode as
the sampler seeds its episodes, and then that source's classes only, as Meta-Dataset's episodes are.
"""
from __future__ import annotations

import hashlib
from typing import Any, NamedTuple, Sequence

import torch

from fewshot.core.errors import UsageError
from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet, check_episode_settings, sample_episodes

__all__ = ["SEPARATOR", "SourcePart", "check_source_episodes", "describe_union", "is_union", "sample_source_episodes",
           "source_names", "source_parts", "union_of"]

SEPARATOR = "+"


def source_names(name: str) -> list[str]:
    """The sources of a dataset name: ``"a+b"`` -> ``["a", "b"]``; a plain name is one source."""
    parts = [p.strip() for p in name.split(SEPARATOR)]
    if any(not p for p in parts) or len(set(parts)) != len(parts):
        raise UsageError(f"dataset {name!r}: write several sources as name+name+... (each once, none empty)")
    return parts


def is_union(dataset: ClassDataset) -> bool:
    """True for a dataset made by :func:`union_of` (its classes know their source)."""
    return getattr(dataset, "source_of_class", None) is not None


def union_of(datasets: Sequence[ClassDataset], names: Sequence[str]) -> ClassDataset:
    """One dataset holding every class of ``datasets`` (the splits of sources ``names``), in that order.

    The union has ``source_of_class`` (``[classes]``, the source index of each class), ``source_names`` and
    ``conversions`` (what was done to each source's images to match the first's format: the description of
    :func:`~fewshot.data.convert.convert_images`, empty steps for the first)."""
    if len(datasets) != len(names) or len(datasets) < 2:
        raise ValueError("a union needs two or more datasets, one name each")
    first = datasets[0]
    parts, conversions = [first], [{"source": names[0], "steps": []}]
    for name, dataset in zip(names[1:], datasets[1:]):
        if first.is_images != dataset.is_images or first.is_tokens != dataset.is_tokens:
            raise UsageError(f"cannot learn on {names[0]} and {name} together: one holds images, the other "
                             f"{'token ids' if dataset.is_tokens or first.is_tokens else 'feature vectors'}")
        if first.is_images:
            from fewshot.data.convert import match_format

            dataset, description = match_format(dataset, first)
            conversions.append({"source": name, **description})
        else:
            if dataset.data.shape[1:] != first.data.shape[1:] or dataset.tokenizer != first.tokenizer:
                raise UsageError(f"cannot learn on {names[0]} and {name} together: their examples differ in "
                                 f"shape ({tuple(first.data.shape[1:])} and {tuple(dataset.data.shape[1:])}) or "
                                 f"tokenizer; give both the same encoder or feature size")
            conversions.append({"source": name, "steps": []})
        parts.append(dataset)
    offsets = torch.tensor([0] + [p.num_classes for p in parts]).cumsum(0)
    union = ClassDataset(
        torch.cat([p.data for p in parts]),
        torch.cat([p.labels + offsets[i] for i, p in enumerate(parts)]),
        [f"{name}:{c}" for name, p in zip(names, parts) for c in p.class_names],
        "+".join(p.name for p in datasets),
        tokenizer=first.tokenizer,
    )
    union.source_of_class = torch.cat([torch.full((p.num_classes,), i) for i, p in enumerate(parts)])
    union.source_names = list(names)
    union.conversions = conversions
    return union


class SourcePart(NamedTuple):
    """One source of a union, for sampling: its classes as a dataset of their own (class index only, no data),
    the union's rows of its examples and the union's ids of its classes."""

    index: ClassDataset
    rows: torch.Tensor
    classes: torch.Tensor


def source_parts(dataset: ClassDataset) -> list[SourcePart]:
    """The sources of a :func:`union_of` dataset, built once and kept on it: a sampler drawing from a source needs
    only its class index, which these hold without copying any data."""
    if getattr(dataset, "_source_parts", None) is None:
        parts = []
        for s, name in enumerate(dataset.source_names):
            classes = torch.nonzero(dataset.source_of_class == s).flatten()
            remap = torch.full((dataset.num_classes,), -1, dtype=torch.long)
            remap[classes] = torch.arange(len(classes))
            rows = torch.nonzero(remap[dataset.labels.cpu()] >= 0).flatten()      # in the union's row order
            index = ClassDataset(torch.zeros(len(rows), 0), remap[dataset.labels.cpu()[rows]],
                                 [dataset.class_names[c] for c in classes.tolist()], name)
            parts.append(SourcePart(index, rows, classes))
        dataset._source_parts = parts
    return dataset._source_parts


def check_source_episodes(dataset: ClassDataset, ways: int, shots: int, queries: int) -> list[SourcePart]:
    """The :func:`source_parts` of a union, after checking that every source can give ``ways``-way episodes of
    ``shots + queries`` examples a class (a ValueError naming the source if not)."""
    parts = source_parts(dataset)
    small = [(p.index.name, p.index.num_classes) for p in parts if p.index.num_classes < ways]
    if small:
        raise ValueError(f"{ways}-way training episodes from one source at a time need {ways} classes in each "
                         f"source, but {', '.join(f'{n} has {k}' for n, k in small)}; lower the training ways")
    for part in parts:
        check_episode_settings(part.index, ways, shots, queries)
    return parts


def _source_seed(seed: int, index: int) -> int:
    # Not the episode's own seed (fewshot.data.episodes.episode_seed): the source draw stays apart from the
    # draws of classes and examples within it.
    digest = hashlib.sha256(f"fewshot-source:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_source_episodes(dataset: ClassDataset, ways: int, shots: int, queries: int, episodes: int, seed: int,
                           start: int = 0) -> EpisodeSet:
    """Episodes ``start .. start+episodes-1`` of the set seeded ``seed`` from a :func:`union_of` dataset: each
    from one source, drawn uniformly per episode, then ``ways`` of that source's classes exactly as
    :func:`~fewshot.data.episodes.sample_episodes` draws them from the source alone (the same episode index and
    seed). Rows and classes are the union's. Every source must have ``ways`` classes."""
    parts = check_source_episodes(dataset, ways, shots, queries)
    fields: dict[str, list[torch.Tensor]] = {k: [] for k in ("support", "support_labels", "query", "query_labels",
                                                             "classes")}
    for e in range(start, start + episodes):
        s = int(torch.randint(len(parts), (1,), generator=torch.Generator().manual_seed(_source_seed(seed, e))))
        part = parts[s]
        one = sample_episodes(part.index, ways, shots, queries, 1, seed=seed, start=e)
        fields["support"].append(part.rows[one.support.long()])
        fields["query"].append(part.rows[one.query.long()])
        fields["classes"].append(part.classes[one.classes.long()])
        fields["support_labels"].append(one.support_labels)
        fields["query_labels"].append(one.query_labels)
    return EpisodeSet(*(torch.cat(v) for v in fields.values()), ways, shots, queries, seed,
                      dataset.episodes_fingerprint())


def describe_union(dataset: ClassDataset) -> dict[str, Any]:
    """The record's account of a union: its sources, their class counts and the conversions applied."""
    counts = torch.bincount(dataset.source_of_class, minlength=len(dataset.source_names)).tolist()
    return {"sources": dataset.source_names, "classes": counts, "conversions": dataset.conversions}
