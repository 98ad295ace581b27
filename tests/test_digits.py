"""scikit-learn's bundled 8x8 digits as a cross-domain target."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from fewshot.core.errors import UsageError, UserError
from fewshot.data import load_dataset, sample_episodes
from fewshot.data.digits import CONTENT_SHA256, digits_arrays, load_digits

sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="the digits ship with scikit-learn (test extra)")


def test_all_ten_classes_as_uint8_images():
    ds = load_dataset("digits", "test")
    assert ds.name == "digits/test" and ds.class_names == [str(d) for d in range(10)]
    assert ds.data.shape == (1797, 1, 8, 8) and ds.data.dtype == torch.uint8
    assert ds.class_counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    counts = sklearn_datasets.load_digits().images
    # The documented rule, value by value: 0 -> 0, 8 -> 128, 16 -> 255.
    expected = {v: (255 * v + 8) // 16 for v in range(17)}
    assert expected[0] == 0 and expected[8] == 128 and expected[16] == 255
    assert torch.equal(ds.data[:, 0], torch.from_numpy(np.vectorize(expected.get)(counts.astype(int)).astype(np.uint8)))
    assert ds.fingerprint() == "b876d194c93bd53d9f0844d60539139af7956ad90ddf2733ec6902188681866e"
    eps = sample_episodes(ds, 5, 5, 15, episodes=50, seed=0)
    assert set(eps.classes.flatten().tolist()) == set(range(10))


def test_changed_data_fails_loudly(monkeypatch):
    import fewshot.data.digits as digits

    monkeypatch.setattr(digits, "CONTENT_SHA256", "0" * 64)
    with pytest.raises(UserError, match=r"^scikit-learn's digits \(sklearn.datasets.load_digits\) have sha256 "
                                        rf"{CONTENT_SHA256}, expected 0{{64}}"):
        digits_arrays()


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes `from sklearn.datasets import ...` fail
    with pytest.raises(UserError, match=r"^the digits dataset is scikit-learn's bundled 8x8 digits, but "
                                        r"scikit-learn is not installed: pip install scikit-learn"):
        load_digits("test")


def test_it_is_a_target_only():
    with pytest.raises(UsageError, match="^digits is a cross-domain target: all of its 10 classes are test "
                                         "classes, so it has no 'train' split"):
        load_digits("train")
    with pytest.raises(UsageError, match=r"^unknown digits split 'all'; it has only 'test'$"):
        load_digits("all")
