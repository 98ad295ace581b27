"""The probe's C chosen away from the test data: on held-out classes' episodes (``linear-probe-val``), equal to a
search through the harness and blind to the test split; by cross-validation within the support (``linear-probe-cv``),
equal to scikit-learn fold by fold."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot.backbones import create_backbone
from fewshot.core.errors import UsageError
from fewshot.data import sample_episodes
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method
from fewshot.methods.linear_probe_select import C_GRID, select_C
from fewshot.runner import CellSpec, Runner
from fewshot.train import TrainConfig, fit

from conftest import blob_dataset

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is a test dependency: pip install scikit-learn")
from sklearn.linear_model import LogisticRegression  # noqa: E402

BLOBS = blob_dataset(classes=8, per_class=10, noise=1.5)


def backbone():
    torch.manual_seed(0)
    return create_backbone("conv4", in_channels=1, image_size=16, hidden=8)


def reference_search(net, dataset, ways, shots, queries, episodes, seed):
    """Mean accuracy of the plain linear probe at every C of the grid, through the harness, on the same episodes."""
    eps = sample_episodes(dataset, ways, shots, queries, episodes, seed=seed)
    return np.array([evaluate(create_method("linear-probe", net, C=C).eval(), dataset, eps, device="cpu",
                              progress=False).accuracies.mean() for C in C_GRID])


def test_validation_choice_equals_a_reference_search():
    net = backbone()
    method = create_method("linear-probe-val", net)
    config = TrainConfig(steps=12, ways=3, shots=2, queries=3, meta_batch=5)
    report = fit(method, BLOBS, config, seed=3, checkpoint_dir=None, progress=False)
    reference = reference_search(net, BLOBS, 3, 2, 3, 12, seed=3)
    assert len(set(reference.round(6))) > 1                               # C matters here, so the test can fail
    C, scores = select_C(method, BLOBS, config, seed=3)
    np.testing.assert_allclose(scores.numpy(), reference, atol=1e-9)
    assert C == C_GRID[int(np.argmax(reference))] == float(method.chosen_C) == method.describe()["chosen_C"]
    assert report.final_loss == pytest.approx(1 - reference.max())
    # Fewer ways than asked when the classes run out; a split with too few examples is refused.
    assert select_C(method, blob_dataset(classes=2, per_class=4), config, seed=0)[1].shape == (len(C_GRID),)
    with pytest.raises(UsageError, match="selection episodes"):
        select_C(method, blob_dataset(classes=3, per_class=2), config, seed=0)


def test_chosen_C_comes_from_the_training_split_only(tmp_path):
    runner = Runner(checkpoint_dir=tmp_path, device="cpu", progress=False)
    common = dict(method="linear-probe-val", dataset="synthetic", ways=5, shots=2, queries=3, episodes=4,
                  backbone="conv4", backbone_options={"hidden": 8}, train={"steps": 10, "queries": 3})
    on_test = runner.run(CellSpec(**common, test_split="test"))
    on_val = runner.run(CellSpec(**common, test_split="val"))
    assert on_test.accuracies != on_val.accuracies                        # other test data ...
    assert on_test.config["chosen_C"] == on_val.config["chosen_C"]        # ... the same C
    # The choice does come from the training split: another one gives other selection scores.
    method = runner.build(CellSpec(**common), runner.dataset("synthetic", "train"))
    config = TrainConfig(steps=10, ways=5, shots=2, queries=3)
    train = select_C(method, runner.dataset("synthetic", "train"), config, seed=0)
    val = select_C(method, runner.dataset("synthetic", "val"), config, seed=0)
    assert on_test.config["chosen_C"] == train[0] and not torch.equal(train[1], val[1])


def sklearn_predictions(x, y, query, C):
    model = LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=100_000).fit(x.numpy(), y.numpy())
    return model.predict(query.numpy())


@pytest.mark.parametrize("shots, folds", [(4, 5), (6, 3)])
def test_cross_validation_equals_sklearn_fold_by_fold(shots, folds):
    g = torch.Generator().manual_seed(shots)
    ways, dim = 4, 12
    centres = torch.randn(ways, dim, generator=g)
    support_labels = torch.arange(ways).repeat(shots)[torch.randperm(ways * shots, generator=g)]
    support = (centres[support_labels] + 1.2 * torch.randn(ways * shots, dim, generator=g)).double()
    query = (centres.repeat_interleave(5, 0) + 1.2 * torch.randn(ways * 5, dim, generator=g)).double()
    # The reference: fold f holds out the examples at positions f, f+k, ... of each class, in support order.
    position = torch.zeros(ways * shots, dtype=torch.long)
    for c in range(ways):
        where = (support_labels == c).nonzero().flatten()
        position[where] = torch.arange(len(where))
    k = min(shots, folds)
    x, q = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
    scores = []
    for C in C_GRID:
        correct = 0
        for f in range(k):
            held = position % k == f
            correct += (sklearn_predictions(x[~held], support_labels[~held], x[held], C)
                        == support_labels[held].numpy()).mean()
        scores.append(correct)
    best = C_GRID[int(np.argmax(np.round(scores, 9)))]
    method = create_method("linear-probe-cv", backbone(), folds=folds)
    logits = method.logits_from_features(support[None], support_labels[None], query[None], ways)
    plain = create_method("linear-probe", backbone(), C=best).logits_from_features(
        support[None], support_labels[None], query[None], ways)
    torch.testing.assert_close(logits, plain)
    np.testing.assert_array_equal(logits[0].argmax(-1).numpy(), sklearn_predictions(x, support_labels, q, best))
    # The record says which C the episode chose (counts over the episodes scored).
    assert method.describe()["chosen_C"] == {f"{best:g}": 1}


def test_cross_validation_needs_two_balanced_shots():
    method = create_method("linear-probe-cv", backbone())
    support = torch.randn(1, 3, 8)
    with pytest.raises(UsageError, match="2 or more"):
        method.logits_from_features(support, torch.tensor([[0, 1, 2]]), torch.randn(1, 2, 8), 3)
    with pytest.raises(UsageError, match="same number"):
        method.logits_from_features(torch.randn(1, 5, 8), torch.tensor([[0, 0, 1, 1, 1]]), torch.randn(1, 2, 8), 2)
