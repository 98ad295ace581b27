"""transformers image encoders (``hf:<folder>``): tiny randomly initialised DINOv2 and CLIP models saved by the test."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the text extra installs transformers")

from fewshot.backbones import accepts_any_image_format, create_backbone, pretrained_on  # noqa: E402
from fewshot.backbones.pretrained import MissingWeightsError  # noqa: E402
from fewshot.cli import main  # noqa: E402
from fewshot.data import sample_episodes  # noqa: E402
from fewshot.evaluate.harness import evaluate  # noqa: E402
from fewshot.methods import create_method  # noqa: E402

from conftest import shades_dataset  # noqa: E402

MEAN, STD = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def save_dinov2(folder, seed: int = 0, processor: bool = True):
    torch.manual_seed(seed)        # transformers initialises from the global generator; the test owns it here
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=48, image_size=28, patch_size=7)
    transformers.Dinov2Model(config).eval().save_pretrained(folder)
    if processor:
        transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                       do_center_crop=True, resample=2, image_mean=list(MEAN),
                                       image_std=list(STD)).save_pretrained(folder)
    return folder


def save_clip(folder):
    torch.manual_seed(1)
    config = transformers.CLIPConfig(
        vision_config=dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
                           image_size=28, patch_size=7, projection_dim=16),
        text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                         vocab_size=100, projection_dim=16), projection_dim=16)
    transformers.CLIPModel(config).eval().save_pretrained(folder)
    transformers.CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                    image_mean=list(MEAN), image_std=list(STD)).save_pretrained(folder)
    return folder


def test_dinov2_features_are_its_pooled_class_token(tmp_path):
    folder = save_dinov2(tmp_path / "dino")
    backbone = create_backbone(f"hf:{folder}", in_channels=1, image_size=28)
    cfg = backbone.preprocess_config
    assert (cfg.input_size, cfg.interpolation, cfg.mean, cfg.std) == (28, "bilinear", MEAN, STD)
    assert cfg.crop_pct == pytest.approx(28 / 32)
    assert backbone.out_features == 32 and accepts_any_image_format(backbone)
    assert pretrained_on(backbone) == "dinov2 (dino)"
    images = torch.rand(3, 3, 28, 28)
    reference = transformers.Dinov2Model.from_pretrained(folder).eval()
    with torch.no_grad():
        ours = backbone(images)
        pixels = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        # 28 pixels through resize-to-32 and centre-crop-28 is not the identity, so the reference takes our
        # preprocessed input and checks the rest; the resize itself is Preprocess's, tested with the timm ones.
        expected = reference(pixel_values=backbone.preprocess(images)).pooler_output
    torch.testing.assert_close(ours, expected)
    assert not torch.allclose(backbone.preprocess(images), pixels)   # the resize and crop did happen
    assert ours.shape == (3, 32)


def test_clip_contributes_its_vision_tower(tmp_path):
    folder = save_clip(tmp_path / "clip")
    backbone = create_backbone(f"hf:{folder}", in_channels=3, image_size=28)
    assert backbone.out_features == 24
    assert backbone.feature_cache_identity["architecture"] == "hf:clip_vision_model"
    images = torch.rand(2, 3, 28, 28)
    tower = transformers.CLIPVisionModel.from_pretrained(folder).eval()
    pixels = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():             # 28 -> 28: no resize, so the whole input is checked here
        torch.testing.assert_close(backbone(images), tower(pixel_values=pixels).pooler_output)


def test_identity_follows_the_weights_and_frozen_is_the_default(tmp_path):
    a = create_backbone(f"hf:{save_dinov2(tmp_path / 'a', seed=0)}", in_channels=1, image_size=28)
    b = create_backbone(f"hf:{save_dinov2(tmp_path / 'b', seed=5)}", in_channels=1, image_size=28)
    assert a.feature_cache_identity["weights_sha256"] != b.feature_cache_identity["weights_sha256"]
    assert not any(p.requires_grad for p in a.parameters())
    trainable = create_backbone(f"hf:{tmp_path / 'a'}", in_channels=1, image_size=28, frozen=False)
    assert trainable.feature_cache_identity is None and all(p.requires_grad for p in trainable.parameters())
    no_processor = create_backbone(f"hf:{save_dinov2(tmp_path / 'c', processor=False)}", in_channels=1,
                                   image_size=28)
    assert no_processor.preprocess_config.input_size == 28      # the model's image_size, ImageNet statistics
    assert create_backbone(f"hf:{tmp_path / 'a'}", input_size=14).preprocess_config.input_size == 14


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(MissingWeightsError, match="no config.json"):
        create_backbone(f"hf:{tmp_path / 'nothing'}")
    with pytest.raises(TypeError, match="no option"):
        create_backbone(f"hf:{save_dinov2(tmp_path / 'd')}", imput_size=3)
    capsys.readouterr()                   # transformers' own saving progress
    assert main(["--method", "simpleshot", "--backbone", f"hf:{tmp_path / 'nothing'}", "--episodes", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --backbone hf:") and "config.json" in err and err.count("\n") == 1


def test_episodes_on_a_dinov2_backbone_score_and_reuse_cached_features(tmp_path):
    folder = save_dinov2(tmp_path / "dino")
    dataset = shades_dataset()
    episodes = sample_episodes(dataset, ways=5, shots=1, queries=3, episodes=4, seed=3)
    backbone = create_backbone(f"hf:{folder}", in_channels=1, image_size=28)
    first = evaluate(create_method("simpleshot", backbone), dataset, episodes, device="cpu", progress=False)
    assert float(first.accuracies.mean()) > 0.9          # five shades of grey: apart even in random features
    calls = []
    backbone.register_forward_hook(lambda *args: calls.append(1))
    again = evaluate(create_method("simpleshot", backbone), dataset, episodes, device="cpu", progress=False)
    assert calls == [] and (again.accuracies == first.accuracies).all()     # features from the cache
