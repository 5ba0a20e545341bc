"""What ``infogap ablate`` shows while its runs train: each running run's step / max steps and rate,
runs done / total, and an ETA. On a terminal, live tqdm bars (one for the ablation, one per running
run); otherwise (SLURM logs, CI) a plain line every ``every`` seconds. Everything shown comes from the
``progress.json`` each run writes about itself (``infogap.train.loggers.ProgressFile``), so the
display cannot drift from the runs.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from infogap.train.loggers import read_progress


def eta_seconds(running: list[Optional[dict]], pending_steps: list[Optional[int]], jobs: int) -> Optional[float]:
    """Seconds until every run is done: the steps left of the running runs and of the pending ones
    (their planned max steps), at the rate the running runs show now (summed: they train side by side;
    a pending run later gets one of the ``jobs`` slots at the mean rate of one). None without a rate,
    or when a pending run's length is unknown."""
    rates = [p["steps_per_second"] for p in running if p and p.get("steps_per_second")]
    if not rates or any(s is None for s in pending_steps):
        return None
    left = sum(max(0, p["max_steps"] - p["step"]) for p in running if p)
    per_run = sum(rates) / len(rates)
    return left / sum(rates) + sum(pending_steps) / (per_run * max(1, min(jobs, len(pending_steps) or 1)))


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def run_status(label: str, progress: Optional[dict]) -> str:
    """``k=3 seed=0 step 120/600 (4.8 it/s)``, or ``k=3 seed=0 starting`` before its first report."""
    if not progress:
        return f"{label} starting"
    rate = progress.get("steps_per_second")
    return f"{label} step {progress['step']}/{progress['max_steps']}" + (f" ({rate:.1f} it/s)" if rate else "")


def status_line(name: str, done: int, total: int, running: dict[str, Optional[dict]], eta: Optional[float]) -> str:
    """One plain line: ``imbalance: 2/6 runs done; running: k=2 seed=0 step 300/600 (5.0 it/s); ETA 4m10s``."""
    parts = [f"{name}: {done}/{total} runs done"]
    if running:
        parts.append("running: " + ", ".join(run_status(label, p) for label, p in running.items()))
    parts.append(f"ETA {format_seconds(eta)}")
    return "; ".join(parts)


class ProgressDisplay:
    """The launcher calls ``started``, ``finished`` (with the line to keep) and ``update`` (often; it
    reads the running runs' progress files). ``stream`` defaults to ``sys.stdout``; ``live`` to whether
    ``stream`` is a terminal."""

    def __init__(self, name: str, total: int, jobs: int, every: float = 30.0, stream: Optional[TextIO] = None, live: Optional[bool] = None):
        stream = sys.stdout if stream is None else stream  # the stdout of now, not of import time
        self.name, self.total, self.jobs, self.every, self.stream = name, total, jobs, every, stream
        self.live = stream.isatty() if live is None else live
        self.done = 0
        self.running: dict[str, tuple[str, object]] = {}  # run name -> (label, run directory)
        self._bars: dict[str, object] = {}
        self._last_line = time.monotonic()
        self._overall = None
        if self.live:
            from tqdm import tqdm

            self._tqdm = tqdm
            self._overall = tqdm(total=total, desc=name, unit="run", file=stream, position=0, dynamic_ncols=True)

    def say(self, line: str) -> None:
        if self.live:
            self._tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def started(self, name: str, label: str, run_dir) -> None:
        self.running[name] = (label, run_dir)
        if self.live:
            self._bars[name] = self._tqdm(total=None, desc=label, file=self.stream, leave=False, dynamic_ncols=True,
                                          position=1 + len(self._bars) % max(1, self.jobs),
                                          bar_format="{desc} {bar} {n_fmt}/{total_fmt} steps{postfix}")

    def finished(self, name: str, line: str) -> None:
        self.running.pop(name, None)
        self.done += 1
        bar = self._bars.pop(name, None)
        if bar is not None:
            bar.close()
        if self._overall is not None:
            self._overall.update(1)
        self.say(line)

    def update(self, pending_steps: list[Optional[int]]) -> None:
        progress = {name: read_progress(d) for name, (_, d) in self.running.items()}
        eta = eta_seconds(list(progress.values()), pending_steps, self.jobs)
        if self.live:
            for name, bar in self._bars.items():
                p = progress.get(name)
                if p:
                    bar.total = p["max_steps"]
                    bar.n = p["step"]
                    bar.set_postfix_str(f"{p['steps_per_second']:.1f} it/s" if p.get("steps_per_second") else "", refresh=False)
                    bar.refresh()
            self._overall.set_postfix_str(f"ETA {format_seconds(eta)}")
            return
        if self.running and time.monotonic() - self._last_line >= self.every:
            self._last_line = time.monotonic()
            labels = {self.running[name][0]: p for name, p in progress.items()}
            print(status_line(self.name, self.done, self.total, labels, eta), file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        if self._overall is not None:
            self._overall.close()
