"""Fine-tuning batched over episodes equals the same fine-tuning done one episode at a time."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fewshot.backbones import create_backbone
from fewshot.data import sample_episodes
from fewshot.methods import create_method
from fewshot.methods.finetune import FineTuneConfig, fit_heads


def adam_head_reference(features, labels, ways, cfg: FineTuneConfig):
    """One episode, written with torch.optim.Adam and an nn.Linear head, as a user would."""
    head = torch.nn.Linear(features.shape[-1], ways, dtype=features.dtype)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        opt.zero_grad()
        F.cross_entropy(head(features), labels).backward()
        opt.step()
    return head


def test_head_only_batched_matches_torch_optim_per_episode():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(5, 10, 16, generator=g, dtype=torch.float64)
    labels = torch.arange(5).repeat_interleave(2).expand(5, -1)
    query = torch.randn(5, 7, 16, generator=g, dtype=torch.float64)
    cfg = FineTuneConfig(steps=30, lr=0.05, weight_decay=1e-3)
    method = create_method("finetune", torch.nn.Identity(), steps=30, lr=0.05, weight_decay=1e-3)
    logits = method.logits_from_features(features, labels, query, 5)
    batched = fit_heads(features, labels, 5, cfg)
    for e in range(5):
        ref = adam_head_reference(features[e], labels[e], 5, cfg)
        torch.testing.assert_close(batched["weight"][e], ref.weight.detach(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(logits[e], ref(query[e]).detach(), rtol=1e-9, atol=1e-12)


def test_full_finetuning_batched_equals_one_episode_at_a_time(blobs):
    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, image_size=16, hidden=8).double()
    method = create_method("finetune-full", backbone, steps=3, head_warmup_steps=5).double()
    eps = sample_episodes(blobs, 3, 2, 2, episodes=4, seed=0)
    support, query = blobs.gather(eps.support).double(), blobs.gather(eps.query).double()
    batched = method(support, eps.support_labels, query, 3)
    single = torch.cat([method(support[e:e + 1], eps.support_labels[e:e + 1], query[e:e + 1], 3) for e in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-7, atol=1e-9)
    # ...and adapting the backbone really changes the predictions compared with the frozen-feature head.
    frozen = create_method("finetune", backbone, steps=5).double()
    with torch.no_grad():
        frozen_logits = frozen(support, eps.support_labels, query, 3)
    assert not torch.allclose(batched, frozen_logits, atol=1e-6)


def test_full_finetuning_leaves_the_pretrained_backbone_untouched(blobs):
    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, image_size=16, hidden=8)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    method = create_method("finetune-full", backbone, steps=2, head_warmup_steps=2)
    eps = sample_episodes(blobs, 3, 1, 2, episodes=2, seed=0)
    method(blobs.gather(eps.support), eps.support_labels, blobs.gather(eps.query), 3)
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_per_episode_plain_call_equals_vmap_for_one_episode():
    from torch.func import grad, vmap

    from fewshot.methods.per_task import per_episode

    g = torch.Generator().manual_seed(1)
    params = {"w": torch.randn(1, 4, 3, generator=g, dtype=torch.float64),
              "b": torch.randn(1, 3, generator=g, dtype=torch.float64)}
    x = torch.randn(1, 6, 4, generator=g, dtype=torch.float64)

    def loss(p, inputs):
        return (inputs @ p["w"] + p["b"]).tanh().square().sum()

    plain, mapped = per_episode(grad(loss), 1)(params, x), vmap(grad(loss))(params, x)
    assert plain.keys() == mapped.keys() and all(plain[k].shape == params[k].shape for k in plain)
    for k in plain:
        torch.testing.assert_close(plain[k], mapped[k], rtol=1e-12, atol=1e-14)
    assert per_episode(loss, 1)(params, x).shape == (1,)
