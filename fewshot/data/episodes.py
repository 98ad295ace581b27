"""Seeded N-way K-shot episodes as index tensors, and their stable hash.

Episode ``i`` of a set is drawn from its own generator, seeded from ``(seed, i)``, so it is the same whatever
order, batch or worker draws it: a test set can be rebuilt anywhere, sharded, and shared by every method.

Index tensors are stored compactly, since they are the only memory that grows with the number of episodes: dataset
rows as int32 (:func:`compact_rows`), and labels that are the same in every episode (those of every sampled set) as
one row expanded over the episodes, which holds no memory per episode. Consumers take a batch of episodes at a time
and turn it into contiguous int64 there (:func:`as_index`); the hash reads every entry as int64, so it is the one
of the int64 tensors.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from fewshot.data.dataset import ClassDataset


_INT32_MAX = torch.iinfo(torch.int32).max
_HASH_ROWS = 4096   # episodes hashed at a time: the int64 copy the hash reads stays small


def compact_rows(t: Tensor) -> Tensor:
    """Dataset rows (or classes) as int32, the smallest integer type torch indexes with; int64 only when a value
    does not fit."""
    t = torch.as_tensor(t)
    if t.dtype == torch.int32 or (t.numel() and int(t.abs().max()) > _INT32_MAX):
        return t
    return t.to(torch.int32)


def shared_labels(row: Tensor, episodes: int) -> Tensor:
    """``row`` (the labels of one episode) as the labels of ``episodes`` episodes: ``[episodes, len(row)]``, an
    expanded view, so it costs one row whatever the number of episodes."""
    return row.to(torch.int64).unsqueeze(0).expand(episodes, -1)


def compact_labels(t: Tensor) -> Tensor:
    """Labels ``[E, n]`` that are the same in every episode as one shared row (:func:`shared_labels`); others
    unchanged."""
    t = torch.as_tensor(t)
    if t.dim() != 2 or t.shape[0] < 2 or t.stride(0) == 0 or not bool((t == t[:1]).all()):
        return t
    return shared_labels(t[0].clone(), t.shape[0])     # a copy of the row: the view must not pin all of ``t``


def as_index(t: Tensor, device: torch.device | str | None = None) -> Tensor:
    """A batch of stored indices or labels as the contiguous int64 tensor that torch's gathers, one-hots and
    losses take, on ``device``."""
    return t.to(device or t.device, torch.int64).contiguous()


def hash_index(h: "hashlib._Hash", t: Tensor) -> None:
    """Feed ``t``'s entries to ``h`` as little-endian int64, a block of rows at a time: the bytes (and so the
    digest) of the whole int64 tensor, without building it."""
    for lo in range(0, max(t.shape[0], 1), _HASH_ROWS):
        h.update(t[lo:lo + _HASH_ROWS].cpu().to(torch.int64).numpy().astype("<i8").tobytes())


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` in the set seeded ``seed`` (a 63-bit integer)."""
    digest = hashlib.sha256(f"fewshot-episode:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class EpisodeSet:
    """A batch of episodes: rows of a :class:`ClassDataset` and the episode-local labels ``0..ways-1``.

    Shapes: ``support`` and ``support_labels`` ``[E, ways*shots]``; ``query`` and ``query_labels``
    ``[E, ways*queries]`` (or any fixed number of queries for fixed task sets); ``classes`` ``[E, ways]``
    holds the dataset classes behind labels ``0..ways-1``. Rows and classes are kept as int32 (module docstring);
    take batches through :func:`as_index` where an int64 index is needed.
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

    def __post_init__(self) -> None:
        self.support, self.query, self.classes = (compact_rows(t) for t in (self.support, self.query, self.classes))
        self.support_labels, self.query_labels = compact_labels(self.support_labels), compact_labels(self.query_labels)

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
            hash_index(h, t)
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
    both support and query). Labels follow the order of the picked classes. (``fewshot.data.sample_episodes``
    also draws Meta-Dataset's variable episodes: :mod:`fewshot.data.protocols`.)
    """
    check_episode_settings(dataset, ways, shots, queries)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    counts = dataset.class_counts
    index = dataset.class_index
    need = shots + queries
    # Written straight into the compact tensors kept: no [E, ways, shots+queries] int64 draft to split afterwards.
    support = torch.empty(episodes, ways, shots, dtype=torch.int32)
    query = torch.empty(episodes, ways, queries, dtype=torch.int32)
    classes = torch.empty(episodes, ways, dtype=torch.int32)
    positions = torch.arange(index.shape[1])
    for e in range(episodes):
        g = torch.Generator().manual_seed(episode_seed(seed, start + e))
        chosen = torch.randperm(dataset.num_classes, generator=g)[:ways]
        # One draw per episode: random keys, padding pushed last, so each class gets a uniform subset.
        keys = torch.rand(ways, index.shape[1], generator=g)
        keys[positions.unsqueeze(0) >= counts[chosen].unsqueeze(1)] = 2.0
        order = torch.argsort(keys, dim=1)[:, :need]
        picks = torch.gather(index[chosen], 1, order)
        support[e], query[e] = picks[:, :shots], picks[:, shots:]
        classes[e] = chosen
    labels = torch.arange(ways)
    return EpisodeSet(
        support=support.reshape(episodes, ways * shots),
        support_labels=shared_labels(labels.repeat_interleave(shots), episodes),
        query=query.reshape(episodes, ways * queries),
        query_labels=shared_labels(labels.repeat_interleave(queries), episodes),
        classes=classes,
        ways=ways, shots=shots, queries=queries, seed=seed,
        dataset_fingerprint=dataset.episodes_fingerprint(),
    )
