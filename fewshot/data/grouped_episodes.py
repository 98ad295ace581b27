"""Fixed-shape episodes whose support and query come from different groups of near-duplicates.

Some datasets hold several near-identical images of one object (GTSRB's tracks: about 30 frames of one physical
sign). A query that is a neighbouring frame of a support image measures recall, not few-shot learning, so here each
class of an episode splits its groups between query and support:

1. ``ways`` classes uniform without replacement, labels in the order drawn (as :func:`sample_episodes`);
2. in each class, its groups in a uniformly random order: groups go to the query side, one by one, until they hold
   at least ``queries`` examples; the other groups are the support side;
3. ``queries`` examples uniformly from the query side and ``shots`` uniformly from the support side.

Taking as few groups as the queries need leaves the most for the support, so that even 50-shot episodes fit a
class of a few tracks.

Episode ``i`` of the set seeded ``s`` is drawn from its own generator, seeded
:func:`fewshot.data.episodes.episode_seed` ``(s, i)``, so it is the same alone or in any batch. The result is an
ordinary :class:`~fewshot.data.episodes.EpisodeSet`: every method runs on it unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fewshot.data.dataset import ClassDataset
from fewshot.data.episodes import EpisodeSet, check_episode_settings, episode_seed, shared_labels

__all__ = ["sample_group_disjoint_episodes"]


def _groups_of(dataset: ClassDataset, groups: Tensor | None) -> Tensor:
    groups = getattr(dataset, "example_groups", None) if groups is None else groups
    if groups is None:
        raise ValueError(f"{dataset.name} has no example_groups (one group id per example, e.g. GTSRB's tracks); "
                         f"pass groups=")
    groups = torch.as_tensor(groups, dtype=torch.long).cpu()
    if groups.shape != (len(dataset),):
        raise ValueError(f"{dataset.name}: groups must hold one id per example ({len(dataset)}), got "
                         f"{tuple(groups.shape)}")
    return groups


def sample_group_disjoint_episodes(dataset: ClassDataset, ways: int, shots: int, queries: int, episodes: int,
                                   seed: int, start: int = 0, groups: Tensor | None = None) -> EpisodeSet:
    """Episodes ``start .. start+episodes-1`` of the group-disjoint set seeded ``seed`` (module docstring).

    ``groups`` (one id per example) defaults to ``dataset.example_groups``. An episode whose class has too few
    examples outside its queries' groups raises a ValueError naming the class and the numbers.
    """
    check_episode_settings(dataset, ways, shots, queries)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    groups = _groups_of(dataset, groups)
    counts, index = dataset.class_counts, dataset.class_index
    support = torch.empty(episodes, ways, shots, dtype=torch.int32)    # compact, as EpisodeSet keeps them
    query = torch.empty(episodes, ways, queries, dtype=torch.int32)
    classes = torch.empty(episodes, ways, dtype=torch.int32)
    for e in range(episodes):
        g = torch.Generator().manual_seed(episode_seed(seed, start + e))
        chosen = torch.randperm(dataset.num_classes, generator=g)[:ways]
        classes[e] = chosen
        for w, c in enumerate(chosen.tolist()):
            rows = index[c, :int(counts[c])]
            names, sizes = torch.unique(groups[rows], return_counts=True)
            order = torch.randperm(len(names), generator=g)
            taken = int(torch.searchsorted(torch.cumsum(sizes[order], 0), queries)) + 1
            on_query_side = torch.isin(groups[rows], names[order[:taken]])
            query_pool, support_pool = rows[on_query_side], rows[~on_query_side]
            if len(support_pool) < shots:
                raise ValueError(
                    f"episode {start + e}: class {dataset.class_names[c]!r} of {dataset.name} has only "
                    f"{len(support_pool)} examples outside the groups of its {queries} queries, fewer than {shots} "
                    f"shots; lower --shots or --queries")
            query[e, w] = query_pool[torch.randperm(len(query_pool), generator=g)[:queries]]
            support[e, w] = support_pool[torch.randperm(len(support_pool), generator=g)[:shots]]
    labels = torch.arange(ways)
    return EpisodeSet(
        support=support.reshape(episodes, ways * shots),
        support_labels=shared_labels(labels.repeat_interleave(shots), episodes),
        query=query.reshape(episodes, ways * queries),
        query_labels=shared_labels(labels.repeat_interleave(queries), episodes),
        classes=classes, ways=ways, shots=shots, queries=queries, seed=seed,
        dataset_fingerprint=dataset.episodes_fingerprint())
