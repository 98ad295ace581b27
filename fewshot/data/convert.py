"""Bringing a target's images to the format a trained backbone expects: a documented, recorded, deterministic rule.

A backbone trained on one dataset takes images of its channels and size; a cross-domain target may differ (28x28
grey Fashion-MNIST for a backbone trained on 84x84 RGB miniImageNet, 8x8 digits for one trained on 28x28
Omniglot). :func:`convert_images` converts, never silently: it returns the converted dataset and a description of
what it did, to be stored in the record. The rule (version :data:`RULE`):

1. **Channels.** RGB to grey is ITU-R 601-2 luma, exactly as Pillow's ``convert("L")``: for uint8,
   ``L = (19595 R + 38470 G + 7471 B + 32768) >> 16``; for float images ``0.299 R + 0.587 G + 0.114 B``. It is
   applied before resizing. Grey to RGB repeats the channel three times; since that commutes with resizing, it is
   applied after resizing (at a third of the cost, with the same result). No other channel count is converted.
2. **Size.** Each channel of each image is resized on its own with Pillow (``Image.resize``, Lanczos by default,
   the filter every loader of the suite resizes with): uint8 channels as mode ``L`` (rounded to uint8 by Pillow),
   float channels as mode ``F``. The aspect ratio follows the requested size (no crop, no padding).

Converted arrays are kept in the processed-data cache (``$FEWSHOT_CACHE/processed/converted``), keyed by the
source dataset's fingerprint and the rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from fewshot.core.cache import DataCache
from fewshot.data.dataset import ClassDataset

__all__ = ["RULE", "ImageFormat", "convert_images", "image_format", "match_format"]

RULE = "fewshot.data.convert/1"
_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
             "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST}
CACHE = DataCache("converted", 1)
# Attributes some loaders set on a dataset (the split rule, per-example groups): carried over to the converted one.
_CARRIED = ("split_rule", "example_groups")


@dataclass(frozen=True)
class ImageFormat:
    """What a backbone takes: ``channels`` (1 or 3) and ``height`` x ``width`` pixels."""

    channels: int
    height: int
    width: int

    def describe(self) -> list[int]:
        return [self.channels, self.height, self.width]


def image_format(dataset: ClassDataset) -> ImageFormat:
    """The format of ``dataset``'s images (``[N, C, H, W]``)."""
    if not dataset.is_images:
        raise ValueError(f"{dataset.name} holds feature vectors, not images: there is nothing to convert")
    _, c, h, w = dataset.data.shape
    return ImageFormat(int(c), int(h), int(w))


def _to_grey(data: np.ndarray) -> np.ndarray:
    r, g, b = data[:, 0], data[:, 1], data[:, 2]
    if data.dtype == np.uint8:
        luma = (19595 * r.astype(np.uint32) + 38470 * g.astype(np.uint32) + 7471 * b.astype(np.uint32) + 32768) >> 16
        return luma.astype(np.uint8)[:, None]
    return (0.299 * r + 0.587 * g + 0.114 * b).astype(data.dtype)[:, None]


def _resize(data: np.ndarray, height: int, width: int, resample: str) -> np.ndarray:
    n, c = data.shape[:2]
    out = np.empty((n, c, height, width), dtype=data.dtype)
    # Pillow picks mode L for a 2-D uint8 array and mode F for a 2-D float32 one.
    planes = data if data.dtype == np.uint8 else data.astype(np.float32)
    for i in range(n):
        for j in range(c):
            out[i, j] = np.asarray(Image.fromarray(np.ascontiguousarray(planes[i, j])).resize(
                (width, height), _RESAMPLE[resample]))
    return out


def _convert(data: np.ndarray, source: ImageFormat, target: ImageFormat, resample: str) -> np.ndarray:
    if source.channels == 3 and target.channels == 1:
        data = _to_grey(data)
    if (source.height, source.width) != (target.height, target.width):
        data = _resize(data, target.height, target.width, resample)
    if source.channels == 1 and target.channels == 3:
        data = np.repeat(data, 3, axis=1)
    return np.ascontiguousarray(data)


def _steps(source: ImageFormat, target: ImageFormat, resample: str) -> list[str]:
    steps = []
    if source.channels == 3 and target.channels == 1:
        steps.append("RGB to grey: ITU-R 601-2 luma, as Pillow's convert('L')")
    if (source.height, source.width) != (target.height, target.width):
        steps.append(f"resize {source.height}x{source.width} to {target.height}x{target.width}: Pillow "
                     f"{resample}, each channel")
    if source.channels == 1 and target.channels == 3:
        steps.append("grey to RGB: the channel repeated three times")
    return steps


def convert_images(dataset: ClassDataset, channels: int, image_size: int | tuple[int, int], *,
                   resample: str = "lanczos", cache: bool = True) -> tuple[ClassDataset, dict[str, Any]]:
    """``dataset`` with its images brought to ``channels`` and ``image_size`` (a side or ``(height, width)``) by
    the module's rule, and the rule's description (``rule``, ``from``, ``to``, ``steps``) to record.

    When nothing needs converting the same dataset comes back, with ``steps`` empty.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else map(int, image_size)
    source, target = image_format(dataset), ImageFormat(int(channels), int(height), int(width))
    if resample not in _RESAMPLE:
        raise ValueError(f"resample={resample!r}: choose one of {', '.join(_RESAMPLE)}")
    if target.height < 1 or target.width < 1:
        raise ValueError(f"image size must be positive, got {target.height}x{target.width}")
    if source.channels != target.channels and {source.channels, target.channels} != {1, 3}:
        raise ValueError(f"{dataset.name} has {source.channels}-channel images and the backbone takes "
                         f"{target.channels}: only grey (1) and RGB (3) convert into each other")
    if dataset.data.dtype not in (torch.uint8, torch.float32, torch.float64):
        raise ValueError(f"{dataset.name}: images of dtype {dataset.data.dtype} cannot be converted (uint8 or float)")
    steps = _steps(source, target, resample)
    description = {"rule": RULE, "from": source.describe(), "to": target.describe(), "steps": steps}
    if not steps:
        return dataset, description
    build = lambda: {"images": _convert(dataset.data.cpu().numpy(), source, target, resample)}  # noqa: E731
    if cache:
        key = CACHE.key({"rule": RULE, "dataset": dataset.fingerprint(), "to": target.describe(),
                         "resample": resample})
        images = CACHE.get(key, build, label=f"{target.channels}x{target.height}x{target.width}")["images"]
    else:
        images = build()["images"]
    converted = ClassDataset(torch.from_numpy(images).to(dataset.device), dataset.labels, list(dataset.class_names),
                             f"{dataset.name}[as {target.channels}x{target.height}x{target.width}]", dataset.groups,
                             dataset.group_names, converted_from=dataset.episodes_fingerprint())
    for attribute in _CARRIED:
        if hasattr(dataset, attribute):
            setattr(converted, attribute, getattr(dataset, attribute))
    converted.conversion = description
    return converted, description


def match_format(dataset: ClassDataset, reference: ClassDataset | ImageFormat, **options) -> tuple[ClassDataset,
                                                                                                   dict[str, Any]]:
    """``dataset`` converted to the format of ``reference`` (the training set of the backbone, or its format)."""
    want = reference if isinstance(reference, ImageFormat) else image_format(reference)
    return convert_images(dataset, want.channels, (want.height, want.width), **options)
