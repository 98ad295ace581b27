"""The linear probe against scikit-learn, batched against one episode at a time; SimpleShot against numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot.methods import create_method, list_methods, method_class
from fewshot.methods.linear_probe import fit_logistic_regression

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is a test dependency: pip install scikit-learn")
from sklearn.linear_model import LogisticRegression  # noqa: E402

FROZEN = ["linear-probe", "simpleshot"]


def episodes(n=4, ways=5, shots=3, queries=4, dim=24, seed=0):
    """Clustered features: support [n, ways*shots, dim], labels, query [n, ways*queries, dim], query labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n, ways, dim, generator=g)

    def draw(per_class):
        labels = torch.arange(ways).repeat_interleave(per_class).repeat(n, 1)
        x = centres.gather(1, labels.unsqueeze(-1).expand(-1, -1, dim)) + 1.5 * torch.randn(n, labels.shape[1], dim,
                                                                                            generator=g)
        return x.double(), labels

    (support, support_labels), (query, query_labels) = draw(shots), draw(queries)
    return support, support_labels, query, query_labels


def sklearn_fit(x, y, C, fit_intercept=True):
    return LogisticRegression(C=C, fit_intercept=fit_intercept, solver="lbfgs", tol=1e-12, max_iter=100_000).fit(
        x.numpy(), y.numpy())


@pytest.mark.parametrize("C", [0.1, 1.0, 30.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_probe_matches_sklearn(C, fit_intercept):
    support, labels, query, _ = episodes()
    support, query = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
    weight, bias, iterations = fit_logistic_regression(support, labels, 5, C=C, fit_intercept=fit_intercept)
    assert iterations < 30
    assert torch.allclose(bias.sum(-1), torch.zeros(len(bias), dtype=bias.dtype), atol=1e-12)
    for e in range(len(support)):
        clf = sklearn_fit(support[e], labels[e], C, fit_intercept)
        np.testing.assert_allclose(weight[e].numpy(), clf.coef_, atol=2e-5)
        np.testing.assert_allclose(bias[e].numpy(), clf.intercept_ - clf.intercept_.mean(), atol=2e-5)
        proba = torch.softmax(query[e] @ weight[e].T + bias[e], -1).numpy()
        np.testing.assert_allclose(proba, clf.predict_proba(query[e].numpy()), atol=1e-6)
        np.testing.assert_array_equal(proba.argmax(1), clf.predict(query[e].numpy()))


def test_a_warm_start_reaches_the_same_probe_in_fewer_steps():
    """Started from the solution for a nearby C (as the selected probes walk their grid), the fit lands on the
    same optimum as from zeros, in fewer Newton steps."""
    support, labels, query, _ = episodes()
    support = F.normalize(support, dim=-1)
    near = fit_logistic_regression(support, labels, 5, C=10.0)
    cold = fit_logistic_regression(support, labels, 5, C=30.0)
    warm = fit_logistic_regression(support, labels, 5, C=30.0, start=near[:2])
    torch.testing.assert_close(warm[0], cold[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(warm[1], cold[1], atol=1e-6, rtol=0)
    assert warm[2] < cold[2]


def test_probe_method_normalises_then_fits_like_sklearn():
    support, labels, query, _ = episodes(n=3, shots=2, dim=40, seed=1)
    method = create_method("linear-probe", torch.nn.Identity(), C=2.0)
    logits = method.logits_from_features(support, labels, query, 5)
    assert logits.shape == (3, 20, 5)
    for e in range(3):
        clf = sklearn_fit(F.normalize(support[e], dim=-1), labels[e], 2.0)
        expected = clf.predict_proba(F.normalize(query[e], dim=-1).numpy())
        np.testing.assert_allclose(torch.softmax(logits[e], -1).numpy(), expected, atol=1e-6)


def test_batched_equals_one_episode_at_a_time():
    support, labels, query, _ = episodes(n=6, shots=4, seed=2)
    method = create_method("linear-probe", torch.nn.Identity())
    together = method.logits_from_features(support, labels, query, 5)
    alone = torch.cat([method.logits_from_features(support[e:e + 1], labels[e:e + 1], query[e:e + 1], 5)
                       for e in range(6)])
    torch.testing.assert_close(together, alone, atol=1e-9, rtol=0)


def test_more_examples_than_dimensions_and_float32():
    support, labels, query, _ = episodes(n=2, shots=6, dim=8, seed=3)     # 30 support rows in 8 dimensions
    weight, bias, _ = fit_logistic_regression(support.float(), labels, 5, C=1.0)
    assert weight.dtype == torch.float32
    for e in range(2):
        clf = sklearn_fit(support[e], labels[e], 1.0)
        np.testing.assert_allclose(weight[e].numpy(), clf.coef_, atol=1e-4)


def test_stopping_early_warns():
    support, labels, _, _ = episodes(n=2)
    with pytest.warns(UserWarning, match="stopped after 1 Newton"):
        fit_logistic_regression(support, labels, 5, C=1e6, max_iter=1)


def simpleshot_numpy(support, labels, query, ways, transform):
    s, q = support.numpy(), query.numpy()
    if transform == "CL2N":
        mean = s.mean(0)
        s, q = s - mean, q - mean
    if transform != "UN":
        s = s / np.linalg.norm(s, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    centroids = np.stack([s[labels.numpy() == c].mean(0) for c in range(ways)])
    return -((q[:, None, :] - centroids[None]) ** 2).sum(-1)


@pytest.mark.parametrize("transform", ["UN", "L2N", "CL2N"])
def test_simpleshot_matches_numpy(transform):
    support, labels, query, _ = episodes(n=3, shots=4, seed=4)
    method = create_method("simpleshot", torch.nn.Identity(), transform=transform)
    logits = method.logits_from_features(support, labels, query, 5)
    for e in range(3):
        np.testing.assert_allclose(logits[e].numpy(), simpleshot_numpy(support[e], labels[e], query[e], 5, transform),
                                   rtol=1e-10, atol=1e-10)


def test_simpleshot_rejects_unknown_transform():
    with pytest.raises(ValueError, match="CL2N"):
        create_method("simpleshot", torch.nn.Identity(), transform="ZCA")


@pytest.mark.parametrize("name", FROZEN)
def test_registered_as_frozen_feature_methods_without_training(name):
    cls = method_class(name)
    assert name in list_methods()
    assert cls.frozen_features and cls.train_kind == "none" and not cls.transductive
    assert cls.default_backbone == "efficientnet_lite0"
    assert cls.paper and cls.__doc__
    support, labels, query, query_labels = episodes(n=2, seed=5)
    accuracy = (create_method(name, torch.nn.Identity()).logits_from_features(support, labels, query, 5)
                .argmax(-1) == query_labels).double().mean()
    assert accuracy > 0.6   # well-separated clusters
