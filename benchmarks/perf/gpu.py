"""The GPU check: every main method's episodes/s against the backbone bound, MAML batched against a per-task loop,
pretrained feature images/s and peak device memory, at several batch sizes, in one run of a few minutes.

Three parts, each measured on ``--device`` (``cuda`` on a lent GPU machine; the CPU with ``--quick`` for the test):

- ``methods``: evaluation through the harness (:func:`fewshot.evaluate.harness.evaluate`) of ProtoNet, fine-tuning,
  MAML and ANIL on an untrained Conv-4 and the linear probe on a pretrained backbone (when its weights package is
  installed), 5-way 5-shot 15 queries, at each ``--batch-sizes`` episodes per call, against the bound: a plain
  forward of the same episodes' images, a batch of episodes per call, nothing else. Frozen-feature methods embed each
  distinct image once, so they can pass the bound. The variants alternate (:mod:`timing`) and the on-disk feature
  cache is off, so every round computes.
- ``maml``: :mod:`maml_throughput` (suite, one ``vmap`` call, a plain per-task loop) at each ``--meta-batches``.
- ``embedding``: :mod:`embed_throughput` (the cached path against a plain timm forward) at ``--embed-batch-sizes``.

Peak device memory is ``torch.cuda.max_memory_allocated`` per variant (the maximum over its rounds), and over each
whole call of the other two scripts; none on the CPU. Run from the repository root on the GPU machine::

    PYTHONPATH=$PWD python benchmarks/perf/gpu.py --device cuda

It prints each figure as it is measured and writes ``results/perf/gpu.{json,md}`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from fewshot.backbones import create_backbone
from fewshot.data import sample_episodes
from fewshot.data.episodes import as_index
from fewshot.evaluate.harness import evaluate
from fewshot.methods import create_method

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other perf scripts beside this one
import embed_throughput  # noqa: E402
import maml_throughput  # noqa: E402
from timing import alternate, write_throughput  # noqa: E402
from train_throughput import dataset as image_dataset  # noqa: E402

MiB = 1 << 20
METHODS = ("protonet", "finetune", "maml", "anil")
PRETRAINED_METHOD = "linear-probe"
QUICK = {"hidden": 8, "episodes": 4, "batch_sizes": "1,2", "rounds": 1, "meta_batches": "2,4",
         "embed_batch_sizes": "2,4", "embed_images": 4}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Peaks:
    """Peak allocated device memory (MiB) per variant, the maximum over its calls; empty off CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, {}

    def around(self, name: str, run: Callable[[], object]) -> Callable[[], object]:
        def measured():
            if self.device.type == "cuda":
                sync(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            value = run()
            if self.device.type == "cuda":
                sync(self.device)
                self.mib[name] = max(self.mib.get(name, 0.0), torch.cuda.max_memory_allocated(self.device) / MiB)
            return value
        return measured


def pretrained_backbone(name: str):
    """The pretrained backbone ``name``, or the reason it cannot be built here (its weights package missing)."""
    if name == "none":
        return None, "not asked for (--pretrained none)"
    try:
        return create_backbone(name, in_channels=1, image_size=28), None
    except Exception as error:  # noqa: BLE001 - any failure only skips this part, said in the output
        return None, f"{name} unavailable: {type(error).__name__}: {str(error)[:160]}"


def method_groups(args: argparse.Namespace, device: torch.device, backbone) -> dict:
    """episodes/s of each method and of its bound, per batch size, with the peak device memory of each; the linear
    probe on ``backbone`` (the pretrained one) unless it is None."""
    data = image_dataset(40, 20, 28)
    episodes = sample_episodes(data, 5, 5, 15, args.episodes, seed=0)
    rows = torch.cat([as_index(episodes.support), as_index(episodes.query)], dim=1)   # [E, S + Q]
    torch.manual_seed(0)
    methods = {name: create_method(name, create_backbone("conv4", in_channels=1, image_size=28, hidden=args.hidden))
               for name in METHODS}
    if backbone is not None:
        methods[PRETRAINED_METHOD] = create_method(PRETRAINED_METHOD, backbone)
    groups, cache = {}, os.environ.get("FEWSHOT_FEATURE_CACHE")
    os.environ["FEWSHOT_FEATURE_CACHE"] = "0"       # every round computes its features
    try:
        for name, method in methods.items():
            groups.update(method_rates(args, device, name, method, data, episodes, rows))
    finally:
        if cache is None:
            os.environ.pop("FEWSHOT_FEATURE_CACHE")
        else:
            os.environ["FEWSHOT_FEATURE_CACHE"] = cache
    return groups


def method_rates(args: argparse.Namespace, device: torch.device, name: str, method, data, episodes,
                 rows: torch.Tensor) -> dict:
    """One method's groups: the harness and the bound at each batch size."""
    groups = {}
    method.to(device).eval()
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        def harness() -> float:
            start = time.perf_counter()
            evaluate(method, data, episodes, device=device, batch_size=batch, progress=False)
            return len(episodes) / (time.perf_counter() - start)

        @torch.no_grad()
        def bound() -> float:
            start = time.perf_counter()
            for lo in range(0, len(rows), batch):
                method.backbone(data.gather(rows[lo:lo + batch].flatten(), device))
            sync(device)
            return len(episodes) / (time.perf_counter() - start)

        peaks = Peaks(device)
        variants = {"harness": peaks.around("harness", harness), "bound": peaks.around("bound", bound)}
        for run in variants.values():   # warm-up: kernels, allocator, autotuning
            run()
        group = f"{name} ({'pretrained ' + args.pretrained if name == PRETRAINED_METHOD else 'Conv-4'}), " \
                f"{batch} episode(s)/call"
        groups[group] = {"unit": "episodes/s", "device": str(device), "method": name, "batch": batch,
                         "reference": "bound",
                         **alternate(variants, args.rounds), "peak_mib": peaks.mib}
        m = groups[group]["median"]
        print(f"{group}: {m['harness']:.1f} episodes/s, bound {m['bound']:.1f} "
              f"({m['harness'] / m['bound']:.2f}x)" + "".join(f", peak {k} {v:.0f} MiB"
                                                             for k, v in peaks.mib.items()), flush=True)
    return groups


def script_groups(args: argparse.Namespace, device: torch.device, scratch: Path,
                  unavailable: str | None = None) -> tuple[dict, dict]:
    """The MAML and pretrained-embedding groups, from :mod:`maml_throughput` and :mod:`embed_throughput` run here,
    and what was skipped: the embedding when the pretrained backbone is ``unavailable`` (the reason)."""
    groups: dict = {}
    quick = ["--rounds", "1", "--iters", "1"] if args.quick else []
    for meta_batch in args.meta_batches.split(","):
        peaks = Peaks(device)
        result = peaks.around("call", lambda: maml_throughput.main(
            ["--device", str(device), "--threads", "0", "--meta-batch", meta_batch, "--hidden", str(args.hidden),
             "--out", str(scratch), *quick]))()
        for name, timing in result["throughput"]["groups"].items():
            groups[f"{name} meta-training, meta-batch {meta_batch}"] = {
                "unit": "tasks/s", "device": str(device), "method": name, "batch": int(meta_batch),
                "reference": "loop", **timing,
                "peak_mib": peaks.mib}
    if unavailable:
        return groups, {"embedding": unavailable}
    peaks = Peaks(device)
    result = peaks.around("call", lambda: embed_throughput.main(
        ["--device", str(device), "--threads", "0", "--backbone", args.pretrained, "--batch-sizes",
         args.embed_batch_sizes, "--images", str(args.embed_images), "--rounds", str(args.rounds),
         "--out", str(scratch)]))()
    groups[f"pretrained features ({args.pretrained})"] = {
        "unit": "images/s", "device": str(device), "batch": args.embed_batch_sizes,
        "reference": next(iter(result["variants"])),     # the plain timm forward
        "median": {k: v["median"] for k, v in result["variants"].items()},
        "rounds": {k: v["rounds"] for k, v in result["variants"].items()}, "peak_mib": peaks.mib}
    return groups, {}


def render_markdown(result: dict) -> str:
    """The table of ``gpu.json``: a function of the stored result alone."""
    env, groups = result["environment"], result["throughput"]["groups"]
    where = env.get("gpu") or env.get("cpu") or "unknown"
    lines = [f"# GPU check: {env['device']} ({where})", "",
             f"torch {env['torch']}, git {env.get('git_revision')}; medians of alternating rounds. Generated by "
             f"`benchmarks/perf/gpu.py` ({'--quick, ' if result['settings']['quick'] else ''}settings in "
             f"`gpu.json`). Peak: "
             f"`torch.cuda.max_memory_allocated` of the variant (or of the whole call), none off CUDA. The reference: "
             f"the backbone bound (methods), the per-task loop (MAML), the plain timm forward (embedding).", "",
             "| group | variant | rate | unit | x reference | peak MiB |", "|:--|:--|--:|:--|--:|--:|"]
    for group, g in groups.items():
        reference = g["median"][g["reference"]]
        for variant, rate in g["median"].items():
            peak = g["peak_mib"].get(variant, g["peak_mib"].get("call"))
            lines.append(f"| {group} | {variant} | {rate:.1f} | {g['unit']} | {rate / reference:.2f} | "
                         f"{'-' if peak is None else f'{peak:.0f}'} |")
    lines += [""] + [f"- {part} skipped: {why}" for part, why in result["skipped"].items()]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny settings (seconds on a CPU): a check, no figure")
    parser.add_argument("--hidden", type=int, default=64, help="Conv-4 filters")
    parser.add_argument("--episodes", type=int, default=128, help="test episodes per timed harness call")
    parser.add_argument("--batch-sizes", default="1,16,64", help="episodes per harness call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--meta-batches", default="8,32", help="MAML meta-batch sizes")
    parser.add_argument("--pretrained", default="efficientnet_lite0",
                        help="backbone of the linear probe and of the embedding part ('none': skip both)")
    parser.add_argument("--embed-batch-sizes", default="64,256,512")
    parser.add_argument("--embed-images", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--out", default="results/perf", help="directory for gpu.{json,md}")
    args = parser.parse_args(argv)
    if args.quick:   # the tiny settings, unless given on the command line
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:]) if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    start = time.perf_counter()
    backbone, why = pretrained_backbone(args.pretrained)      # built once: the probe's, and it decides the embedding
    groups = method_groups(args, device, backbone)
    del backbone
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        more, skipped = script_groups(args, device, Path(scratch), why)
    groups.update(more)
    skipped = {PRETRAINED_METHOD: why, **skipped} if why else skipped
    settings = {**vars(args), "seconds": time.perf_counter() - start}
    result = write_throughput("gpu", settings, "per s (episodes, tasks or images: each group's unit)", groups,
                              str(device), args.out, render_markdown,
                              extra={"skipped": skipped})
    print(render_markdown(result))
    return result


if __name__ == "__main__":
    main()
