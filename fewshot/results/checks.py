"""Silent failures made loud: the warnings of a record, and the marker every table puts on such a row.

A record's warnings are those its training stored (``record.train.warnings``, e.g. "loss did not fall") plus those
that follow from the record alone: accuracy at chance, when the 95% CI of the mean accuracy includes ``1 / ways``.
"""
from __future__ import annotations

import math
from typing import Iterable

from fewshot.results.records import RunRecord

#: Appended to a table cell whose record has warnings; the table's footnotes list them.
MARK = " (!)"


def chance_level(record: RunRecord) -> float:
    """The accuracy of guessing: ``1 / ways``; for variable-way episodes the mean of it that the record states
    (NaN when it does not)."""
    if record.config.protocol:
        return float(record.config.protocol.get("chance", math.nan))
    return 1.0 / record.ways


def at_chance(record: RunRecord) -> bool:
    """Whether the mean accuracy's 95% CI includes chance (never, for a single episode: no CI)."""
    s = record.summary
    return math.isfinite(s.ci95) and abs(s.mean - chance_level(record)) <= s.ci95


def record_warnings(record: RunRecord) -> list[str]:
    """The stored warnings of ``record``, then the computed ones."""
    out = [str(w) for w in record.train.warnings]
    if at_chance(record):
        s = record.summary
        guess = "chance" if record.config.protocol else f"1/{record.ways}"
        out.append(f"accuracy at chance: {100 * s.mean:.2f} ± {100 * s.ci95:.2f}% includes {guess} = "
                   f"{100 * chance_level(record):.2f}%")
    return out


def footnotes(flagged: Iterable[tuple[str, list[str]]]) -> list[str]:
    """Footnote lines ``(!) <where>: <warning>; <warning>`` for the ``(where, warnings)`` pairs that have any."""
    return [f"(!) {where}: {'; '.join(warnings)}" for where, warnings in flagged if warnings]
