"""One training run's checkpoints: resume, partial saves by step count and by time, and a save on SIGINT/SIGTERM.

A loop (the suite's or a method's own :meth:`~fewshot.methods.base.FewShotMethod.train_loop`) asks
:meth:`TrainSession.resume` for the step to start from and calls :meth:`TrainSession.step_done` after each step.
A partial checkpoint holds every module's state, the global torch RNG state, the losses so far and the time spent,
so the resumed run goes on to the same weights, bit for bit, as one that was never stopped. Like
:class:`~fewshot.train.config.TrainConfig` this sits below the methods: it imports only :mod:`fewshot.core`.

A session ``shared`` by the ranks of a ``torchrun`` job (training split over them) is read by every rank on resume
and written by rank 0 alone; a signal to any rank stops every rank after the same step.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from fewshot.core import distributed
from fewshot.core.atomic import atomic_torch_save
from fewshot.core.errors import DataError, Interrupted
from fewshot.core.progress import progress_bar
from fewshot.core.signals import RESUME



@dataclass
class Watch:
    """A held-out score measured during training: ``score()`` (the accuracy of the model as it is, on fixed
    held-out episodes) after every ``every`` steps and after the last. It runs without gradients and with the
    global RNG state forked, so the weights are those of an unwatched run, bit for bit; the points are kept in
    partial and final checkpoints, so a resumed run keeps them. ``describe`` says what is scored, for records."""

    every: int
    score: Callable[[], float]
    describe: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"a watch measures every 1 or more steps, not {self.every}")

    def after(self, done: int, total: int, device: torch.device | str) -> None:
        """Measure when step ``done`` (1-based) is due."""
        if done % self.every and done != total:
            return
        cuda = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            self.points.append({"step": done, "accuracy": float(self.score())})


def partial_path(checkpoint: Path) -> Path:
    """Where the partial checkpoint of ``checkpoint`` is kept while it trains."""
    return checkpoint.with_suffix(".partial.pt")


class TrainSession:
    """Checkpointing for one run of ``total_steps`` steps towards ``checkpoint`` (``None``: nothing is saved).

    ``shared``: every rank of the process group runs this session in step (see the module docstring)."""

    def __init__(self, checkpoint: Path | None, *, total_steps: int, seed: int, device: torch.device | str,
                 progress: bool = True, every_steps: int = 0, every_seconds: float = 60.0,
                 shared: bool = False, watch: Watch | None = None) -> None:
        self.checkpoint = checkpoint
        self.total_steps = total_steps
        self.seed = seed
        self.device = device
        self.progress = progress
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.shared = shared
        self.watch = watch
        #: Whether this process writes the checkpoints (rank 0 of a shared session, or a process on its own).
        self.writes = not shared or distributed.is_main()
        #: The loss of every step so far, resumed ones included.
        self.losses: list[float] = []
        self._seconds_before = 0.0          # training time of earlier, interrupted runs
        self._started = time.perf_counter()
        self._last_save = time.monotonic()
        self._signal: int | None = None
        self._bar: Any = None

    @property
    def partial(self) -> Path | None:
        return partial_path(self.checkpoint) if self.checkpoint is not None else None

    @property
    def seconds(self) -> float:
        """Training time so far, over every run that contributed to it."""
        return self._seconds_before + time.perf_counter() - self._started

    def resume(self, modules: dict[str, Any]) -> int:
        """Load the partial checkpoint into ``modules`` (name -> object with ``load_state_dict``) when there is
        one; returns the step to go on from (0 for a fresh start)."""
        if self.partial is None or not self.partial.exists():
            return 0
        try:
            state = torch.load(self.partial, map_location=self.device, weights_only=False)
            for key, module in modules.items():
                module.load_state_dict(state[key])
        except Exception as error:  # a partial checkpoint is ours: any failure to read it means it is damaged
            raise DataError(f"cannot resume from {self.partial} ({type(error).__name__}: {error}); delete it to "
                            f"train from the start") from None
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.device(self.device).type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], torch.device(self.device))
        self.losses = list(state["losses"])
        if self.watch is not None:
            self.watch.points = list(state.get("watch", []))
        self._seconds_before = float(state["seconds"])
        self._started = time.perf_counter()
        return int(state["step"])

    def steps(self, first: int, desc: str) -> Iterator[int]:
        """The steps ``first .. total_steps - 1``, with a progress bar."""
        self._bar = progress_bar(range(first, self.total_steps), desc=desc, enabled=self.progress,
                                 total=self.total_steps, initial=first)
        return iter(self._bar)

    def step_done(self, step: int, modules: dict[str, Any], loss: float) -> None:
        """Note that step ``step`` (0-based) finished with ``loss``; save a partial checkpoint when one is due,
        and after a SIGINT/SIGTERM save one and raise :class:`~fewshot.core.errors.Interrupted`."""
        self.losses.append(loss)
        if self._bar is not None and step % 20 == 0:
            self._bar.set_postfix(loss=f"{loss:.3f}")
        done = step + 1
        if self.watch is not None:
            self.watch.after(done, self.total_steps, self.device)
        # A shared session stops when any rank was signalled, all after this same step (one rank stopping alone
        # would leave the others waiting in the next step's collective).
        others = self.shared and any(distributed.all_gather(self._signal is not None))
        if self._signal is not None or others:
            where = self._save(modules, done)
            name = signal.Signals(self._signal).name if self._signal is not None else "a signal to another rank"
            raise Interrupted(f"stopped by {name} at step {done} of {self.total_steps}"
                              + (f"; the training so far is saved in {where}" if where else "")
                              + f"; {RESUME}")
        if done >= self.total_steps:
            return
        by_steps = self.every_steps > 0 and done % self.every_steps == 0
        by_time = self.every_seconds >= 0 and time.monotonic() - self._last_save >= self.every_seconds
        if by_steps or by_time:
            self._save(modules, done)

    def _save(self, modules: dict[str, Any], step: int) -> Path | None:
        self._last_save = time.monotonic()
        if self.partial is None or not self.writes:
            return None
        state = {key: module.state_dict() for key, module in modules.items()}
        if torch.device(self.device).type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(torch.device(self.device))
        watched = {"watch": self.watch.points} if self.watch is not None else {}
        atomic_torch_save({**state, "step": step, "rng": torch.get_rng_state(), "losses": self.losses,
                           "seconds": self.seconds, **watched}, self.partial)
        return self.partial

    def discard_partial(self) -> None:
        if self.partial is not None and self.writes:
            self.partial.unlink(missing_ok=True)

    @contextmanager
    def signals(self) -> Iterator[None]:
        """While training: the first SIGINT or SIGTERM stops at the end of the current step (saved); a second one
        stops at once, keeping the last partial checkpoint."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None:
                raise Interrupted(f"interrupted again; the last partial checkpoint is kept; {RESUME}")
            self._signal = signum

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def loss_warnings(losses: list[float]) -> list[str]:
    """Warnings for a training whose loss did not fall: the mean of the last tenth of the steps is not 5% below
    the mean of the first tenth."""
    if len(losses) < 20:
        return []
    k = len(losses) // 10
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    if math.isfinite(first) and math.isfinite(last) and last < 0.95 * first:
        return []
    return [f"training loss did not fall: {first:.3f} over the first {k} steps, {last:.3f} over the last {k}; "
            f"check the learning rate and the data"]


def loss_curve(losses: list[float], points: int = 100) -> list[dict[str, float]]:
    """The losses as at most ``points`` window means: ``[{"step": last step of the window (1-based), "loss"}]``."""
    if not losses:
        return []
    window = max(1, math.ceil(len(losses) / points))
    return [{"step": min(start + window, len(losses)),
             "loss": sum(losses[start:start + window]) / len(losses[start:start + window])}
            for start in range(0, len(losses), window)]
