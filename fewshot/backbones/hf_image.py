"""Image encoders of Hugging Face ``transformers`` (DINOv2, CLIP's vision tower, ViT, ...) from a local folder.

``create_backbone("hf:<folder>")`` loads the model saved in ``<folder>`` (``save_pretrained`` layout, or a populated
hub snapshot) with ``local_files_only``: nothing is downloaded. Features are the model's pooled output
(``pooler_output``: DINOv2's and CLIP's layer-normed class token), else the class token of the last hidden state;
a CLIP checkpoint contributes its vision tower only. Preprocessing comes from the folder's
``preprocessor_config.json`` (resize, centre crop, mean and std) and is applied to the suite's ``[N, C, H, W]``
images in [0, 1] by :class:`~fewshot.backbones.pretrained.Preprocess`, like the timm backbones.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from fewshot.backbones.pretrained import (MissingWeightsError, Preprocess, PretrainedBackbone,
                                          check_preprocess_options)
from fewshot.core.hashing import sha256_json
from fewshot.data.text.encoders import folder_identity

# transformers' resample codes (PIL's) to the interpolation modes of Preprocess.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class HFImageBackbone(PretrainedBackbone):
    """A transformers vision model behind the suite's preprocessing: images -> pooled features ``[N, hidden]``."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, identity: dict[str, Any], frozen: bool,
                 source: str) -> None:
        super().__init__(model, preprocess, identity, frozen=frozen, out_features=int(model.config.hidden_size),
                         pretrained_on=source)

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(pixel_values=self.preprocess(images))
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out.last_hidden_state[:, 0]

    def classify(self, images: Tensor) -> Tensor:
        raise NotImplementedError("a transformers image encoder has no classifier head here; use its features")


def preprocess_from_folder(folder: Path, image_size: int | None) -> Preprocess:
    """The folder's ``preprocessor_config.json`` as a :class:`Preprocess` (ImageNet mean and std at the model's
    ``image_size`` where the folder has none)."""
    from transformers import AutoImageProcessor

    if not (folder / "preprocessor_config.json").is_file():
        return Preprocess(input_size=image_size or 224, crop_pct=1.0)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    size, crop = dict(processor.size), dict(getattr(processor, "crop_size", None) or {})
    resize = size.get("shortest_edge") or size.get("height")
    input_size = crop.get("height") if getattr(processor, "do_center_crop", False) and crop else resize
    return Preprocess(input_size=int(input_size), crop_pct=min(1.0, float(input_size) / float(resize)),
                      interpolation=_RESAMPLE.get(int(getattr(processor, "resample", 3)), "bicubic"),
                      mean=tuple(processor.image_mean), std=tuple(processor.image_std))


def model_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a path, or a :class:`MissingWeightsError` when it holds no transformers model."""
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise MissingWeightsError(f"hf:{folder}: no config.json there; give a local folder holding a transformers "
                                  f"image model (save_pretrained, or a downloaded hub snapshot): nothing is downloaded")
    return path


def create_hf_image_backbone(folder: str | os.PathLike, *, frozen: bool = True, **preprocess: Any) -> HFImageBackbone:
    """The transformers image encoder saved in ``folder``; options: ``frozen`` and the fields of Preprocess."""
    path = model_folder(folder)
    check_preprocess_options("hf:", preprocess, "frozen")
    try:
        from transformers import AutoConfig, AutoModel, CLIPVisionModel
    except ImportError:
        raise MissingWeightsError("hf: backbones need transformers: pip install transformers "
                                  "(the text extra installs it)") from None
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    loader = CLIPVisionModel if config.model_type == "clip" else AutoModel    # a CLIP checkpoint: its vision tower
    model = loader.from_pretrained(path, local_files_only=True)
    defaults = preprocess_from_folder(path, getattr(model.config, "image_size", None))
    # The folder's files, hashed once per (path, size, mtime) like the sentence encoders' folders.
    identity = {"architecture": f"hf:{model.config.model_type}",
                "weights_sha256": sha256_json(folder_identity(path, weights=True))}
    return HFImageBackbone(model, dataclasses.replace(defaults, **preprocess), identity, frozen,
                           source=f"{model.config.model_type} ({path.name})")
