"""The method interface and registry.

A method is a module holding a backbone. It says how it trains on the base classes (``train_kind``: episodic
meta-training, supervised pre-training, or nothing) and how it adapts to a batch of episodes::

    logits = method(support, support_labels, query, ways)   # [E, S, ...], [E, S], [E, Q, ...] -> [E, Q, ways]

A method with ``frozen_features = True`` classifies from features its backbone computed once per image: the
harness embeds every image of the test split once with :meth:`FewShotMethod.embed` and calls
:meth:`FewShotMethod.logits_from_features`. Methods keep no per-episode state on ``self``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot.core.registry import Registry

M = TypeVar("M", bound=type)


@dataclasses.dataclass
class NoConfig:
    """For methods without hyper-parameters."""


class FewShotMethod(nn.Module):
    """Base class of every method. Subclass it, set the class attributes, register it with ``@register_method``."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: "episodic" (meta-training on episodes), "supervised" (cross-entropy over all base classes) or "none".
    train_kind: ClassVar[str] = "episodic"
    #: True when adaptation needs only features of a fixed backbone (the harness embeds each image once).
    frozen_features: ClassVar[bool] = False
    #: True when the predictions for one query depend on the other queries.
    transductive: ClassVar[bool] = False
    #: Episodes per evaluation batch, a default the harness uses unless told otherwise.
    eval_batch_size: ClassVar[int] = 50
    Config: ClassVar[type] = NoConfig

    def __init__(self, backbone: nn.Module, config: Any | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config if config is not None else self.Config()
        #: How the backbone was built (name and options), recorded in checkpoints and results.
        self.backbone_spec: dict[str, Any] = {}

    def embed(self, images: Tensor) -> Tensor:
        """Features ``[..., D]`` of images ``[..., C, H, W]``, all leading dimensions flattened into one batch."""
        lead = images.shape[:-3]
        features = self.backbone(images.reshape(-1, *images.shape[-3:]))
        return features.reshape(*lead, -1)

    def forward(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        """Logits ``[E, Q, ways]`` for the queries of each episode, given its labelled support."""
        if not self.frozen_features:
            raise NotImplementedError(f"{type(self).__name__} must implement forward()")
        shots = support.shape[1]
        # Support and query go through the backbone together, as in the reference implementations.
        features = self.embed(torch.cat([support, query], dim=1))
        return self.logits_from_features(features[:, :shots], support_labels, features[:, shots:], ways)

    def logits_from_features(self, support: Tensor, support_labels: Tensor, query: Tensor, ways: int) -> Tensor:
        """Logits ``[E, Q, ways]`` from features ``[E, S, D]`` and ``[E, Q, D]`` (frozen-feature methods)."""
        raise NotImplementedError(f"{type(self).__name__} does not classify from frozen features")

    def episode_loss(self, support: Tensor, support_labels: Tensor, query: Tensor, query_labels: Tensor,
                     ways: int) -> Tensor:
        """Meta-training loss, one value per episode ``[E]``: cross-entropy of the query predictions."""
        logits = self(support, support_labels, query, ways)
        return F.cross_entropy(logits.flatten(0, 1), query_labels.flatten(), reduction="none").view(
            query_labels.shape).mean(1)

    def train_identity(self) -> dict[str, Any]:
        """What of this method decides its trained weights (keys the checkpoint). Test-time settings stay out."""
        if self.train_kind == "episodic":
            return {"method": self.name, "config": config_dict(self.config)}
        return {"train_kind": self.train_kind}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "config": config_dict(self.config), "backbone": self.backbone_spec,
                "train_kind": self.train_kind, "frozen_features": self.frozen_features,
                "transductive": self.transductive}


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))


METHODS: Registry[type[FewShotMethod]] = Registry("method")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: ``@register_method("protonet")`` lists the method everywhere (command, tests, tables)."""

    def add(cls: M) -> M:
        cls.name = name
        return METHODS.register(name)(cls)

    return add


def method_class(name: str) -> type[FewShotMethod]:
    from fewshot.methods import _import_builtin

    _import_builtin()
    return METHODS.get(name)


def create_method(name: str, backbone: nn.Module, **config: Any) -> FewShotMethod:
    """An instance of method ``name`` on ``backbone``; keyword arguments override fields of its ``Config``."""
    cls = method_class(name)
    valid = {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(cls.Config) else set()
    unknown = set(config) - valid
    if unknown:
        raise TypeError(f"method {name!r} has no option(s) {sorted(unknown)}; its options are {sorted(valid)}")
    return cls(backbone, cls.Config(**config))
