"""Peak memory of an evaluation against its number of episodes (600, 6,000, 60,000 by default).

Each count runs in a fresh process (peak RSS only grows within one), which loads the test split, samples the
5-way 5-shot 15-query episodes and evaluates ProtoNet on them through the harness; it reports its resident memory
after each phase and the peak (``ru_maxrss``), and on a GPU also the peak of allocated device memory. Two kinds of
data: ``synthetic`` (the default dataset's 28x28 test images, an untrained Conv-4, as the issue measured on
Omniglot) and ``features`` (random 64-d feature vectors, no backbone: the harness alone). Run from the repository
root::

    PYTHONPATH=$PWD python benchmarks/perf/eval_memory.py --threads 1

It prints a table and writes ``results/perf/eval_memory.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MiB = 1 << 20


def rss() -> float:
    """Resident memory now, in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def peak() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> dict:
    import torch

    from fewshot.data import ClassDataset, load_dataset, sample_episodes
    from fewshot.evaluate.harness import evaluate
    from fewshot.methods import create_method
    from fewshot.methods.protonet import ProtoNet

    if args.threads:
        torch.set_num_threads(args.threads)
    phases = {"imports": (rss(), peak())}
    if args.data == "features":
        g = torch.Generator().manual_seed(0)
        classes = 400
        dataset = ClassDataset(torch.randn(classes * 20, 64, generator=g), torch.arange(classes).repeat_interleave(20),
                               [f"c{i}" for i in range(classes)], "features")

        class FeatureProtoNet(ProtoNet):       # the rows are features already: embed is the identity
            def embed(self, images):
                return images

        method = FeatureProtoNet(torch.nn.Identity())
    else:
        dataset = load_dataset("synthetic", "test")
        torch.manual_seed(0)
        from fewshot.backbones import create_backbone
        method = create_method("protonet", create_backbone("conv4", in_channels=1, image_size=28))
    phases["data"] = (rss(), peak())
    start = time.perf_counter()
    episodes = sample_episodes(dataset, 5, 5, 15, args.episodes, seed=0)
    phases["sample"] = (rss(), peak())
    sample_seconds = time.perf_counter() - start
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = evaluate(method, dataset, episodes, device=device, progress=False)
    phases["evaluate"] = (rss(), peak())
    return {"episodes": args.episodes, "data": args.data, "images": len(dataset),
            "phases": {k: {"rss_mib": v[0], "peak_mib": v[1]} for k, v in phases.items()},
            "sample_seconds": sample_seconds, "eval_seconds": time.perf_counter() - start,
            "mean_accuracy": float(result.accuracies.mean()),
            "device_peak_mib": torch.cuda.max_memory_allocated(device) / MiB if device.type == "cuda" else None}


def _flatness(runs: list[dict]) -> list[str]:
    """One line per kind of data: the peak at the most episodes against the peak at the fewest (the target is
    within 10%)."""
    lines = []
    for data in dict.fromkeys(r["data"] for r in runs):
        mine = sorted((r for r in runs if r["data"] == data), key=lambda r: r["episodes"])
        if len(mine) > 1:
            low, high = (r["phases"]["evaluate"]["peak_mib"] for r in (mine[0], mine[-1]))
            lines.append(f"- {data}: peak after evaluation at {mine[-1]['episodes']:,} episodes {high:.0f} MiB, "
                         f"{100 * (high / low - 1):+.1f}% against {low:.0f} MiB at {mine[0]['episodes']:,}.")
    return lines


def render_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# Peak memory of an evaluation against episodes ({s['device']}, {s['threads']} thread(s))", "",
             "ProtoNet, 5-way 5-shot, 15 queries per class; each count in a fresh process. RSS in MiB: after the "
             "data is loaded, the peak up to the end of sampling and of evaluation; the growth is the evaluation's "
             "peak less the memory held once the data was loaded.", "",
             "| data | episodes | images | RSS with data | peak after sampling | peak after evaluation | growth "
             "| device peak | sample (s) | eval (s) |", "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for run in result["runs"]:
        p = run["phases"]
        device = f"{run['device_peak_mib']:.0f}" if run["device_peak_mib"] is not None else "-"
        lines.append(f"| {run['data']} | {run['episodes']:,} | {run['images']:,} | {p['data']['rss_mib']:.0f} | "
                     f"{p['sample']['peak_mib']:.0f} | {p['evaluate']['peak_mib']:.0f} | "
                     f"{p['evaluate']['peak_mib'] - p['data']['rss_mib']:.0f} | {device} | "
                     f"{run['sample_seconds']:.1f} | {run['eval_seconds']:.1f} |")
    lines += ["", *_flatness(result["runs"]), "", f"Measured {result['created']} (torch {result['environment']['torch']})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", default="600,6000,60000", help="comma-separated episode counts")
    parser.add_argument("--data", default="synthetic,features", help="synthetic, features or both")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/perf", help="directory for eval_memory.{json,md}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.episodes = int(args.episodes)
        print(json.dumps(child(args)))
        return {}
    runs = []
    for data in args.data.split(","):
        for count in args.episodes.split(","):
            command = [sys.executable, __file__, "--child", "--episodes", count, "--data", data,
                       "--threads", str(args.threads), "--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            p = runs[-1]["phases"]
            print(f"{data} {int(count):>6,} episodes: peak {p['evaluate']['peak_mib']:.0f} MiB "
                  f"(data {p['data']['rss_mib']:.0f}, after sampling {p['sample']['peak_mib']:.0f})", flush=True)
    from fewshot.core.atomic import atomic_write_text
    from fewshot.results.records import environment, now

    result = {"settings": {"device": args.device, "threads": args.threads}, "runs": runs,
              "environment": environment(args.device), "created": now()}
    table = render_markdown(result)
    print(table)
    out = Path(args.out)
    atomic_write_text(out / "eval_memory.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "eval_memory.md", table)
    return result


if __name__ == "__main__":
    main()
