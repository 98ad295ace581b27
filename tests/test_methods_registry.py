"""Every registered method goes through the same checks, so nothing registered goes untested."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.backbones import create_backbone
from fewshot.data import sample_episodes
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method, list_methods, method_class
from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.backbones import list_backbones
from fewshot.train import TrainConfig, train_preset

from conftest import blob_dataset

BLOBS = blob_dataset(classes=8, per_class=6)


def tiny_method(name: str) -> FewShotMethod:
    torch.manual_seed(0)
    return create_method(name, create_backbone("conv4", in_channels=1, image_size=16, hidden=8)).eval()


@pytest.mark.parametrize("name", list_methods())
def test_method_declares_itself(name):
    cls = method_class(name)
    assert cls.name == name
    assert isinstance(cls.train_kind, TrainKind)
    assert cls.paper, f"{name} should name its paper"
    assert cls.__doc__
    assert cls.default_backbone in list_backbones(), cls.default_backbone
    assert isinstance(cls.method_preset("omniglot", 5, 1), cls.Config)
    preset = cls.train_preset("omniglot", 5, 1)
    assert preset is None or isinstance(preset, TrainConfig)
    assert isinstance(train_preset(cls, "synthetic", 5, 1), TrainConfig)


def hand_made_backbone(width: int) -> torch.nn.Module:
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, width))
    backbone.out_features = width
    return backbone


@pytest.mark.parametrize("name", list_methods())
def test_checkpoint_name_comes_from_the_method_and_its_backbone(name):
    config = TrainConfig(steps=3)
    narrow, wide = tiny_method(name), create_method(name, create_backbone("conv4", image_size=16, hidden=16))
    assert narrow.backbone_spec == {"name": "conv4", "hidden": 8}
    assert narrow.checkpoint_name("fp", config, 0) != wide.checkpoint_name("fp", config, 0)
    assert narrow.checkpoint_name("fp", config, 0) == tiny_method(name).checkpoint_name("fp", config, 0)
    assert narrow.checkpoint_name("fp", config, 0) != narrow.checkpoint_name("fp", config, 1)
    # A hand-made backbone is keyed by its architecture, so two different ones never share a checkpoint.
    hand = [create_method(name, hand_made_backbone(width)) for width in (4, 8)]
    assert hand[0].checkpoint_name("fp", config, 0) != hand[1].checkpoint_name("fp", config, 0)


@pytest.mark.parametrize("name", list_methods())
def test_logits_shape_and_batching_independence(name):
    method = tiny_method(name)
    eps = sample_episodes(BLOBS, 3, 2, 2, episodes=4, seed=0)
    support, query = BLOBS.gather(eps.support), BLOBS.gather(eps.query)
    logits = method(support, eps.support_labels, query, 3)
    assert logits.shape == (4, 6, 3)
    assert torch.isfinite(logits).all()
    one_by_one = torch.cat([method(support[e:e + 1], eps.support_labels[e:e + 1], query[e:e + 1], 3)
                            for e in range(4)])
    # A one-episode batch of finetune-full runs plain calls, not vmap: float32 rounding that Adam's steps amplify
    # (1.5e-4 here on some CPUs); tests/test_finetune.py checks the two paths equal in float64.
    tolerance = 1e-3 if name == "finetune-full" else 1e-4
    torch.testing.assert_close(logits, one_by_one, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", list_methods())
def test_harness_batches_agree(name):
    method = tiny_method(name)
    eps = sample_episodes(BLOBS, 3, 2, 2, episodes=5, seed=1)
    whole = evaluate(method, BLOBS, eps, device="cpu", batch_size=5, progress=False)
    pieces = evaluate(method, BLOBS, eps, device="cpu", batch_size=2, progress=False)
    assert whole.accuracies.shape == (5,)
    np.testing.assert_allclose(whole.accuracies, pieces.accuracies)
    assert whole.episode_hash == eps.hash


@pytest.mark.parametrize("name", [n for n in list_methods() if method_class(n).frozen_features])
def test_frozen_feature_path_equals_image_path(name):
    method = tiny_method(name)
    eps = sample_episodes(BLOBS, 3, 2, 2, episodes=3, seed=2)
    support, query = BLOBS.gather(eps.support), BLOBS.gather(eps.query)
    with torch.no_grad():
        from_images = method(support, eps.support_labels, query, 3)
        from_features = method.logits_from_features(method.embed(support), eps.support_labels, method.embed(query), 3)
    torch.testing.assert_close(from_images, from_features, rtol=1e-4, atol=1e-4)


@register_method("test-nearest-neighbour")
class NearestNeighbour(FewShotMethod):
    """1-nearest neighbour on the backbone's features: a user's method in one small class."""

    paper = "Cover & Hart 1967, Nearest neighbor pattern classification"
    train_kind = "none"
    frozen_features = True

    def logits_from_features(self, support, support_labels, query, ways):
        distances = torch.cdist(query, support)                             # [E, Q, S]
        nearest = support_labels.gather(1, distances.argmin(-1))            # [E, Q]
        return torch.nn.functional.one_hot(nearest, ways).float()


def test_a_users_method_is_listed_and_runs():
    assert "test-nearest-neighbour" in list_methods()
    method = tiny_method("test-nearest-neighbour")
    eps = sample_episodes(BLOBS, 4, 1, 2, episodes=6, seed=0)
    result = evaluate(method, BLOBS, eps, device="cpu", progress=False)
    # Direct computation: nearest support embedding for each query.
    with torch.no_grad():
        s, q = method.embed(BLOBS.gather(eps.support)), method.embed(BLOBS.gather(eps.query))
    expected = []
    for e in range(6):
        d = ((q[e][:, None] - s[e][None]) ** 2).sum(-1)
        expected.append(float((eps.support_labels[e][d.argmin(1)] == eps.query_labels[e]).float().mean()))
    np.testing.assert_allclose(result.accuracies, expected)


def test_unknown_method_and_option_errors():
    with pytest.raises(KeyError, match="unknown method 'protonett'. Did you mean 'protonet'"):
        method_class("protonett")
    with pytest.raises(TypeError, match="has no option"):
        create_method("finetune", torch.nn.Identity(), stepz=3)
