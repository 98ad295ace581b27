"""Synthetic handwritten characters: the embedded default dataset, generated from a seed with no file or network.

Each alphabet owns a few random cubic-Bezier stroke primitives and a style (curviness, allowed stroke angles); a
character is 2-4 of its alphabet's primitives, each scaled, turned and placed at random; each drawing re-renders the
character with control-point noise, a small random affine map and a random pen width, like different people drawing it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewshot.core.cache import DataCache
from fewshot.data.dataset import ClassDataset
from fewshot.data.registry import SPLITS, register_dataset

# Bump when the generated images change: it is part of the cache key, so old caches are never read.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticConfig:
    """The generative model's settings (lengths in character units: the character box spans [-1, 1])."""

    alphabets: int = 50
    drawings: int = 20  # drawings per character
    image_size: int = 28
    split_fractions: tuple[float, float, float] = (0.60, 0.15, 0.25)  # of the alphabets: train, val, test
    min_chars: int = 16  # characters per alphabet cycle through min_chars .. max_chars
    max_chars: int = 40
    points_per_stroke: int = 32  # samples along each Bezier stroke when rendering
    point_noise: float = 0.15  # std of each control point's per-drawing jitter
    stroke_shift: float = 0.12  # std of each stroke's per-drawing shift
    rotation: float = 0.20  # std of the per-drawing rotation (radians)
    shear: float = 0.12
    log_scale: float = 0.10  # std of the per-drawing log scale, per axis
    shift: float = 0.15  # std of the per-drawing translation
    pen_px: tuple[float, float] = (0.75, 1.25)  # range of the pen's Gaussian width, in pixels
    ink_gain: float = 1.6  # ink = clip(gain * coverage, 0, 1)


DEFAULT_CONFIG = SyntheticConfig()


def split_alphabets(seed: int, config: SyntheticConfig = DEFAULT_CONFIG) -> dict[str, np.ndarray]:
    """The alphabets of each split: a seeded permutation cut at the split fractions (60/15/25% by default)."""
    order = np.random.default_rng([int(seed), 0]).permutation(config.alphabets)
    n_train = int(config.split_fractions[0] * config.alphabets + 0.5)
    n_val = int(config.split_fractions[1] * config.alphabets + 0.5)
    cuts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return {split: np.sort(part) for split, part in zip(SPLITS, cuts)}


def alphabet_size(alphabet: int, config: SyntheticConfig = DEFAULT_CONFIG) -> int:
    """How many characters alphabet ``alphabet`` has (fixed, so the total never depends on the seed)."""
    span = config.max_chars - config.min_chars + 1
    return config.min_chars + (alphabet * 13) % span


def _bezier_basis(t: np.ndarray) -> np.ndarray:
    """Cubic Bernstein weights ``[T, 4]``."""
    u = 1.0 - t
    return np.stack([u ** 3, 3 * u * u * t, 3 * u * t * t, t ** 3], axis=1)


def _rotation(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _characters(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """One alphabet's characters: control points ``[count, 4 strokes, 4, 2]`` and a stroke mask ``[count, 4]``."""
    # The alphabet: its primitives (centred cubic Beziers) and its style.
    n_prims = int(rng.integers(4, 8))
    curviness = rng.uniform(0.1, 0.6)
    angle_step = 2 * np.pi / rng.choice([2, 4, 8])
    start = rng.uniform(-0.5, 0.5, (n_prims, 2))
    heading = rng.uniform(0, 2 * np.pi, n_prims)
    length = rng.uniform(0.8, 1.8, n_prims)
    end = start + length[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)
    chord = end - start
    inner = start[:, None] + chord[:, None] * np.array([1 / 3, 2 / 3])[:, None] \
        + curviness * length[:, None, None] * rng.normal(size=(n_prims, 2, 2))
    prims = np.concatenate([start[:, None], inner, end[:, None]], 1)
    prims -= prims.mean(1, keepdims=True)

    # The characters: 2-4 placed primitives, half of them starting on an earlier stroke.
    strokes = rng.choice([2, 3, 4], size=count, p=[0.3, 0.4, 0.3])
    mask = np.arange(4)[None] < strokes[:, None]
    pick = rng.integers(0, n_prims, (count, 4))
    scale = rng.uniform(0.5, 1.0, (count, 4))
    angle = angle_step * rng.integers(0, 8, (count, 4)) + rng.normal(0, 0.1, (count, 4))
    mirror = np.where(rng.random((count, 4)) < 0.3, -1.0, 1.0)
    shift = rng.uniform(-0.5, 0.5, (count, 4, 2))
    attach = rng.random((count, 4)) < 0.5
    attach_t = rng.random((count, 4))
    attach_to = rng.random((count, 4))
    cps = prims[pick] * np.stack([mirror, np.ones_like(mirror)], -1)[:, :, None]
    cps = scale[..., None, None] * np.einsum("csij,cskj->cski", _rotation(angle), cps)
    basis = _bezier_basis(np.linspace(0, 1, 16))
    for s in range(4):
        cps[:, s] += shift[:, s, None]
        if s > 0:
            # Move the stroke so that it starts on a random point of a random earlier stroke.
            earlier = (attach_to[:, s] * s).astype(int)
            anchor = np.einsum("ck,ckd->cd", _bezier_basis(attach_t[:, s]), cps[np.arange(count), earlier])
            move = np.where(attach[:, s, None], anchor - cps[:, s, 0], 0.0)
            cps[:, s] += move[:, None]
    # Centre each character and scale its longest side to 1.6 (the box [-0.8, 0.8]).
    pts = np.einsum("tk,cskd->cstd", basis, cps)
    big = np.where(mask[:, :, None, None], pts, np.nan)
    lo, hi = np.nanmin(big, axis=(1, 2)), np.nanmax(big, axis=(1, 2))
    size = np.maximum((hi - lo).max(1), 1e-6)
    cps = (cps - ((lo + hi) / 2)[:, None, None]) * (1.6 / size)[:, None, None, None]
    return cps, mask


def _render(rng: np.random.Generator, cps: np.ndarray, mask: np.ndarray, config: SyntheticConfig) -> np.ndarray:
    """``config.drawings`` jittered drawings of each character, as uint8 images ``[count * drawings, H, W]``."""
    n = cps.shape[0] * config.drawings
    x = np.repeat(cps, config.drawings, axis=0)
    stroke_mask = np.repeat(mask, config.drawings, axis=0)
    x = x + rng.normal(0, config.point_noise, x.shape) + rng.normal(0, config.stroke_shift, (n, 4, 1, 2))
    shear = np.zeros((n, 2, 2))
    shear[:, 0, 0] = shear[:, 1, 1] = 1.0
    shear[:, 0, 1] = rng.normal(0, config.shear, n)
    scale = np.exp(rng.normal(0, config.log_scale, (n, 2)))
    affine = _rotation(rng.normal(0, config.rotation, n)) @ shear * scale[:, None, :]
    x = np.einsum("nij,nskj->nski", affine, x) + rng.normal(0, config.shift, (n, 1, 1, 2))
    pen = rng.uniform(*config.pen_px, n)

    # Dense points along each stroke, each weighted by the stroke length it stands for (0 for absent strokes).
    size = config.image_size
    half = 0.4 * size
    points = np.einsum("tk,nskd->nstd", _bezier_basis(np.linspace(0, 1, config.points_per_stroke)), x)
    seg = np.linalg.norm(np.diff(points, axis=2), axis=-1) * half
    weight = np.zeros(points.shape[:3])
    weight[..., 1:] += seg / 2
    weight[..., :-1] += seg / 2
    weight = (weight * stroke_mask[..., None]).reshape(n, -1)
    col = (size - 1) / 2 + half * points[..., 0].reshape(n, -1)
    row = (size - 1) / 2 - half * points[..., 1].reshape(n, -1)

    # A Gaussian pen is separable: coverage[r, c] = sum_k w_k g(r - row_k) g(c - col_k), one matmul per image.
    grid = np.arange(size, dtype=np.float64)[None, :, None]
    inv = 1.0 / (2.0 * pen[:, None, None] ** 2)
    g_row = np.exp(-((grid - row[:, None, :]) ** 2) * inv) * weight[:, None, :]
    g_col = np.exp(-((grid - col[:, None, :]) ** 2) * inv)
    coverage = g_row @ g_col.transpose(0, 2, 1) / (np.sqrt(2 * np.pi) * pen[:, None, None])
    return np.rint(np.clip(config.ink_gain * coverage, 0.0, 1.0) * 255.0).astype(np.uint8)


def generate_split(split: str, seed: int = 0, config: SyntheticConfig = DEFAULT_CONFIG) -> dict[str, np.ndarray]:
    """The arrays of one split, generated from scratch (the alphabet ``a`` always comes from seed ``[seed, 1, a]``)."""
    if split not in SPLITS:
        raise ValueError(f"synthetic: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    alphabets = split_alphabets(seed, config)[split]
    images, labels, class_names, groups = [], [], [], []
    for group, alphabet in enumerate(alphabets.tolist()):
        rng = np.random.default_rng([int(seed), 1, alphabet])
        count = alphabet_size(alphabet, config)
        cps, mask = _characters(rng, count)
        images.append(_render(rng, cps, mask, config))
        labels.append(np.repeat(np.arange(len(class_names), len(class_names) + count), config.drawings))
        class_names += [f"alphabet{alphabet:02d}/char{j:02d}" for j in range(count)]
        groups += [group] * count
    return {
        "images": np.concatenate(images)[:, None],
        "labels": np.concatenate(labels).astype(np.int64),
        "class_names": np.array(class_names),
        "groups": np.array(groups, dtype=np.int64),
        "group_names": np.array([f"alphabet{a:02d}" for a in alphabets.tolist()]),
        "version": np.array(GENERATOR_VERSION),
        "seed": np.array(int(seed)),
    }


# Generated splits, keyed by split, seed and settings; the generator version is the cache's version.
CACHE = DataCache("synthetic", GENERATOR_VERSION)


def _identity(split: str, seed: int) -> dict:
    return {"split": split, "seed": int(seed), "config": dataclasses.asdict(DEFAULT_CONFIG)}


def cache_path(split: str, seed: int = 0) -> Path:
    """The cache file of one split, under ``$FEWSHOT_CACHE/processed/synthetic`` (never in a data root)."""
    return CACHE.path(CACHE.key(_identity(split, seed)), label=f"seed{int(seed)}-{split}")


@register_dataset("synthetic")
def load_synthetic(split: str, root: str | os.PathLike | None = None, *, seed: int = 0, **options) -> ClassDataset:
    """Split ``split`` of the synthetic characters of ``seed``: read from the cache, or generated and cached.

    1,400 characters in 50 alphabets (``groups``), 20 drawings each, uint8 ``[N, 1, 28, 28]`` with bright ink;
    the splits hold disjoint alphabets (see :func:`split_alphabets`). ``root`` (the data root) is not used: the
    data comes from the seed and is cached in the processed-data cache, a damaged cache file being regenerated.
    """
    if options:
        raise TypeError(f"synthetic: unknown options {', '.join(sorted(options))}; it takes only seed=")
    if split not in SPLITS:
        raise ValueError(f"synthetic: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    arrays = CACHE.get(CACHE.key(_identity(split, seed)), lambda: generate_split(split, seed),
                       label=f"seed{int(seed)}-{split}")
    name = f"synthetic/{split}" if seed == 0 else f"synthetic-seed{int(seed)}/{split}"
    return ClassDataset(
        torch.from_numpy(arrays["images"]),
        torch.from_numpy(arrays["labels"]),
        arrays["class_names"].tolist(),
        name,
        torch.from_numpy(arrays["groups"]),
        arrays["group_names"].tolist(),
    )
