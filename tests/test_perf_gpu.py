"""``benchmarks/perf/gpu.py`` end to end on the CPU with its tiny ``--quick`` settings: every part runs and writes
``gpu.{json,md}`` with a positive figure for every variant, each labelled with the device it was measured on (no
timing is asserted: the figures of a quick run mean nothing)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "perf"))
import gpu  # noqa: E402


def test_quick_run_writes_every_part_labelled_with_the_device(tmp_path):
    threads = torch.get_num_threads()
    try:
        returned = gpu.main(["--quick", "--device", "cpu", "--threads", "1", "--pretrained", "none", "--out",
                             str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    stored = json.loads((tmp_path / "gpu.json").read_text())
    assert stored == json.loads(json.dumps(returned))
    assert stored["benchmark"] == "gpu" and stored["environment"]["device"] == "cpu"
    assert stored["settings"]["quick"] is True and stored["settings"]["batch_sizes"] == "1,2"
    groups = stored["throughput"]["groups"]
    expected = {f"{m} (Conv-4), {b} episode(s)/call" for m in gpu.METHODS for b in (1, 2)}
    expected |= {f"{m} meta-training, meta-batch {b}" for m in ("maml", "fomaml", "anil") for b in (2, 4)}
    assert set(groups) == expected
    for name, group in groups.items():
        assert group["device"] == "cpu", name
        assert group["unit"] == ("episodes/s" if "episode(s)/call" in name else "tasks/s"), name
        variants = {"harness", "bound"} if group["unit"] == "episodes/s" else {"suite", "one vmap", "loop"}
        assert set(group["median"]) == variants and group["reference"] in variants, name
        assert all(rate > 0 for rate in group["median"].values()), name
        assert all(len(rates) == 1 and rates[0] > 0 for rates in group["rounds"].values()), name
        assert group["peak_mib"] == {}, name            # device memory is CUDA's alone
    assert set(stored["skipped"]) == {"linear-probe", "embedding"}
    table = (tmp_path / "gpu.md").read_text()
    assert table == gpu.render_markdown(stored)         # the table is a function of the stored result
    assert table.startswith("# GPU check: cpu") and table.count("| maml (Conv-4)") == 4


def test_a_missing_pretrained_backbone_is_skipped_with_its_reason():
    backbone, why = gpu.pretrained_backbone("no-such-backbone")
    assert backbone is None and why.startswith("no-such-backbone unavailable: ")


def test_embedding_part_is_embed_throughput_against_the_timm_bound(tmp_path):
    backbone, why = gpu.pretrained_backbone("efficientnet_lite0")
    if backbone is None:
        pytest.skip(why)
    args = argparse.Namespace(quick=True, meta_batches="2", hidden=8, pretrained="efficientnet_lite0",
                              embed_batch_sizes="2,4", embed_images=4, rounds=1)
    threads = torch.get_num_threads()
    try:
        groups, skipped = gpu.script_groups(args, torch.device("cpu"), tmp_path)
    finally:
        torch.set_num_threads(threads)
    group = groups["pretrained features (efficientnet_lite0)"]
    assert skipped == {} and group["unit"] == "images/s" and group["device"] == "cpu"
    assert group["reference"] == "timm bound (batch 16, channels_last)"
    assert {f"harness batch {b}, {m}" for b in (2, 4) for m in ("contiguous", "channels_last")} < set(group["median"])
    assert all(rate > 0 for rate in group["median"].values())
