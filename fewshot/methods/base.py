"""The method contract and registry.

A method is a module holding a backbone. Its class declares, as typed class attributes and class methods:

- ``train_kind`` (:class:`TrainKind`): how it trains on the base classes: episodic meta-training, supervised
  pre-training, its own loop (:meth:`FewShotMethod.train_loop`), or nothing;
- ``default_backbone``: the backbone it is built on unless told otherwise;
- :meth:`FewShotMethod.method_preset` and :meth:`FewShotMethod.train_preset`: its options and its training
  schedule for a dataset and setting (``None`` from ``train_preset``: the suite's presets for its ``train_kind``);
- how it adapts to a batch of episodes::

    logits = method(support, support_labels, query, ways)   # [E, S, ...], [E, S], [E, Q, ...] -> [E, Q, ways]

A method with ``frozen_features = True`` classifies from features its backbone computed once per image: the
harness embeds every image of the test split once with :meth:`FewShotMethod.embed` and calls
:meth:`FewShotMethod.logits_from_features`. Methods keep no per-episode state on ``self``. The backbone's identity
(how it was built) is given to the constructor or read from a backbone made by ``create_backbone``; with the
method's :meth:`FewShotMethod.train_identity` it keys the checkpoint (:meth:`FewShotMethod.checkpoint_name`).
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot.core.hashing import sha256_json
from fewshot.core.plugins import load_entry_points
from fewshot.core.registry import Registry
from fewshot.train.config import TrainConfig

if TYPE_CHECKING:  # only for annotations: the training session sits beside TrainConfig, below the methods
    from fewshot.data.dataset import ClassDataset
    from fewshot.train.session import TrainSession

M = TypeVar("M", bound=type)


class TrainKind(str, enum.Enum):
    """How a method trains on the base classes."""

    EPISODIC = "episodic"        # meta-training on seeded episodes (:meth:`FewShotMethod.episode_loss`)
    SUPERVISED = "supervised"    # cross-entropy over all base classes; the head is dropped afterwards
    CUSTOM = "custom"            # the method's own :meth:`FewShotMethod.train_loop`
    NONE = "none"                # nothing to train (a fixed or pretrained backbone)

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass
class NoConfig:
    """For methods without hyper-parameters."""


def backbone_identity(backbone: nn.Module) -> dict[str, Any]:
    """How ``backbone`` was built: the ``{"name": ..., **options}`` that ``create_backbone`` records on it, else
    its class and a hash of its architecture (so two different hand-made backbones never share a checkpoint)."""
    spec = getattr(backbone, "backbone_spec", None)
    if spec is not None:
        return dict(spec)
    return {"name": type(backbone).__qualname__, "architecture": sha256_json(repr(backbone), 16)}


class FewShotMethod(nn.Module):
    """Base class of every method. Subclass it, set the class attributes, register it with ``@register_method``."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    train_kind: ClassVar[TrainKind] = TrainKind.EPISODIC
    #: The backbone the method is built on when none is named.
    default_backbone: ClassVar[str] = "conv4"
    #: True when adaptation needs only features of a fixed backbone (the harness embeds each image once).
    frozen_features: ClassVar[bool] = False
    #: True when the predictions for one query depend on the other queries.
    transductive: ClassVar[bool] = False
    #: True when the method takes padded variable-shape episodes (Meta-Dataset's protocol) in one batch: support
    #: rows labelled ``-1`` are padding and must count for nothing, and ``ways`` is the widest episode's (the
    #: harness ignores the logits of classes an episode lacks and its padding queries). Otherwise the harness
    #: gives such episodes one at a time, unpadded.
    takes_masks: ClassVar[bool] = False
    #: Episodes per evaluation batch, a default the harness uses unless told otherwise.
    eval_batch_size: ClassVar[int] = 50
    #: True when each episode's meta-training loss depends on that episode alone (no batch norm across episodes,
    #: no shared state): under ``torchrun`` the meta-batch is then split over the ranks, exactly.
    tasks_independent: ClassVar[bool] = False
    Config: ClassVar[type] = NoConfig

    def __init__(self, backbone: nn.Module, config: Any | None = None, *,
                 backbone_spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config if config is not None else self.Config()
        #: How the backbone was built (name and options), recorded in checkpoints and results.
        self.backbone_spec: dict[str, Any] = dict(backbone_spec) if backbone_spec is not None \
            else backbone_identity(backbone)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        try:  # a plain string ("episodic") is accepted and made the enum member at class creation
            cls.train_kind = TrainKind(cls.train_kind)
        except ValueError:
            raise TypeError(f"{cls.__name__}.train_kind must be one of {[k.value for k in TrainKind]}, not "
                            f"{cls.train_kind!r}") from None

    @classmethod
    def method_preset(cls, dataset: str, ways: int, shots: int) -> Any:
        """The method's options (its ``Config``) for ``dataset`` evaluated ``ways``-way ``shots``-shot."""
        return cls.Config()

    @classmethod
    def train_preset(cls, dataset: str, ways: int, shots: int) -> TrainConfig | None:
        """The training schedule for ``dataset``; ``None`` takes the suite's preset for :attr:`train_kind`."""
        return None

    def pretraining_head(self, features: int, classes: int) -> nn.Module:
        """The classifier supervised pre-training puts on the backbone (and drops afterwards): linear by default.
        A method that changes it also changes :meth:`train_identity`, so it does not share the linear one's
        checkpoint."""
        return nn.Linear(features, classes)

    def train_loop(self, dataset: "ClassDataset", config: TrainConfig, session: "TrainSession") -> float:
        """Train on ``dataset`` (``train_kind = TrainKind.CUSTOM`` only); returns the last loss.

        Resume with ``first = session.resume(modules)`` and call ``session.step_done(step, modules, loss)`` after
        every step (``modules``: name -> object with ``state_dict``): it saves partial checkpoints by step count,
        by time and on SIGINT/SIGTERM, so an interrupted run resumes to the same weights.
        """
        raise NotImplementedError(f"{type(self).__name__} has train_kind {self.train_kind} and no train_loop()")

    def embed(self, images: Tensor) -> Tensor:
        """Features ``[..., D]`` of images ``[..., C, H, W]`` (or token ids ``[..., L]``, integers), all leading
        dimensions flattened into one batch."""
        dims = 3 if images.is_floating_point() else 1
        lead = images.shape[:-dims]
        features = self.backbone(images.reshape(-1, *images.shape[-dims:]))
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
        """What of this method decides its trained weights (keys the checkpoint). Test-time settings stay out.

        Supervised pre-training does not depend on the method, so every supervised method shares it."""
        if self.train_kind == TrainKind.SUPERVISED:
            return {"train_kind": self.train_kind.value}
        return {"method": self.name, "config": config_dict(self.config)}

    def checkpoint_name(self, dataset_fingerprint: Any, config: TrainConfig, seed: int) -> str:
        """The file name of this method's trained weights: everything that decides them, hashed."""
        identity = {"method": self.train_identity(), "backbone": self.backbone_spec,
                    "train": dataclasses.asdict(config), "dataset": dataset_fingerprint, "seed": seed}
        prefix = self.train_kind.value if self.train_kind == TrainKind.SUPERVISED else self.name
        return f"{prefix}-{sha256_json(identity, 20)}.pt"

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "config": config_dict(self.config), "backbone": self.backbone_spec,
                "train_kind": self.train_kind.value, "frozen_features": self.frozen_features,
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


def list_methods(pattern: str = "*") -> list[str]:
    """Names of all registered methods (built-in ones, plug-ins, and those a user registered)."""
    _import_builtin()
    return METHODS.names(pattern)


def method_class(name: str) -> type[FewShotMethod]:
    _import_builtin()
    return METHODS.get(name)


def _import_builtin() -> None:
    # Every module of fewshot/methods registers its methods on import: adding a method is adding a file. Installed
    # packages add theirs through the "fewshot.methods" entry-point group.
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"fewshot.methods.{info.name}")
    load_entry_points()


def method_options(cls: type[FewShotMethod]) -> set[str]:
    """The option names of a method class (the fields of its ``Config``)."""
    return {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(cls.Config) else set()


def create_method(name: str, backbone: nn.Module, *, backbone_spec: dict[str, Any] | None = None,
                  **config: Any) -> FewShotMethod:
    """An instance of method ``name`` on ``backbone``; keyword arguments override fields of its ``Config``."""
    cls = method_class(name)
    unknown = set(config) - method_options(cls)
    if unknown:
        raise TypeError(f"method {name!r} has no option(s) {sorted(unknown)}; its options are "
                        f"{sorted(method_options(cls))}")
    return cls(backbone, cls.Config(**config), backbone_spec=backbone_spec)
