"""Meta-Dataset episodes: the rules of sampling.py, determinism, batching, masks and the hash."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fewshot.data import ClassDataset
from fewshot.data.episodes import episode_seed
from fewshot.data.meta_dataset_episodes import (MetaDatasetConfig, VariableEpisodeSet, check_meta_dataset_settings,
                                                sample_meta_dataset_episodes)


def uneven_dataset(classes: int = 70, seed: int = 0) -> ClassDataset:
    """Classes of 2 .. 320 examples (small ones cap the queries, big ones the support), each a noisy pattern."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(2, 321, (classes,), generator=g)
    sizes[:3] = torch.tensor([2, 3, 7])
    labels = torch.arange(classes).repeat_interleave(sizes)
    patterns = torch.rand(classes, 1, 6, 6, generator=g)
    data = ((patterns[labels] + 1.5 * torch.rand(len(labels), 1, 6, 6, generator=g)) / 2.5 * 255).to(torch.uint8)
    return ClassDataset(data, labels, [f"c{i}" for i in range(classes)], "uneven")


@pytest.fixture(scope="module")
def data() -> ClassDataset:
    return uneven_dataset()


@pytest.fixture(scope="module")
def episodes(data) -> VariableEpisodeSet:
    return sample_meta_dataset_episodes(data, 400, seed=3)


def reference_description(dataset: ClassDataset, seed: int, index: int):
    """Meta-Dataset's EpisodeDescriptionSampler, written out from sampling.py with numpy, fed the same draws."""
    g = torch.Generator().manual_seed(episode_seed(seed, index))
    counts = dataset.class_counts.numpy()
    # sample_num_ways_uniformly: uniform in [min_ways, min(max_ways, num_classes)]
    num_ways = int(torch.randint(5, min(50, len(counts)) + 1, (1,), generator=g))
    # sample_class_ids_uniformly: without replacement
    class_ids = torch.randperm(len(counts), generator=g)[:num_ways].numpy()
    images_per_class = counts[class_ids]
    # compute_num_query with num_support=None
    num_query = np.minimum(10, (images_per_class // 2).min())
    num_remaining_per_class = images_per_class - num_query
    # sample_support_set_size
    beta = float(torch.rand((), dtype=torch.float64, generator=g))
    support_size_contributions = np.minimum(100, num_remaining_per_class)
    support_set_size = np.minimum(np.floor(beta * support_size_contributions + 1).sum(), 500)
    # sample_num_support_per_class
    u = torch.rand(num_ways, dtype=torch.float64, generator=g).numpy()
    log_weights = np.log(0.5) + (np.log(2) - np.log(0.5)) * u
    unnormalized = images_per_class * np.exp(log_weights)
    proportions = unnormalized / unnormalized.sum()
    desired = np.floor(proportions * (support_set_size - num_ways)).astype("int32") + 1
    return class_ids, np.minimum(desired, num_remaining_per_class), int(num_query)


def test_episode_descriptions_follow_meta_datasets_sampler(data, episodes):
    for e in range(len(episodes)):
        classes, shots, queries = reference_description(data, 3, e)
        w = int(episodes.ways[e])
        assert episodes.classes[e, :w].tolist() == classes.tolist()
        assert episodes.shots[e, :w].tolist() == shots.tolist()
        assert int(episodes.queries[e]) == queries


def test_the_shape_distribution_obeys_the_rules(data, episodes):
    counts = data.class_counts
    ways = episodes.ways
    assert int(ways.min()) == 5 and int(ways.max()) == 50
    histogram = torch.bincount(ways, minlength=51)[5:].float()
    assert (histogram > 0).all() and float(histogram.max() / histogram.mean()) < 2.2  # 46 values, 400 draws
    imbalanced = 0
    for e in range(len(episodes)):
        support, support_labels, query, query_labels, classes = episodes.episode(e)
        w, q = int(ways[e]), int(episodes.queries[e])
        n = counts[classes]
        assert len(classes) == w and len(set(classes.tolist())) == w
        assert q == min(10, int(n.min()) // 2) and len(query) == w * q
        shots = episodes.shots[e, :w]
        assert (shots >= 1).all() and (shots <= n - q).all()
        assert w <= len(support) == int(shots.sum()) <= 500
        # Meta-Dataset's bound: every class adds at most min(100, n_c - q) to the drawn support size.
        assert len(support) <= int(torch.clamp(n - q, max=100).sum())
        assert support_labels.tolist() == torch.arange(w).repeat_interleave(shots).tolist()
        assert query_labels.tolist() == torch.arange(w).repeat_interleave(q).tolist()
        rows = torch.cat([support, query])
        assert len(set(rows.tolist())) == len(rows), "an example was drawn twice in one episode"
        assert torch.equal(data.labels[support], classes[support_labels])
        assert torch.equal(data.labels[query], classes[query_labels])
        imbalanced += len(set(shots.tolist())) > 1
    assert imbalanced > 0.9 * len(episodes)
    assert int(episodes.support_mask.sum(1).max()) == episodes.support.shape[1] <= 500
    # A class of 2 examples in an episode forces one query per class.
    assert (episodes.queries == 1).any() and (episodes.queries == 10).any()


def test_padding_is_marked_everywhere(episodes):
    assert torch.equal(episodes.support_mask, episodes.support_labels >= 0)
    assert torch.equal(episodes.query_mask, episodes.query_labels >= 0)
    assert torch.equal(episodes.class_mask.sum(1), episodes.ways)
    assert torch.equal((episodes.shots > 0), episodes.class_mask)
    assert torch.equal(episodes.support_mask.sum(1), episodes.shots.sum(1))
    assert torch.equal(episodes.query_mask.sum(1), episodes.ways * episodes.queries)
    # Real entries come first, padding last.
    for mask in (episodes.support_mask, episodes.query_mask, episodes.class_mask):
        assert torch.equal(mask, torch.arange(mask.shape[1]) < mask.sum(1, keepdim=True))


def test_episode_i_is_the_same_alone_or_in_any_batch(data, episodes):
    parts = [sample_meta_dataset_episodes(data, n, seed=3, start=s) for s, n in ((0, 7), (7, 1), (8, 392))]
    assert len({p.support.shape[1] for p in parts}) > 1  # the parts are padded differently...
    joined = VariableEpisodeSet.concat(parts)
    assert joined.hash == episodes.hash  # ...and still hold the same episodes
    for f in ("support", "support_labels", "query", "query_labels", "classes", "ways", "shots", "queries"):
        assert torch.equal(getattr(joined, f), getattr(episodes, f)), f
    alone = sample_meta_dataset_episodes(data, 1, seed=3, start=123)
    assert all(torch.equal(a, b) for a, b in zip(alone.episode(0), episodes.episode(123)))
    again = list(episodes.batches(64))
    assert [len(b) for b in again] == [64] * 6 + [16]
    assert all(b.support.shape[1] == int(b.support_mask.sum(1).max()) for b in again)
    assert VariableEpisodeSet.concat(again).hash == episodes.hash
    assert episodes[10:20].trimmed().hash == sample_meta_dataset_episodes(data, 10, seed=3, start=10).hash


def test_seed_and_data_change_the_hash(data, episodes):
    assert sample_meta_dataset_episodes(data, 400, seed=3).hash == episodes.hash
    assert sample_meta_dataset_episodes(data, 400, seed=4).hash != episodes.hash
    other = uneven_dataset(seed=0)
    other.name = "renamed"
    assert sample_meta_dataset_episodes(other, 400, seed=3).hash != episodes.hash
    wider = episodes.padded(600, 600, 60)
    assert wider.support.shape == (400, 600) and wider.hash == episodes.hash
    with pytest.raises(ValueError, match="narrower than the episodes"):
        episodes.padded(10, 10)


def test_hash_is_stable_across_versions():
    # A fixed value: if sampling or hashing ever changes, stored results stop matching and this must fail.
    eps = sample_meta_dataset_episodes(uneven_dataset(classes=12, seed=1), 3, seed=0)
    assert eps.ways.tolist() == EXPECTED_WAYS and eps.shots.sum(1).tolist() == EXPECTED_SUPPORT_SIZES
    assert eps.hash == EXPECTED_HASH
    assert eps.describe() == {"protocol": "meta-dataset", "min_ways": 5, "max_ways": 50, "max_query_per_class": 10,
                              "max_support_size": 500, "max_support_contribution_per_class": 100,
                              "min_log_weight": math.log(0.5), "max_log_weight": math.log(2.0)}


# Recorded when the sampler was written (torch's CPU Mersenne Twister is the same on every platform).
EXPECTED_WAYS = [8, 7, 12]
EXPECTED_SUPPORT_SIZES = [84, 268, 468]
EXPECTED_HASH = "8a68de493ffe7f8194c330c3f484b1b6831326dcc0834cd50ca49b635f1d272c"


def nearest_centroid_accuracy(data: ClassDataset, eps: VariableEpisodeSet) -> torch.Tensor:
    """Batched over episodes with the masks: prototypes are masked means, padded classes never win."""
    support = data.gather(eps.support.clamp(min=0)).flatten(2)  # [E, S, D]
    query = data.gather(eps.query.clamp(min=0)).flatten(2)
    ways = eps.classes.shape[1]
    onehot = torch.nn.functional.one_hot(eps.support_labels.clamp(min=0), ways).float()
    onehot = onehot * eps.support_mask.unsqueeze(-1)
    prototypes = onehot.transpose(1, 2) @ support / onehot.sum(1).clamp(min=1).unsqueeze(-1)
    distances = torch.cdist(query, prototypes).masked_fill(~eps.class_mask.unsqueeze(1), float("inf"))
    correct = (distances.argmin(-1) == eps.query_labels) & eps.query_mask
    return correct.sum(1) / eps.query_mask.sum(1)


def test_masked_batches_score_like_one_episode_at_a_time(data, episodes):
    batched = torch.cat([nearest_centroid_accuracy(data, b) for b in episodes.batches(50)])
    one_by_one = []
    for e in range(len(episodes)):
        support, support_labels, query, query_labels, classes = episodes.episode(e)
        prototypes = torch.stack([data.gather(support[support_labels == c]).flatten(1).mean(0)
                                  for c in range(len(classes))])
        guess = torch.cdist(data.gather(query).flatten(1), prototypes).argmin(1)
        one_by_one.append((guess == query_labels).float().mean())
    assert torch.allclose(batched, torch.stack(one_by_one), atol=1e-6)
    assert 0.5 < float(batched.mean()) < 1.0  # the task is learnable and not trivial


@pytest.mark.parametrize("config,dataset,message", [
    (MetaDatasetConfig(), uneven_dataset(classes=4), "at least 5 ways, but uneven has only 4 classes"),
    (MetaDatasetConfig(min_ways=6, max_ways=5), uneven_dataset(), r"min_ways \(6\) must be at least 1 and at most "
                                                                   r"max_ways \(5\)"),
    (MetaDatasetConfig(max_support_size=20), uneven_dataset(), r"max_support_size \(20\) must be at least max_ways"),
])
def test_impossible_settings_name_the_numbers(config, dataset, message):
    with pytest.raises(ValueError, match=message):
        check_meta_dataset_settings(dataset, config)


def test_a_class_with_one_example_is_refused():
    ds = ClassDataset(torch.zeros(11, 1, 2, 2, dtype=torch.uint8), torch.tensor([0] + [1, 2, 3, 4, 5] * 2),
                      list("abcdef"), "tiny")
    with pytest.raises(ValueError, match="need 2 examples in every class .* but class 'a' of tiny has 1"):
        sample_meta_dataset_episodes(ds, 2, seed=0)
    with pytest.raises(ValueError, match="episodes must be at least 1"):
        sample_meta_dataset_episodes(uneven_dataset(), 0, seed=0)
