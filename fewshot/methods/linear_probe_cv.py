"""``linear-probe-cv``: the linear probe with ``C`` chosen per episode by cross-validation within its own support set
(Perez, Kiela & Cho 2021, "True Few-Shot Learning with Language Models"), and the pieces LP-FT starts from
(:func:`cross_validated_heads`). Ties go to the smallest ``C`` of the grid."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot.core.errors import UsageError
from fewshot.methods.base import register_method
from fewshot.methods.linear_probe import LinearProbe, fit_logistic_regression
from fewshot.methods.linear_probe_select import SelectedProbeConfig, best_index, grid_accuracies, probe_logits


@register_method("linear-probe-cv")
class CrossValidatedLinearProbe(LinearProbe):
    """Tian et al. 2020's probe with C chosen per episode by cross-validation within its support set (Perez et
    al. 2021): fold ``f`` of ``k = min(shots, folds)`` holds out every class's shots at positions ``f, f+k, ...``;
    the C with the best held-out accuracy summed over folds is then fitted on the whole support."""

    paper = ("Tian et al. 2020, Rethinking Few-Shot Image Classification (the probe); C by cross-validation on "
             "the support set as in Perez, Kiela & Cho 2021, True Few-Shot Learning with Language Models")
    Config = SelectedProbeConfig

    def __init__(self, backbone: torch.nn.Module, config: Any | None = None, **kwargs: Any) -> None:
        super().__init__(backbone, config, **kwargs)
        self.chosen = ChosenC()

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        weight, bias, C = cross_validated_heads(support, support_labels, ways, self.config)
        self.chosen.add(C)
        if self.config.normalize:
            query = F.normalize(query, dim=-1)
        return query @ weight.transpose(1, 2) + bias.unsqueeze(1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "chosen_C": self.chosen.describe()}


class ChosenC:
    """How many of the episodes scored so far chose each ``C``: a record's ``chosen_C`` (``{"30": 600}``)."""

    def __init__(self) -> None:
        self.counts: dict[float, int] = {}

    def add(self, chosen: Tensor) -> None:
        for C in chosen.tolist():
            self.counts[C] = self.counts.get(C, 0) + 1

    def describe(self) -> dict[str, int]:
        return {f"{C:g}": n for C, n in sorted(self.counts.items())}


def cross_validated_C(support: Tensor, support_labels: Tensor, ways: int, config: SelectedProbeConfig) -> Tensor:
    """``[E]``: each episode's ``C`` of ``config.grid`` with the best held-out accuracy summed over the folds of
    its own support set (fold ``f`` of ``k = min(shots, folds)`` holds out every class's shots at positions
    ``f, f+k, ...``); the smallest on ties. Needs the same number (2 or more) of shots of every class."""
    episodes, shots, dim = support.shape
    one_hot = F.one_hot(support_labels, ways)
    counts = one_hot.sum(1)
    present = counts[counts > 0]
    if present.min() < 2 or present.max() != present.min():
        raise UsageError("linear-probe-cv needs the same number (2 or more) of support examples of every class; "
                         "use linear-probe-val or linear-probe for 1-shot or unbalanced episodes")
    position = (one_hot.cumsum(1) * one_hot).sum(-1) - 1           # [E, S]: the example's rank in its class
    k = min(int(present.min()), config.folds)
    scores = support.new_zeros(len(config.grid), episodes, dtype=torch.float64)
    for f in range(k):
        held = position % k == f                                     # the same count in every episode
        fit_x, fit_y = support[~held].view(episodes, -1, dim), support_labels[~held].view(episodes, -1)
        out_x, out_y = support[held].view(episodes, -1, dim), support_labels[held].view(episodes, -1)
        scores += grid_accuracies(probe_logits(fit_x, fit_y, out_x, ways, config), out_y)
    return torch.tensor(config.grid, dtype=torch.float64)[best_index(scores).cpu()]


def cross_validated_heads(support: Tensor, support_labels: Tensor, ways: int,
                          config: SelectedProbeConfig) -> tuple[Tensor, Tensor, Tensor]:
    """``(weight [E, ways, D], bias [E, ways], C [E])``: each episode's probe, fitted on its whole support set (L2-
    normalised first if ``config.normalize``) with its :func:`cross_validated_C`."""
    chosen = cross_validated_C(support, support_labels, ways, config)
    if config.normalize:
        support = F.normalize(support, dim=-1)
    weight = support.new_empty(support.shape[0], ways, support.shape[-1])
    bias = support.new_empty(support.shape[0], ways)
    for C in chosen.unique().tolist():          # the final probes, fitted for each episode's chosen C only
        rows = torch.nonzero(chosen == C).flatten().to(support.device)
        weight[rows], bias[rows], _ = fit_logistic_regression(support[rows], support_labels[rows], ways, C,
                                                              config.fit_intercept, config.max_iter, config.tol)
    return weight, bias, chosen
