"""The cross-domain specs that need data this machine lacks (BSCD-FSL, Chen et al.'s miniImageNet -> CUB) run end
to end on fake copies built here in the publishers' layouts: miniImageNet's split folders (all 100 classes, the
source) and EuroSAT's class folders or CUB's images folder (the targets)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewshot.data.bscdfsl import EUROSAT_CLASSES
from fewshot.data.cub import chen_split
from fewshot.data.miniimagenet import RAVI_SPLIT
from fewshot.reproduce.run import reproduce, stored_records
from fewshot.reproduce.specs import load_spec
from fewshot.runner import Runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))


def flat(path: Path, k: int, j: int) -> None:
    """A flat 12x12 image: class k in red, drawing j in green."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), (k * 2 % 256, 40 + 9 * j, 90), np.uint8)).save(path)


def fake_miniimagenet(root: Path, per_class: int = 2) -> None:
    for split in ("train", "val", "test"):
        for k, wnid in enumerate(sorted(RAVI_SPLIT[split])):
            for j in range(per_class):
                flat(root / "miniimagenet" / split / wnid / f"{wnid}_{j}.png", k, j)


def run_cell(spec_name: str, cell: str, root: Path, out: Path):
    spec = load_spec(ROOT / "benchmarks" / f"{spec_name}.toml")
    runner = Runner(data_root=root, checkpoint_dir=out / "checkpoints", device="cpu", progress=False)
    report = reproduce(spec, out=out, runner=runner, episodes=2, train_steps=2, cells=[cell], fail_fast=True,
                       log=lambda s: None)
    assert report.ran == [cell] and not report.failed, report.failed
    (record,) = stored_records(out)
    return record


def test_bscdfsl_learns_on_all_of_miniimagenet_and_tests_on_a_target(tmp_path):
    root = tmp_path / "data"
    fake_miniimagenet(root)
    for k, name in enumerate(EUROSAT_CLASSES):
        for j in range(20):        # 5 shots + 15 queries
            flat(root / "eurosat" / "2750" / name / f"{name}_{j + 1}.jpg", k, j)
    record = run_cell("bscdfsl", "eurosat-5/finetune (new head, frozen ResNet-12)", root, tmp_path / "out")
    assert (record.config.train_dataset, record.config.train_split, record.config.cross_domain) == (
        "miniimagenet", "all", True)
    assert (record.dataset, record.split, record.ways, record.shots, record.queries) == ("eurosat", "test", 5, 5, 15)
    assert len(record.accuracies) == 2 and record.config.train_config["steps"] == 2


def test_chen_cross_domain_tests_on_cubs_novel_classes(tmp_path):
    root = tmp_path / "data"
    fake_miniimagenet(root, per_class=16)   # ProtoNet's training episodes: 1 shot + 15 queries
    folders = [f"{i + 1:03d}.Bird_{i + 1}" for i in range(200)]
    novel = set(chen_split(folders)["test"])
    for k, c in enumerate(folders):
        for j in range(16 if c in novel else 1):    # a novel class: 1 shot + 15 queries
            flat(root / "cub" / "CUB_200_2011" / "images" / c / f"{c[4:]}_{j:04d}.jpg", k, j)
    record = run_cell("chen2019-miniimagenet-cub", "5w1s/ProtoNet", root, tmp_path / "out")
    assert (record.config.train_dataset, record.config.train_split) == ("miniimagenet", "all")
    assert (record.dataset, record.split, record.ways, record.shots) == ("cub", "test", 5, 1)
    assert len(record.accuracies) == 2 and record.config.train_config["steps"] == 2
