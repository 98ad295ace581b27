"""Meta-Dataset's variable-way, variable-shot episodes (Triantafillou et al. 2020, section 3.2 and appendix), padded
into batches with masks.

Each episode follows ``meta_dataset/data/sampling.py`` (``EpisodeDescriptionSampler`` with no class hierarchy):

1. ways ``W`` uniform in ``[min_ways, min(max_ways, classes)]`` (5 .. 50), the classes uniform without replacement;
2. queries per class ``q = min(max_query_per_class, min_c floor(n_c / 2))`` (10 at most, balanced);
3. support size ``S = min(sum_c floor(beta * min(100, n_c - q) + 1), 500)`` with ``beta`` uniform in [0, 1);
4. shots per class, imbalanced like the class sizes: ``w_c = n_c * exp(u_c)``, ``u_c`` uniform in
   ``[log 0.5, log 2)``, ``k_c = min(floor(w_c / sum w * (S - W)) + 1, n_c - q)``;
5. in each class, a uniformly random ``k_c + q`` of its examples: the first ``k_c`` are support, the rest query.

Episode ``i`` of the set seeded ``s`` draws all of that from one generator seeded
:func:`fewshot.data.episodes.episode_seed` ``(s, i)``, exactly like the fixed-shape episodes, so it is the same
alone, in any batch and on any worker. A batch pads every episode to its widest one: rows and labels are ``-1`` at
padding and ``support_mask`` / ``query_mask`` mark the real entries, so a method runs batched over episodes of any
shape. The hash covers only the real entries, so it does not depend on how episodes were batched or padded.
Rows and classes are kept as int32 (:mod:`fewshot.data.episodes`: the memory that grows with the episodes; labels
stay int64, which one-hots and losses take), and a long set is drawn in blocks, so the per-episode drafts never
outnumber a block.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import episode_seed, hash_index

__all__ = ["MetaDatasetConfig", "VariableEpisodeSet", "check_meta_dataset_settings", "sample_meta_dataset_episodes"]


@dataclass(frozen=True)
class MetaDatasetConfig:
    """The episode description settings; the defaults are Meta-Dataset's (its ``EpisodeDescriptionConfig``)."""

    min_ways: int = 5
    max_ways: int = 50
    max_query_per_class: int = 10
    max_support_size: int = 500
    max_support_contribution_per_class: int = 100
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2.0)


DEFAULT_CONFIG = MetaDatasetConfig()


@dataclass
class VariableEpisodeSet:
    """A batch of variable-shape episodes, padded to the widest: ``-1`` rows and labels mark padding.

    Shapes: ``support`` / ``support_labels`` ``[E, S]``; ``query`` / ``query_labels`` ``[E, Q]``; ``classes`` and
    ``shots`` (support examples of each class) ``[E, W]``, ``-1`` and ``0`` past an episode's ways; ``ways`` and
    ``queries`` (per class) ``[E]``. Support and query rows are grouped by label, labels ``0 .. ways-1`` in the
    order of ``classes``.
    """

    support: Tensor
    support_labels: Tensor
    query: Tensor
    query_labels: Tensor
    classes: Tensor
    ways: Tensor
    shots: Tensor
    queries: Tensor
    seed: int | None
    dataset_fingerprint: str
    config: MetaDatasetConfig = DEFAULT_CONFIG

    protocol = "meta-dataset"

    def __len__(self) -> int:
        return self.support.shape[0]

    @property
    def support_mask(self) -> Tensor:
        return self.support >= 0

    @property
    def query_mask(self) -> Tensor:
        return self.query >= 0

    @property
    def class_mask(self) -> Tensor:
        return self.classes >= 0

    def __getitem__(self, item: int | slice) -> "VariableEpisodeSet":
        if not isinstance(item, slice):
            item = slice(item, item + 1)
        return VariableEpisodeSet(*(getattr(self, f)[item] for f in _TENSORS), self.seed, self.dataset_fingerprint,
                                  self.config)

    def trimmed(self) -> "VariableEpisodeSet":
        """The same episodes padded only to the widest of them (a slice keeps the width of its whole set)."""
        return self.padded(int(self.support_mask.sum(1).max()), int(self.query_mask.sum(1).max()),
                           int(self.ways.max()))

    def padded(self, support_width: int, query_width: int, ways_width: int | None = None) -> "VariableEpisodeSet":
        """The same episodes padded (or cut, where it is only padding) to the given widths."""
        ways_width = self.classes.shape[1] if ways_width is None else ways_width
        need = (int(self.support_mask.sum(1).max()), int(self.query_mask.sum(1).max()), int(self.ways.max()))
        if support_width < need[0] or query_width < need[1] or ways_width < need[2]:
            raise ValueError(f"widths {support_width}/{query_width}/{ways_width} are narrower than the episodes "
                             f"({need[0]} support, {need[1]} query, {need[2]} ways)")
        fit = _fit
        return VariableEpisodeSet(fit(self.support, support_width, -1), fit(self.support_labels, support_width, -1),
                                  fit(self.query, query_width, -1), fit(self.query_labels, query_width, -1),
                                  fit(self.classes, ways_width, -1), self.ways, fit(self.shots, ways_width, 0),
                                  self.queries, self.seed, self.dataset_fingerprint, self.config)

    def batches(self, size: int) -> Iterator["VariableEpisodeSet"]:
        """Consecutive slices of at most ``size`` episodes, each padded only to its own widest episode."""
        for start in range(0, len(self), size):
            yield self[start:start + size].trimmed()

    def episode(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Episode ``index`` without padding: ``support, support_labels, query, query_labels, classes``."""
        s, q, w = self.support_mask[index], self.query_mask[index], self.class_mask[index]
        return (self.support[index][s], self.support_labels[index][s], self.query[index][q],
                self.query_labels[index][q], self.classes[index][w])

    def describe(self) -> dict[str, Any]:
        """The protocol and its settings, for records."""
        return {"protocol": self.protocol, **asdict(self.config)}

    @property
    def hash(self) -> str:
        """A sha256 over the dataset fingerprint, the settings and every real entry (not the padding)."""
        h = hashlib.sha256()
        h.update(f"{self.dataset_fingerprint}|{self.protocol}|{sorted(asdict(self.config).items())}".encode())
        for tensor, mask in ((self.support, self.support_mask), (self.support_labels, self.support_mask),
                             (self.query, self.query_mask), (self.query_labels, self.query_mask),
                             (self.classes, self.class_mask), (self.shots, self.class_mask)):
            hash_index(h, mask.sum(1))
            hash_index(h, tensor[mask])
        hash_index(h, self.ways)
        hash_index(h, self.queries)
        return h.hexdigest()

    @classmethod
    def concat(cls, parts: list["VariableEpisodeSet"]) -> "VariableEpisodeSet":
        """One set of the episodes of ``parts``, in order, padded to the widest."""
        widths = [max(getattr(p, f).shape[1] for p in parts) for f in ("support", "query", "classes")]
        parts = [p.padded(*widths) for p in parts]
        first = parts[0]
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in _TENSORS), first.seed,
                   first.dataset_fingerprint, first.config)


_TENSORS = ("support", "support_labels", "query", "query_labels", "classes", "ways", "shots", "queries")


_BLOCK = 1024   # episodes drawn before their drafts are packed into tensors


def _fit(t: Tensor, width: int, fill: int) -> Tensor:
    if t.shape[1] >= width:
        return t[:, :width].clone()
    pad = torch.full((t.shape[0], width - t.shape[1]), fill, dtype=t.dtype)
    return torch.cat([t, pad], 1)


def check_meta_dataset_settings(dataset: ClassDataset, config: MetaDatasetConfig = DEFAULT_CONFIG) -> None:
    """Raise a ValueError naming the numbers when ``dataset`` cannot give Meta-Dataset episodes under ``config``."""
    if not 1 <= config.min_ways <= config.max_ways:
        raise ValueError(f"min_ways ({config.min_ways}) must be at least 1 and at most max_ways ({config.max_ways})")
    if config.max_support_size < config.max_ways:
        raise ValueError(f"max_support_size ({config.max_support_size}) must be at least max_ways "
                         f"({config.max_ways}): every class needs a support example")
    if config.max_query_per_class < 1 or config.max_support_contribution_per_class < 1:
        raise ValueError("max_query_per_class and max_support_contribution_per_class must be at least 1")
    if dataset.num_classes < config.min_ways:
        raise ValueError(f"Meta-Dataset episodes have at least {config.min_ways} ways, but {dataset.name} has only "
                         f"{dataset.num_classes} classes; use a larger split or lower min_ways")
    smallest = int(dataset.class_counts.min())
    if smallest < 2:
        worst = dataset.class_names[int(torch.argmin(dataset.class_counts))]
        raise ValueError(f"Meta-Dataset episodes need 2 examples in every class (a support and a query), but class "
                         f"{worst!r} of {dataset.name} has {smallest}")


def _describe_episode(g: torch.Generator, counts: Tensor, config: MetaDatasetConfig) -> tuple[Tensor, Tensor, int]:
    """The classes, shots per class and queries per class of one episode (steps 1-4 of the module docstring)."""
    max_ways = min(config.max_ways, len(counts))
    ways = int(torch.randint(config.min_ways, max_ways + 1, (1,), generator=g))
    chosen = torch.randperm(len(counts), generator=g)[:ways]
    n = counts[chosen].to(torch.float64)
    queries = int(min(config.max_query_per_class, int(counts[chosen].min()) // 2))
    remaining = n - queries
    beta = torch.rand((), dtype=torch.float64, generator=g)
    contributions = torch.clamp(remaining, max=config.max_support_contribution_per_class)
    support_size = min(float(torch.floor(beta * contributions + 1).sum()), float(config.max_support_size))
    log_weight = config.min_log_weight + (config.max_log_weight - config.min_log_weight) * torch.rand(
        ways, dtype=torch.float64, generator=g)
    weights = n * torch.exp(log_weight)
    desired = torch.floor(weights / weights.sum() * (support_size - ways)) + 1
    shots = torch.minimum(desired, remaining).to(torch.long)
    return chosen, shots, queries


def sample_meta_dataset_episodes(dataset: ClassDataset, episodes: int, seed: int, start: int = 0,
                                 config: MetaDatasetConfig = DEFAULT_CONFIG) -> VariableEpisodeSet:
    """Episodes ``start .. start+episodes-1`` of the Meta-Dataset episode set seeded ``seed`` (module docstring),
    padded to the widest of them."""
    check_meta_dataset_settings(dataset, config)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    blocks = [_sample_block(dataset, min(_BLOCK, episodes - lo), seed, start + lo, config)
              for lo in range(0, episodes, _BLOCK)]
    return blocks[0] if len(blocks) == 1 else VariableEpisodeSet.concat(blocks)


def _sample_block(dataset: ClassDataset, episodes: int, seed: int, start: int,
                  config: MetaDatasetConfig) -> VariableEpisodeSet:
    """Episodes ``start .. start+episodes-1``, padded to the widest of them."""
    counts, index = dataset.class_counts, dataset.class_index
    positions = torch.arange(index.shape[1])
    drawn = []
    for e in range(episodes):
        g = torch.Generator().manual_seed(episode_seed(seed, start + e))
        chosen, shots, queries = _describe_episode(g, counts, config)
        # Step 5: random keys, padding pushed last, so each class gets a uniform subset in random order.
        keys = torch.rand(len(chosen), index.shape[1], generator=g)
        keys[positions.unsqueeze(0) >= counts[chosen].unsqueeze(1)] = 2.0
        rows = torch.gather(index[chosen], 1, torch.argsort(keys, dim=1))
        support = rows[positions.unsqueeze(0) < shots.unsqueeze(1)]
        query = torch.gather(rows, 1, shots.unsqueeze(1) + torch.arange(queries).unsqueeze(0)).flatten()
        labels = torch.arange(len(chosen))
        drawn.append((support, labels.repeat_interleave(shots), query, labels.repeat_interleave(queries), chosen,
                      shots, queries))
    support_width = max(len(d[0]) for d in drawn)
    query_width = max(len(d[2]) for d in drawn)
    ways_width = max(len(d[4]) for d in drawn)

    def stack(i: int, width: int, fill: int, dtype: torch.dtype = torch.int64) -> Tensor:
        out = torch.full((episodes, width), fill, dtype=dtype)
        for e, d in enumerate(drawn):
            out[e, :len(d[i])] = d[i]
        return out

    return VariableEpisodeSet(
        support=stack(0, support_width, -1, torch.int32), support_labels=stack(1, support_width, -1),
        query=stack(2, query_width, -1, torch.int32), query_labels=stack(3, query_width, -1),
        classes=stack(4, ways_width, -1, torch.int32), ways=torch.tensor([len(d[4]) for d in drawn]),
        shots=stack(5, ways_width, 0), queries=torch.tensor([d[6] for d in drawn]),
        seed=seed, dataset_fingerprint=dataset.episodes_fingerprint(), config=config)
