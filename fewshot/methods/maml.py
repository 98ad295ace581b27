"""MAML (Finn, Abbeel & Levine, ICML 2017), first-order MAML and ANIL (Raghu et al., ICLR 2020), batched over tasks.

The tasks of a meta-batch (or test batch) adapt together: ``vmap`` over tasks (in device-sized chunks,
:mod:`fewshot.methods.per_task`) of ``torch.func.grad`` of a ``functional_call`` of the backbone, so per-task
weights carry a leading task dimension; only the inner steps loop.
Second-order MAML differentiates through the inner loop (``grad`` composes with the outer autograd); first-order
MAML detaches the inner gradients; ANIL adapts only the head, on features computed once per task.

Batch norm always uses the statistics of the batch it is given, never running statistics, as in Finn's code (its
``batch_norm`` is in training mode and the update ops never run): per task, the support in the inner loop and the
query batch for query predictions, in training and at test, so a query's logits depend on the other queries of its
episode (``transductive = True``). The constructor swaps each ``nn.BatchNorm1d/2d/3d`` of the backbone for
:class:`~fewshot.backbones.batch_stats.BatchStatNorm` (same parameters and state-dict keys, no running statistics), which applies scale and shift
outside ``F.batch_norm`` (:mod:`fewshot.backbones.batch_stats` says why). Unlike Finn's code, BN has a scale, BN
parameters are adapted with all others (as in learn2learn), and the head starts at zero (not random normal).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad

from fewshot.backbones.batch_stats import use_batch_statistics_
from fewshot.train.config import TrainConfig, dataset_family
from fewshot.methods.base import FewShotMethod, TrainKind, config_dict, register_method
from fewshot.methods.per_task import map_tasks

Params = dict[str, Tensor]


@dataclass
class MAMLConfig:
    """The inner loop; :meth:`MAML.method_preset` gives Finn et al.'s settings per dataset.

    The inner loss is the support cross-entropy summed over examples and divided by the shot count (``ways`` times
    the mean), as in Finn's code, so that ``inner_lr`` means what it did in the paper. The defaults are the
    ``synthetic`` preset: Finn's 5-way Omniglot step, but as many steps at test as in training, since after a short
    (CPU-sized) meta-training further steps hurt (synthetic 5-way 1-shot after 400 steps: 87% with 1 test step, 52%
    with 3). ``ways=None`` learns one head row shared by all classes (any number of ways, zero at the start); an
    integer learns a ``[ways, D]`` head as in the paper, and then only ``ways``-way episodes are accepted.
    ``tasks_per_call`` is how many tasks go through one ``vmap`` call (the same results up to rounding); ``None``
    chooses by device: every task on an accelerator, on a CPU as many as keep a call near 100 images, where Conv-4
    runs fastest (one task: a plain call, with batch norm's scale and shift fused).
    """

    inner_lr: float = 0.4
    train_inner_steps: int = 1
    test_inner_steps: int = 1
    ways: int | None = None
    tasks_per_call: int | None = None


class _MAMLBase(FewShotMethod):
    """Backbone + linear head; the initial weights of both are meta-learned (see the module docstring)."""

    train_kind = TrainKind.EPISODIC
    transductive = True
    eval_batch_size = 25
    tasks_independent = True        # batch norm per task: under torchrun the meta-batch splits over the ranks
    Config = MAMLConfig
    first_order: ClassVar[bool] = False     # detach the inner gradients (no second-order meta-gradient terms).
    #: Adapt only the head, on backbone features computed once per task (ANIL).
    head_only: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, config: MAMLConfig | None = None, **identity: Any) -> None:
        super().__init__(backbone, config, **identity)
        use_batch_statistics_(self.backbone)
        features = getattr(backbone, "out_features", None)
        if features is None:
            raise ValueError(f"{self.name}: the backbone must say its feature width (an `out_features` attribute)")
        self.head = nn.Linear(int(features), self.config.ways or 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def inner_steps(self) -> int:
        """Inner SGD steps now: the training steps in ``train()`` mode, the test steps in ``eval()`` mode."""
        return self.config.train_inner_steps if self.training else self.config.test_inner_steps

    def adapt(self, support: Tensor, support_labels: Tensor, ways: int, steps: int | None = None) -> Params:
        """Per-task weights ``{"backbone.<name>": [E, ...], "head.weight": [E, ways, D], "head.bias": [E, ways]}``
        (ANIL's backbone entries are the meta-parameters, expanded), differentiable when gradients are enabled."""
        body, head = self._initial(ways)
        steps = self.inner_steps() if steps is None else steps

        def task(xs: Tensor, ys: Tensor) -> Params:
            task_body, task_head = self._adapt_task(body, head, xs, ys, ways, steps, self.first_order)
            return {**{f"backbone.{k}": v for k, v in task_body.items()},
                    **{f"head.{k}": v for k, v in task_head.items()}}

        return map_tasks(task, support, support_labels, per_call=self.config.tasks_per_call)

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        """Logits ``[E, Q, ways]`` after adapting to each episode's support (batch-norm statistics per episode)."""
        steps = self.inner_steps()
        if not (self.training and torch.is_grad_enabled()):
            # Test-time adaptation: no graph back to the meta-parameters (torch.func.grad ignores the outer no_grad).
            with torch.no_grad():
                return self._logits(support, support_labels, query, ways, steps, first_order=True)
        return self._logits(support, support_labels, query, ways, steps, self.first_order)

    def train_identity(self) -> dict[str, Any]:
        config = config_dict(self.config)
        for key in ("test_inner_steps", "tasks_per_call"):  # they do not change the trained weights
            config.pop(key)
        return {"method": self.name, "config": config}

    def _logits(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int, steps: int,
                first_order: bool) -> Tensor:
        body, head = self._initial(ways)

        def task(xs: Tensor, ys: Tensor, xq: Tensor) -> Tensor:
            task_body, task_head = self._adapt_task(body, head, xs, ys, ways, steps, first_order)
            return _linear(self._features(task_body, xq), task_head)

        return map_tasks(task, support, support_labels, query, per_call=self.config.tasks_per_call)

    def _initial(self, ways: int) -> tuple[Params, Params]:
        if self.config.ways is not None and ways != self.config.ways:
            raise ValueError(f"{self.name} was built with a {self.config.ways}-way head but got a {ways}-way episode; "
                             f"build it with ways={ways} (or ways=None for a head shared by all classes)")
        head = {"weight": self.head.weight.expand(ways, -1), "bias": self.head.bias.expand(ways)}
        return dict(self.backbone.named_parameters()), head

    def _features(self, body: Params, images: Tensor) -> Tensor:
        return functional_call(self.backbone, body, (images,))

    def _adapt_task(self, body: Params, head: Params, xs: Tensor, ys: Tensor, ways: int, steps: int,
                    first_order: bool) -> tuple[Params, Params]:
        if self.head_only:
            features = self._features(body, xs)  # once per task: the backbone does not change in ANIL's inner loop
            step = grad(lambda h: ways * F.cross_entropy(_linear(features, h), ys))
            for _ in range(steps):
                head = _sgd(head, step(head), self.config.inner_lr, first_order)
            return body, head
        step = grad(lambda b, h: ways * F.cross_entropy(_linear(self._features(b, xs), h), ys), argnums=(0, 1))
        for _ in range(steps):
            grad_body, grad_head = step(body, head)
            body = _sgd(body, grad_body, self.config.inner_lr, first_order)
            head = _sgd(head, grad_head, self.config.inner_lr, first_order)
        return body, head

    @classmethod
    def method_preset(cls, dataset: str, ways: int, shots: int) -> MAMLConfig:
        """The inner loop for ``dataset``: Finn et al.'s (appendix A.1; cbfinn/maml ``main.py``), else the defaults."""
        family = dataset_family(dataset)
        if family == "omniglot":  # 5-way: 1 step of 0.4, 3 at test; 20-way: 5 steps of 0.1, at test too
            return MAMLConfig(0.4, 1, 3, ways) if ways <= 5 else MAMLConfig(0.1, 5, 5, ways)
        if family == "miniimagenet":
            return MAMLConfig(inner_lr=0.01, train_inner_steps=5, test_inner_steps=10, ways=ways)
        return MAMLConfig(ways=ways)

    @classmethod
    def train_preset(cls, dataset: str, ways: int, shots: int) -> TrainConfig:
        """Meta-training as in Finn et al. (Adam 1e-3, episodes of the test shape), steps sized for a CPU."""
        family = dataset_family(dataset)
        if family == "omniglot":  # Finn: 40k-60k steps; K queries per class; 32 tasks a step, 16 for 20-way
            return TrainConfig(steps=4000, lr=1e-3, ways=ways, shots=shots, queries=shots,
                               meta_batch=32 if ways <= 5 else 16)
        if family == "miniimagenet":  # Finn: 60k steps; 15 queries per class; 4 tasks a step, 2 for 5-shot
            return TrainConfig(steps=20000, lr=1e-3, ways=ways, shots=shots, queries=15,
                               meta_batch=4 if shots == 1 else 2)
        if family == "synthetic":  # 1-2 minutes on one CPU thread (64-filter Conv-4); fewer tasks as shots grow
            return TrainConfig(steps=150, lr=1e-3, ways=ways, shots=shots, queries=1, meta_batch=max(1, 4 // shots))
        return TrainConfig(steps=2000, lr=1e-3, ways=ways, shots=shots, queries=15, meta_batch=4)


def _linear(features: Tensor, head: Params) -> Tensor:
    return features @ head["weight"].transpose(-1, -2) + head["bias"]


def _sgd(params: Params, grads: Params, lr: float, first_order: bool) -> Params:
    return {k: p - lr * (grads[k].detach() if first_order else grads[k]) for k, p in params.items()}


@register_method("maml")
class MAML(_MAMLBase):
    """MAML: every parameter adapted in the inner loop; the meta-gradient differentiates through it (second order)."""

    paper = "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks"


@register_method("fomaml")
class FOMAML(_MAMLBase):
    """First-order MAML: as MAML, but the inner gradients are treated as constants in the meta-gradient."""

    paper = "Finn, Abbeel & Levine 2017, Model-Agnostic Meta-Learning (first-order approximation, section 5.2)"
    first_order = True


@register_method("anil")
class ANIL(_MAMLBase):
    """ANIL: only the head is adapted, on features computed once per task; second order through the head updates."""

    paper = "Raghu, Raghu, Bengio & Vinyals 2020, Rapid Learning or Feature Reuse? Towards Understanding MAML"
    head_only = True
