"""Plain fine-tuning, the baseline every table compares against (Chen et al. 2019, "A Closer Look at Few-shot
Classification": Baseline).

The backbone is pre-trained with cross-entropy over all base classes (``train_kind = "supervised"``). Per test
episode a new linear head is trained on the support set: ``finetune`` keeps the backbone frozen (Chen's Baseline),
``finetune-full`` (:mod:`fewshot.methods.finetune_full`) also updates every backbone weight for a few steps. Both
are batched over episodes: the loss of a batch is the sum of per-episode losses and every episode has its own
parameters (for full fine-tuning, stacked copies of the backbone's weights driven through ``torch.func.vmap``), so
no episode influences another and no Python loop runs over episodes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from fewshot.methods.base import FewShotMethod, TrainKind, register_method

Params = dict[str, Tensor]


class BatchedAdam:
    """Adam over a dict of per-episode parameter tensors; element-wise, so episodes never interact."""

    def __init__(self, lr: dict[str, float], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0
        self.m: Params = {}
        self.v: Params = {}

    def step(self, params: Params, grads: Params) -> Params:
        self.t += 1
        b1, b2 = self.betas
        out = {}
        for k, p in params.items():
            g = grads[k] + self.weight_decay * p if self.weight_decay else grads[k]
            self.m[k] = b1 * self.m.get(k, torch.zeros_like(p)) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, torch.zeros_like(p)) + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            out[k] = p - self.lr[k] * m_hat / (v_hat.sqrt() + self.eps)
        return out


def episode_copies(module: torch.nn.Module,
                   episodes: int) -> tuple[Params, Params, Callable[[Params, Tensor], Tensor]]:
    """``(base, copies, features)``: ``module``'s parameters (detached), ``episodes`` stacked copies of them (a
    leading episode dimension, each episode's to change) and ``features(params, inputs)``, the module run with the
    given parameters and its own buffers (``functional_call``), to ``vmap`` over episodes."""
    base = {k: v.detach() for k, v in module.named_parameters()}
    buffers = dict(module.named_buffers())
    copies = {k: v.unsqueeze(0).expand(episodes, *v.shape).clone() for k, v in base.items()}

    def features(params: Params, inputs: Tensor) -> Tensor:
        return functional_call(module, (params, buffers), (inputs,))

    return base, copies, features


def head_loss(head: Params, features: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of one episode's linear head on its support features ``[S, D]``."""
    return F.cross_entropy(features @ head["weight"].T + head["bias"], labels)


def padded_head_loss(head: Params, features: Tensor, labels: Tensor, present: Tensor) -> Tensor:
    """:func:`head_loss` of a padded episode: rows labelled ``-1`` left out, and the classes it lacks
    (``present [ways]`` False) out of the softmax, so their head rows get no gradient and stay zero: the loss, and
    so the head, of the episode unpadded."""
    logits = (features @ head["weight"].T + head["bias"]).masked_fill(~present, float("-inf"))
    return F.cross_entropy(logits, labels, ignore_index=-1)


def present_classes(labels: Tensor, ways: int) -> Tensor:
    """``[E, ways]``: which classes have a support row in each episode (rows labelled ``-1`` are padding)."""
    present = labels.new_zeros(labels.shape[0], ways + 1, dtype=torch.bool)
    present.scatter_(1, (labels + 1).clamp_min(0), True)      # padding lands in column 0, dropped
    return present[:, 1:]


def zero_heads(episodes: int, ways: int, dim: int, like: Tensor) -> Params:
    # A zero start makes the result independent of any random draw (the problem is convex in the head).
    return {"weight": like.new_zeros(episodes, ways, dim), "bias": like.new_zeros(episodes, ways)}


@dataclass
class FineTuneConfig:
    """Per-episode training of the new head: Adam, ``steps`` full-batch steps on the support set."""

    steps: int = 100
    lr: float = 0.01
    weight_decay: float = 1e-3


@register_method("finetune")
class FineTune(FewShotMethod):
    """Chen et al. 2019's Baseline: supervised pre-training, then a linear head per episode on frozen features."""

    paper = "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification (Baseline)"
    train_kind = TrainKind.SUPERVISED
    frozen_features = True
    takes_masks = True
    eval_batch_size = 100
    Config = FineTuneConfig

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        head = fit_heads(support, support_labels, ways, self.config)
        return torch.einsum("eqd,ewd->eqw", query, head["weight"]) + head["bias"].unsqueeze(1)


def fit_heads(support: Tensor, support_labels: Tensor, ways: int, config: FineTuneConfig) -> Params:
    """One linear head per episode ``{weight: [E, ways, D], bias: [E, ways]}`` trained on the support features;
    padded episodes (support rows labelled ``-1``) are trained as if unpadded (:func:`padded_head_loss`)."""
    support = support.detach()
    loss, inputs = head_loss, (support, support_labels)
    if bool((support_labels < 0).any()):
        loss, inputs = padded_head_loss, (*inputs, present_classes(support_labels, ways))
    return train_heads(zero_heads(support.shape[0], ways, support.shape[-1], support), loss, inputs,
                       config.steps, config.lr, config.weight_decay)


def train_heads(head: Params, loss: Callable[..., Tensor], inputs: tuple[Tensor, ...], steps: int, lr: float,
                weight_decay: float = 0.0) -> Params:
    """``steps`` full-batch :class:`BatchedAdam` steps of per-episode heads ``head`` (leading dimension E) on
    ``loss(one_head, *one_episode_inputs)``, ``vmap``-ped over episodes."""
    optimiser = BatchedAdam({k: lr for k in head}, weight_decay=weight_decay)
    head_grads = vmap(grad(loss))
    for _ in range(steps):
        head = optimiser.step(head, head_grads(head, *inputs))
    return head
