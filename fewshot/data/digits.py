"""scikit-learn's handwritten digits (UCI optdigits test set, Alpaydin & Kaynak 1998) as a cross-domain target.

1,797 images of 8x8 pixels in 10 classes (``"0"`` .. ``"9"``, 174-183 each), bundled with scikit-learn
(``sklearn.datasets.load_digits``), so it needs no download. Like the other targets every class is a test class:
split ``test`` holds all 10. Pixel counts 0..16 become uint8 by ``(255 * v + 8) // 16`` (0 -> 0, 16 -> 255, ink
bright). The converted arrays are checked against a pinned sha256, so a scikit-learn that changed the data fails
loudly instead of shifting results.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from fewshot.core.errors import UserError
from fewshot.data.dataset import ClassDataset
from fewshot.data.download import ChecksumError
from fewshot.data.registry import register_dataset
from fewshot.data.targets import check_target_split

__all__ = ["CONTENT_SHA256", "digits_arrays", "load_digits"]

# sha256 of the uint8 images [1797, 8, 8] then the int64 little-endian labels, as digits_arrays() returns them.
CONTENT_SHA256 = "0b7e9c3202d7bcd255d6a19a238d3743bf5e320ba74812a6679958a017c55382"


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:
        raise UserError("the digits dataset is scikit-learn's bundled 8x8 digits, but scikit-learn is not "
                        "installed: pip install scikit-learn (or pip install 'fewshot[test]')") from error
    return sklearn_load_digits()


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[1797, 8, 8]`` and int64 labels, checked against :data:`CONTENT_SHA256`."""
    bunch = _sklearn_digits()
    counts = np.asarray(bunch.images)
    images = ((255 * counts.astype(np.int64) + 8) // 16).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype="<i8")
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if digest != CONTENT_SHA256:
        raise ChecksumError(f"scikit-learn's digits (sklearn.datasets.load_digits) have sha256 {digest}, expected "
                            f"{CONTENT_SHA256}: this scikit-learn ships different data; install one that ships "
                            f"the UCI optdigits set unchanged")
    return images, labels


@register_dataset("digits")
def load_digits(split: str, root: Path | None = None) -> ClassDataset:
    """Split ``test`` of the digits: all 10 classes, uint8 ``[1797, 1, 8, 8]``; ``root`` is not used."""
    check_target_split("digits", split, 10)
    images, labels = digits_arrays()
    return ClassDataset(torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels),
                        [str(d) for d in range(10)], "digits/test")
