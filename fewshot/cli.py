"""The command line, every sub-command of it: ``python -m fewshot.bench --method protonet --shots 5``.

The default command trains (or reuses) each method on the base classes, evaluates it and the fine-tuning baseline
on the same seeded test episodes, saves one record per run and prints a leaderboard. Sub-commands: ``list``,
``reproduce``, ``leaderboard``, ``site`` (each has ``--help``). Everything a command is given is checked before any
training or evaluation starts.

Exit codes: 0 done; 1 the work failed (a missing or corrupt file, a setting the data cannot meet); 2 a bad
argument, option or spec; 130 interrupted (SIGINT or SIGTERM: what finished and a partial checkpoint of the
training in progress are kept; the same command continues). Errors are one ``error:`` line; ``--debug`` shows the
traceback instead. ``--plugin MODULE`` (repeatable, any sub-command) imports a module that registers methods,
datasets or backbones; installed packages do so through the ``fewshot.methods`` entry-point group.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from fewshot.core.atomic import check_writable_dir
from fewshot.core.errors import Interrupted, UsageError, UserError
from fewshot.core.plugins import import_plugin
from fewshot.core.signals import RESUME, stop_on_signals

PROG = "python -m fewshot.bench"
SUBCOMMANDS = {
    "list": "list the registered datasets, fixed episode sets, methods and backbones",
    "reproduce": "regenerate published tables from benchmarks/ specs (reproduce --help)",
    "leaderboard": "build a leaderboard from stored run records (leaderboard --help)",
    "site": "build results/index.html, the results page, from the stored records (site --help)",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors raised as :class:`UsageError` (one ``error:`` line, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see '{self.prog} --help'")


def _number(kind: Callable[[str], Any], minimum: float, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g}, got {text}")
        return value

    return parse


positive_int = _number(int, 1, "a whole number")
natural_int = _number(int, 0, "a whole number")
seconds = _number(float, 0, "a number of seconds")
DATA_PARALLEL_HELP = ("under torchrun: supervised pre-training data-parallel, each rank a slice of every batch, batch "
                      "norm per rank (NOT one process's weights: checkpoint ...-ddp<N>.pt, recorded as train.split); "
                      "no effect on one process or on other kinds of training")
WATCH_HELP = ("score this many episodes (the test ways and shots) of the source's 'val' split 20 times during "
              "training, into the record's train.watch (the weights are unchanged; a loaded checkpoint keeps the "
              "curve it was trained with; not for a train+val training split)")


def _split_names(values: Sequence[str]) -> list[str]:
    return [name for value in values for name in value.split(",") if name]


def build_parser() -> argparse.ArgumentParser:
    from fewshot.data.protocols import PROTOCOLS

    parser = ArgumentParser(
        prog=PROG,
        description="Few-shot benchmark: train or reuse methods, evaluate them on shared seeded episodes, "
                    "compare against fine-tuning.",
        epilog="sub-commands: " + "; ".join(f"'{k}': {v}" for k, v in SUBCOMMANDS.items())
               + ". Every command also takes --plugin MODULE (repeatable) and --debug.",
    )
    parser.add_argument("--method", nargs="+", default=["protonet"],
                        help="method name(s), space- or comma-separated (see 'list')")
    parser.add_argument("--dataset", default="synthetic",
                        help="a registered dataset or a folder with one sub-folder of images per class")
    parser.add_argument("--train-dataset", default=None,
                        help="learn on this dataset and test on --dataset (default: --dataset itself); "
                             "several sources as name+name: their union, episodes from one at a time")
    parser.add_argument("--ways", type=_number(int, 2, "a whole number"), default=5)
    parser.add_argument("--shots", type=positive_int, nargs="+", default=[5], help="one or more shot counts")
    parser.add_argument("--queries", type=positive_int, default=15, help="query examples per class")
    parser.add_argument("--episodes", type=positive_int, default=600, help="test episodes")
    parser.add_argument("--protocol", default="fixed", choices=PROTOCOLS,
                        help="test episodes: fixed --ways/--shots/--queries, or Meta-Dataset's (each episode draws "
                             "5-50 ways, imbalanced shots, up to 500 support and 10 queries per class; --ways and "
                             "--shots then shape only meta-training)"),
    parser.add_argument("--backbone", default=None,
                        help="backbone of the --method(s) (default: each method's own); the baseline keeps its own")
    parser.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE",
                        help="backbone option for the --method(s), e.g. invert=true or input_size=112 (repeatable)")
    parser.add_argument("--encoder", default=None, metavar="NAME|FOLDER",
                        help="the sentence encoder of a text dataset (default all-MiniLM-L6-v2; also "
                             "all-mpnet-base-v2, or a local sentence-transformers or Hugging Face model folder)")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="weights file for the pretrained backbones (backbone option weights=PATH)")
    parser.add_argument("--baseline", default="finetune",
                        help="method every row is compared with on the same episodes ('none' for no baseline)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument("--seed", type=natural_int, default=0, help="seed of the test episodes")
    parser.add_argument("--train-seed", type=natural_int, default=0, help="seed of training")
    parser.add_argument("--train-steps", type=positive_int, default=None,
                        help="train the --method(s) for this many steps instead of their presets' (recorded)")
    parser.add_argument("--baseline-train-steps", type=positive_int, default=None,
                        help="the same for an added baseline, which otherwise trains by its preset: a shortened "
                             "--train-steps never weakens the baseline it is compared with")
    parser.add_argument("--data-root", default=None, help="data root (default: $FEWSHOT_DATA, then the user cache)")
    parser.add_argument("--checkpoint-dir", default=None, help="default: $FEWSHOT_CACHE/checkpoints")
    parser.add_argument("--checkpoint-seconds", type=seconds, default=60.0,
                        help="also save a partial checkpoint of a training this often (default 60)")
    parser.add_argument("--eval-batch", type=positive_int, default=None, help="episodes per evaluation batch")
    parser.add_argument("--data-parallel", action="store_true", help=DATA_PARALLEL_HELP)
    parser.add_argument("--watch", type=positive_int, default=0, metavar="EPISODES", help=WATCH_HELP)
    parser.add_argument("--precision", default="fp32", metavar="fp32|tf32|bf16|fp16",
                        help="precision of evaluation: fp32, TF32 matmuls (tf32), or bf16/fp16 autocast (tf32 and "
                             "fp16: CUDA only); recorded, and part of the record's key")
    parser.add_argument("--out", default="results/runs", help="folder for the run records (JSON)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the table")
    return parser


# ----------------------------------------------------------------------------------------------------------------
# Checks shared by the sub-commands

def check_device(text: str) -> str:
    """``text`` if it names a device this machine has (``auto`` always does), else a :class:`UsageError`."""
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {text}: MPS is not available on this machine; use --device cpu or auto")
    elif device.type != "cpu":
        raise UsageError(f"--device {text}: the suite runs on auto, cpu, cuda or mps devices")
    return text


def check_precision(precision: str, device: str) -> None:
    """A :class:`UsageError` when ``precision`` cannot run on ``device`` (``auto`` resolved as the runner does)."""
    from fewshot.evaluate.harness import resolve_device
    from fewshot.evaluate.precision import check_precision as check

    check(precision, resolve_device(device))


def check_input_dir(path: str | None, option: str) -> None:
    if path is not None and not Path(path).is_dir():
        raise UsageError(f"{option} {path}: no such folder")


def check_methods(names: Sequence[str], option: str = "--method") -> None:
    from fewshot.methods import list_methods

    available = list_methods()
    for name in names:
        if name not in available:
            raise UsageError(f"{option}: unknown method {name!r}; available: {', '.join(available)} "
                             f"(a method of your own: --plugin MODULE)")


def check_backbone(name: str | None) -> None:
    from fewshot.backbones import list_backbones

    if name is not None and name.startswith(("hf:", "open_clip:")):
        from fewshot.backbones import hf_image, open_clip_image
        from fewshot.backbones.pretrained import MissingWeightsError

        prefix, _, folder = name.partition(":")
        try:
            (hf_image if prefix == "hf" else open_clip_image).model_folder(folder)
        except MissingWeightsError as error:
            raise UsageError(f"--backbone {error}") from None
        return
    if name is None or name.startswith(("timm:", "pretrained:")) or name in list_backbones():
        return
    raise UsageError(f"--backbone: unknown backbone {name!r}; available: {', '.join(list_backbones())}, "
                     f"timm:<model>, pretrained:<model>, hf:<folder>, open_clip:<folder>")


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as a number or boolean where it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--backbone-option takes KEY=VALUE, got {text!r}")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, value


# ----------------------------------------------------------------------------------------------------------------
# Sub-commands

def list_registered() -> str:
    from fewshot.backbones import list_backbones
    from fewshot.data import list_datasets
    from fewshot.data.fixed import list_fixed_episodes
    from fewshot.data.text.encoders import ENCODERS, encoder_status
    from fewshot.methods import list_methods

    return "\n".join([
        "datasets:       " + ", ".join(list_datasets()),
        "episode sets:   " + ", ".join(list_fixed_episodes()) + "  (fixed test episodes, used by specs)",
        "methods:        " + ", ".join(list_methods()),
        "backbones:      " + ", ".join(list_backbones()) + ", timm:<any timm model>, pretrained:<any timm model>, "
        "hf:<folder of a transformers image model>, open_clip:<folder of an open_clip model>",
        "text encoders:  " + "; ".join(f"{name} ({encoder_status(name)})" for name in ENCODERS)
        + "  (--encoder; or a local model folder)",
    ])


def list_main(argv: Sequence[str]) -> int:
    ArgumentParser(prog=f"{PROG} list", description=SUBCOMMANDS["list"]).parse_args(argv)
    print(list_registered())
    return 0


def bench_cells(args: argparse.Namespace) -> tuple[list, str | None]:
    """The cells of the default command, checked: one per method and shot count (the baseline added when
    missing), and the baseline's name. ``--train-steps``, ``--backbone`` and its options are for the methods
    asked for; an added baseline keeps its own backbone and trains by its preset (or ``--baseline-train-steps``),
    so a shortened run never weakens the baseline it is compared with."""
    from fewshot.backbones.pretrained import PACKAGED
    from fewshot.data import list_datasets
    from fewshot.data.registry import known_dataset
    from fewshot.methods import method_class
    from fewshot.runner import CellSpec

    methods = _split_names(args.method)
    baseline = None if args.baseline.lower() == "none" else args.baseline
    check_methods(methods)
    check_methods([baseline] if baseline else [], "--baseline")
    chosen = list(methods)
    if baseline and baseline not in methods:
        methods.append(baseline)
    for option, name in (("--dataset", args.dataset), ("--train-dataset", args.train_dataset)):
        if name is not None and not known_dataset(name):
            raise UsageError(f"{option} {name}: neither a registered dataset ({', '.join(list_datasets())}) nor a "
                             f"folder of class folders (several sources: name+name)")
    check_backbone(args.backbone)
    extra_options = dict(_key_value(o) for o in args.backbone_option)

    def uses_weights(name: str) -> bool:
        backbone = (args.backbone if name in chosen else None) or method_class(name).default_backbone
        return bool(args.weights) and backbone in PACKAGED

    if args.weights and not any(uses_weights(name) for name in methods):
        raise UsageError("--weights is for pretrained backbones (" + ", ".join(PACKAGED) + "); no method here uses "
                         "one")
    if args.weights is not None and not Path(args.weights).is_file():
        raise UsageError(f"--weights {args.weights}: no such file")
    text_options = {"encoder": args.encoder} if args.encoder else {}
    if args.encoder:
        from fewshot.data.registry import loader_options
        from fewshot.data.text.encoders import encoder_folder

        for option, name in (("--dataset", args.dataset), ("--train-dataset", args.train_dataset)):
            if name is not None and "encoder" not in loader_options(name):
                raise UsageError(f"--encoder is for text datasets; {option} {name} is not one")
        encoder_folder(args.encoder)        # a missing encoder says what to install, before any work

    def cell(name: str, shots: int) -> CellSpec:
        mine = name in chosen
        steps = args.train_steps if mine else args.baseline_train_steps
        return CellSpec(method=name, dataset=args.dataset, train_dataset=args.train_dataset, ways=args.ways, shots=shots, queries=args.queries,
                        episodes=args.episodes, seed=args.seed, train_seed=args.train_seed, protocol=args.protocol,
                        train={"steps": steps} if steps else {}, backbone=args.backbone if mine else None,
                        precision=args.precision, dataset_options=text_options,
                        train_dataset_options=text_options if args.train_dataset else {},
                        backbone_options={**({"weights": args.weights} if uses_weights(name) else {}),
                                          **(extra_options if mine else {})})

    return [cell(name, shots) for shots in args.shots for name in methods], baseline


def bench_main(argv: Sequence[str]) -> int:
    """The default command: check everything, prepare every cell, then train and evaluate them in turn."""
    from fewshot.core import distributed
    from fewshot.results.leaderboard import summary_markdown
    from fewshot.results.records import save_record
    from fewshot.runner import Runner

    args = build_parser().parse_args(argv)
    specs, baseline = bench_cells(args)
    check_device(args.device)
    check_precision(args.precision, args.device)
    check_input_dir(args.data_root, "--data-root")
    out = check_writable_dir(args.out, "--out")
    if args.checkpoint_dir is not None:
        check_writable_dir(args.checkpoint_dir, "--checkpoint-dir")
    runner = Runner(data_root=args.data_root, checkpoint_dir=args.checkpoint_dir, device=args.device,
                    progress=not args.quiet, eval_batch_size=args.eval_batch,
                    checkpoint_seconds=args.checkpoint_seconds, data_parallel=args.data_parallel,
                    watch_episodes=args.watch)
    # Data, episodes, builds: every check before training.
    cells = [runner.prepare(runner.resolve(spec)) for spec in specs]
    main = distributed.is_main()     # under torchrun only rank 0 writes records and prints; the others only work
    records = []
    start = time.perf_counter()
    for cell in cells:
        spec = cell.spec
        if main and not args.quiet:
            where = f"{spec.train_dataset} -> {spec.dataset}" if spec.train_dataset else spec.dataset
            shape = f"{spec.protocol} episodes" if spec.protocol != "fixed" else f"{spec.ways}-way {spec.shots}-shot"
            print(f"[{spec.method}] {where} {shape} ...", file=sys.stderr)
        record = runner.run(cell)
        records.append(record)
        if not main:
            continue
        save_record(record, out)
        for warning in record.train.get("warnings", []):
            print(f"warning: [{spec.method}] {warning}", file=sys.stderr)
    if not main:
        return 0
    print(summary_markdown(records, baseline=baseline))
    print(f"\n{len(records)} run(s) on {runner.device} in {time.perf_counter() - start:.0f} s; records in {out}")
    return 0


def reproduce_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=f"{PROG} reproduce",
        description="Regenerate published tables from benchmarks/ specs: run the cells without a stored result, "
                    "write results/<spec>/ and print ours beside the paper's numbers.")
    p.add_argument("specs", nargs="+", help="spec files, or names of specs in benchmarks/")
    p.add_argument("--out", default=None, help="results folder (default results/<spec name>; with several specs, "
                                               "OUT/<spec name>)")
    p.add_argument("--episodes", type=positive_int, default=None, help="shrink: test episodes per cell (recorded)")
    p.add_argument("--train-steps", type=positive_int, default=None,
                   help="shrink: training steps per method (recorded)")
    p.add_argument("--cells", default=None,
                   help="comma-separated patterns on 'setting/method', setting id, method name or label")
    p.add_argument("--plan", action="store_true", help="list the cells and whether they have a record; run nothing")
    p.add_argument("--table-only", action="store_true", help="rebuild the tables from stored records; run nothing")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first cell that fails")
    p.add_argument("--readme", default=None,
                   help="also regenerate the README section <!-- results:begin spec=NAME --> ... <!-- results:end -->")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-seconds", type=seconds, default=60.0,
                   help="also save a partial checkpoint of a training this often (default 60)")
    p.add_argument("--eval-batch", type=positive_int, default=None)
    p.add_argument("--data-parallel", action="store_true", help=DATA_PARALLEL_HELP)
    p.add_argument("--watch", type=positive_int, default=0, metavar="EPISODES", help=WATCH_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def reproduce_main(argv: Sequence[str]) -> int:
    """``reproduce SPEC...``: everything is checked before any cell runs (the spec, stored records, the README
    section, the output folders); then the missing cells run, each record saved as it finishes."""
    from fewshot.reproduce.run import (RECORDS, check_cell, comparison_frame, comparison_markdown, reproduce,
                                       select_cells, stored_records, table_markdown, tables_from_records,
                                       warning_lines)
    from fewshot.core import distributed
    from fewshot.reproduce.specs import load_spec, resolve_spec_path
    from fewshot.results.leaderboard import check_readme_section, update_readme_section
    from fewshot.runner import Runner

    args = reproduce_parser().parse_args(argv)
    command = f"{PROG} reproduce " + " ".join(argv)
    check_device(args.device)
    check_input_dir(args.data_root, "--data-root")
    specs = [load_spec(resolve_spec_path(s)) for s in args.specs]
    patterns = [p for p in (args.cells or "").split(",") if p] or None
    plans = []
    for spec in specs:
        out = Path(args.out) / spec.name if args.out and len(specs) > 1 else \
            Path(args.out) if args.out else Path("results") / spec.name
        cells = spec.cells(episodes=args.episodes, train_steps=args.train_steps)
        plans.append((spec, out, cells, select_cells(cells, patterns)))
    if args.plan:
        for spec, out, cells, chosen in plans:
            done = {r.fingerprint for r in stored_records(out)}
            print(f"{spec.name}: {len(cells)} cells -> {out}")
            for cell in chosen:
                problem = check_cell(cell)
                state = "done" if cell.fingerprint in done else "to run"
                print(f"  {cell.id:40s} {state:7s} {cell.record_name()}" + (f"  ! {problem}" if problem else ""))
        return 0
    if args.readme:
        for spec in specs:
            check_readme_section(args.readme, spec.name)
    for spec, out, _, _ in plans:
        check_writable_dir(out / RECORDS, "--out")
        stored_records(out)                      # a damaged record stops here, before any training
    if args.checkpoint_dir is not None:
        check_writable_dir(args.checkpoint_dir, "--checkpoint-dir")
    runner = Runner(data_root=args.data_root, checkpoint_dir=args.checkpoint_dir, device=args.device,
                    progress=not args.quiet, eval_batch_size=args.eval_batch,
                    checkpoint_seconds=args.checkpoint_seconds, data_parallel=args.data_parallel,
                    watch_episodes=args.watch)
    failures = []
    # Under torchrun every rank runs every cell (sharing its episodes); every rank gets rank 0's records, so the
    # files the others write are byte for byte rank 0's; only rank 0 prints and updates the README.
    main = distributed.is_main()
    for spec, out, _, _ in plans:
        report = reproduce(spec, out=out, runner=runner, episodes=args.episodes, train_steps=args.train_steps,
                           cells=patterns, run=not args.table_only, fail_fast=args.fail_fast, command=command,
                           **({} if main else {"log": lambda line: None}))
        if not main:
            continue
        frame = comparison_frame(report)
        print(f"\n{spec.title} ({spec.source.paper}, {spec.source.table})\n")
        print(comparison_markdown(frame, spec.metric))
        for line in warning_lines(frame):
            print(line)
        print(f"\n{len(report.ran)} cell(s) run, {len(report.skipped)} reused, {len(report.failed)} failed, "
              f"{report.seconds:.0f} s; tables in {out}")
        if args.readme:
            update_readme_section(args.readme, spec.name, table_markdown(tables_from_records(spec, out)),
                                  command=command)
        failures += [f"{spec.name} {cell}: {why}" for cell, why in report.failed.items()]
    if failures:
        raise UserError(f"{len(failures)} cell(s) failed: {'; '.join(failures)}. The other cells are saved; fix the "
                        f"cause and run the same command again to run only the missing ones")
    return 0


def leaderboard_parser() -> argparse.ArgumentParser:
    from fewshot.results.leaderboard import METRICS

    p = ArgumentParser(
        prog=f"{PROG} leaderboard",
        description="Build a leaderboard from stored run records (JSON files or folders of them), with no re-running. "
                    "Prints it (Markdown by default), or writes leaderboard.<ext> files into --out.")
    p.add_argument("paths", nargs="+", help="record files or folders (searched recursively)")
    p.add_argument("--baseline", default="finetune", help="method to compare with on the same episodes ('none')")
    p.add_argument("--metric", choices=METRICS, default="accuracy")
    p.add_argument("--unpaired", action="store_true",
                   help="compare columns that mix episode sets as independent samples instead of failing")
    p.add_argument("--title", default="Leaderboard")
    p.add_argument("--format", "--formats", dest="format", action="append", default=None, metavar="FORMAT",
                   help="md, csv, latex, html or png; comma-separated or repeated (default: md when printing, all "
                        "of them with --out)")
    p.add_argument("--out", default=None, help="write leaderboard.<ext> files into this folder instead of printing")
    p.add_argument("--readme", default=None, help="file whose marked section to regenerate (with the Markdown table)")
    p.add_argument("--section", default="leaderboard",
                   help="the section's name: <!-- results:begin spec=NAME --> ... <!-- results:end -->")
    return p


def leaderboard_main(argv: Sequence[str]) -> int:
    """``leaderboard RECORDS... [--format ...] [--out DIR] [--readme FILE --section NAME]``."""
    from fewshot.results.leaderboard import (ALL_FORMATS, build_leaderboard, check_readme_section, parse_formats,
                                             update_readme_section)
    from fewshot.results.records import load_records

    args = leaderboard_parser().parse_args(argv)
    formats = parse_formats(args.format or (list(ALL_FORMATS) if args.out else ["md"]))
    if "png" in formats and not args.out:
        raise UsageError("--format png makes an image file: give a folder to write it to with --out DIR")
    if args.out:
        check_writable_dir(args.out, "--out")
    if args.readme:
        check_readme_section(args.readme, args.section)
    records = load_records(args.paths)
    if not records:
        raise UsageError(f"no run records in {', '.join(args.paths)}; give record files or folders that hold them")
    board = build_leaderboard(records, baseline=None if args.baseline.lower() == "none" else args.baseline,
                              metric=args.metric, unpaired=args.unpaired, title=args.title)
    if args.out:
        for path in board.write(args.out, formats=formats):
            print(f"wrote {path}", file=sys.stderr)
    else:
        print("\n".join(board.render(fmt).rstrip("\n") + "\n" for fmt in formats), end="")
    if args.readme:
        command = f"{PROG} leaderboard " + " ".join(argv)
        changed = update_readme_section(args.readme, args.section, board.to_markdown(), command=command)
        print(f"{args.readme}: section {args.section!r} {'updated' if changed else 'already up to date'}",
              file=sys.stderr)
    return 0


def site_main(argv: Sequence[str]) -> int:
    """``site [--results DIR] [--out PATH] [--benchmarks DIR] [--check]``: write or check the results page."""
    from fewshot.core.atomic import atomic_write_text
    from fewshot.site import build_site

    parser = ArgumentParser(prog=f"{PROG} site", description="Write the results page (one static HTML file) from "
                            "the run records under --results and the paper numbers of the specs in benchmarks/.")
    parser.add_argument("--results", default="results", help="folder of result folders (default: results)")
    parser.add_argument("--out", default=None, help="the page to write (default: <results>/index.html)")
    parser.add_argument("--benchmarks", default=None, help="folder of specs (default: <results>/../benchmarks)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the page differs from a regeneration")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.results) / "index.html"
    page = build_site(args.results, out, args.benchmarks)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        if current != page:
            why = "is missing" if current is None else "differs from a regeneration from the records"
            options = (f" --results {args.results}" if args.results != "results" else "") + \
                (f" --out {args.out}" if args.out else "")
            raise UserError(f"{out} {why}; run `{PROG} site{options}` and commit it")
        print(f"{out} is up to date", file=sys.stderr)
        return 0
    if not args.out:
        check_writable_dir(out.parent, "--results")
    atomic_write_text(out, page)
    print(f"wrote {out}", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "list": list_main, "reproduce": reproduce_main, "leaderboard": leaderboard_main, "site": site_main,
}


# ----------------------------------------------------------------------------------------------------------------
# The entry point: plug-ins, signals, errors and exit codes

def _take_plugins(argv: list[str]) -> list[str]:
    """Import every ``--plugin MODULE`` (or ``--plugin=MODULE``) and return the other arguments."""
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugin":
            if i + 1 >= len(argv):
                raise UsageError("--plugin needs a module name or a .py file")
            import_plugin(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--plugin="):
            import_plugin(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        with stop_on_signals():
            argv = _take_plugins(argv)
            if argv and argv[0] in COMMANDS:
                return COMMANDS[argv[0]](argv[1:])
            return bench_main(argv)
    except KeyboardInterrupt as error:
        message = _one_line(error) if isinstance(error, Interrupted) else f"finished runs are saved; {RESUME}"
        print(f"\ninterrupted: {message}", file=sys.stderr)
        return Interrupted.exit_code
    except UserError as error:
        if debug:
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a bug: still one line, with the way to see more
        if debug:
            raise
        print(f"error: unexpected {type(error).__name__}: {_one_line(error)} (run again with --debug for the "
              f"traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
