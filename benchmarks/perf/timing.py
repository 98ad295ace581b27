"""What every throughput script shares: variants timed in turns, and the CPU other processes took meanwhile."""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from fewshot.core.atomic import atomic_write_text
from fewshot.results.records import environment, now


def busy_jiffies() -> tuple[int, int]:
    """(CPU time of the whole machine, of this process) in clock ticks, from ``/proc`` (zeros where it is absent)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    busy = sum(fields[:3]) + sum(fields[5:8])  # user, nice, system, irq, softirq, steal
    return busy, int(own[11]) + int(own[12])  # utime, stime


def alternate(variants: dict[str, Callable[[], float]], rounds: int,
              report: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Call each variant in turn (A B C, A B C, ...) ``rounds`` times; each call returns its own rate.

    Returns ``{"median": {name: rate}, "rounds": {name: [rates]}, "other_cpu_percent": p}``, ``p`` being the CPU
    that other processes used during the timing, in percent of one core (so that a loaded run can be told apart).
    """
    rates: dict[str, list[float]] = {name: [] for name in variants}
    machine0, own0, start = *busy_jiffies(), time.monotonic()
    for r in range(rounds):
        for name, run in variants.items():
            rates[name].append(run())
        if report:
            report(r, {name: values[-1] for name, values in rates.items()})
    machine1, own1 = busy_jiffies()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    other = 100.0 * ((machine1 - machine0) - (own1 - own0)) / ticks / max(time.monotonic() - start, 1e-9)
    return {"median": {name: statistics.median(v) for name, v in rates.items()}, "rounds": rates,
            "other_cpu_percent": max(0.0, other)}


def write_throughput(name: str, settings: dict, unit: str, groups: dict, device: str, out: str | os.PathLike,
                     render: Callable[[dict], str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a throughput result as ``<out>/<name>.json`` (the shape the results page reads; ``extra``: more
    top-level keys) and its table ``<name>.md`` (``render`` of the stored result alone); returns the result."""
    result = {"benchmark": name, "created": now(), "settings": settings,
              "throughput": {"unit": unit, "groups": groups}, "environment": environment(device), **(extra or {})}
    atomic_write_text(Path(out) / f"{name}.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(Path(out) / f"{name}.md", render(result))
    return result
