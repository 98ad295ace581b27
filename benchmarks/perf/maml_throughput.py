"""Meta-training throughput of MAML: the batched (torch.func) implementation against a per-task Python loop.

Finn et al.'s Omniglot setting by default: 28x28 inputs, 5-way 1-shot with one query per class, meta-batch 32,
one inner step of lr 0.4, second order, Conv-4 with 64 filters. Both sides run the same meta-training step (meta-
gradient of the mean query loss, then an Adam step) on the same weights; the timings alternate (A B A B ...) so that
load from other processes falls on both. Run from the repository root::

    python benchmarks/perf/maml_throughput.py --threads 1

and it prints tasks/s for each side and their ratio, and writes ``results/perf/maml_throughput.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fewshot.backbones import create_backbone
from fewshot.methods import create_method
from fewshot.core.atomic import atomic_write_text
from fewshot.results.records import environment, now


def loop_meta_loss_backward(method, support, support_labels, query, query_labels, ways: int) -> float:
    """The per-task reference: one task at a time, inner steps by torch.autograd.grad, backward per task."""
    lr, steps, create_graph = method.config.inner_lr, method.config.train_inner_steps, not method.first_order
    tasks, total = support.shape[0], 0.0
    for e in range(tasks):
        body = dict(method.backbone.named_parameters())
        head = {"weight": method.head.weight.expand(ways, -1), "bias": method.head.bias.expand(ways)}
        for _ in range(steps):
            logits = F.linear(functional_call(method.backbone, body, (support[e],)), head["weight"], head["bias"])
            loss = ways * F.cross_entropy(logits, support_labels[e])
            params = {**{("b", k): v for k, v in body.items()}, **{("h", k): v for k, v in head.items()}}
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            new = {key: p - lr * g for (key, p), g in zip(params.items(), grads)}
            body = {k: new[("b", k)] for k in body}
            head = {k: new[("h", k)] for k in head}
        logits = F.linear(functional_call(method.backbone, body, (query[e],)), head["weight"], head["bias"])
        task_loss = F.cross_entropy(logits, query_labels[e]) / tasks
        task_loss.backward()
        total += float(task_loss.detach())
    return total


def batched_meta_loss_backward(method, support, support_labels, query, query_labels, ways: int) -> float:
    loss = method.episode_loss(support, support_labels, query, query_labels, ways).mean()
    loss.backward()
    return float(loss.detach())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="maml", choices=["maml", "fomaml", "anil"])
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=1, help="queries per class (Finn's Omniglot code: = shots)")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--hidden", type=int, default=64, help="Conv-4 filters")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--rounds", type=int, default=5, help="alternations A B; each times --iters meta-steps")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="results/perf", help="directory for maml_throughput.{json,md}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    backbone = create_backbone("conv4", in_channels=1, image_size=args.image_size, hidden=args.hidden)
    method = create_method(args.method, backbone, inner_lr=args.inner_lr, train_inner_steps=args.inner_steps,
                           ways=args.ways).to(device).train()
    torch.nn.init.normal_(method.head.weight, std=0.01)  # a non-trivial head, so that no gradient is zero
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    shape = (args.meta_batch, args.ways, 1, args.image_size, args.image_size)
    support = torch.rand(shape[0], shape[1] * args.shots, *shape[2:], generator=generator).to(device)
    query = torch.rand(shape[0], shape[1] * args.queries, *shape[2:], generator=generator).to(device)
    support_labels, query_labels = (torch.arange(args.ways).repeat_interleave(k).expand(args.meta_batch, -1).to(device)
                                    for k in (args.shots, args.queries))
    batch = (support, support_labels, query, query_labels, args.ways)

    # Both sides must compute the same meta-gradient (float32 tolerance); this also warms both paths up.
    grads = {}
    for name, step in (("batched", batched_meta_loss_backward), ("loop", loop_meta_loss_backward)):
        optimizer.zero_grad(set_to_none=True)
        step(method, *batch)
        grads[name] = [p.grad.clone() for p in method.parameters()]
    for a, b in zip(grads["batched"], grads["loop"]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)

    def timed(step) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.iters):
            optimizer.zero_grad(set_to_none=True)
            step(method, *batch)
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return args.meta_batch * args.iters / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"batched": [], "loop": []}
    for r in range(args.rounds):
        for name, step in (("batched", batched_meta_loss_backward), ("loop", loop_meta_loss_backward)):
            rates[name].append(timed(step))
        print(f"round {r + 1}/{args.rounds}: batched {rates['batched'][-1]:.1f} tasks/s, "
              f"loop {rates['loop'][-1]:.1f} tasks/s", flush=True)
    median = {k: statistics.median(v) for k, v in rates.items()}
    ratio = median["batched"] / median["loop"]
    print(f"median: batched {median['batched']:.1f} tasks/s, loop {median['loop']:.1f} tasks/s, "
          f"batched/loop = {ratio:.2f}x")

    result = {"benchmark": "maml_throughput", "created": now(), "settings": vars(args),
              "tasks_per_second": {"median": median, "rounds": rates}, "ratio_batched_over_loop": ratio,
              "environment": environment(str(device))}
    out = Path(args.out)
    atomic_write_text(out / "maml_throughput.json", json.dumps(result, indent=1) + "\n")
    s = args
    title = (f"# MAML meta-training throughput ({s.method}, {s.ways}-way {s.shots}-shot, {s.queries} query/class, "
             f"meta-batch {s.meta_batch}, {s.inner_steps} inner step(s), Conv-4 {s.hidden} filters, "
             f"{s.image_size}x{s.image_size})")
    where = (f"Device {device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; median of {s.rounds} "
             f"alternating rounds of {s.iters} meta-steps. Generated by `benchmarks/perf/maml_throughput.py`.")
    atomic_write_text(out / "maml_throughput.md", "\n".join([
        title,
        "",
        where,
        "",
        "| implementation | tasks/s (median) | rounds |",
        "| --- | ---: | --- |",
        *(f"| {k} | {median[k]:.1f} | {', '.join(f'{x:.1f}' for x in rates[k])} |" for k in ("batched", "loop")),
        "",
        f"Batched / loop: **{ratio:.2f}x**.",
        "",
    ]))
    return result


if __name__ == "__main__":
    main()
