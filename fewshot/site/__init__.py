"""The results page, ``results/index.html``: collected from the records and specs (:mod:`.collect`), rendered as
one static HTML file (:mod:`.page`, :mod:`.assets`, :mod:`.svg`). ``python -m fewshot.bench site`` writes it."""
from __future__ import annotations

import os
from pathlib import Path

from fewshot.site.collect import collect
from fewshot.site.page import render_page


def build_site(results: str | os.PathLike = "results", out: str | os.PathLike | None = None,
               benchmarks: str | os.PathLike | None = None) -> str:
    """The page's HTML for the records under ``results``; links are relative to ``out``'s folder."""
    results = Path(results)
    out = Path(out) if out is not None else results / "index.html"
    link_base = os.path.relpath(results, out.parent).replace(os.sep, "/")
    return render_page(collect(results, benchmarks), link_base=link_base)


__all__ = ["build_site", "collect", "render_page"]
