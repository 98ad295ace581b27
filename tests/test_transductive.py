"""Transductive fine-tuning (Dhillon et al. 2020, head on frozen features): batched against a per-episode
torch.optim.Adam loop, the entropy term acts, and the queries of an episode inform each other."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.backbones import create_backbone
from fewshot.methods import create_method
from fewshot.methods.transductive import episode_loss

E, WAYS, SHOTS, QUERIES, DIM = 4, 5, 2, 6, 12


def episodes(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(E, WAYS, DIM, generator=g, dtype=torch.float64)
    support = centers.repeat_interleave(SHOTS, 1) + 0.5 * torch.randn(E, WAYS * SHOTS, DIM, generator=g,
                                                                       dtype=torch.float64)
    query = centers.repeat_interleave(QUERIES, 1) + 0.5 * torch.randn(E, WAYS * QUERIES, DIM, generator=g,
                                                                       dtype=torch.float64)
    labels = torch.arange(WAYS).repeat_interleave(SHOTS).expand(E, -1)
    return support, labels, query


def method(**options):
    return create_method("finetune-transductive", create_backbone("conv4", in_channels=1, hidden=4), **options)


def reference(support, labels, query, config) -> torch.Tensor:
    """One episode at a time with torch.optim.Adam on the same objective and the same imprinted start."""
    out = []
    for e in range(E):
        s, q = F.normalize(support[e], dim=-1), F.normalize(query[e], dim=-1)
        means = torch.stack([s[labels[e] == c].mean(0) for c in range(WAYS)])
        weight = (config.temperature * F.normalize(means, dim=-1)).requires_grad_()
        bias = torch.zeros(WAYS, dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.Adam([weight, bias], lr=config.lr)
        for _ in range(config.steps):
            optimiser.zero_grad()
            episode_loss({"weight": weight, "bias": bias}, s, labels[e], q, config.entropy_weight).backward()
            optimiser.step()
        out.append((q @ weight.T + bias).detach())
    return torch.stack(out)


def test_batched_equals_one_episode_at_a_time_with_torch_adam():
    support, labels, query = episodes()
    m = method(steps=30)
    got = m.logits_from_features(support, labels, query, WAYS)
    assert got.shape == (E, WAYS * QUERIES, WAYS)
    torch.testing.assert_close(got, reference(support, labels, query, m.config), rtol=1e-9, atol=1e-9)


def test_the_entropy_term_lowers_the_query_entropy():
    support, labels, query = episodes(1)

    def entropy(weight: float) -> float:
        log_p = F.log_softmax(method(entropy_weight=weight).logits_from_features(support, labels, query, WAYS), -1)
        return float(-(log_p.exp() * log_p).sum(-1).mean())

    assert entropy(1.0) < 0.8 * entropy(0.0)


def test_queries_of_an_episode_inform_each_other_only_with_the_entropy_term():
    support, labels, query = episodes(2)
    moved = query.clone()
    moved[:, 1:] += 0.3 * torch.randn(moved[:, 1:].shape, generator=torch.Generator().manual_seed(3),
                                      dtype=torch.float64)
    for weight, linked in ((1.0, True), (0.0, False)):
        m = method(entropy_weight=weight)
        first = m.logits_from_features(support, labels, query, WAYS)[:, 0]
        again = m.logits_from_features(support, labels, moved, WAYS)[:, 0]
        assert torch.allclose(first, again, rtol=1e-12, atol=1e-12) != linked
