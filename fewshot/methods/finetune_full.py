"""Full fine-tuning (Chen et al. 2019): per episode a new head and every backbone weight trained on the support set,
on stacked per-episode copies of the backbone's weights (:func:`~fewshot.methods.finetune.episode_copies`), batched
with ``torch.func.vmap`` (one episode: plain calls). The head starts from Adam steps on the frozen features, or at
``linear-probe-cv``'s probe (LP-FT, Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad

from fewshot.backbones.text_encoders import trim_padding
from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.finetune import BatchedAdam, FineTuneConfig, Params, episode_copies, fit_heads, head_loss
from fewshot.methods.linear_probe_cv import ChosenC, cross_validated_heads
from fewshot.methods.linear_probe_select import SelectedProbeConfig
from fewshot.methods.per_task import per_episode


@dataclass
class FullFineTuneConfig:
    """Per-episode training of head and backbone: Adam for ``steps`` steps, a smaller rate for the backbone."""

    steps: int = 10
    lr: float = 0.01
    backbone_lr: float = 1e-4
    weight_decay: float = 1e-3
    head_warmup_steps: int = 100   # head-only steps on frozen features first, so the backbone sees a useful head
    # Where the head starts: "adam" (head_warmup_steps of Adam on the frozen features) or "probe-cv" (LP-FT, Kumar
    # et al. 2022: linear-probe-cv's logistic regression on the L2-normalised features, C chosen by cross-validation
    # in the support set; then head and backbone minimise that probe's own objective, CE + ||W||^2 / (2 C S)).
    head_init: str = "adam"
    # Support examples per backward pass (0: all at once); the step still uses the whole support's gradient,
    # summed over chunks, so a large encoder's full-batch step fits in memory (MPNet on 770 texts needs >20 GiB).
    grad_chunk: int = 0

    def __post_init__(self) -> None:
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {HEAD_INITS}, not {self.head_init!r}")


HEAD_INITS = ("adam", "probe-cv")


@register_method("finetune-full")
class FullFineTune(FewShotMethod):
    """Supervised pre-training, then per episode a linear head and all backbone weights trained on the support.

    Batch norm uses the running statistics from pre-training (eval mode) during adaptation: support sets of a few
    images give poor batch statistics, and eval-mode normalisation keeps episodes independent under ``vmap``.
    """

    paper = "Chen, Liu, Kira, Wang & Huang 2019, A Closer Look at Few-shot Classification (fine-tuning)"
    train_kind = TrainKind.SUPERVISED
    frozen_features = False
    eval_batch_size = 10
    Config = FullFineTuneConfig

    def __init__(self, backbone: torch.nn.Module, config: Any | None = None, **kwargs: Any) -> None:
        super().__init__(backbone, config, **kwargs)
        self.chosen = ChosenC()          # head_init "probe-cv": each episode's C, for the record

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        return {**described, "chosen_C": self.chosen.describe()} if self.config.head_init == "probe-cv" else described

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        self.backbone.eval()
        cfg = self.config
        episodes = support.shape[0]
        # Token ids: under vmap an encoder pads every text to the input's width; cut it to the longest text.
        support, query = trim_padding(support), trim_padding(query)
        _, copies, features = episode_copies(self.backbone, episodes)
        embed = per_episode(features, episodes)
        with torch.no_grad():
            start = embed(copies, support)
        probe = cfg.head_init == "probe-cv"
        if probe:
            weight, bias, C = cross_validated_heads(start, support_labels, ways, SelectedProbeConfig())
            self.chosen.add(C)
            head = {"weight": weight, "bias": bias}
            penalty = (1.0 / (C * support.shape[1])).to(start)            # [E]: the probe's L2 weight, per episode
        else:
            head = fit_heads(start, support_labels, ways,
                             FineTuneConfig(cfg.head_warmup_steps, cfg.lr, cfg.weight_decay))
            penalty = start.new_zeros(episodes)
        params = {**{f"backbone.{k}": v for k, v in copies.items()}, **{f"head.{k}": v for k, v in head.items()}}

        def feats_of(p: Params, inputs: Tensor) -> Tensor:
            feats = features({k[9:]: v for k, v in p.items() if k.startswith("backbone.")}, inputs)
            return F.normalize(feats, dim=-1) if probe else feats

        def loss(p: Params, images: Tensor, labels: Tensor, l2: Tensor, share: Tensor) -> Tensor:
            # share: this chunk's fraction of the support (1 unchunked); the penalty comes with the first chunk.
            head = {"weight": p["head.weight"], "bias": p["head.bias"]}
            return share * head_loss(head, feats_of(p, images), labels) + 0.5 * l2 * head["weight"].pow(2).sum()

        lrs = {k: cfg.backbone_lr if k.startswith("backbone.") else cfg.lr for k in params}
        optimiser = BatchedAdam(lrs, weight_decay=cfg.weight_decay)
        step_grads: Callable = per_episode(grad(loss), episodes)
        size = support.shape[1]
        chunk = cfg.grad_chunk if 0 < cfg.grad_chunk < size else size
        with torch.enable_grad():
            for _ in range(cfg.steps):
                grads: Params = {}
                for lo in range(0, size, chunk):
                    part = slice(lo, lo + chunk)
                    share = penalty.new_full((episodes,), (min(lo + chunk, size) - lo) / size)
                    g = step_grads(params, support[:, part], support_labels[:, part],
                                   penalty if lo == 0 else torch.zeros_like(penalty), share)
                    grads = {k: grads[k] + v for k, v in g.items()} if grads else g
                params = optimiser.step(params, grads)
        backbone_params = {k[9:]: v for k, v in params.items() if k.startswith("backbone.")}
        with torch.no_grad():
            q = embed(backbone_params, query)
            q = F.normalize(q, dim=-1) if probe else q
        return torch.einsum("eqd,ewd->eqw", q, params["head.weight"]) + params["head.bias"].unsqueeze(1)
