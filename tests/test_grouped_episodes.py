"""Group-disjoint episodes: support and query never share a group; seeded per episode; an ordinary EpisodeSet."""
from __future__ import annotations

import pytest
import torch

from fewshot.data import ClassDataset, EpisodeSet
from fewshot.data.grouped_episodes import sample_group_disjoint_episodes


def tracked(classes: int = 8, tracks: int = 4, frames: int = 5) -> ClassDataset:
    labels = torch.arange(classes).repeat_interleave(tracks * frames)
    ds = ClassDataset(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels,
                      [f"c{i}" for i in range(classes)], "tracked")
    ds.example_groups = torch.arange(classes * tracks).repeat_interleave(frames)
    return ds


def test_support_and_query_never_share_a_group():
    ds = tracked()
    eps = sample_group_disjoint_episodes(ds, 5, 3, 4, episodes=300, seed=1)
    assert isinstance(eps, EpisodeSet) and eps.support.shape == (300, 15) and eps.query.shape == (300, 20)
    for e in range(300):
        assert torch.equal(ds.labels[eps.support[e]], eps.classes[e][eps.support_labels[e]])
        assert torch.equal(ds.labels[eps.query[e]], eps.classes[e][eps.query_labels[e]])
        assert not set(ds.example_groups[eps.support[e]].tolist()) & set(ds.example_groups[eps.query[e]].tolist())
        assert len(set(torch.cat([eps.support[e], eps.query[e]]).tolist())) == 35
    # Queries take as few groups as they need (one group of 5 holds 4 queries); the support the other groups.
    for e in range(300):
        for w in range(5):
            assert len(ds.example_groups[eps.query[e][eps.query_labels[e] == w]].unique()) == 1
    # Over many episodes every example is drawn as a support and as a query.
    assert len(eps.support.unique()) == len(ds) and len(eps.query.unique()) == len(ds)


def test_episode_i_is_independent_of_batching_and_hash_is_stable():
    ds = tracked()
    whole = sample_group_disjoint_episodes(ds, 4, 2, 3, episodes=10, seed=7)
    parts = EpisodeSet.concat([sample_group_disjoint_episodes(ds, 4, 2, 3, episodes=n, seed=7, start=s)
                               for s, n in ((0, 3), (3, 7))])
    assert parts.hash == whole.hash and torch.equal(parts.query, whole.query)
    assert sample_group_disjoint_episodes(ds, 4, 2, 3, episodes=10, seed=8).hash != whole.hash
    small = sample_group_disjoint_episodes(tracked(6, 3, 2), 3, 1, 1, episodes=2, seed=0)
    assert small.support.tolist() == EXPECTED_SUPPORT and small.hash == EXPECTED_HASH


# Recorded when the sampler was written (torch's CPU Mersenne Twister is the same on every platform).
EXPECTED_SUPPORT = [[6, 0, 33], [13, 34, 21]]
EXPECTED_HASH = "cb38df4e45ff0f09c0e6963799d3d301a05ce7be11c72143c3dbb955a0d1087f"


def test_too_few_examples_outside_the_support_groups():
    ds = tracked(classes=5, tracks=2, frames=5)
    with pytest.raises(ValueError, match=r"class 'c\d' of tracked has only 5 examples outside the groups of its "
                                         r"4 queries, fewer than 6 shots; lower --shots or --queries"):
        sample_group_disjoint_episodes(ds, 5, 6, 4, episodes=1, seed=0)
    plain = ClassDataset(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(5).repeat(2), list("abcde"), "p")
    with pytest.raises(ValueError, match="p has no example_groups"):
        sample_group_disjoint_episodes(plain, 2, 1, 1, episodes=1, seed=0)
    with pytest.raises(ValueError, match=r"groups must hold one id per example \(10\), got \(3,\)"):
        sample_group_disjoint_episodes(plain, 2, 1, 1, episodes=1, seed=0, groups=torch.zeros(3))
