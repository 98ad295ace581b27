"""The linear probe with its L2 strength ``C`` chosen on data that is never the test data, two ways:

- ``linear-probe-val``: one ``C`` for a setting, the grid value with the best mean accuracy on seeded episodes (the
  test setting's ways and shots) of held-out classes, the ones the method learns from: hyper-parameters chosen on
  meta-validation classes, as episodic benchmarks do (Chen et al. 2019, "A Closer Look at Few-shot
  Classification"; Tian et al. 2020 choose their probe's settings on the validation split). The choice is the
  method's "training" (``train_kind = custom``): kept in its checkpoint and written to its record (``chosen_C``).
- ``linear-probe-cv`` (:mod:`fewshot.methods.linear_probe_cv`): per episode, by cross-validation within its own support set (each fold holds out the same
  shot positions of every class), the "true few-shot" model selection of Perez, Kiela & Cho 2021 ("True Few-Shot
  Learning with Language Models", NeurIPS): what the fixed intent sets, which have no validation classes, allow.
  It needs two or more shots of every class.

Ties go to the smallest ``C`` (the strongest penalty) of the grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot.core.errors import UsageError
from fewshot.core.hashing import sha256_json
from fewshot.data import ClassDataset, sample_episodes
from fewshot.methods.base import TrainKind, register_method
from fewshot.methods.linear_probe import LinearProbe, LinearProbeConfig, regression_logits
from fewshot.train.config import TrainConfig

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


@dataclass
class SelectedProbeConfig(LinearProbeConfig):
    grid: tuple[float, ...] = C_GRID   # the values of C tried, in increasing order
    folds: int = 5                     # linear-probe-cv: at most this many folds (at most the shots per class)


def probe_logits(support: Tensor, support_labels: Tensor, query: Tensor, ways: int,
                 config: SelectedProbeConfig) -> Tensor:
    """The probe's logits ``[G, E, Q, ways]`` for every ``C`` of ``config.grid`` (features as in ``LinearProbe``),
    fitted along the grid, each fit started from the previous one's solution."""
    if config.normalize:
        support, query = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
    return regression_logits(support, support_labels, query, ways, config.grid, config)


def grid_accuracies(logits: Tensor, labels: Tensor) -> Tensor:
    """Accuracy ``[G, E]`` of logits ``[G, E, Q, K]`` against labels ``[E, Q]``."""
    return (logits.argmax(-1) == labels).double().mean(-1)


def best_index(scores: Tensor) -> Tensor:
    """The grid position with the highest score along dim 0 (the first, i.e. the smallest C, on ties)."""
    return scores.argmax(0)


@register_method("linear-probe-val")
class ValidatedLinearProbe(LinearProbe):
    """Tian et al. 2020's probe with C chosen by mean accuracy on held-out episodes of the classes learned from.

    ``fit`` samples ``steps`` episodes (the test ways and shots, clipped to the classes there; ``queries`` per
    class) from the training split, seeded by the training seed, scores every C of the grid on them and keeps the
    best; test data is never seen. Untrained, it uses ``C``.
    """

    paper = ("Tian et al. 2020, Rethinking Few-Shot Image Classification (the probe); C chosen on validation "
             "classes as in Chen et al. 2019, A Closer Look at Few-shot Classification")
    train_kind = TrainKind.CUSTOM
    Config = SelectedProbeConfig

    def __init__(self, backbone: torch.nn.Module, config: Any | None = None, **kwargs: Any) -> None:
        super().__init__(backbone, config, **kwargs)
        self.register_buffer("chosen_C", torch.tensor(float(self.config.C), dtype=torch.float64))

    @classmethod
    def train_preset(cls, dataset: str, ways: int, shots: int) -> TrainConfig:
        # steps: selection episodes; meta_batch: episodes fitted at once.
        return TrainConfig(steps=200, ways=ways, shots=shots, queries=5, meta_batch=50)

    def train_loop(self, dataset: ClassDataset, config: TrainConfig, session: Any) -> float:
        C, scores = select_C(self, dataset, config, session.seed, session.device)
        self.chosen_C.fill_(C)
        return 1.0 - float(scores.max())     # the selection error of the chosen C

    def regularisation(self) -> float:
        return float(self.chosen_C)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "chosen_C": float(self.chosen_C)}


def select_C(method: LinearProbe, dataset: ClassDataset, config: TrainConfig, seed: int,
             device: torch.device | str = "cpu") -> tuple[float, Tensor]:
    """``(C, mean accuracy of each grid value)`` on ``config.steps`` episodes of ``dataset`` seeded ``seed``."""
    ways = min(config.ways, dataset.num_classes)
    queries = max(1, min(config.queries, int(dataset.class_counts.min()) - config.shots))
    if ways < 2 or queries < 1 or int(dataset.class_counts.min()) <= config.shots:
        raise UsageError(f"{dataset.name} cannot give {config.shots}-shot selection episodes of 2 or more classes "
                         f"(it has {dataset.num_classes}); learn from a split with more classes or examples")
    episodes = sample_episodes(dataset, ways, config.shots, queries, config.steps, seed=seed)
    features = frozen_features(method, dataset, device)
    scores = torch.zeros(len(method.config.grid), dtype=torch.float64)
    for lo in range(0, len(episodes), config.meta_batch):
        part = slice(lo, lo + config.meta_batch)
        support, query = features[episodes.support[part]], features[episodes.query[part]]
        labels = episodes.support_labels[part].to(support.device)
        logits = probe_logits(support, labels, query, ways, method.config)
        scores += grid_accuracies(logits, episodes.query_labels[part].to(support.device)).sum(1).cpu()
    scores /= len(episodes)
    return float(method.config.grid[int(best_index(scores))]), scores


_FEATURES: dict[str, Tensor] = {}   # features of whole selection sets, for the cells of one process


def frozen_features(method: LinearProbe, dataset: ClassDataset, device: torch.device | str,
                    batch: int = 256) -> Tensor:
    """Features ``[N, D]`` of every example of ``dataset``. A frozen encoder's (it has a
    ``feature_cache_identity``) are kept for this process, so the cells of one table embed a set once."""
    identity = getattr(method.backbone, "feature_cache_identity", None)
    key = sha256_json([identity, dataset.fingerprint()], 20) if identity is not None else None
    if key in _FEATURES:
        return _FEATURES[key].to(device)
    training = method.training
    method.eval()                     # features as the test episodes will see them (batch norm, dropout)
    with torch.no_grad():
        rows = torch.arange(len(dataset.labels))
        features = torch.cat([method.embed(dataset.gather(rows[i:i + batch], device))
                              for i in range(0, len(rows), batch)])
    method.train(training)
    if key is not None:
        _FEATURES[key] = features.cpu()
    return features
