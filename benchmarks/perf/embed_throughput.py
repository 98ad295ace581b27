"""Pretrained feature extraction: the harness's cached embedding path against a plain timm forward (the bound).

The bound is the issue's: the timm model alone on images already preprocessed and in memory, in batches of 16 in
``channels_last``. The harness side is :func:`fewshot.evaluate.feature_cache.cached_features` (gather the uint8
rows, scale, resize to 224 px, normalise, the model, the copy into the cache, the cache write), at several batch
sizes, contiguous and ``channels_last``, and as the harness calls it by default (:func:`fewshot.evaluate.features.
embed`). Every variant runs once per round, in an order rotated each round (A B C .., B C .. A, ...), so load from
other processes falls on all of them; the medians over rounds are reported. Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/perf/embed_throughput.py --threads 1

It prints images/s per variant and its ratio to the bound, and writes ``results/perf/embed_throughput.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from fewshot.backbones import create_backbone
from fewshot.core.atomic import atomic_write_text
from fewshot.data import ClassDataset
from fewshot.evaluate.feature_cache import cached_features, memory_format
from fewshot.evaluate.features import embed
from fewshot.methods import create_method
from fewshot.results.records import environment, now


def images(count: int, size: int, channels: int) -> ClassDataset:
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(count, channels, size, size, generator=g) * 255).to(torch.uint8)
    return ClassDataset(data, torch.arange(count) % 4, [f"c{i}" for i in range(4)], "embed-throughput")


def render_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# Pretrained feature extraction: {s['backbone']} at {s['input_size']} px, {s['threads']} thread(s), "
             f"{s['device']}", "",
             f"{s['images']} images of {s['image_size']}x{s['image_size']}, median of {s['rounds']} alternating "
             f"rounds; bound: plain timm forward on preprocessed tensors in memory, batch 16, channels_last.", "",
             "| variant | images/s | x bound | rounds |", "|:--|--:|--:|:--|"]
    bound = result["variants"]["timm bound (batch 16, channels_last)"]["median"]
    for name, v in result["variants"].items():
        lines.append(f"| {name} | {v['median']:.1f} | {v['median'] / bound:.2f} | "
                     f"{', '.join(f'{x:.1f}' for x in v['rounds'])} |")
    lines += ["", f"channels_last features differ from contiguous ones by at most {result['max_abs_diff']:.2e}.",
              "", f"Measured {result['created']} (torch {result['environment']['torch']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=28, help="source images (Omniglot-sized by default)")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--images", type=int, default=48, help="images embedded per variant and round")
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/perf", help="directory for embed_throughput.{json,md}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset = images(args.images, args.image_size, args.channels)
    backbone = create_backbone(args.backbone, in_channels=args.channels, image_size=args.image_size).to(device)
    rows = torch.arange(args.images)
    with torch.no_grad():
        ready = backbone.preprocess(dataset.gather(rows, device)).contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bound() -> float:
        start = time.perf_counter()
        with torch.no_grad(), memory_format(backbone, True):
            for lo in range(0, args.images, 16):
                backbone.model.forward_head(backbone.model.forward_features(ready[lo:lo + 16]), pre_logits=True)
            sync()
        return args.images / (time.perf_counter() - start)

    scratch = Path(tempfile.mkdtemp(prefix="embed-throughput-"))   # every run embeds into a fresh cache
    runs = iter(range(1 << 30))

    def harness(batch: int | None, channels_last: bool | None) -> Callable[[], float]:
        def run() -> float:
            root = scratch / str(next(runs))
            start = time.perf_counter()
            if batch is None:    # exactly what evaluate() calls, with its defaults, into a fresh $FEWSHOT_CACHE
                os.environ["FEWSHOT_CACHE"] = str(root)
                embed(create_method("simpleshot", backbone), dataset, rows, device, progress=False)
            else:
                cached_features(backbone, dataset, rows, device, batch_size=batch, progress=False,
                                root=root, channels_last=channels_last)
            sync()
            seconds = time.perf_counter() - start
            shutil.rmtree(root)
            return args.images / seconds
        return run

    variants: dict[str, Callable[[], float]] = {"timm bound (batch 16, channels_last)": bound,
                                                "harness default (as evaluate calls it)": harness(None, None)}
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for cl in (False, True):
            variants[f"harness batch {batch}, {'channels_last' if cl else 'contiguous'}"] = harness(batch, cl)
    for run in variants.values():   # warm-up: allocator, oneDNN primitives
        run()
    timings: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            timings[name].append(variants[name]())
            print(f"round {r + 1}: {name}: {timings[name][-1]:.1f} images/s", flush=True)
    plain = cached_features(backbone, dataset, rows, device, progress=False, root=scratch / "a",
                            channels_last=False).features
    last = cached_features(backbone, dataset, rows, device, progress=False, root=scratch / "b",
                           channels_last=True).features
    shutil.rmtree(scratch)
    result = {"settings": {"backbone": args.backbone, "input_size": backbone.preprocess_config.input_size,
                           "image_size": args.image_size, "images": args.images, "rounds": args.rounds,
                           "threads": torch.get_num_threads(), "device": str(device)},
              "variants": {name: {"median": statistics.median(t), "rounds": t} for name, t in timings.items()},
              "max_abs_diff": float((plain - last).abs().max()), "environment": environment(str(device)),
              "created": now()}
    table = render_markdown(result)
    print(table)
    out = Path(args.out)
    atomic_write_text(out / "embed_throughput.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "embed_throughput.md", table)
    return result


if __name__ == "__main__":
    main()
