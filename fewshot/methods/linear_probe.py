"""Linear probe (Tian, Wang, Krishnan, Tenenbaum & Isola, ECCV 2020, "Rethinking Few-Shot Image Classification: a
Good Embedding Is All You Need?"): multinomial logistic regression on L2-normalised frozen features, per episode.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot.methods.base import FewShotMethod, TrainKind, register_method


@dataclass
class LinearProbeConfig:
    C: float = 1.0                 # inverse L2 strength, as scikit-learn's (Tian et al. use C = 1)
    fit_intercept: bool = True     # the intercept is not penalised, as in scikit-learn
    normalize: bool = True         # L2-normalise features first
    max_iter: int = 100            # Newton iterations
    tol: float = 1e-8              # stop when every episode's gradient (max-abs, mean-loss scale) is below this


@torch.no_grad()
def fit_logistic_regression(features: Tensor, labels: Tensor, ways: int, C: float = 1.0, fit_intercept: bool = True,
                            max_iter: int = 100, tol: float = 1e-8,
                            start: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, int]:
    """Multinomial logistic regression for a batch of episodes, all at once; exactly scikit-learn's problem.

    Minimises ``C * sum_i CE(W x_i + b, y_i) + ||W||^2 / 2`` for each episode (``features [E, S, D]``, ``labels
    [E, S]`` in ``0..ways-1``) and returns ``W [E, ways, D]``, ``b [E, ways]`` (summing to zero; zeros without
    ``fit_intercept``) and the Newton iterations used. The optimum lies in the span of the support features, so
    each episode is solved in the ``min(S, D)`` coordinates of an orthonormal basis of that span (QR) by Newton's
    method in float64: steps from Jacobi-preconditioned conjugate gradients on Hessian-vector products, with
    backtracking, until every episode's gradient of ``CE.mean() + ||W||^2 / (2 C S)`` is below ``tol`` (max-abs).
    ``start``: ``(W, b)`` to start from (the solution for a nearby ``C``, say), else zeros; the optimum is the same.
    """
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    x = features.double()
    episodes, shots = labels.shape
    basis = torch.linalg.qr(x.transpose(1, 2)).Q                           # [E, D, r] orthonormal, spans x
    z = x @ basis                                                          # [E, S, r] coordinates in the span
    width = z.shape[-1]
    if fit_intercept:
        z = torch.cat([z, z.new_ones(episodes, shots, 1)], dim=-1)         # [E, S, P]
    y = F.one_hot(labels, ways).double()                                   # [E, S, K]
    lam = 1.0 / (C * shots)                                                # the objective divided by C * S
    penalised = torch.zeros(z.shape[-1], dtype=x.dtype, device=x.device)
    penalised[:width] = 1.0
    # Shifting every class's intercept by one constant changes nothing. Adding that direction (u u^T) to the
    # Hessian makes it positive definite; the gradient is orthogonal to u, so the step is unchanged otherwise.
    u = torch.zeros(ways, z.shape[-1], dtype=x.dtype, device=x.device)
    if fit_intercept:
        u[:, -1] = ways ** -0.5

    def loss(theta: Tensor) -> Tensor:                                     # theta [E, K, P] -> [E]
        logits = z @ theta.transpose(1, 2)
        ce = torch.logsumexp(logits, -1) - (logits * y).sum(-1)
        return ce.mean(1) + 0.5 * lam * (theta.pow(2) * penalised).sum((1, 2))

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum((1, 2))

    theta = x.new_zeros(episodes, ways, z.shape[-1])
    if start is not None:                                                  # W's coordinates in the basis: W Q
        theta[..., :width] = start[0].double() @ basis
        if fit_intercept:
            theta[..., -1] = start[1].double()
    value = loss(theta)
    iterations = 0
    while True:
        p = torch.softmax(z @ theta.transpose(1, 2), -1)                   # [E, S, K]
        grad = (p - y).transpose(1, 2) @ z / shots + lam * theta * penalised
        if grad.abs().amax() < tol:
            break
        if iterations == max_iter:
            warnings.warn(f"logistic regression stopped after {max_iter} Newton iterations with a gradient of "
                          f"{grad.abs().amax().item():.2e} (tol {tol:g})")
            break
        iterations += 1

        def hvp(v: Tensor) -> Tensor:                                      # Hessian times v [E, K, P]
            dz = z @ v.transpose(1, 2)                                     # [E, S, K]
            w = p * (dz - (p * dz).sum(-1, keepdim=True))
            return w.transpose(1, 2) @ z / shots + lam * v * penalised + u * dot(u.expand_as(v), v).view(-1, 1, 1)

        diag = (p * (1 - p)).transpose(1, 2) @ z.pow(2) / shots + lam * penalised + u.pow(2)
        step = _conjugate_gradients(hvp, -grad, diag, tolerance=grad.flatten(1).norm(dim=1).clamp(max=1).pow(1.5),
                                    max_iter=grad[0].numel())
        slope = dot(grad, step)                                            # < 0: a descent direction
        t = torch.ones_like(value)
        for _ in range(40):                                                # backtracking, per episode
            trial = loss(theta + t.view(-1, 1, 1) * step)
            accept = trial <= value + 1e-4 * t * slope
            if accept.all():
                break
            t = torch.where(accept, t, t / 2)
        theta = theta + t.view(-1, 1, 1) * step
        value = loss(theta)
    weight = theta[..., :width] @ basis.transpose(1, 2)                   # [E, K, D]
    bias = theta[..., -1] if fit_intercept else theta.new_zeros(episodes, ways)
    bias = bias - bias.mean(-1, keepdim=True)                              # the shift is free; report sum zero
    return weight.to(features.dtype), bias.to(features.dtype), iterations


def _conjugate_gradients(hvp, rhs: Tensor, diag: Tensor, tolerance: Tensor, max_iter: int) -> Tensor:
    """Solve ``H x = rhs`` for a batch of positive definite ``H`` (given as ``hvp``), Jacobi-preconditioned,
    until each residual's norm is below ``tolerance`` (per episode) or after ``max_iter`` iterations."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    s = r / diag
    d = s.clone()
    rs = (r * s).sum((1, 2))
    for _ in range(max_iter):
        active = r.flatten(1).norm(dim=1) > tolerance
        if not active.any():
            break
        hd = hvp(d)
        curvature = (d * hd).sum((1, 2))
        alpha = torch.where(active, rs / curvature.clamp_min(1e-300), torch.zeros_like(rs)).view(-1, 1, 1)
        x = x + alpha * d
        r = r - alpha * hd
        s = r / diag
        rs_new = (r * s).sum((1, 2))
        d = s + (rs_new / rs.clamp_min(1e-300)).view(-1, 1, 1) * d
        rs = rs_new
    return x


@register_method("linear-probe")
class LinearProbe(FewShotMethod):
    """Tian et al. 2020: a logistic-regression probe, fitted on each episode's support, on frozen features.

    No training on the base classes (the backbone is a pretrained foundation model); features are L2-normalised
    and the probe is scikit-learn's multinomial ``LogisticRegression(C=C)`` solved for all episodes at once.
    """

    paper = "Tian et al. 2020, Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need?"
    train_kind = TrainKind.NONE
    frozen_features = True
    default_backbone = "efficientnet_lite0"
    Config = LinearProbeConfig

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        if self.config.normalize:
            support, query = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
        return regression_logits(support, support_labels, query, ways, self.regularisation(), self.config)

    def regularisation(self) -> float:
        """The inverse L2 strength ``C`` the episodes are fitted with."""
        return float(self.config.C)


def regression_logits(support: Tensor, support_labels: Tensor, query: Tensor, ways: int, C: float | Sequence[float],
                      config: LinearProbeConfig) -> Tensor:
    """Query logits ``[E, Q, ways]`` of the logistic regression with strength ``C`` fitted on each episode's support
    (features used as given); for a sequence of ``C``, ``[G, E, Q, ways]``, one per value, each fit started from
    the previous value's solution (far fewer Newton steps along an increasing grid)."""
    grid = [float(C)] if isinstance(C, (int, float)) else [float(c) for c in C]
    out, start = [], None
    for value in grid:
        weight, bias, _ = fit_logistic_regression(support, support_labels, ways, value, config.fit_intercept,
                                                  config.max_iter, config.tol, start)
        start = weight, bias
        out.append(query @ weight.transpose(1, 2) + bias.unsqueeze(1))
    return out[0] if isinstance(C, (int, float)) else torch.stack(out)


@register_method("rfs")
class RFSimple(LinearProbe):
    """Tian et al. 2020's RFS-simple: the suite's supervised pre-training (shared with the Baseline), then the
    logistic-regression probe on L2-normalised features of that backbone."""

    paper = "Tian et al. 2020, Rethinking Few-Shot Image Classification: a Good Embedding Is All You Need? (simple)"
    train_kind = TrainKind.SUPERVISED
    default_backbone = "conv4"
