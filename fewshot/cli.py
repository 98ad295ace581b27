"""The command line: ``python -m fewshot.bench --method protonet --shots 5``.

Trains (or reuses) each method on the base classes, evaluates it and the fine-tuning baseline on the same seeded
test episodes, saves one record per run and prints a leaderboard. ``python -m fewshot.bench list`` lists what is
registered; further sub-commands (``reproduce``, ``leaderboard``) are listed by ``--help``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from fewshot.backbones import list_backbones
from fewshot.backbones.pretrained import PACKAGED
from fewshot.core.errors import Interrupted, UserError
from fewshot.data import list_datasets
from fewshot.results.leaderboard import summary_markdown
from fewshot.methods import list_methods, method_class
from fewshot.results.records import save_record
from fewshot.runner import CellSpec, Runner

SUBCOMMANDS = {
    "list": "list the registered datasets, methods and backbones",
    "reproduce": "regenerate published tables from benchmarks/ specs (reproduce --help)",
    "leaderboard": "build a leaderboard from stored run records (leaderboard --help)",
}


def _split_names(values: Sequence[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fewshot.bench",
        description="Few-shot benchmark: train or reuse methods, evaluate them on shared seeded episodes, "
                    "compare against fine-tuning.",
        epilog="sub-commands: " + "; ".join(f"'{k}': {v}" for k, v in SUBCOMMANDS.items()),
    )
    parser.add_argument("--method", nargs="+", default=["protonet"],
                        help="method name(s), space- or comma-separated (see 'list')")
    parser.add_argument("--dataset", default="synthetic",
                        help="a registered dataset or a folder with one sub-folder of images per class")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, nargs="+", default=[5], help="one or more shot counts")
    parser.add_argument("--queries", type=int, default=15, help="query examples per class")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes")
    parser.add_argument("--backbone", default=None,
                        help="backbone of the --method(s) (default: each method's own); the baseline keeps its own")
    parser.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE",
                        help="backbone option for the --method(s), e.g. invert=true or input_size=112 (repeatable)")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="weights file for the pretrained backbones (backbone option weights=PATH)")
    parser.add_argument("--baseline", default="finetune",
                        help="method every row is compared with on the same episodes ('none' for no baseline)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test episodes")
    parser.add_argument("--train-seed", type=int, default=0, help="seed of training")
    parser.add_argument("--train-steps", type=int, default=None, help="override the preset's training steps")
    parser.add_argument("--data-root", default=None, help="data root (default: $FEWSHOT_DATA, then the user cache)")
    parser.add_argument("--checkpoint-dir", default=None, help="default: $FEWSHOT_CACHE/checkpoints")
    parser.add_argument("--eval-batch", type=int, default=None, help="episodes per evaluation batch")
    parser.add_argument("--out", default="results/runs", help="folder for the run records (JSON)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the table")
    return parser


def list_registered() -> str:
    return "\n".join([
        "datasets:  " + ", ".join(list_datasets()),
        "methods:   " + ", ".join(list_methods()),
        "backbones: " + ", ".join(list_backbones()) + ", timm:<any timm model>",
    ])


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a number or boolean where it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--backbone-option takes KEY=VALUE, got {text!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, value


def _weights_option(method: str, args: argparse.Namespace) -> dict[str, str]:
    """``{"weights": PATH}`` for a method whose backbone is a pretrained one, when ``--weights`` is given."""
    backbone = args.backbone or getattr(method_class(method), "default_backbone", "conv4")
    return {"weights": args.weights} if args.weights and backbone in PACKAGED else {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; an error the user can fix is one ``error:`` line and its exit code, no traceback."""
    try:
        return _main(argv)
    except Interrupted as error:
        print(f"\n{error}", file=sys.stderr)
        return error.exit_code
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "list":
        print(list_registered())
        return 0
    if argv and argv[0] == "reproduce":
        from fewshot.reproduce.run import main as reproduce_main

        return reproduce_main(argv[1:])
    if argv and argv[0] == "leaderboard":
        from fewshot.results.leaderboard import main as leaderboard_main

        return leaderboard_main(argv[1:])
    args = build_parser().parse_args(argv)
    methods = _split_names(args.method)
    baseline = None if args.baseline.lower() == "none" else args.baseline
    available = list_methods()
    for name in methods + ([baseline] if baseline else []):
        if name not in available:
            print(f"error: unknown method {name!r}; available: {', '.join(available)}", file=sys.stderr)
            return 2
    chosen = list(methods)
    if baseline and baseline not in methods:
        methods.append(baseline)
    try:
        extra_options = dict(_key_value(o) for o in args.backbone_option)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runner = Runner(data_root=args.data_root, checkpoint_dir=args.checkpoint_dir, device=args.device,
                    progress=not args.quiet, eval_batch_size=args.eval_batch)
    train = {"steps": args.train_steps} if args.train_steps else {}
    backbone_options = {name: _weights_option(name, args) for name in methods}
    if args.weights and not any(backbone_options.values()):
        print("error: --weights is for pretrained backbones (" + ", ".join(PACKAGED) + "); no method here uses one",
              file=sys.stderr)
        return 2
    records = []
    start = time.perf_counter()
    try:
        for shots in args.shots:
            for name in methods:
                spec = CellSpec(method=name, dataset=args.dataset, ways=args.ways, shots=shots,
                                queries=args.queries, episodes=args.episodes, seed=args.seed,
                                train_seed=args.train_seed, train=dict(train),
                                # --backbone and its options are for the methods asked for; an added baseline
                                # keeps its own backbone (pre-training on a large pretrained one would take hours).
                                backbone=args.backbone if name in chosen else None,
                                backbone_options={**backbone_options[name],
                                                  **(extra_options if name in chosen else {})})
                if not args.quiet:
                    print(f"[{name}] {args.dataset} {args.ways}-way {shots}-shot ...", file=sys.stderr)
                record = runner.run(spec)
                save_record(record, args.out)
                records.append(record)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary_markdown(records, baseline=baseline))
    print(f"\n{len(records)} run(s) on {runner.device} in {time.perf_counter() - start:.0f} s; "
          f"records in {Path(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
