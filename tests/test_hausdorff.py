"""The Modified Hausdorff Distance baseline against a direct numpy/scipy computation of Lake et al.'s demo."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch import nn

from fewshot.methods import create_method, method_class
from fewshot.methods.hausdorff import HausdorffConfig, point_sets


def lake_points(image: np.ndarray, edge: bool = False) -> np.ndarray:
    """LoadImgAsPoints of brendenlake/omniglot's demo_classification.py, for ink-bright [0, 1] images."""
    ink = image > 0.5
    if edge:
        padded = np.pad(ink, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        ink = ink & ~inner
    points = np.transpose(np.array(ink.nonzero())).astype(float)
    return points - points.mean(0)


def lake_mhd(a: np.ndarray, b: np.ndarray) -> float:
    """ModHausdorffDistance of the demo."""
    d = cdist(a, b)
    return max(d.min(1).mean(), d.min(0).mean())


def reference_logits(support, support_labels, query, ways, edge=False):
    e, s, q = support.shape[0], support.shape[1], query.shape[1]
    out = np.full((e, q, ways), np.inf)
    for i in range(e):
        for j in range(q):
            a = lake_points(query[i, j, 0].numpy(), edge)
            for k in range(s):
                c = int(support_labels[i, k])
                out[i, j, c] = min(out[i, j, c], lake_mhd(a, lake_points(support[i, k, 0].numpy(), edge)))
    return -out


def random_glyphs(n: int, size: int = 14, seed: int = 0) -> torch.Tensor:
    """Binary images of a few random strokes (ink bright), ``[n, 1, size, size]``."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(3):
            r, c = torch.randint(0, size, (2,), generator=g).tolist()
            dr, dc = torch.randint(-1, 2, (2,), generator=g).tolist()
            for t in range(size // 2):
                rr, cc = r + t * dr, c + t * dc
                if 0 <= rr < size and 0 <= cc < size:
                    images[i, 0, rr, cc] = 1.0
        images[i, 0, size // 2, size // 2] = 1.0  # never empty
    return images


@pytest.mark.parametrize("points", ["ink", "edge"])
def test_logits_equal_the_direct_computation(points):
    method = create_method("mhd", nn.Identity(), points=points)
    e, ways, shots, queries = 3, 3, 2, 2
    support = random_glyphs(e * ways * shots, seed=1).view(e, ways * shots, 1, 14, 14)
    query = random_glyphs(e * ways * queries, seed=2).view(e, ways * queries, 1, 14, 14)
    labels = torch.arange(ways).repeat_interleave(shots).expand(e, -1)
    logits = method(support, labels, query, ways)
    expected = reference_logits(support, labels, query, ways, edge=points == "edge")
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-5)
    # Bounding the distance block to a single pair changes nothing.
    tiny = create_method("mhd", nn.Identity(), points=points, block_elements=1)
    torch.testing.assert_close(tiny(support, labels, query, ways), logits)


def test_translation_invariance_and_empty_images():
    method = create_method("mhd", nn.Identity())
    glyphs = random_glyphs(3, size=12, seed=3)
    glyphs[1] = 0
    glyphs[1, 0, 3:8, 4] = 1.0   # an L in the middle of the image
    glyphs[1, 0, 7, 4:8] = 1.0
    shifted = torch.zeros(1, 1, 12, 12)
    shifted[0, 0, 1:, 2:] = glyphs[1, 0, :-1, :-2]  # the same L, one row down and two columns right
    support = glyphs.view(1, 3, 1, 12, 12)
    logits = method(support, torch.arange(3).view(1, 3), shifted.view(1, 1, 1, 12, 12), 3)
    assert logits[0, 0, 1] == 0 and logits.argmax(-1).item() == 1
    empty = torch.zeros(1, 1, 1, 12, 12)
    logits = method(support, torch.arange(3).view(1, 3), empty, 3)
    assert torch.isneginf(logits).all()
    coords, counts = point_sets(torch.cat([glyphs[:1], empty[0]]), HausdorffConfig())
    assert counts.tolist() == [int(glyphs[0].sum()), 0] and coords.shape[0] == 2


def test_declares_no_training():
    cls = method_class("mhd")
    assert cls.train_kind == "none" and not cls.frozen_features
    assert create_method("mhd", nn.Identity()).describe()["backbone"]["name"].startswith("none")


def test_first_official_run_matches_lake_demo(shared_data):
    from fewshot.data.omniglot import load_omniglot_runs

    if not (shared_data / "omniglot" / "all_runs.zip").is_file():
        pytest.skip(f"{shared_data / 'omniglot' / 'all_runs.zip'} is absent")
    dataset, episodes = load_omniglot_runs(shared_data, image_size=105, download=False)
    run = episodes[0:1]
    support = dataset.gather(run.support)
    query = dataset.gather(run.query[:, :4])  # four test items keep this quick
    logits = create_method("mhd", nn.Identity())(support, run.support_labels, query, 20)
    expected = reference_logits(support, run.support_labels, query, 20)
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4)
