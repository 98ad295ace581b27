"""The domain conversion rule: exact pixels for simple cases, Pillow as the reference otherwise, recorded steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fewshot.data import ClassDataset
from fewshot.data import convert as convert_module
from fewshot.data.convert import RULE, ImageFormat, convert_images, image_format, match_format


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def dataset(data, name="toy") -> ClassDataset:
    data = torch.as_tensor(data)
    labels = torch.arange(len(data)) % 2
    return ClassDataset(data, labels, ["a", "b"], name, groups=torch.tensor([0, 1]), group_names=["g0", "g1"])


def random_images(n, c, h, w, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def test_nothing_to_convert_returns_the_same_dataset():
    ds = dataset(random_images(4, 1, 28, 28))
    same, rule = convert_images(ds, 1, 28)
    assert same is ds
    assert rule == {"rule": RULE, "from": [1, 28, 28], "to": [1, 28, 28], "steps": []}


def test_rgb_to_grey_is_pillows_luma():
    pixels = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [10, 20, 30]], np.uint8)
    ds = dataset(pixels.T.reshape(1, 3, 1, 6).repeat(2, 0))
    grey, rule = convert_images(ds, 1, (1, 6))
    # (19595 R + 38470 G + 7471 B + 32768) >> 16, value by value.
    assert grey.data[0, 0, 0].tolist() == [76, 150, 29, 255, 0, 18]
    assert rule["steps"] == ["RGB to grey: ITU-R 601-2 luma, as Pillow's convert('L')"]
    images = random_images(3, 3, 9, 7)
    reference = [np.asarray(Image.fromarray(im.transpose(1, 2, 0)).convert("L")) for im in images]
    assert np.array_equal(convert_images(dataset(images), 1, (9, 7))[0].data[:, 0].numpy(), np.stack(reference))


def test_grey_to_rgb_repeats_the_channel():
    images = random_images(2, 1, 5, 5)
    rgb, rule = convert_images(dataset(images), 3, 5)
    assert rgb.data.shape == (2, 3, 5, 5)
    assert all(torch.equal(rgb.data[:, c], torch.from_numpy(images[:, 0])) for c in range(3))
    assert rule == {"rule": RULE, "from": [1, 5, 5], "to": [3, 5, 5],
                    "steps": ["grey to RGB: the channel repeated three times"]}


def test_resizing_a_flat_image_keeps_its_value_and_follows_pillow():
    flat = np.full((2, 1, 8, 8), 200, np.uint8)
    big, rule = convert_images(dataset(flat), 1, 28)
    assert big.data.shape == (2, 1, 28, 28) and big.data.unique().tolist() == [200]
    assert rule["steps"] == ["resize 8x8 to 28x28: Pillow lanczos, each channel"]
    images = random_images(2, 1, 8, 8)
    got = convert_images(dataset(images), 1, (28, 20))[0].data[:, 0].numpy()
    reference = [np.asarray(Image.fromarray(im[0]).resize((20, 28), Image.Resampling.LANCZOS)) for im in images]
    assert np.array_equal(got, np.stack(reference))


def test_grey_digits_to_an_rgb_backbone_and_rgb_to_grey_with_resizing():
    # Grey to RGB: resized, then repeated -- the same as Pillow resizing an RGB image made of the grey one.
    images = random_images(2, 1, 8, 8, seed=1)
    rgb, rule = convert_images(dataset(images), 3, 84)
    reference = [np.asarray(Image.fromarray(im[0]).convert("RGB").resize((84, 84), Image.Resampling.LANCZOS))
                 for im in images]
    assert np.array_equal(rgb.data.numpy().transpose(0, 2, 3, 1), np.stack(reference))
    assert rule["steps"] == ["resize 8x8 to 84x84: Pillow lanczos, each channel",
                             "grey to RGB: the channel repeated three times"]
    # RGB to grey: luma first, then resized.
    images = random_images(2, 3, 84, 84, seed=2)
    grey, rule = convert_images(dataset(images), 1, 28)
    reference = [np.asarray(Image.fromarray(im.transpose(1, 2, 0)).convert("L").resize((28, 28),
                                                                                       Image.Resampling.LANCZOS))
                 for im in images]
    assert np.array_equal(grey.data[:, 0].numpy(), np.stack(reference))
    assert rule["steps"][0].startswith("RGB to grey") and rule["steps"][1].startswith("resize 84x84 to 28x28")


def test_float_images_convert_in_float():
    images = torch.tensor([[[[1.0]], [[0.5]], [[0.0]]]]).repeat(2, 1, 1, 1)
    grey, _ = convert_images(dataset(images), 1, 1)
    assert grey.data.dtype == torch.float32
    assert torch.allclose(grey.data.flatten(), torch.tensor([0.299 + 0.5 * 0.587] * 2))
    flat = convert_images(dataset(torch.full((2, 1, 4, 4), 0.25)), 1, 9)[0].data
    assert flat.shape == (2, 1, 9, 9) and torch.allclose(flat, torch.full_like(flat, 0.25), atol=1e-6)


def test_the_converted_dataset_keeps_labels_and_is_cached(monkeypatch):
    ds = dataset(random_images(4, 1, 8, 8))
    ds.split_rule = "all classes"
    first, rule = convert_images(ds, 3, 28)
    assert first.name == "toy[as 3x28x28]" and first.class_names == ds.class_names
    assert torch.equal(first.labels, ds.labels) and torch.equal(first.groups, ds.groups)
    assert first.group_names == ds.group_names and first.split_rule == "all classes" and first.conversion == rule

    def no_conversion(*args):
        raise AssertionError("the converted images should have come from the cache")

    monkeypatch.setattr(convert_module, "_convert", no_conversion)
    again, again_rule = convert_images(ds, 3, 28)
    assert torch.equal(again.data, first.data) and again.fingerprint() == first.fingerprint() and again_rule == rule


def test_match_format_reads_the_reference():
    target = dataset(random_images(2, 1, 8, 8))
    reference = dataset(random_images(2, 3, 16, 12))
    assert image_format(reference) == ImageFormat(3, 16, 12)
    matched, rule = match_format(target, reference)
    assert image_format(matched) == ImageFormat(3, 16, 12) and rule["to"] == [3, 16, 12]
    assert torch.equal(matched.data, match_format(target, ImageFormat(3, 16, 12))[0].data)


@pytest.mark.parametrize("data,channels,size,message", [
    (random_images(2, 4, 8, 8), 3, 8, "toy has 4-channel images and the backbone takes 3: only grey"),
    (torch.rand(2, 5), 1, 8, "toy holds feature vectors, not images"),
    (random_images(2, 1, 8, 8), 1, 0, "image size must be positive, got 0x0"),
])
def test_impossible_conversions_say_why(data, channels, size, message):
    with pytest.raises(ValueError, match=message):
        convert_images(dataset(data), channels, size)
    with pytest.raises(ValueError, match="resample='cubic': choose one of lanczos, bicubic"):
        convert_images(dataset(random_images(2, 1, 8, 8)), 1, 4, resample="cubic")
