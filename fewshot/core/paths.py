"""Where the suite keeps what it computes: checkpoints, feature caches, generated datasets."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FEWSHOT_CACHE`` if set, else ``$XDG_CACHE_HOME/fewshot`` or ``~/.cache/fewshot``."""
    if os.environ.get("FEWSHOT_CACHE"):
        return Path(os.environ["FEWSHOT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "fewshot"
