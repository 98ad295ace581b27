"""Every fault a user can cause is answered by one ``error:`` line that names the culprit, with the right exit code
(2 for a bad argument, option or spec; 1 for work that failed on a file or a setting the data cannot meet), no
traceback, and nothing half-written left on disk; all of it before any training starts.

Each case builds its bad input under ``tmp_path`` and runs the command in-process (as ``python -m fewshot.bench``
would, through :func:`fewshot.cli.main`). ``{tmp}`` in an argument is the case's folder.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch

from fewshot.cli import main

PLUGIN = str(Path(__file__).parent / "plugins" / "tiny_plugin.py")
# A tiny dataset (8 test classes of 12 examples), a tiny backbone and a few steps: cases that get past the checks
# would train in a second, and the assertions below would catch it.
BASE = ["--plugin", PLUGIN, "--dataset", "tiny-blobs", "--method", "protonet", "--baseline", "none",
        "--backbone", "conv4", "--backbone-option", "hidden=8", "--shots", "1", "--queries", "2",
        "--episodes", "4", "--train-steps", "2", "--quiet", "--out", "{tmp}/runs", "--checkpoint-dir", "{tmp}/ckpt"]
LINEAR_PROBE = [a if a != "protonet" else "linear-probe" for a in BASE if a not in ("--backbone", "conv4")]
LINEAR_PROBE = [a for i, a in enumerate(LINEAR_PROBE) if a != "--backbone-option" and
                (i == 0 or LINEAR_PROBE[i - 1] != "--backbone-option")]


@dataclass
class Case:
    id: str
    argv: list[str]
    code: int
    culprit: str
    setup: Callable[[Path], None] = field(default=lambda tmp: None)


def write(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return setup


def torch_file_truncated() -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(64, 64)}, buffer)
    return buffer.getvalue()[:2000]


def png(seed: int) -> bytes:
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (16, 16), dtype=torch.uint8, generator=g).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(damaged: bytes) -> Callable[[Path], None]:
    """Six classes of six PNGs; in each, 4.png is ``damaged`` (whichever classes a split takes, it meets one)."""
    def setup(tmp: Path) -> None:
        for c in range(6):
            for i in range(6):
                path = tmp / "images" / f"class{c}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png(c * 10 + i))
            (tmp / "images" / f"class{c}" / "4.png").write_bytes(damaged)
    return setup


def omniglot_npz(content: bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for which in ("background", "evaluation"):
            write(f"root/images_{which}.npz", content)(tmp)
    return setup


def npz_truncated() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((50, 105, 105), dtype=np.uint8))
    return buffer.getvalue()[:4000]


def replace(argv: list[str], option: str, value: str) -> list[str]:
    i = argv.index(option)
    return argv[:i + 1] + [value] + argv[i + 2:]


CASES = [
    # Numbers that cannot be (exit 2, named by option)
    Case("ways-0", BASE + ["--ways", "0"], 2, "--ways"),
    Case("ways-1", BASE + ["--ways", "1"], 2, "--ways"),
    Case("ways-text", BASE + ["--ways", "five"], 2, "--ways"),
    Case("shots-0", replace(BASE, "--shots", "0"), 2, "--shots"),
    Case("shots-negative", replace(BASE, "--shots", "-1"), 2, "--shots"),
    Case("queries-0", replace(BASE, "--queries", "0"), 2, "--queries"),
    Case("episodes-0", replace(BASE, "--episodes", "0"), 2, "--episodes"),
    Case("episodes-float", replace(BASE, "--episodes", "2.5"), 2, "--episodes"),
    Case("train-steps-0", replace(BASE, "--train-steps", "0"), 2, "--train-steps"),
    Case("train-steps-negative", replace(BASE, "--train-steps", "-5"), 2, "--train-steps"),
    Case("eval-batch-0", BASE + ["--eval-batch", "0"], 2, "--eval-batch"),
    Case("eval-batch-negative", BASE + ["--eval-batch", "-3"], 2, "--eval-batch"),
    Case("seed-negative", BASE + ["--seed", "-1"], 2, "--seed"),
    Case("train-seed-text", BASE + ["--train-seed", "x"], 2, "--train-seed"),
    Case("checkpoint-seconds-negative", BASE + ["--checkpoint-seconds", "-1"], 2, "--checkpoint-seconds"),
    # Names that do not exist
    Case("device-tpu", BASE + ["--device", "tpu"], 2, "--device tpu"),
    Case("device-garbage", BASE + ["--device", "gpu0"], 2, "--device gpu0"),
    Case("device-cuda-absent", BASE + ["--device", "cuda"], 2, "--device cuda"),
    Case("method-unknown", replace(BASE, "--method", "protonett"), 2, "protonett"),
    Case("baseline-unknown", replace(BASE, "--baseline", "finetun"), 2, "--baseline"),
    Case("dataset-unknown", replace(BASE, "--dataset", "omniglott"), 2, "--dataset omniglott"),
    Case("backbone-unknown", replace(BASE, "--backbone", "conv5"), 2, "--backbone"),
    Case("backbone-option-no-value", replace(BASE, "--backbone-option", "hidden"), 2, "--backbone-option"),
    Case("backbone-option-unknown-key", replace(BASE, "--backbone-option", "bogus=1"), 2, "bogus"),
    Case("backbone-option-bad-value", replace(BASE, "--backbone-option", "hidden=wide"), 2, "hidden"),
    Case("option-unknown", BASE + ["--wayz", "5"], 2, "--wayz"),
    Case("encoder-for-images", BASE + ["--encoder", "all-MiniLM-L6-v2"], 2, "--encoder"),
    Case("list-option-unknown", ["list", "--all"], 2, "--all"),
    # Files and folders
    Case("weights-missing", LINEAR_PROBE + ["--weights", "{tmp}/nothing.pth"], 2, "nothing.pth"),
    Case("weights-for-no-pretrained-backbone", BASE + ["--weights", "{tmp}/w.pth"], 2, "--weights",
         write("w.pth", b"x")),
    Case("weights-garbage", LINEAR_PROBE + ["--weights", "{tmp}/garbage.pth"], 1, "garbage.pth",
         write("garbage.pth", b"this is not a torch file\n" * 10)),
    Case("weights-truncated", LINEAR_PROBE + ["--weights", "{tmp}/cut.pth"], 1, "cut.pth",
         write("cut.pth", torch_file_truncated())),
    Case("out-is-a-file", replace(BASE, "--out", "{tmp}/taken"), 2, "--out", write("taken", "x")),
    Case("out-below-a-file", replace(BASE, "--out", "{tmp}/taken/runs"), 2, "--out", write("taken", "x")),
    Case("checkpoint-dir-is-a-file", replace(BASE, "--checkpoint-dir", "{tmp}/taken"), 2, "--checkpoint-dir",
         write("taken", "x")),
    Case("data-root-missing", BASE + ["--data-root", "{tmp}/no-data"], 2, "--data-root"),
    # Plug-ins
    Case("plugin-module-missing", ["--plugin", "no_such_module_xyz"] + BASE, 2, "no_such_module_xyz"),
    Case("plugin-file-missing", ["--plugin", "{tmp}/none.py"] + BASE, 2, "none.py"),
    Case("plugin-syntax-error", ["--plugin", "{tmp}/broken.py"] + BASE, 2, "broken.py",
         write("broken.py", "def oops(:\n")),
    Case("plugin-raises", ["--plugin", "{tmp}/raises.py"] + BASE, 2, "raises.py",
         write("raises.py", "raise RuntimeError('boom')\n")),
    Case("plugin-without-value", BASE + ["--plugin"], 2, "--plugin"),
    # Settings the data cannot meet (exit 1: the words were fine, the data is not enough)
    Case("more-ways-than-classes", BASE + ["--ways", "9"], 1, "9-way"),
    Case("more-shots-than-examples", replace(BASE, "--shots", "11"), 1, "11 shots"),
    # Damaged data files (exit 1, the file named)
    Case("folder-empty", replace(BASE, "--dataset", "{tmp}/images"), 1, "images", write("images/.keep", "")),
    Case("folder-corrupt-png", replace(BASE, "--dataset", "{tmp}/images"), 1, "4.png",
         image_folder(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)),
    Case("folder-truncated-png", replace(BASE, "--dataset", "{tmp}/images"), 1, "4.png",
         image_folder(png(99)[:60])),
    Case("omniglot-garbage-npz", replace(BASE, "--dataset", "omniglot") + ["--data-root", "{tmp}/root"], 1,
         ".npz", omniglot_npz(b"not an npz at all" * 50)),
    Case("omniglot-truncated-npz", replace(BASE, "--dataset", "omniglot") + ["--data-root", "{tmp}/root"], 1,
         ".npz", omniglot_npz(npz_truncated())),
    # Sub-commands
    Case("site-results-missing", ["site", "--results", "{tmp}/none"], 2, "--results"),
    Case("leaderboard-no-records", ["leaderboard"], 2, "paths"),
    Case("reproduce-unknown-spec", ["reproduce", "no-such-spec"], 2, "no-such-spec"),
]


def checkpoint_case(tmp: Path, partial: bool) -> Path:
    """Train the tiny cell once, then damage its checkpoint (or leave a damaged partial one)."""
    argv = [a.replace("{tmp}", str(tmp)) for a in BASE]
    assert main(argv) == 0
    (checkpoint,) = (tmp / "ckpt").glob("*.pt")
    for record in (tmp / "runs").glob("*.json"):
        record.unlink()
    if partial:
        checkpoint.unlink()
        checkpoint = checkpoint.with_suffix(".partial.pt")
    checkpoint.write_bytes(b"PK\x03\x04 damaged")
    return checkpoint


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def check(tmp_path: Path, capsys, argv: list[str], code: int, culprit: str, before: set[Path]) -> None:
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and len(lines) == 1, captured.err
    assert culprit.replace("{tmp}", str(tmp_path)) in errors[0], errors[0]
    assert "Traceback" not in captured.err + captured.out
    # Nothing half-written: no temporary file, no record, nothing new except the empty folders the checks made.
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))
    assert files_under(tmp_path) - before == set(), sorted(files_under(tmp_path) - before)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_error_line(case: Case, tmp_path, capsys):
    if case.id == "device-cuda-absent" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    case.setup(tmp_path)
    check(tmp_path, capsys, case.argv, case.code, case.culprit, files_under(tmp_path))


@pytest.mark.parametrize("partial", [False, True], ids=["checkpoint", "partial-checkpoint"])
def test_damaged_checkpoint_is_named(partial, tmp_path, capsys):
    damaged = checkpoint_case(tmp_path, partial)
    capsys.readouterr()
    check(tmp_path, capsys, BASE, 1, damaged.name, files_under(tmp_path))


def test_there_are_at_least_forty_cases():
    assert len(CASES) + 2 >= 40
