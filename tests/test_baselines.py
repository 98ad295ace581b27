"""Baseline++ and RFS-simple: the cosine head against a per-episode torch.optim reference, their checkpoints,
and both trained end to end on a tiny dataset."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.backbones import create_backbone
from fewshot.data import sample_episodes
from fewshot.evaluate import evaluate
from fewshot.methods import create_method
from fewshot.methods.baseline_pp import CosineClassifier, cosine_scale
from fewshot.methods.finetune import BatchedAdam
from fewshot.train import TrainConfig, fit

from conftest import blob_dataset


def cosine_head_reference(features, labels, ways, steps, lr, weight_decay, scale):
    """One episode with torch.optim.Adam, starting from the normalised class means, as a user would write it."""
    means = torch.stack([F.normalize(features, dim=-1)[labels == c].mean(0) for c in range(ways)])
    weight = means.clone().requires_grad_(True)
    opt = torch.optim.Adam([weight], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(scale * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T, labels).backward()
        opt.step()
    return weight.detach()


def test_cosine_head_batched_matches_torch_optim_per_episode():
    g = torch.Generator().manual_seed(0)
    support = torch.randn(4, 10, 12, generator=g, dtype=torch.float64)
    labels = torch.arange(5).repeat_interleave(2).expand(4, -1)
    query = torch.randn(4, 6, 12, generator=g, dtype=torch.float64)
    method = create_method("baseline++", torch.nn.Identity(), steps=25, lr=0.05, weight_decay=1e-3, scale=2.0)
    logits = method.logits_from_features(support, labels, query, 5)
    for e in range(4):
        weight = cosine_head_reference(support[e], labels[e], 5, 25, 0.05, 1e-3, 2.0)
        expected = 2.0 * F.normalize(query[e], dim=-1) @ F.normalize(weight, dim=-1).T
        torch.testing.assert_close(logits[e], expected, rtol=1e-9, atol=1e-12)


def test_batched_adam_matches_torch_adam_with_weight_decay():
    g = torch.Generator().manual_seed(1)
    start, grads = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 3, 4, generator=g,
                                                                                       dtype=torch.float64)
    ours, reference = {"w": start.clone()}, start.clone().requires_grad_(True)
    adam, opt = BatchedAdam({"w": 0.1}, weight_decay=0.01), torch.optim.Adam([reference], lr=0.1, weight_decay=0.01)
    for g_t in grads:
        ours = adam.step(ours, {"w": g_t})
        reference.grad = g_t.clone()
        opt.step()
    torch.testing.assert_close(ours["w"], reference.detach(), rtol=1e-12, atol=1e-12)


def test_cosine_classifier_and_its_own_checkpoint():
    head = CosineClassifier(8, 30)
    features = torch.randn(5, 8)
    assert head.scale == cosine_scale(30) == 2.0 and cosine_scale(351) == 10.0
    torch.testing.assert_close(head(features).abs().max() <= 2.0 + 1e-6, torch.tensor(True))
    backbone = lambda: create_backbone("conv4", image_size=16, hidden=8)  # noqa: E731
    plus, plain, rfs = (create_method(n, backbone()) for n in ("baseline++", "finetune", "rfs"))
    config = TrainConfig(steps=2)
    assert isinstance(plus.pretraining_head(8, 3), CosineClassifier)
    assert plus.checkpoint_name("fp", config, 0) != plain.checkpoint_name("fp", config, 0)
    # RFS-simple is the Baseline's pre-training with another test-time head: it shares the checkpoint.
    assert rfs.checkpoint_name("fp", config, 0) == plain.checkpoint_name("fp", config, 0)


def test_baseline_pp_and_rfs_learn_on_tiny_blobs(tmp_path):
    train, test = blob_dataset(classes=16, per_class=12, seed=0), blob_dataset(classes=16, per_class=12, seed=5)
    episodes = sample_episodes(test, 5, 1, 5, episodes=30, seed=0)
    config = TrainConfig(steps=60, lr=1e-3, batch_size=32)
    accuracy = {}
    for name in ("baseline++", "rfs"):
        torch.manual_seed(0)
        method = create_method(name, create_backbone("conv4", image_size=16, hidden=8))
        untrained = evaluate(method, test, episodes, device="cpu", progress=False).accuracies.mean()
        report = fit(method, train, config, seed=0, checkpoint_dir=tmp_path, progress=False)
        assert report.final_loss < report.curve[0]["loss"]          # pre-training learned something
        accuracy[name] = evaluate(method, test, episodes, device="cpu", progress=False).accuracies.mean()
        print(name, untrained, accuracy[name])
        assert accuracy[name] > untrained + 0.05, (name, untrained, accuracy[name])
