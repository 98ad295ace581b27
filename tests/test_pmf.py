"""P>M>F: the cosine ProtoNet, the DiffAugment augmentations, and the batched test-time fine-tuning against a
per-episode torch.optim reference."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fewshot.backbones import create_backbone
from fewshot.core.errors import UsageError
from fewshot.data import sample_episodes
from fewshot.data.augment import diff_augment, translate
from fewshot.methods import create_method
from fewshot.methods.episode_seeds import episode_generator
from fewshot.train import TrainConfig

from conftest import blob_dataset

BLOBS = blob_dataset(classes=8, per_class=6)


def tiny_pmf(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    method = create_method("pmf", create_backbone("conv4", in_channels=1, image_size=16, hidden=8), **options)
    with torch.no_grad():                       # not the starting values, so that a test sees them used
        method.scale.fill_(7.0)
        method.bias.fill_(0.25)
    return method.double().eval()


def episodes(count: int = 3, ways: int = 3, shots: int = 2, seed: int = 0):
    eps = sample_episodes(BLOBS, ways, shots, 4, episodes=count, seed=seed)
    return BLOBS.gather(eps.support).double(), eps.support_labels, BLOBS.gather(eps.query).double()


def test_translate_moves_each_image_and_zero_fills():
    images = torch.arange(2 * 2 * 8 * 8, dtype=torch.float64).view(2, 2, 8, 8) + 1
    moved = translate(images, torch.Generator().manual_seed(3))
    for n in range(2):   # find the shift that explains the output, from the reference definition
        found = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
                 if torch.equal(moved[n], shifted(images[n], dy, dx))]
        assert len(found) == 1, n
    assert moved.shape == images.shape


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[:, i, j] = image[:, i + dy, j + dx]`` where that pixel exists, else 0."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i + dy < h and 0 <= j + dx < w:
                out[:, i, j] = image[:, i + dy, j + dx]
    return out


def test_diff_augment_is_seeded_and_respects_its_probability():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = diff_augment(images, torch.Generator().manual_seed(5))
    b = diff_augment(images, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, diff_augment(images, torch.Generator().manual_seed(6)))
    assert torch.equal(diff_augment(images, torch.Generator().manual_seed(5), prob=0.0), images)
    # With probability 1 every call augments: no output equals its input.
    g = torch.Generator().manual_seed(1)
    assert all(not torch.equal(diff_augment(images, g, prob=1.0), images) for _ in range(20))


def test_lr_zero_is_the_cosine_protonet():
    method = tiny_pmf(lr=0.0)
    support, labels, query = episodes()
    with torch.no_grad():
        logits = method(support, labels, query, 3)
        s, q = method.embed(support), method.embed(query)
    for e in range(3):
        means = torch.stack([s[e][labels[e] == c].mean(0) for c in range(3)])
        expected = 7.0 * (F.cosine_similarity(q[e][:, None], means[None], dim=-1) + 0.25)
        torch.testing.assert_close(logits[e], expected)


def reference_logits(method, support, labels, query, ways: int) -> torch.Tensor:
    """One episode at a time, as the authors' ProtoNet_Finetune: a copy of the backbone, torch.optim.Adam, the
    same augmentations (the episode's generator)."""
    cfg = method.config
    out = []
    for e in range(support.shape[0]):
        backbone = copy.deepcopy(method.backbone).eval()
        optimiser = torch.optim.Adam(backbone.parameters(), lr=cfg.lr)
        g = episode_generator(cfg.seed, support[e], labels[e])
        one_hot = F.one_hot(labels[e], ways).double()

        def classify(images, support_images):
            protos = one_hot.T @ backbone(support_images) / one_hot.sum(0)[:, None]
            return 7.0 * (F.normalize(backbone(images), dim=-1) @ F.normalize(protos, dim=-1).T + 0.25)

        for _ in range(cfg.steps):
            optimiser.zero_grad()
            F.cross_entropy(classify(diff_augment(support[e], g, cfg.aug_prob), support[e]), labels[e]).backward()
            optimiser.step()
        with torch.no_grad():
            out.append(classify(query[e], support[e]))
    return torch.stack(out)


def test_fine_tuning_equals_a_per_episode_torch_optim_reference():
    method = tiny_pmf(steps=6, lr=1e-3)
    support, labels, query = episodes()
    before = copy.deepcopy(method.state_dict())
    with torch.no_grad():
        logits = method(support, labels, query, 3)
        untuned = create_method("pmf", method.backbone, lr=0.0).double().eval()
        untuned.load_state_dict(method.state_dict())
        plain = untuned(support, labels, query, 3)
    torch.testing.assert_close(logits, reference_logits(method, support, labels, query, 3), rtol=1e-9, atol=1e-9)
    assert (logits - plain).abs().max() > 1e-3          # the tuning changed the predictions
    for key, value in method.state_dict().items():        # and only the per-episode copies
        assert torch.equal(value, before[key]), key


def test_test_time_options_do_not_key_the_checkpoint():
    config = TrainConfig(steps=3)
    a, b = tiny_pmf(), tiny_pmf(steps=5, lr=0.0, seed=3)
    assert a.checkpoint_name("fp", config, 0) == b.checkpoint_name("fp", config, 0)
    protonet = create_method("protonet", create_backbone("conv4", in_channels=1, image_size=16, hidden=8))
    assert a.checkpoint_name("fp", config, 0) != protonet.checkpoint_name("fp", config, 0)


def test_meta_training_learns_the_scale_and_bias():
    """The episodic loss reaches scale and bias: one training step moves them."""
    method = tiny_pmf().float().train()
    eps = sample_episodes(BLOBS, 3, 2, 2, episodes=2, seed=0)
    loss = method.episode_loss(BLOBS.gather(eps.support), eps.support_labels, BLOBS.gather(eps.query),
                               eps.query_labels, 3).mean()
    loss.backward()
    assert method.scale.grad is not None and method.scale.grad.abs() > 0
    assert method.bias.grad is not None and method.bias.grad.abs() > 0


def test_token_ids_need_lr_zero():
    method = tiny_pmf()
    tokens = torch.zeros(1, 2, 5, dtype=torch.long)
    with pytest.raises(UsageError, match="lr=0"):
        method(tokens, torch.tensor([[0, 1]]), tokens, 2)


def test_meta_trained_on_real_omniglot_well_above_chance_and_batched_as_alone(shared_data):
    """60 steps of meta-training on real Omniglot: the cosine ProtoNet (lr 0) far above chance; the fine-tuned
    predictions the same in one batch as one episode at a time, and still far above chance."""
    from fewshot.data import load_dataset
    from fewshot.evaluate.harness import evaluate
    from fewshot.train.loop import fit

    train = load_dataset("omniglot", "train", root=shared_data)
    test = load_dataset("omniglot", "test", root=shared_data)
    eps = sample_episodes(test, ways=5, shots=1, queries=5, episodes=20, seed=0)
    torch.manual_seed(0)
    method = create_method("pmf", create_backbone("conv4"), lr=0.0)
    fit(method, train, TrainConfig(steps=60, ways=20, shots=1, queries=5), seed=0, progress=False)
    assert float(method.scale.detach()) != 10.0         # meta-training moved the head's temperature
    plain = evaluate(method, test, eps, device="cpu", progress=False)
    assert plain.summary.mean > 0.75, plain.summary          # chance is 0.20
    method.config.lr, method.config.steps = 1e-4, 10
    batched = evaluate(method, test, eps, device="cpu", batch_size=10, progress=False)
    alone = evaluate(method, test, eps, device="cpu", batch_size=1, progress=False)
    torch.testing.assert_close(torch.tensor(batched.accuracies), torch.tensor(alone.accuracies), rtol=0, atol=1e-9)
    assert batched.summary.mean > 0.7, batched.summary
    assert not torch.equal(torch.tensor(batched.accuracies), torch.tensor(plain.accuracies))
