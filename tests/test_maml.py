"""MAML, first-order MAML and ANIL: batched meta-gradients against a per-task loop, adaptation, presets, divergence."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.backbones import create_backbone
from fewshot.data import ClassDataset, sample_episodes
from fewshot.methods import create_method, list_methods, method_class
from fewshot.train.loop import TrainConfig, TrainingDiverged, fit

WAYS, SHOTS, QUERIES, TASKS = 5, 2, 3, 3


@pytest.fixture(autouse=True)
def _seeded():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def make(name: str, *, ways: int | None = WAYS, hidden: int = 8, **options) -> nn.Module:
    """A tiny float64 method with a random (not zero) head, so that no gradient term vanishes by symmetry."""
    method = create_method(name, create_backbone("conv4", in_channels=1, image_size=28, hidden=hidden),
                           ways=ways, **options).double()
    nn.init.normal_(method.head.weight, std=0.3)
    nn.init.normal_(method.head.bias, std=0.3)
    return method


def tasks(n: int = TASKS):
    support = torch.rand(n, WAYS * SHOTS, 1, 28, 28, dtype=torch.float64)
    query = torch.rand(n, WAYS * QUERIES, 1, 28, 28, dtype=torch.float64)
    support_labels = torch.arange(WAYS).repeat_interleave(SHOTS).expand(n, -1).clone()
    query_labels = torch.arange(WAYS).repeat_interleave(QUERIES).expand(n, -1).clone()
    return support, support_labels, query, query_labels


def conv4(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Conv-4 written out with torch.nn.functional: BN always on the statistics of ``x``."""
    for i in range(0, len(params), 4):
        weight, bias, scale, shift = params[i:i + 4]
        x = F.batch_norm(F.conv2d(x, weight, bias, padding=1), None, None, scale, shift, training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return x.flatten(1)


def reference_meta_loss(method, support, support_labels, query, query_labels, steps: int) -> torch.Tensor:
    """The plain algorithm: one task at a time, inner steps with torch.autograd.grad, query loss averaged over tasks."""
    lr, first_order, head_only = method.config.inner_lr, method.first_order, method.head_only
    total = 0.0
    for e in range(support.shape[0]):
        body = list(method.backbone.parameters())
        head = [method.head.weight.expand(WAYS, -1), method.head.bias.expand(WAYS)]
        features = conv4(body, support[e])
        for _ in range(steps):
            if not head_only:
                features = conv4(body, support[e])
            loss = WAYS * F.cross_entropy(features @ head[0].T + head[1], support_labels[e])
            adapted = head if head_only else body + head
            grads = torch.autograd.grad(loss, adapted, create_graph=not first_order)
            adapted = [p - lr * g for p, g in zip(adapted, grads)]
            head = adapted[-2:]
            if not head_only:
                body = adapted[:-2]
        logits = conv4(body, query[e]) @ head[0].T + head[1]
        total = total + F.cross_entropy(logits, query_labels[e])
    return total / support.shape[0]


def meta_grads(method, loss):
    return torch.autograd.grad(loss, list(method.parameters()))


def test_registered_with_their_kind():
    assert {"maml", "fomaml", "anil"} <= set(list_methods())
    for name in ("maml", "fomaml", "anil"):
        cls = method_class(name)
        assert cls.train_kind == "episodic" and not cls.frozen_features and cls.transductive
        assert cls.default_backbone == "conv4" and cls.paper


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil"])
@pytest.mark.parametrize("ways", [WAYS, None])
@pytest.mark.parametrize("per_call", [None, 1, 2])  # None: the CPU rule (all 3 tasks of 25 images in one call)
def test_batched_meta_gradient_equals_per_task_loop(name, ways, per_call):
    method = make(name, ways=ways, train_inner_steps=2, tasks_per_call=per_call).train()
    support, support_labels, query, query_labels = tasks()
    batched = method.episode_loss(support, support_labels, query, query_labels, WAYS).mean()
    reference = reference_meta_loss(method, support, support_labels, query, query_labels, steps=2)
    torch.testing.assert_close(batched, reference, rtol=1e-10, atol=1e-12)
    for got, want in zip(meta_grads(method, batched), meta_grads(method, reference), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def test_first_and_second_order_meta_gradients_differ():
    second, first = make("maml"), make("fomaml")
    first.load_state_dict(second.state_dict())
    support, support_labels, query, query_labels = tasks()
    losses = [m.train().episode_loss(support, support_labels, query, query_labels, WAYS).mean()
              for m in (second, first)]
    torch.testing.assert_close(losses[0], losses[1])  # the same forward computation
    grads = [meta_grads(m, loss) for m, loss in zip((second, first), losses)]
    # The Hessian term changes the backbone's meta-gradient, not only by rounding.
    assert not torch.allclose(grads[0][0], grads[1][0], rtol=1e-3, atol=1e-6)


def test_anil_adapts_only_the_head():
    support, support_labels, _, _ = tasks()
    for name, body_moves in (("anil", False), ("maml", True)):
        method = make(name).eval()
        adapted = method.adapt(support, support_labels, WAYS, steps=2)
        for key, meta in method.backbone.named_parameters():
            assert adapted[f"backbone.{key}"].shape == (TASKS, *meta.shape)
            assert torch.equal(adapted[f"backbone.{key}"], meta.expand_as(adapted[f"backbone.{key}"])) != body_moves
        assert adapted["head.weight"].shape == (TASKS, WAYS, method.head.weight.shape[1])
        assert not torch.allclose(adapted["head.weight"], method.head.weight.expand(TASKS, -1, -1))


@pytest.mark.parametrize("name", ["maml", "anil"])
def test_batched_adaptation_equals_one_episode_at_a_time(name):
    method = make(name).eval()
    support, support_labels, query, _ = tasks(4)
    batched = method(support, support_labels, query, WAYS)
    assert batched.shape == (4, WAYS * QUERIES, WAYS) and not batched.requires_grad
    single = torch.cat([method(support[i:i + 1], support_labels[i:i + 1], query[i:i + 1], WAYS) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-10, atol=1e-10)


def test_test_steps_in_eval_mode_training_steps_in_train_mode():
    a = make("maml", train_inner_steps=1, test_inner_steps=3)
    b = make("maml", train_inner_steps=3, test_inner_steps=1)
    b.load_state_dict(a.state_dict())
    support, support_labels, query, _ = tasks(2)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(support, support_labels, query, WAYS),
                                   b.train()(support, support_labels, query, WAYS))
        assert not torch.allclose(a.eval()(support, support_labels, query, WAYS),
                                  a.train()(support, support_labels, query, WAYS))


def test_batch_norm_never_keeps_running_statistics():
    method = make("maml")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                   for m in method.modules())
    assert not [k for k in method.state_dict() if "running" in k or "num_batches" in k]


def test_head_size_must_match_the_episode():
    method = make("maml", ways=5).eval()
    support, support_labels, query, _ = tasks(1)
    with pytest.raises(ValueError, match="5-way head but got a 3-way episode"):
        method(support[:, :6], support_labels[:, :6] % 3, query, 3)
    shared = make("maml", ways=None).eval()  # one shared row: any number of ways
    assert shared(support[:, :6], support_labels[:, :6] % 3, query, 3).shape == (1, WAYS * QUERIES, 3)


def test_test_time_settings_do_not_key_the_checkpoint():
    data = tiny_dataset()

    def key(**options):
        return make("maml", **options).checkpoint_name(data.fingerprint(), TrainConfig(steps=2), seed=0)

    assert key(test_inner_steps=3) == key(test_inner_steps=10)
    assert key(test_inner_steps=3) != key(inner_lr=0.1)
    assert key() != make("fomaml").checkpoint_name(data.fingerprint(), TrainConfig(steps=2), seed=0)


def test_presets_follow_finn_et_al():
    cls = method_class("maml")
    omniglot, omniglot20, mini1, mini5 = (cls.train_preset("omniglot", 5, 1), cls.train_preset("omniglot", 20, 1),
                                          cls.train_preset("miniimagenet", 5, 1), cls.train_preset("miniimagenet", 5, 5))
    assert (omniglot.meta_batch, omniglot.lr, omniglot.optimizer, omniglot.ways) == (32, 1e-3, "adam", 5)
    assert (omniglot20.meta_batch, omniglot20.ways, mini1.meta_batch, mini5.meta_batch) == (16, 20, 4, 2)
    for args, inner in ((("omniglot", 5, 1), (0.4, 1, 3)), (("omniglot", 20, 5), (0.1, 5, 5)),
                        (("miniimagenet", 5, 1), (0.01, 5, 10)), (("synthetic", 5, 5), (0.4, 1, 1))):
        config = cls.method_preset(*args)
        assert (config.inner_lr, config.train_inner_steps, config.test_inner_steps) == inner
    assert cls.method_preset("omniglot", 5, 1).ways == 5  # the paper's [ways, D] head
    assert cls.train_preset("synthetic", 5, 5).steps * cls.train_preset("synthetic", 5, 5).meta_batch <= 600  # a CPU minute


def tiny_dataset(classes: int = 8, per_class: int = 4) -> ClassDataset:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (classes * per_class, 1, 28, 28), dtype=torch.uint8, generator=generator)
    return ClassDataset(images, torch.arange(classes).repeat_interleave(per_class), [f"c{i}" for i in range(classes)],
                        name="tiny")


def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    method = create_method("maml", create_backbone("conv4", hidden=8))
    original = method.episode_loss
    calls, saved = [], {}

    def loss_that_breaks_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            saved.update({p: p.read_bytes() for p in tmp_path.glob("*.partial.pt")})
            return original(*args) * float("nan")
        return original(*args)

    method.episode_loss = loss_that_breaks_at_step_3
    config = TrainConfig(steps=4, ways=5, shots=1, queries=1, meta_batch=2, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=r"became nan at step 3 of 4.*partial\.pt\) is left as it was"):
        fit(method, tiny_dataset(), config, checkpoint_dir=tmp_path, progress=False)
    assert len(saved) == 1
    for path, content in saved.items():
        assert path.read_bytes() == content
    assert not [p for p in tmp_path.glob("*.pt") if not p.name.endswith(".partial.pt")]


def test_huge_inner_learning_rate_diverges_with_a_clear_message():
    method = create_method("maml", create_backbone("conv4", hidden=8), inner_lr=1e39)  # overflows float32
    config = TrainConfig(steps=2, ways=5, shots=1, queries=1, meta_batch=2)
    with pytest.raises(TrainingDiverged, match="at step 1 of 2"):
        fit(method, tiny_dataset(), config, progress=False)


def test_meta_training_lowers_the_loss_on_a_tiny_dataset():
    data = tiny_dataset(classes=5, per_class=6)
    episodes = sample_episodes(data, 5, 1, 2, 8, seed=123)  # held-out seed: not the training episodes
    support, query = data.gather(episodes.support), data.gather(episodes.query)
    method = create_method("fomaml", create_backbone("conv4", hidden=8)).train()

    def loss() -> float:
        with torch.no_grad():
            return float(method.episode_loss(support, episodes.support_labels, query, episodes.query_labels, 5).mean())

    before = loss()
    fit(method, data, TrainConfig(steps=40, lr=3e-3, ways=5, shots=1, queries=2, meta_batch=4), progress=False)
    assert loss() < before


# -- interoperability: learn2learn ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["maml", "fomaml", "anil"])
def test_adaptation_and_meta_gradient_match_learn2learn(name):
    l2l = pytest.importorskip("learn2learn", reason="learn2learn is optional; this compares with "
                                                    "learn2learn.algorithms.MAML when it is installed")
    method = make(name, test_inner_steps=2)
    # learn2learn gets a stock Conv-4 (BN in training mode: batch statistics) holding the same weights.
    backbone = create_backbone("conv4", in_channels=1, image_size=28, hidden=8).double().train()
    backbone.load_state_dict(method.backbone.state_dict(), strict=False)
    head = nn.Linear(method.head.weight.shape[1], WAYS).double()
    head.load_state_dict(method.head.state_dict())
    support, support_labels, query, query_labels = tasks()
    lr, steps = method.config.inner_lr, method.config.test_inner_steps

    if name == "anil":  # learn2learn's ANIL recipe: features once per task, MAML on the head alone
        maml, embed = l2l.algorithms.MAML(head, lr=lr), backbone
    else:
        maml, embed = l2l.algorithms.MAML(nn.Sequential(backbone, head), lr=lr, first_order=name == "fomaml"), None
    meta_loss, logits = 0.0, []
    for e in range(TASKS):
        learner = maml.clone()
        support_in, query_in = (embed(support[e]), embed(query[e])) if embed else (support[e], query[e])
        for _ in range(steps):
            learner.adapt(WAYS * F.cross_entropy(learner(support_in), support_labels[e]))
        logits.append(learner(query_in))
        meta_loss = meta_loss + F.cross_entropy(logits[-1], query_labels[e]) / TASKS
    reference_params = list(backbone.parameters()) + list(head.parameters())
    want = torch.autograd.grad(meta_loss, reference_params)

    torch.testing.assert_close(method.eval()(support, support_labels, query, WAYS), torch.stack(logits).detach())
    trained = copy.deepcopy(method)
    trained.config.train_inner_steps = steps
    loss = trained.train().episode_loss(support, support_labels, query, query_labels, WAYS).mean()
    for got, expected in zip(meta_grads(trained, loss), want, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def test_tasks_per_call_keeps_a_cpu_call_near_100_images_and_batches_all_elsewhere():
    from fewshot.methods.per_task import tasks_per_call

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [tasks_per_call(32, n, cpu) for n in (80, 50, 25, 10, 2)] == [1, 2, 4, 10, 32]
    assert tasks_per_call(3, 25, cpu) == 3 and tasks_per_call(32, 80, cuda) == 32


def test_fused_batch_norm_affine_equals_the_separate_scale_and_shift():
    from fewshot.backbones.batch_stats import BatchStatNorm, fused_affine

    norm = BatchStatNorm(nn.BatchNorm2d(4)).double()
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    with fused_affine():
        fused = norm(x)
    torch.testing.assert_close(fused, norm(x), rtol=1e-12, atol=1e-12)
    assert not torch.equal(fused, F.batch_norm(x, None, None, training=True))
