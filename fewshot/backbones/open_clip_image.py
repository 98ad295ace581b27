"""Image towers of ``open_clip`` models (CLIP, OpenCLIP, SigLIP) from a local folder.

``create_backbone("open_clip:<folder>")`` loads the model saved in ``<folder>`` in open_clip's Hugging Face layout
(``open_clip_config.json`` with ``model_cfg`` and ``preprocess_cfg``, and ``open_clip_model.safetensors`` or
``open_clip_pytorch_model.bin``: what ``open_clip.push_to_hf_hub`` writes, or a downloaded hub snapshot) through
open_clip's ``local-dir:`` schema: nothing is downloaded. Features are ``encode_image``'s, the image embedding in
the joint space (``embed_dim`` wide), unnormalised. Preprocessing comes from the folder's ``preprocess_cfg``
(size, mean, std, interpolation; open_clip's default resize of the shorter side then a centre crop) and is applied
to the suite's images in [0, 1] by :class:`~fewshot.backbones.pretrained.Preprocess`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from fewshot.backbones.pretrained import (MissingWeightsError, Preprocess, PretrainedBackbone,
                                          check_preprocess_options)
from fewshot.core.hashing import sha256_json
from fewshot.data.text.encoders import folder_identity

PREFIX = "open_clip:"
CONFIG = "open_clip_config.json"


class OpenClipImageBackbone(PretrainedBackbone):
    """An open_clip model's image tower behind the suite's preprocessing: images -> ``[N, embed_dim]``."""

    def __init__(self, model: nn.Module, preprocess: Preprocess, identity: dict[str, Any], frozen: bool,
                 source: str) -> None:
        super().__init__(model, preprocess, identity, frozen=frozen, out_features=int(model.visual.output_dim),
                         pretrained_on=source)

    def forward(self, images: Tensor) -> Tensor:
        return self.model.encode_image(self.preprocess(images))

    def classify(self, images: Tensor) -> Tensor:
        raise NotImplementedError("an open_clip image tower has no classifier head here; use its features")


def model_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a path, or a :class:`MissingWeightsError` when it holds no open_clip model."""
    path = Path(folder).expanduser()
    if not (path / CONFIG).is_file():
        raise MissingWeightsError(f"{PREFIX}{folder}: no {CONFIG} there; give a local folder holding an open_clip "
                                  f"model in its Hugging Face layout (push_to_hf_hub's files, or a downloaded hub "
                                  f"snapshot): nothing is downloaded")
    return path


def preprocess_from_config(config: dict[str, Any], image_size: int) -> Preprocess:
    """The folder's ``preprocess_cfg`` as a :class:`Preprocess` (open_clip's defaults where it is silent)."""
    mode = config.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):        # "longest" pads, which Preprocess does not do
        raise MissingWeightsError(f"open_clip resize_mode {mode!r} is not supported (shortest or squash)")
    size = config.get("size", image_size)
    size = size[0] if isinstance(size, (list, tuple)) else size
    kept = {k: tuple(config[k]) for k in ("mean", "std") if k in config}
    return Preprocess(input_size=int(size), crop_pct=1.0, interpolation=config.get("interpolation", "bicubic"),
                      **kept)


def create_open_clip_backbone(folder: str | os.PathLike, *, frozen: bool = True,
                              **preprocess: Any) -> OpenClipImageBackbone:
    """The image tower of the open_clip model saved in ``folder``; options: ``frozen`` and Preprocess's fields."""
    path = model_folder(folder)
    check_preprocess_options(PREFIX, preprocess, "frozen")
    try:
        import open_clip
    except ImportError:
        raise MissingWeightsError("open_clip: backbones need open_clip: pip install open_clip_torch "
                                  "(the openclip extra)") from None
    config = json.loads((path / CONFIG).read_text())
    model = open_clip.create_model(f"local-dir:{path}")
    vision = config.get("model_cfg", config).get("vision_cfg", {})
    defaults = preprocess_from_config(config.get("preprocess_cfg", {}), int(vision.get("image_size", 224)))
    # The folder's files, hashed once per (path, size, mtime) like the other local-folder backbones.
    identity = {"architecture": "open_clip", "weights_sha256": sha256_json(folder_identity(path, weights=True))}
    return OpenClipImageBackbone(model, dataclasses.replace(defaults, **preprocess), identity, frozen,
                                 source=f"open_clip ({path.name})")
