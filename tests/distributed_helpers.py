"""Launching the suite under ``torchrun --nproc-per-node 2`` (gloo, CPU) from a test: shared by the distributed tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def environment(cache: Path) -> dict[str, str]:
    """The environment of a launched run: one thread per rank, no network, its own cache, this checkout first."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "FEWSHOT_CACHE": str(cache),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def torchrun(*args: str) -> list[str]:
    """The command that starts ``args`` (a script or ``-m module`` and its arguments) on 2 local ranks."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
