"""The local launcher: every unfinished run of an ablation on this machine, several at a time, each a
subprocess ``infogap fit``, a run only after the runs it depends on; an interrupted run resumes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from infogap.ablations.runner.identity import write_identity
from infogap.ablations.runner.progress import ProgressDisplay
from infogap.ablations.runner.spec import Ablation, Run, fit_command, planned_steps


def launch_local(ablation: Ablation, runs: list[Run], jobs: int = 1, progress_every: float = 30.0) -> dict[str, str]:
    """Run every unfinished run on this machine, up to ``jobs`` at a time (each with its share of the
    cores as torch threads), a run only after the runs it depends on (``{stage}`` overrides); an
    interrupted run resumes from its last checkpoint. While they train, each running run's step and
    rate, runs done and an ETA are shown (``ablations.progress``: live on a terminal, else a line every
    ``progress_every`` seconds). Returns {run name: error} for the runs that failed or were skipped
    because a run they depend on failed (the others go on)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    failed: dict[str, str] = {}
    todo = [r for r in runs if not r.finished]
    print(f"{ablation.name}: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run"
          + (f", {jobs} at a time" if jobs > 1 and len(todo) > 1 else ""), flush=True)
    dirs = {r.name: str(r.dir) for r in runs}
    depends = {r.name: [o.name for o in todo if o is not r and any(dirs[o.name] in str(v) for v in r.overrides.values())] for r in todo}
    number = {r.name: i for i, r in enumerate(todo, 1)}
    threads = str(max(1, (os.cpu_count() or 1) // min(jobs, max(1, len(todo)))))
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = threads
    steps = planned_steps(ablation)
    display = ProgressDisplay(ablation.name, len(todo), jobs, every=progress_every)
    pending, running = list(todo), {}
    try:
        while pending or running:
            for run in list(pending):
                if len(running) >= jobs:
                    break
                tag = f"[{number[run.name]}/{len(todo)}] {run.label()}"
                dependency = next((d for d in depends[run.name] if d in failed), None)
                if dependency:
                    pending.remove(run)
                    failed[run.name] = f"skipped: depends on failed run {dependency}"
                    display.finished(run.name, f"{tag} skipped (depends on failed {dependency})")
                    continue
                if any(d in running or any(p.name == d for p in pending) for d in depends[run.name]):
                    continue
                pending.remove(run)
                write_identity(ablation, run)
                log = open(run.dir / "train.log", "a")
                proc = subprocess.Popen([sys.executable, "-m", "infogap", *fit_command(ablation, run), *resume_args(run.dir)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                running[run.name] = (run, proc, log, time.perf_counter())
                display.say(f"{tag} started")
                display.started(run.name, run.label(), run.dir)
            done = [name for name, (_, proc, _, _) in running.items() if proc.poll() is not None]
            if not done:
                display.update([steps(r) for r in pending])
                time.sleep(0.2)
                continue
            for name in done:
                run, proc, log, start = running.pop(name)
                log.close()
                seconds = time.perf_counter() - start
                tag = f"[{number[name]}/{len(todo)}] {run.label()}"
                if proc.returncode != 0 or not run.finished:
                    failed[name] = f"exit {proc.returncode}: {_failure_reason(run.dir / 'train.log')}"
                    run.record_failure(failed[name])
                    display.finished(name, f"{tag} FAILED after {seconds:.0f} s (see {run.dir / 'train.log'})")
                else:
                    run.record_failure(None)
                    m = json.loads((run.dir / "metrics.json").read_text())["metrics"]
                    display.finished(name, f"{tag} done in {seconds:.0f} s (rmg={m.get('rmg', float('nan')):.3f}, "
                                           f"moad_image={m.get('moad_image', float('nan')):.3f})")
    finally:
        display.close()
    return failed


def resume_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint an interrupted run resumes from: the newest of ``checkpoints/last.ckpt`` and the
    ``hpc_ckpt_N.ckpt`` that Lightning writes when SLURM pre-empts it (SIGUSR1), or None."""
    candidates = [p for p in [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def resume_args(run_dir: Path) -> list[str]:
    ckpt = resume_checkpoint(run_dir)
    return [f"--ckpt_path={ckpt}"] if ckpt else []


def _failure_reason(log: Path) -> str:
    """The last line of a run's log that reports an error (else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("wandb")]
    return (errors or lines or ["no output"])[-1]
