"""Backbones: feature extractors mapping ``[N, C, H, W]`` images to ``[N, D]`` features.

``create_backbone(name, in_channels=..., image_size=...)`` builds one; every backbone has ``out_features``.
Names: ``conv4``, ``resnet12``, ``timm:<model>`` for any timm model (randomly initialised),
``pretrained:<model>`` for any timm model with pretrained weights (timm's hub, or ``weights=PATH``), and the
offline pretrained backbones of :mod:`fewshot.backbones.pretrained` (``efficientnet_lite0`` to ``_lite2``,
``mobilenet_v2``), ``hf:<folder>`` for a transformers image encoder saved in a local folder (DINOv2, CLIP), and
``open_clip:<folder>`` for the image tower of an open_clip model saved in a local folder.
Text: the sentence encoders of :mod:`fewshot.backbones.text_encoders` (``minilm``, ``sentence-encoder``) map token
ids ``[N, L]`` of a text dataset to ``[N, D]``.
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.backbones.registry import BACKBONES, BackboneFactory, register_backbone


def list_backbones(pattern: str = "*") -> list[str]:
    _import_builtin()
    return BACKBONES.names(pattern)


def create_backbone(name: str, in_channels: int = 1, image_size: int = 28, **options) -> nn.Module:
    """Build backbone ``name`` for images of ``in_channels`` channels and ``image_size`` pixels a side.

    The result carries ``backbone_spec = {"name": name, **options}``: how it was built, which methods record and
    key their checkpoints by."""
    _import_builtin()
    spec = {"name": name, **options}
    if name.startswith("pretrained:"):
        from fewshot.backbones.pretrained import create_pretrained_backbone

        options = dict(options)
        model = create_pretrained_backbone(name[len("pretrained:"):], weights=options.pop("weights", None),
                                           frozen=options.pop("frozen", True), preprocess=options)
    elif name.startswith("hf:"):
        from fewshot.backbones.hf_image import create_hf_image_backbone

        model = create_hf_image_backbone(name[len("hf:"):], **options)
    elif name.startswith("open_clip:"):
        from fewshot.backbones.open_clip_image import create_open_clip_backbone

        model = create_open_clip_backbone(name[len("open_clip:"):], **options)
    elif name.startswith("timm:"):
        from fewshot.backbones.timm_adapter import create_timm_backbone

        model = create_timm_backbone(name[len("timm:"):], in_channels=in_channels, image_size=image_size, **options)
    else:
        model = BACKBONES.get(name)(in_channels=in_channels, image_size=image_size, **options)
    if not hasattr(model, "out_features"):
        model.out_features = feature_size(model, in_channels, image_size)
    model.backbone_spec = spec
    return model


@torch.no_grad()
def feature_size(model: nn.Module, in_channels: int, image_size: int) -> int:
    """The width of ``model``'s output for one image (found by running it once, in eval mode)."""
    was_training = model.training
    model.eval()
    out = model(torch.zeros(1, in_channels, image_size, image_size))
    model.train(was_training)
    return int(out.reshape(1, -1).shape[1])


def _import_builtin() -> None:
    from fewshot.backbones import conv4, resnet12, text_encoders  # noqa: F401
    try:
        from fewshot.backbones import pretrained  # noqa: F401
    except ImportError:  # pragma: no cover - the pretrained module is optional while it is being written
        pass


def accepts_any_image_format(backbone: nn.Module) -> bool:
    """True for a backbone that brings images of any size and 1 or 3 channels to its input itself (the
    pretrained ones: their ``any_image_format`` attribute); others take the format they were built for."""
    return bool(getattr(backbone, "any_image_format", False))


def pretrained_on(backbone: nn.Module) -> str | None:
    """Where a pretrained backbone's features were learned (its ``pretrained_on``), else None."""
    return getattr(backbone, "pretrained_on", None)


__all__ = ["accepts_any_image_format", "pretrained_on", "BACKBONES", "BackboneFactory", "create_backbone", "feature_size", "list_backbones", "register_backbone"]
