"""ProtoNet's batched logits against a direct per-episode computation, and one training step."""
from __future__ import annotations

import torch

from fewshot.backbones import create_backbone
from fewshot.data import sample_episodes
from fewshot.methods import create_method
from fewshot.methods.protonet import class_means


def reference_logits(support, support_labels, query, ways):
    """One episode at a time, the way the paper writes it: prototypes c_k, logits -||f(x) - c_k||^2."""
    out = []
    for s, y, q in zip(support, support_labels, query):
        prototypes = torch.stack([s[y == k].mean(0) for k in range(ways)])
        out.append(-torch.cdist(q, prototypes).pow(2))
    return torch.stack(out)


def test_logits_match_per_episode_reference(blobs):
    torch.manual_seed(0)
    method = create_method("protonet", create_backbone("conv4", in_channels=1, image_size=16)).eval()
    eps = sample_episodes(blobs, 5, 3, 4, episodes=6, seed=2)
    support, query = blobs.gather(eps.support), blobs.gather(eps.query)
    with torch.no_grad():
        logits = method(support, eps.support_labels, query, 5)
        s, q = method.embed(support), method.embed(query)
    assert logits.shape == (6, 20, 5)
    torch.testing.assert_close(logits, reference_logits(s, eps.support_labels, q, 5), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(method.logits_from_features(s, eps.support_labels, q, 5), logits)


def test_class_means_with_shuffled_labels():
    features = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[2, 0, 1, 0, 2, 1], [1, 1, 0, 0, 2, 2]])
    means = class_means(features, labels, 3)
    for e in range(2):
        for k in range(3):
            torch.testing.assert_close(means[e, k], features[e][labels[e] == k].mean(0))


def test_training_lowers_the_loss(blobs):
    torch.manual_seed(0)
    method = create_method("protonet", create_backbone("conv4", in_channels=1, image_size=16, hidden=16)).train()
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    eps = sample_episodes(blobs, 5, 2, 3, episodes=4, seed=0)
    args = (blobs.gather(eps.support), eps.support_labels, blobs.gather(eps.query), eps.query_labels, 5)
    first = method.episode_loss(*args).mean()
    for _ in range(15):
        loss = method.episode_loss(*args).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert method.episode_loss(*args).mean() < 0.5 * first


def test_nothing_to_train_on_a_frozen_backbone(blobs, tmp_path):
    """ProtoNet on a frozen encoder (a foundation model's features) has no weight to meta-train: fit trains
    nothing, writes no checkpoint and leaves the weights as they were (it used to fail on an empty optimiser)."""
    from fewshot.train import TrainConfig, fit

    backbone = create_backbone("conv4", in_channels=1, image_size=16, hidden=8).requires_grad_(False)
    method = create_method("protonet", backbone)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    report = fit(method, blobs, TrainConfig(steps=5, ways=3, shots=1, queries=2), checkpoint_dir=tmp_path,
                 progress=False)
    assert (report.checkpoint, report.steps, report.loaded) == (None, 0, False)
    assert list(tmp_path.iterdir()) == []
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())
