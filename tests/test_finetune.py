"""Fine-tuning batched over episodes equals the same fine-tuning done one episode at a time."""
from __future__ import annotations

import pytest
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


def embed(backbone, images):
    """Features ``[E, N, D]`` of images ``[E, N, C, H, W]``."""
    return backbone(images.flatten(0, 1)).unflatten(0, images.shape[:2])


def test_lp_ft_starts_at_the_cross_validated_probe(blobs):
    """LP-FT with no fine-tuning step is linear-probe-cv itself; with steps, batched equals one episode at a time
    and the encoder's tuning moves the logits away from the probe's."""
    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, image_size=16, hidden=8).double().eval()
    eps = sample_episodes(blobs, 3, 4, 2, episodes=3, seed=0)
    support, query = blobs.gather(eps.support).double(), blobs.gather(eps.query).double()
    probe = create_method("linear-probe-cv", backbone)
    with torch.no_grad():
        expected = probe.logits_from_features(embed(backbone, support), eps.support_labels, embed(backbone, query), 3)
    untuned = create_method("finetune-full", backbone, head_init="probe-cv", steps=0)
    torch.testing.assert_close(untuned(support, eps.support_labels, query, 3), expected, rtol=1e-9, atol=1e-9)
    assert untuned.describe()["chosen_C"] == probe.describe()["chosen_C"] and \
        sum(untuned.describe()["chosen_C"].values()) == 3
    tuned = create_method("finetune-full", backbone, head_init="probe-cv", steps=3, lr=1e-3, backbone_lr=1e-3)
    batched = tuned(support, eps.support_labels, query, 3)
    single = torch.cat([tuned(support[e:e + 1], eps.support_labels[e:e + 1], query[e:e + 1], 3) for e in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-7, atol=1e-9)
    assert not torch.allclose(batched, expected, atol=1e-4)


def test_lp_ft_steps_descend_the_probes_objective(blobs):
    """LP-FT's head steps (the backbone's rate at 0) are torch.optim.Adam's on the probe's own objective, mean CE of
    the L2-normalised features + ||W||^2 / (2 C S), started at the CV probe."""
    from fewshot.methods.linear_probe_cv import cross_validated_heads
    from fewshot.methods.linear_probe_select import SelectedProbeConfig

    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, image_size=16, hidden=8).double().eval()
    eps = sample_episodes(blobs, 3, 4, 2, episodes=2, seed=0)
    support, query = blobs.gather(eps.support).double(), blobs.gather(eps.query).double()
    method = create_method("finetune-full", backbone, head_init="probe-cv", steps=4, lr=0.05, backbone_lr=0.0,
                           weight_decay=0.0)
    logits = method(support, eps.support_labels, query, 3)
    with torch.no_grad():
        s, q = F.normalize(embed(backbone, support), dim=-1), F.normalize(embed(backbone, query), dim=-1)
        weight, bias, C = cross_validated_heads(embed(backbone, support), eps.support_labels, 3, SelectedProbeConfig())
    for e in range(2):
        w, b = weight[e].clone().requires_grad_(), bias[e].clone().requires_grad_()
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(4):
            opt.zero_grad()
            objective = F.cross_entropy(s[e] @ w.T + b, eps.support_labels[e]) + w.pow(2).sum() / (2 * C[e] * 12)
            objective.backward()
            opt.step()
        # Near the optimum the gradients are tiny and Adam divides by them: equal up to ~1e-8, not 1e-12.
        torch.testing.assert_close(logits[e], (q[e] @ w.T + b).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head_init", ["adam", "probe-cv"])
def test_gradients_in_chunks_equal_the_whole_support_at_once(blobs, head_init):
    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, image_size=16, hidden=8).double().eval()
    eps = sample_episodes(blobs, 3, 4, 2, episodes=2, seed=0)
    support, query = blobs.gather(eps.support).double(), blobs.gather(eps.query).double()
    options = dict(head_init=head_init, steps=3, head_warmup_steps=5, lr=1e-2, backbone_lr=1e-3)
    whole = create_method("finetune-full", backbone, **options)(support, eps.support_labels, query, 3)
    chunked = create_method("finetune-full", backbone, grad_chunk=5, **options)(support, eps.support_labels, query, 3)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-8)


def test_unknown_head_init_is_refused():
    with pytest.raises(ValueError, match="head_init must be one of"):
        create_method("finetune-full", torch.nn.Identity(), head_init="random")
