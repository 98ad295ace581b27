"""Meta-training throughput of MAML, first-order MAML and ANIL: the suite against a plain per-task PyTorch loop.

The default shape is the one the baselines issue measured: Conv-4 (64 filters) on 28x28 images, 5-way 1-shot with 15
queries per class, meta-batch 32, one inner step of lr 0.4. Three implementations of one meta-training step (meta-
gradient of the mean query loss, then an Adam step) on the same weights:

- ``suite``: the method's ``episode_loss`` as ``fit`` calls it (tasks per ``vmap`` call chosen by device,
  :mod:`fewshot.methods.per_task`);
- ``one vmap``: the same method with every task of the meta-batch in one ``vmap`` call (``tasks_per_call`` = the
  meta-batch, the suite's behaviour before the per-device rule);
- ``loop``: a plain PyTorch loop written as learn2learn's examples write it (``maml_omniglot.py``, ``anil_fc100.py``):
  one task at a time, a Conv-4 with ``nn.BatchNorm2d(track_running_stats=False)``, inner steps by
  ``torch.autograd.grad`` (``create_graph`` for second order), ``backward`` per task.

The gradients of the three are checked equal before timing; the timings alternate (A B C A B C ...) so that load from
other processes falls on all, and the CPU that others used meanwhile is recorded. Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/perf/maml_throughput.py --threads 2

It prints tasks/s per method and implementation and writes ``results/perf/maml_throughput.{json,md}``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fewshot.backbones import create_backbone
from fewshot.methods import create_method
from fewshot.train.config import TrainConfig
from fewshot.train.loop import make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared timing module beside this script
from timing import alternate, write_throughput  # noqa: E402

IMPLEMENTATIONS = ("suite", "one vmap", "loop")


def plain_model(method: nn.Module, hidden: int, image_size: int) -> nn.Module:
    """The method's weights in a plain Conv-4 + linear head, batch norm as learn2learn's models have it."""
    body = create_backbone("conv4", in_channels=1, image_size=image_size, hidden=hidden)
    body.load_state_dict(method.backbone.state_dict(), strict=False)
    for module in body.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.track_running_stats, module.running_mean, module.running_var = False, None, None
    model = nn.Sequential(body, nn.Linear(method.head.in_features, method.head.out_features))
    model[1].load_state_dict(method.head.state_dict())
    return model


def loop_step(model: nn.Module, kind: str, lr: float, steps: int, batch) -> None:
    """One meta-gradient, a task at a time (learn2learn's clone/adapt loop, written with ``torch.func.functional_call``)."""
    support, support_labels, query, query_labels, ways = batch
    tasks, create_graph = support.shape[0], kind != "fomaml"
    for e in range(tasks):
        if kind == "anil":  # the body is not adapted: features once per task, the head adapted on them
            head = dict(model[1].named_parameters())
            features, query_features = model[0](support[e]), model[0](query[e])
            for _ in range(steps):
                loss = ways * F.cross_entropy(functional_call(model[1], head, (features,)), support_labels[e])
                grads = torch.autograd.grad(loss, list(head.values()), create_graph=True)
                head = {k: p - lr * g for (k, p), g in zip(head.items(), grads)}
            logits = functional_call(model[1], head, (query_features,))
        else:
            params = dict(model.named_parameters())
            for _ in range(steps):
                loss = ways * F.cross_entropy(functional_call(model, params, (support[e],)), support_labels[e])
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
                params = {k: p - lr * g for (k, p), g in zip(params.items(), grads)}
            logits = functional_call(model, params, (query[e],))
        (F.cross_entropy(logits, query_labels[e]) / tasks).backward()


def render_markdown(result: dict) -> str:
    """The table of ``maml_throughput.json``: a function of the stored result alone."""
    s, env = result["settings"], result["environment"]
    lines = [
        f"# MAML meta-training throughput ({s['ways']}-way {s['shots']}-shot, {s['queries']} queries/class, "
        f"meta-batch {s['meta_batch']}, {s['inner_steps']} inner step(s), Conv-4 {s['hidden']} filters, "
        f"{s['image_size']}x{s['image_size']})",
        "",
        f"Device {env['device']}, {env['threads']} thread(s), torch {env['torch']}; median tasks/s of {s['rounds']} "
        f"alternating rounds of {s['iters']} meta-steps (each with its Adam step). `loop`: a plain per-task PyTorch "
        f"loop as learn2learn's examples write it. Generated by `benchmarks/perf/maml_throughput.py`.",
        "",
        "| method | " + " | ".join(IMPLEMENTATIONS) + " | suite / loop | suite / one vmap | other processes' CPU |",
        "| --- | " + " | ".join("---:" for _ in IMPLEMENTATIONS) + " | ---: | ---: | ---: |",
    ]
    for name, r in result["throughput"]["groups"].items():
        median = r["median"]
        lines.append(f"| {name} | " + " | ".join(f"{median[i]:.1f}" for i in IMPLEMENTATIONS)
                     + f" | **{median['suite'] / median['loop']:.2f}x** | {median['suite'] / median['one vmap']:.2f}x"
                     + f" | {r['other_cpu_percent']:.0f}% |")
    lines += ["", "Rounds (tasks/s): " + "; ".join(
        f"{name} {i}: {', '.join(f'{x:.1f}' for x in r['rounds'][i])}"
        for name, r in result["throughput"]["groups"].items() for i in IMPLEMENTATIONS), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["maml", "fomaml", "anil"], choices=["maml", "fomaml", "anil"])
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15, help="queries per class")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--hidden", type=int, default=64, help="Conv-4 filters")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=5, help="alternations A B C; each times --iters meta-steps")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/perf", help="directory for maml_throughput.{json,md}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    shape = (1, args.image_size, args.image_size)
    support = torch.rand(args.meta_batch, args.ways * args.shots, *shape, generator=generator).to(device)
    query = torch.rand(args.meta_batch, args.ways * args.queries, *shape, generator=generator).to(device)
    support_labels, query_labels = (torch.arange(args.ways).repeat_interleave(k).expand(args.meta_batch, -1).to(device)
                                    for k in (args.shots, args.queries))
    batch = (support, support_labels, query, query_labels, args.ways)

    results = {}
    for name in args.methods:
        torch.manual_seed(0)
        backbone = create_backbone("conv4", in_channels=1, image_size=args.image_size, hidden=args.hidden)
        suite = create_method(name, backbone, inner_lr=args.inner_lr, train_inner_steps=args.inner_steps,
                              ways=args.ways).to(device).train()
        nn.init.normal_(suite.head.weight, std=0.01)  # a non-trivial head, so that no gradient is zero
        one_vmap = copy.deepcopy(suite)
        one_vmap.config.tasks_per_call = args.meta_batch
        models = {"suite": suite, "one vmap": one_vmap, "loop": plain_model(suite, args.hidden, args.image_size).to(device)}
        optimizers = {k: make_optimizer(m.parameters(), TrainConfig(lr=1e-3))[0] if k != "loop" else
                      torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}

        def step(implementation: str) -> None:
            model = models[implementation]
            if implementation == "loop":
                loop_step(model, name, args.inner_lr, args.inner_steps, batch)
            else:
                model.episode_loss(*batch).mean().backward()

        # The three compute one meta-gradient (float32 rounding apart); this also warms every path up.
        grads = {}
        for implementation, model in models.items():
            model.zero_grad(set_to_none=True)
            step(implementation)
            grads[implementation] = [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                                     for p in model.parameters()]
        scale = max(float(g.abs().max()) for g in grads["loop"])
        for implementation in ("suite", "one vmap"):
            error = max(float((a - b).abs().max()) for a, b in zip(grads[implementation], grads["loop"], strict=True))
            # float32 second-order meta-gradients through different call orders: ~0.1% of the largest on
            # some CPUs (one vmap over the meta-batch, MAML); a wrong gradient is off by far more.
            assert error <= 1e-2 * scale, (f"{name} {implementation}: meta-gradient differs from the loop's by {error} "
                                           f"(largest {scale})")

        def timed(implementation: str):
            def run() -> float:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                for _ in range(args.iters):
                    optimizers[implementation].zero_grad(set_to_none=True)
                    step(implementation)
                    optimizers[implementation].step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                return args.meta_batch * args.iters / (time.perf_counter() - start)
            return run

        def report(r: int, rates: dict[str, float]) -> None:
            print(f"{name} round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
                  + " tasks/s", flush=True)

        results[name] = alternate({i: timed(i) for i in IMPLEMENTATIONS}, args.rounds, report)
        median = results[name]["median"]
        print(f"{name}: suite/loop = {median['suite'] / median['loop']:.2f}x, suite/one vmap = "
              f"{median['suite'] / median['one vmap']:.2f}x; other processes used "
              f"{results[name]['other_cpu_percent']:.0f}% of a core", flush=True)

    return write_throughput("maml_throughput", vars(args), "tasks/s", results, str(device), args.out, render_markdown)


if __name__ == "__main__":
    main()
