"""The local launcher: every unfinished run of an ablation on this machine, several at a time, each a
subprocess ``infogap fit``, a run only after the runs it depends on; an interrupted run resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from infogap.ablations.runner.identity import write_identity
from infogap.ablations.runner.progress import ProgressDisplay
from infogap.ablations.kit.study import Ablation, Run, planned_steps
from infogap.ablations.kit.parallel import cores_per_worker
from infogap.ablations.runner.expand import fit_command

KILL_AFTER_ENV = "INFOGAP_KILL_AFTER_RUNS"  # tests only: SIGKILL this process once N runs of one launch have finished


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
    trained = 0
    print(f"{ablation.name}: {len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run"
          + (f", {jobs} at a time" if jobs > 1 and len(todo) > 1 else ""), flush=True)
    dirs = {r.name: str(r.dir) for r in runs}
    depends = {r.name: [o.name for o in todo if o is not r and any(dirs[o.name] in str(v) for v in r.overrides.values())] for r in todo}
    number = {r.name: i for i, r in enumerate(todo, 1)}
    threads = str(cores_per_worker(min(jobs, len(todo))))
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = threads
    steps = planned_steps(ablation)
    display = ProgressDisplay(ablation.name, len(todo), jobs, every=progress_every)
    pending, running = list(todo), {}
    previous = signal.signal(signal.SIGTERM, _raise_stop)  # SIGTERM (SLURM, kill) ends the ablation as Ctrl-C does
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
                    m = run.record()["metrics"]
                    display.finished(name, f"{tag} done in {seconds:.0f} s (rmg={m.get('rmg', float('nan')):.3f}, "
                                           f"moad_image={m.get('moad_image', float('nan')):.3f})")
                    trained += 1
                    if trained == int(os.environ.get(KILL_AFTER_ENV, "0") or 0):  # tests: a kill at a known point
                        os.kill(os.getpid(), signal.SIGKILL)
    except (KeyboardInterrupt, _Stop) as exc:
        name = "SIGTERM" if isinstance(exc, _Stop) else "SIGINT"
        display.close()
        stopped = _stop_runs([(run, proc) for run, proc, _, _ in running.values()])
        raise Interrupted(name, stopped, len(todo) - len(pending) - len(running)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        display.close()
        for _, _, log, _ in running.values():
            log.close()
    return failed


class _Stop(Exception):
    """SIGTERM, raised in the launcher's loop."""


def _raise_stop(signum, frame) -> None:
    raise _Stop()


class Interrupted(Exception):
    """The ablation was stopped (SIGINT or SIGTERM): its running runs saved their checkpoints and stopped;
    ``infogap ablate`` again resumes them. ``exit_code`` is 128 + the signal."""

    def __init__(self, signal_name: str, stopped: list[str], done: int):
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        runs = f"{len(stopped)} running run(s) saved a checkpoint and stopped ({', '.join(stopped)})" if stopped else "no run was running"
        super().__init__(f"interrupted by {signal_name}: {runs}; {done} run(s) had finished; run the same command again to resume")


def _stop_runs(running: list[tuple[Run, subprocess.Popen]], timeout: float = 120.0) -> list[str]:
    """Ask every running run to stop (SIGTERM: it saves ``last.ckpt`` at its step), wait for them (a run
    still going after ``timeout`` seconds is killed) and mark each ``interrupted`` in its progress file."""
    from infogap.train.loggers import PROGRESS, read_progress, write_json_atomic

    for _, proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for _, proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for run, _ in running:
        progress = read_progress(run.dir)
        if progress and progress.get("status") == "training":
            write_json_atomic(run.dir / PROGRESS, {**progress, "status": "interrupted"})
    return [run.label() for run, _ in running]


def resume_checkpoint(run_dir: Path) -> Optional[Path]:
    """The checkpoint an interrupted run resumes from: the newest one that loads among its checkpoints
    and the ``hpc_ckpt_N.ckpt`` that Lightning writes when SLURM pre-empts it (SIGUSR1), or None. A
    checkpoint that does not load is set aside with a line naming it (``resolve_resume``)."""
    from infogap.train.checkpoints import resolve_resume

    ckpt, messages = resolve_resume("last", Path(run_dir) / "checkpoints")
    for message in messages:
        print(f"warning: {message}", flush=True)
    return None if ckpt is None else Path(ckpt)


def resume_args(run_dir: Path) -> list[str]:
    """``--ckpt_path`` of the checkpoint to resume from; ``--overwrite=true`` when an unfinished run left
    results but no checkpoint that loads (it starts afresh); nothing for a new run."""
    from infogap.train.checkpoints import previous_results

    ckpt = resume_checkpoint(run_dir)
    if ckpt is not None:
        return [f"--ckpt_path={ckpt}"]
    return ["--overwrite=true"] if previous_results(run_dir, Path(run_dir) / "checkpoints") else []


def _failure_reason(log: Path) -> str:
    """The last line of a run's log that reports an error (else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() and not line.startswith("wandb")]
    return (errors or lines or ["no output"])[-1]
