"""Any timm model by name as a randomly initialised backbone (``timm:<model>``)."""
from __future__ import annotations

from torch import nn


def create_timm_backbone(model_name: str, in_channels: int = 3, image_size: int = 224, **options) -> nn.Module:
    """``timm.create_model(model_name, num_classes=0)``: pooled features, no classifier."""
    import timm

    if not timm.list_models(model_name) and not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:5]
        raise KeyError(f"timm has no model {model_name!r}" + (f"; close: {close}" if close else ""))
    model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_channels, **options)
    model.out_features = model.num_features
    return model
