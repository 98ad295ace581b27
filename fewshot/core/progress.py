"""Progress bars that stay quiet when output is not a terminal or when asked to."""
from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, desc: str, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar over ``iterable``, disabled when ``enabled`` is False or stderr is not a terminal."""
    show = enabled and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, disable=not show, leave=False, dynamic_ncols=True, **kwargs)
