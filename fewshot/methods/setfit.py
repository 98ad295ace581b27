"""SetFit (Tunstall, Reimers, Jo, Bates, Korat, Wasserblat & Pereg 2022, "Efficient Few-Shot Learning Without
Prompts"): per episode, contrastive fine-tuning of the sentence encoder on pairs of its support sentences, then a
logistic-regression head on the tuned encoder's features.

Batched over episodes: every episode has its own copy of the encoder's weights, stacked and trained with
``torch.func.vmap(grad(functional_call))`` (Hugging Face BERT runs under vmap once its attention mask comes
prepared, see :class:`~fewshot.backbones.text_encoders.SentenceEncoder`); the shared encoder is never changed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap

from fewshot.backbones.text_encoders import trim_padding
from fewshot.core.errors import UsageError
from fewshot.methods.base import FewShotMethod, TrainKind, register_method
from fewshot.methods.episode_seeds import episode_generator
from fewshot.methods.finetune import BatchedAdam, Params, episode_copies
from fewshot.methods.linear_probe import LinearProbeConfig, regression_logits


@dataclass
class SetFitConfig:
    """The SetFit library's defaults, with fewer pair rounds so that an episode takes seconds on a CPU core.

    ``num_iterations`` rounds each give every support sentence one positive (same class) and one negative partner:
    ``2 * num_iterations * S`` pairs (library default 20 rounds; 5 here). Then ``epochs`` passes (1, as the
    library) in batches of ``batch_size`` pairs (16, as the library) at learning rate ``lr`` (2e-5, the library's
    body rate), cut to ``max_steps`` when positive. Plain Adam at a constant rate (the library: AdamW with 10%
    warm-up). The head: L2-normalised features, logistic regression with inverse strength ``C`` (1, scikit-learn's
    default, as the library's head).
    """

    num_iterations: int = 5
    batch_size: int = 16
    epochs: int = 1
    max_steps: int = 0
    lr: float = 2e-5
    C: float = 1.0
    seed: int = 0


def sample_pairs(labels: Tensor, iterations: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs of one episode's support ``labels [S]``: ``(first [P], second [P], target [P])``, ``P = 2 * iterations
    * S``, target 1 for a positive pair and 0 for a negative, in a shuffled order.

    Per round each sentence gets a partner drawn uniformly from the other sentences of its class (itself in a
    1-shot episode, as SetFit's pair generation) and one from the other classes."""
    labels = labels.cpu()
    shots = labels.shape[0]
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(shots, dtype=torch.bool)
    positive = torch.where(positive.any(1, keepdim=True), positive, same).double()
    negative = (~same).double()
    anchors = torch.arange(shots)
    first, second, target = [], [], []
    for _ in range(iterations):
        for partners, value in ((positive, 1.0), (negative, 0.0)):
            first.append(anchors)
            second.append(torch.multinomial(partners, 1, generator=generator).squeeze(1))
            target.append(torch.full((shots,), value))
    order = torch.randperm(2 * iterations * shots, generator=generator)
    return torch.cat(first)[order], torch.cat(second)[order], torch.cat(target)[order]


@register_method("setfit")
class SetFit(FewShotMethod):
    """Tunstall et al. 2022's SetFit: contrastive fine-tuning of a copy of the sentence encoder on the support
    set's pairs (cosine-similarity loss: mean squared error between the pair's cosine and its 1 / 0 target, as
    sentence-transformers' ``CosineSimilarityLoss``), then a logistic-regression head on its features.

    Nothing trains on the base classes. The encoder adapts in eval mode (no dropout, unlike the library): dropout
    would draw from a random state shared across episodes, and eval mode keeps episodes independent and runs
    reproducible. Works on any backbone (images too); the default is the frozen ``minilm``, of which each episode
    trains a copy.
    """

    paper = "Tunstall et al. 2022, Efficient Few-Shot Learning Without Prompts (SetFit)"
    train_kind = TrainKind.NONE
    frozen_features = False
    transductive = False
    default_backbone = "minilm"
    eval_batch_size = 5   # each episode holds a copy of the encoder with its Adam moments (~0.4 GB for MiniLM)
    Config = SetFitConfig

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        cfg = self.config
        for key in ("num_iterations", "batch_size", "epochs"):
            if getattr(cfg, key) < 1:
                raise UsageError(f"setfit option {key} must be at least 1, got {getattr(cfg, key)}")
        self.backbone.eval()
        text = not support.is_floating_point()   # token ids (images and features are floats)
        support, query = trim_padding(support), trim_padding(query)
        episodes, shots = support_labels.shape
        pairs = [sample_pairs(support_labels[e], cfg.num_iterations,
                              episode_generator(cfg.seed, support[e], support_labels[e])) for e in range(episodes)]
        first, second, target = (torch.stack(p).to(support.device) for p in zip(*pairs))   # [E, P] each
        rows = torch.arange(episodes, device=support.device)[:, None]
        base, params, features = episode_copies(self.backbone, episodes)

        def pair_loss(params: Params, a: Tensor, b: Tensor, t: Tensor) -> Tensor:
            u, v = features(params, torch.cat([a, b])).split(a.shape[0])
            return F.mse_loss(F.cosine_similarity(u, v, dim=-1), t)

        optimiser = BatchedAdam({k: cfg.lr for k in params})
        step_grads = vmap(grad(pair_loss))
        total, dtype = first.shape[1], next(iter(base.values())).dtype
        # Every epoch walks the shuffled pairs in the same order (the library's loader reshuffles per epoch).
        batches = [slice(start, start + cfg.batch_size) for _ in range(cfg.epochs)
                   for start in range(0, total, cfg.batch_size)]
        with torch.enable_grad():
            for batch in batches[:cfg.max_steps] if cfg.max_steps > 0 else batches:
                a, b = support[rows, first[:, batch]], support[rows, second[:, batch]]
                if text:  # each batch of pairs cut to its longest text: most are much shorter than the support's
                    a, b = trim_padding(torch.cat([a, b], 1)).split(a.shape[1], 1)
                params = optimiser.step(params, step_grads(params, a, b, target[:, batch].to(dtype)))
        with torch.no_grad():
            s = F.normalize(vmap(features)(params, support), dim=-1)
            q = F.normalize(vmap(features)(params, query), dim=-1)
        return regression_logits(s, support_labels, q, ways, cfg.C, LinearProbeConfig(C=cfg.C))
