"""Episodes: determinism, independence from batching, hashing, and the error cases."""
from __future__ import annotations

import hashlib

import pytest
import torch

from fewshot.data import ClassDataset, EpisodeSet, sample_episodes

from conftest import blob_dataset


def test_shapes_labels_and_no_overlap(blobs):
    eps = sample_episodes(blobs, ways=5, shots=2, queries=3, episodes=7, seed=1)
    assert eps.support.shape == (7, 10) and eps.query.shape == (7, 15) and eps.classes.shape == (7, 5)
    assert torch.equal(eps.support_labels[0], torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    for e in range(7):
        rows = torch.cat([eps.support[e], eps.query[e]])
        assert len(set(rows.tolist())) == len(rows), "an example was drawn twice in one episode"
        assert len(set(eps.classes[e].tolist())) == 5
        # every support and query row belongs to the class its label names
        assert torch.equal(blobs.labels[eps.support[e]], eps.classes[e][eps.support_labels[e]])
        assert torch.equal(blobs.labels[eps.query[e]], eps.classes[e][eps.query_labels[e]])


def test_episode_i_is_independent_of_batching(blobs):
    whole = sample_episodes(blobs, 4, 1, 2, episodes=12, seed=5)
    parts = EpisodeSet.concat([sample_episodes(blobs, 4, 1, 2, episodes=n, seed=5, start=s)
                               for s, n in ((0, 5), (5, 1), (6, 6))])
    assert whole.hash == parts.hash
    assert torch.equal(whole.query, parts.query)
    reordered = sample_episodes(blobs, 4, 1, 2, episodes=3, seed=5, start=9)
    assert torch.equal(reordered.support, whole.support[9:12])


def test_seed_changes_episodes_and_hash(blobs):
    a = sample_episodes(blobs, 5, 1, 2, episodes=4, seed=0)
    b = sample_episodes(blobs, 5, 1, 2, episodes=4, seed=1)
    assert not torch.equal(a.support, b.support)
    assert a.hash != b.hash
    assert a.hash == sample_episodes(blobs, 5, 1, 2, episodes=4, seed=0).hash


def test_hash_depends_on_dataset_contents():
    a = sample_episodes(blob_dataset(seed=0), 5, 1, 2, episodes=3, seed=0)
    b = sample_episodes(blob_dataset(seed=1), 5, 1, 2, episodes=3, seed=0)
    assert torch.equal(a.support, b.support) and a.hash != b.hash


def test_hash_is_stable_across_versions(blobs):
    # A fixed value: if sampling or hashing ever changes, stored results stop matching and this must fail.
    eps = sample_episodes(blobs, 3, 1, 1, episodes=2, seed=0)
    assert eps.support.tolist() == EXPECTED_SUPPORT
    assert eps.hash == "4ee6a6634a783ac8dc5e2ca4be612248e5e02291d8453d65e7173dd5da9a0b33"


# Recorded when the sampler was written (torch's CPU Mersenne Twister is the same on every platform).
EXPECTED_SUPPORT = [[76, 38, 0], [27, 5, 34]]


def int64_hash(eps: EpisodeSet) -> str:
    """The hash as first written: one int64 copy of each whole tensor (the reference for the compact storage)."""
    h = hashlib.sha256()
    h.update(f"{eps.dataset_fingerprint}|{eps.ways}|{eps.shots}|{eps.queries}".encode())
    for t in (eps.support, eps.support_labels, eps.query, eps.query_labels):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return h.hexdigest()


def test_episode_sets_are_stored_compactly_and_hash_as_int64(blobs):
    # More episodes than the hash reads at a time, so the hash is fed in several blocks.
    eps = sample_episodes(blobs, 5, 2, 3, episodes=5000, seed=2)
    assert eps.support.dtype == eps.query.dtype == eps.classes.dtype == torch.int32
    assert eps.support_labels.dtype == eps.query_labels.dtype == torch.int64          # what one_hot and losses take
    assert eps.support_labels.stride(0) == eps.query_labels.stride(0) == 0           # one row shared by all
    held = sum(t.untyped_storage().nbytes() for t in (eps.support, eps.query, eps.classes, eps.support_labels,
                                                        eps.query_labels))
    assert held == 5000 * (10 + 15 + 5) * 4 + (10 + 15) * 8                         # 4 bytes an index, labels once
    assert eps.hash == int64_hash(eps)
    # The same episodes handed over as int64 tensors (as a loader of fixed tasks does) compact to the same set.
    given = EpisodeSet(eps.support.long(), eps.support_labels.clone(), eps.query.long(), eps.query_labels.clone(),
                       eps.classes.long(), 5, 2, 3, 2, eps.dataset_fingerprint)
    assert given.support.dtype == torch.int32 and given.query_labels.stride(0) == 0
    assert given.hash == eps.hash and torch.equal(given.query, eps.query)
    assert eps[100:200].hash == int64_hash(eps[100:200]) and eps[100:200].support.dtype == torch.int32
    # labels that differ between episodes are kept as given
    varied = EpisodeSet(eps.support[:2], torch.tensor([[0] * 5 + [1] * 5, [1] * 5 + [0] * 5]), eps.query[:2],
                        eps.query_labels[:2], eps.classes[:2], 5, 2, 3, 2, eps.dataset_fingerprint)
    assert varied.support_labels.stride(0) != 0 and varied.hash == int64_hash(varied)


def test_sampling_is_uniform_enough():
    ds = blob_dataset(classes=6, per_class=10)
    eps = sample_episodes(ds, 3, 1, 1, episodes=3000, seed=0)
    class_counts = torch.bincount(eps.classes.flatten(), minlength=6).float()
    assert (class_counts / class_counts.mean() - 1).abs().max() < 0.1
    rows = torch.bincount(eps.support.flatten(), minlength=60).float()
    assert (rows / rows.mean() - 1).abs().max() < 0.35


def test_unequal_class_sizes_never_pick_padding():
    data = torch.zeros(3 + 8 + 5, 1, 4, 4, dtype=torch.uint8)
    labels = torch.tensor([0] * 3 + [1] * 8 + [2] * 5)
    ds = ClassDataset(data, labels, ["a", "b", "c"], "uneven")
    eps = sample_episodes(ds, 3, 1, 2, episodes=50, seed=0)
    assert (eps.support >= 0).all() and (eps.query >= 0).all()
    assert torch.equal(ds.labels[eps.query], torch.gather(eps.classes, 1, eps.query_labels))


@pytest.mark.parametrize("ways,shots,queries,message", [
    (0, 1, 1, "ways must be at least 1, got 0"),
    (5, 0, 1, "shots must be at least 1, got 0"),
    (5, 1, 0, "queries must be at least 1, got 0"),
    (13, 1, 1, "13-way episodes need 13 classes, but blobs has only 12"),
    (5, 6, 5, "6 shots + 5 queries need 11 examples per class, but class 'class00' of blobs has only 10"),
])
def test_errors_name_the_numbers(blobs, ways, shots, queries, message):
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        sample_episodes(blobs, ways, shots, queries, episodes=2, seed=0)


def test_zero_episodes_is_an_error(blobs):
    with pytest.raises(ValueError, match="episodes must be at least 1"):
        sample_episodes(blobs, 5, 1, 1, episodes=0, seed=0)


def test_gather_is_one_step_on_device(blobs):
    eps = sample_episodes(blobs, 5, 2, 3, episodes=4, seed=0)
    x = blobs.gather(eps.support, "cpu")
    assert x.shape == (4, 10, 1, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x[1, 3], blobs.data[eps.support[1, 3]].float() / 255)
