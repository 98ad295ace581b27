"""Seeded N-way K-shot episodes as index tensors, and their stable hash.

Episode ``i`` of a set is drawn from its own generator, seeded from ``(seed, i)``, so it is the same whatever
order, batch or worker draws it: a test set can be rebuilt anywhere, sharded, and shared by every method.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from fewshot.data.dataset import ClassDataset


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` in the set seeded ``seed`` (a 63-bit integer)."""
    digest = hashlib.sha256(f"fewshot-episode:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class EpisodeSet:
    """A batch of episodes: rows of a :class:`ClassDataset` and the episode-local labels ``0..ways-1``.

    Shapes: ``support`` and ``support_labels`` ``[E, ways*shots]``; ``query`` and ``query_labels``
    ``[E, ways*queries]`` (or any fixed number of queries for fixed task sets); ``classes`` ``[E, ways]``
    holds the dataset classes behind labels ``0..ways-1``.
    """

    support: Tensor
    support_labels: Tensor
    query: Tensor
    query_labels: Tensor
    classes: Tensor
    ways: int
    shots: int
    queries: int
    seed: int | None
    dataset_fingerprint: str

    def __len__(self) -> int:
        return self.support.shape[0]

    def __getitem__(self, item: slice) -> "EpisodeSet":
        if not isinstance(item, slice):
            item = slice(item, item + 1)
        return EpisodeSet(self.support[item], self.support_labels[item], self.query[item], self.query_labels[item],
                          self.classes[item], self.ways, self.shots, self.queries, self.seed,
                          self.dataset_fingerprint)

    def batches(self, size: int) -> Iterator["EpisodeSet"]:
        """Consecutive slices of at most ``size`` episodes."""
        for start in range(0, len(self), size):
            yield self[start:start + size]

    @property
    def hash(self) -> str:
        """A sha256 over the dataset fingerprint, the settings and every index: equal hashes, equal episodes."""
        h = hashlib.sha256()
        h.update(f"{self.dataset_fingerprint}|{self.ways}|{self.shots}|{self.queries}".encode())
        for t in (self.support, self.support_labels, self.query, self.query_labels):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.cpu().to(torch.int64).numpy().astype("<i8").tobytes())
        return h.hexdigest()

    @classmethod
    def concat(cls, parts: list["EpisodeSet"]) -> "EpisodeSet":
        first = parts[0]
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in
                     ("support", "support_labels", "query", "query_labels", "classes")),
                   first.ways, first.shots, first.queries, first.seed, first.dataset_fingerprint)


def check_episode_settings(dataset: ClassDataset, ways: int, shots: int, queries: int) -> None:
    """Raise a ValueError naming the numbers when ``dataset`` cannot give such episodes."""
    for label, value in (("ways", ways), ("shots", shots), ("queries", queries)):
        if int(value) < 1:
            raise ValueError(f"{label} must be at least 1, got {value}")
    if ways > dataset.num_classes:
        raise ValueError(f"{ways}-way episodes need {ways} classes, but {dataset.name} has only "
                         f"{dataset.num_classes}; lower --ways or use a larger split")
    need = shots + queries
    smallest = int(dataset.class_counts.min())
    if smallest < need:
        worst = int(torch.argmin(dataset.class_counts))
        raise ValueError(
            f"{shots} shots + {queries} queries need {need} examples per class, but class "
            f"{dataset.class_names[worst]!r} of {dataset.name} has only {smallest}; lower --shots or --queries"
        )


def sample_episodes(dataset: ClassDataset, ways: int, shots: int, queries: int, episodes: int, seed: int,
                    start: int = 0) -> EpisodeSet:
    """Episodes ``start .. start+episodes-1`` of the set seeded ``seed``.

    Each picks ``ways`` distinct classes and, in each, ``shots + queries`` distinct examples (no example is
    both support and query). Labels follow the order of the picked classes.
    """
    check_episode_settings(dataset, ways, shots, queries)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    counts = dataset.class_counts
    index = dataset.class_index
    need = shots + queries
    picks = torch.empty(episodes, ways, need, dtype=torch.long)
    classes = torch.empty(episodes, ways, dtype=torch.long)
    positions = torch.arange(index.shape[1])
    for e in range(episodes):
        g = torch.Generator().manual_seed(episode_seed(seed, start + e))
        chosen = torch.randperm(dataset.num_classes, generator=g)[:ways]
        # One draw per episode: random keys, padding pushed last, so each class gets a uniform subset.
        keys = torch.rand(ways, index.shape[1], generator=g)
        keys[positions.unsqueeze(0) >= counts[chosen].unsqueeze(1)] = 2.0
        order = torch.argsort(keys, dim=1)[:, :need]
        picks[e] = torch.gather(index[chosen], 1, order)
        classes[e] = chosen
    labels = torch.arange(ways)
    return EpisodeSet(
        support=picks[:, :, :shots].reshape(episodes, ways * shots),
        support_labels=labels.repeat_interleave(shots).expand(episodes, -1).clone(),
        query=picks[:, :, shots:].reshape(episodes, ways * queries),
        query_labels=labels.repeat_interleave(queries).expand(episodes, -1).clone(),
        classes=classes,
        ways=ways, shots=shots, queries=queries, seed=seed,
        dataset_fingerprint=dataset.fingerprint(),
    )
