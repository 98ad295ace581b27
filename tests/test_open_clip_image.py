"""open_clip image towers (``open_clip:<folder>``): a tiny randomly initialised CLIP saved by the test in open_clip's
Hugging Face layout (``open_clip_config.json`` and ``open_clip_model.safetensors``)."""
from __future__ import annotations

import json

import pytest
import torch

open_clip = pytest.importorskip("open_clip", reason="the test extra installs open_clip_torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from fewshot.backbones import accepts_any_image_format, create_backbone, pretrained_on  # noqa: E402
from fewshot.backbones.pretrained import MissingWeightsError  # noqa: E402
from fewshot.cli import main  # noqa: E402
from fewshot.data import sample_episodes  # noqa: E402
from fewshot.evaluate.harness import evaluate  # noqa: E402
from fewshot.methods import create_method  # noqa: E402

from conftest import shades_dataset  # noqa: E402

MEAN, STD = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
CONFIG = {"embed_dim": 16,
          "vision_cfg": {"image_size": 28, "layers": 1, "width": 32, "patch_size": 7, "head_width": 16},
          "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def save_clip(folder, seed: int = 0, size: int = 28):
    torch.manual_seed(seed)        # open_clip initialises from the global generator; the test owns it here
    model = open_clip.model.CLIP(**CONFIG).eval()
    folder.mkdir(parents=True)
    safetensors_torch.save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    preprocess = {"size": size, "mean": list(MEAN), "std": list(STD), "interpolation": "bilinear",
                  "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CONFIG, "preprocess_cfg": preprocess}))
    return folder, model


def test_features_are_the_image_towers_embedding(tmp_path):
    folder, reference = save_clip(tmp_path / "clip")
    backbone = create_backbone(f"open_clip:{folder}", in_channels=3, image_size=28)
    cfg = backbone.preprocess_config
    assert (cfg.input_size, cfg.crop_pct, cfg.interpolation, cfg.mean, cfg.std) == (28, 1.0, "bilinear", MEAN, STD)
    assert backbone.out_features == 16 and accepts_any_image_format(backbone)
    assert pretrained_on(backbone) == "open_clip (clip)"
    images = torch.rand(3, 3, 28, 28)
    pixels = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():              # 28 -> 28: no resize, so the whole input is checked here
        torch.testing.assert_close(backbone(images), reference.encode_image(pixels))
    grey = torch.rand(2, 1, 28, 28)    # one channel: repeated to three, as for every pretrained backbone
    with torch.no_grad():
        torch.testing.assert_close(backbone(grey), backbone(grey.repeat(1, 3, 1, 1)))


def test_identity_follows_the_weights_and_frozen_is_the_default(tmp_path):
    a = create_backbone(f"open_clip:{save_clip(tmp_path / 'a', seed=0)[0]}")
    b = create_backbone(f"open_clip:{save_clip(tmp_path / 'b', seed=5)[0]}")
    assert a.feature_cache_identity["weights_sha256"] != b.feature_cache_identity["weights_sha256"]
    assert not any(p.requires_grad for p in a.parameters())
    trainable = create_backbone(f"open_clip:{tmp_path / 'a'}", frozen=False)
    assert trainable.feature_cache_identity is None and all(p.requires_grad for p in trainable.parameters())
    assert create_backbone(f"open_clip:{tmp_path / 'a'}", input_size=14).preprocess_config.input_size == 14


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(MissingWeightsError, match="no open_clip_config.json"):
        create_backbone(f"open_clip:{tmp_path / 'nothing'}")
    with pytest.raises(TypeError, match="no option"):
        create_backbone(f"open_clip:{save_clip(tmp_path / 'd')[0]}", imput_size=3)
    assert main(["--method", "simpleshot", "--backbone", f"open_clip:{tmp_path / 'nothing'}", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --backbone open_clip:") and "open_clip_config.json" in err and err.count("\n") == 1


def test_episodes_on_an_open_clip_backbone_score(tmp_path):
    folder, _ = save_clip(tmp_path / "clip")
    dataset = shades_dataset()
    episodes = sample_episodes(dataset, ways=5, shots=1, queries=3, episodes=4, seed=3)
    backbone = create_backbone(f"open_clip:{folder}", in_channels=1, image_size=28)
    result = evaluate(create_method("simpleshot", backbone), dataset, episodes, device="cpu", progress=False)
    assert float(result.accuracies.mean()) > 0.9          # five shades of grey: apart even in random features
