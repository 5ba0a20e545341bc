"""The local launcher: every unfinished run of an ablation on this machine, several at a time, each a
subprocess ``infogap fit``, a run only after the runs it depends on; an interrupted run resumes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
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
    cores as torch threads), a run only after the runs it depends on (``{stage}`` overrides), the costliest
    first (``start_order``); an interrupted run resumes from its last checkpoint. While they train, each
    running run's step and rate, runs done and an ETA are shown (``ablations.progress``: live on a
    terminal, else a line every ``progress_every`` seconds). Returns {run name: error} for the runs that
    failed or were skipped because a run they depend on failed (the others go on)."""
    pool = launch_pool([(ablation, r) for r in runs], jobs, progress_every, ablation.name)
    return {run.name: why for run, why in pool.failed}


@dataclass
class Pool:
    """What ``launch_pool`` did: (run, error) for each run that failed or was skipped, and the wall seconds
    of each run it trained (by run directory)."""

    failed: list[tuple[Run, str]]
    seconds: dict[str, float]


def launch_pool(items: list[tuple[Ablation, Run]], jobs: int = 1, progress_every: float = 30.0, name: str = "plan") -> Pool:
    """``launch_local`` over the runs of several ablations at once (``infogap reproduce``: the whole plan in
    one pool, so no slot idles while one study's last run trains). Runs of one training identity
    (``training_key``: e.g. ``learn_forget``'s ``tiny`` runs and ``imbalance``'s) train once: the first
    trains, the others wait for it and take a copy of it (``copy_run``)."""
    from infogap.ablations.runner.identity import copy_run, training_key

    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    several = len({a.name for a, _ in items}) > 1
    todo = [(a, r) for a, r in items if not r.finished]
    key = {str(r.dir): training_key(a, r) for a, r in todo}
    trainer: dict[str, str] = {}  # training identity -> the directory of the run that trains it
    for _, r in todo:
        trainer.setdefault(key[str(r.dir)], str(r.dir))
    copies = {str(r.dir): trainer[key[str(r.dir)]] for _, r in todo if trainer[key[str(r.dir)]] != str(r.dir)}
    trains = [(a, r) for a, r in todo if str(r.dir) not in copies]
    print(f"{name}: {len(items)} runs, {len(items) - len(todo)} already finished, {len(trains)} to run"
          + (f" ({len(copies)} more are copies of identical runs of this launch)" if copies else "")
          + (f", {jobs} at a time" if jobs > 1 and len(trains) > 1 else ""), flush=True)
    dirs = {str(r.dir) for _, r in items}
    depends = {str(r.dir): [d for d in dirs if d != str(r.dir) and any(d in str(v) for v in r.overrides.values())] for _, r in trains}
    number = {str(r.dir): i for i, (_, r) in enumerate(trains, 1)}
    threads = str(cores_per_worker(min(jobs, len(trains))))
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = threads
    steps = {a.name: planned_steps(a) for a, _ in items}
    display = ProgressDisplay(name, len(trains), jobs, every=progress_every)
    pending = start_order(trains)
    waiting = [(a, r) for a, r in todo if str(r.dir) in copies]
    failed: dict[str, str] = {}  # run directory -> error
    unfinished = {str(r.dir) for _, r in todo}
    running: dict[str, tuple] = {}
    seconds: dict[str, float] = {}
    trained = 0

    def label(a: Ablation, r: Run) -> str:
        return f"{a.name} {r.label()}" if several else r.label()

    previous = signal.signal(signal.SIGTERM, _raise_stop)  # SIGTERM (SLURM, kill) ends the ablation as Ctrl-C does
    try:
        while pending or running or waiting:
            for a, r in list(waiting):  # a copy: once the run it copies has finished
                source = copies[str(r.dir)]
                if source in failed:
                    waiting.remove((a, r))
                    failed[str(r.dir)] = f"skipped: the identical run {source} failed"
                elif source not in unfinished:
                    waiting.remove((a, r))
                    copy_run(Path(source), r)
                    unfinished.discard(str(r.dir))
            for a, run in list(pending):
                if len(running) >= jobs:
                    break
                tag = f"[{number[str(run.dir)]}/{len(trains)}] {label(a, run)}"
                dependency = next((d for d in depends[str(run.dir)] if d in failed), None)
                if dependency:
                    pending.remove((a, run))
                    failed[str(run.dir)] = f"skipped: depends on failed run {dependency}"
                    display.finished(str(run.dir), f"{tag} skipped (depends on failed {dependency})")
                    continue
                if any(d in unfinished for d in depends[str(run.dir)]):
                    continue
                pending.remove((a, run))
                write_identity(a, run)
                log = open(run.dir / "train.log", "a")
                proc = subprocess.Popen([sys.executable, "-m", "infogap", *fit_command(a, run), *resume_args(run.dir)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                running[str(run.dir)] = (a, run, proc, log, time.perf_counter())
                display.say(f"{tag} started")
                display.started(str(run.dir), label(a, run), run.dir)
            done = [d for d, (_, _, proc, _, _) in running.items() if proc.poll() is not None]
            if not done:
                if waiting and not pending and not running:  # cannot happen: a copy's source is pending, running or done
                    raise RuntimeError(f"{name}: copies wait on runs that are not scheduled: {[str(r.dir) for _, r in waiting]}")
                display.update([steps[a.name](r) for a, r in pending])
                time.sleep(0.2)
                continue
            for d in done:
                a, run, proc, log, start = running.pop(d)
                log.close()
                seconds[d] = time.perf_counter() - start
                tag = f"[{number[d]}/{len(trains)}] {label(a, run)}"
                if proc.returncode != 0 or not run.finished:
                    failed[d] = f"exit {proc.returncode}: {_failure_reason(run.dir / 'train.log')}"
                    run.record_failure(failed[d])
                    display.finished(d, f"{tag} FAILED after {seconds[d]:.0f} s (see {run.dir / 'train.log'})")
                else:
                    run.record_failure(None)
                    unfinished.discard(d)
                    m = run.record()["metrics"]
                    display.finished(d, f"{tag} done in {seconds[d]:.0f} s (rmg={m.get('rmg', float('nan')):.3f}, "
                                        f"moad_image={m.get('moad_image', float('nan')):.3f})")
                    trained += 1
                    if trained == int(os.environ.get(KILL_AFTER_ENV, "0") or 0):  # tests: a kill at a known point
                        os.kill(os.getpid(), signal.SIGKILL)
    except (KeyboardInterrupt, _Stop) as exc:
        signal_name = "SIGTERM" if isinstance(exc, _Stop) else "SIGINT"
        display.close()
        stopped = _stop_runs([(run, proc) for _, run, proc, _, _ in running.values()])
        raise Interrupted(signal_name, stopped, len(trains) - len(pending) - len(running)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        display.close()
        for _, _, _, log, _ in running.values():
            log.close()
    by_dir = {str(r.dir): r for _, r in items}
    return Pool([(by_dir[d], why) for d, why in failed.items()], seconds)


def relative_cost(name: str) -> float:
    """A small config's transformer work per sample, relative to ``tiny``: over both towers, layers x tokens
    x width^2 x (4 + 2 x mlp_ratio) (attention projections and MLP; the word-level text tower at the
    synthetic captions' context, a word per factor plus start and end). For scheduling runs longest first,
    not a FLOP count; 1.0 for any other model."""
    from infogap.data.factors import FACTORS
    from infogap.models.clip import SMALL_CONFIGS

    config = SMALL_CONFIGS.get(name)
    if config is None:
        return 1.0
    words = len(FACTORS) + 2

    def work(c) -> float:
        v, t = c.vision, c.text
        tokens = (v["image_size"] // v["patch_size"]) ** 2 + 1
        return (v["layers"] * tokens * v["width"] ** 2 * (4 + 2 * v.get("mlp_ratio", 4.0))
                + t["layers"] * t.get("context_length", words) * t["width"] ** 2 * (4 + 2 * t.get("mlp_ratio", 4.0)))

    return work(config) / work(SMALL_CONFIGS["tiny"])


def start_order(items: list[tuple[Ablation, Run]]) -> list[tuple[Ablation, Run]]:
    """The costliest first, so that the last runs to start are short ones and no slot idles long at the end
    (longest-processing-time order): a run's cost is its steps times its model's ``relative_cost``, the model
    from its overrides or its ablation's base config (read once per ablation). Runs of equal cost keep
    their order."""
    from infogap.ablations.kit.study import read_yaml

    steps = {a.name: planned_steps(a) for a, _ in items}
    base_model = {a.name: ((read_yaml(a.base_config, "base_config") or {}).get("model") or {}).get("model") for a, _ in items}

    def cost(item: tuple[Ablation, Run]) -> float:
        a, run = item
        return float(steps[a.name](run) or 1) * relative_cost(str(run.overrides.get("model.model", base_model[a.name])))

    return sorted(items, key=lambda item: -cost(item))


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
