"""The backbone registry: ``@register_backbone("name")`` on a factory ``(in_channels=..., image_size=..., **options)``."""
from __future__ import annotations

from typing import Callable

from torch import nn

from fewshot.core.registry import Registry

BackboneFactory = Callable[..., nn.Module]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator registering ``factory(in_channels=..., image_size=..., **options) -> nn.Module``."""
    return BACKBONES.register(name)
