"""The SLURM launcher: one array job per stage (chained by dependencies), then an aggregation job; and
one run in this process, which is what an array task executes.

Every launcher starts the same ``infogap fit`` command that ``fit_command`` builds for the local
launcher, so a run is the same wherever it runs, and the same ``summary.csv`` aggregates them.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from infogap.ablations.runner.identity import write_identity
from infogap.ablations.runner.local import resume_args
from infogap.ablations.kit.study import ROOT, Ablation, Run
from infogap.ablations.runner.expand import fit_command

SLURM_DIR = ROOT / "slurm"


# ---------------------------------------------------------------------------------------------
# One run in this process: what a SLURM array task executes.
def stage_runs(runs: list[Run], stage: str) -> list[Run]:
    return [r for r in runs if r.stage == stage]


def run_task(ablation: Ablation, runs: list[Run], stage: str, index: int) -> int:
    """Run ``index`` of ``stage`` here, in this process (so SLURM's SIGUSR1 reaches Lightning), resuming
    from its newest checkpoint. Under SLURM the trainer gets the job's nodes and tasks per node."""
    from infogap.train.cli import lightning_main

    todo = stage_runs(runs, stage)
    if not todo:
        raise ValueError(f"ablation {ablation.name!r} has no stage {stage!r}; stages: {', '.join(s['name'] for s in ablation.stages)}")
    if not 0 <= index < len(todo):
        raise ValueError(f"--task {index}: stage {stage!r} has runs 0..{len(todo) - 1}")
    run = todo[index]
    print(f"{ablation.name}: {run.label()} in {run.dir}", flush=True)
    if run.finished:
        print("already finished", flush=True)
        return 0
    missing = [str(v) for v in run.overrides.values() if isinstance(v, str) and v.endswith(".ckpt") and not Path(v).exists()]
    if missing:
        return _fail(run, f"depends on a checkpoint that does not exist: {missing[0]}")
    write_identity(ablation, run)
    args = fit_command(ablation, run) + resume_args(run.dir)
    if os.environ.get("SLURM_NTASKS_PER_NODE"):
        args += [f"--trainer.devices={os.environ['SLURM_NTASKS_PER_NODE']}", f"--trainer.num_nodes={os.environ.get('SLURM_JOB_NUM_NODES', 1)}"]
    print("infogap " + " ".join(shlex.quote(a) for a in args), flush=True)
    try:
        code = lightning_main(args)
    except Exception as exc:  # noqa: BLE001 - recorded for the aggregation, then re-raised
        _fail(run, f"{type(exc).__name__}: {exc}")
        raise
    if code in (130, 143):  # stopped by SIGINT or SIGTERM (a SLURM cancel, time limit or requeue): it resumes, it did not fail
        return code
    if code != 0 or not run.finished:
        return _fail(run, f"exit {code}: no metrics.json written")
    run.record_failure(None)
    return 0


def _fail(run: Run, why: str) -> int:
    run.record_failure(why)
    print(f"FAILED: {why}", file=sys.stderr, flush=True)
    return 1


# ---------------------------------------------------------------------------------------------
# SLURM
@dataclass
class SlurmOptions:
    """sbatch resources; from the ablation YAML's ``slurm:`` section, then command-line flags."""

    partition: Optional[str] = None
    account: Optional[str] = None
    time: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 0  # 0: CPU-only tasks (one task per node)
    cpus_per_task: Optional[int] = None
    mem: Optional[str] = None
    qos: Optional[str] = None
    extra: tuple[str, ...] = ()  # further sbatch arguments, verbatim

    @classmethod
    def from_sources(cls, section: dict, flags: dict) -> "SlurmOptions":
        names = {f.name for f in fields(cls)}
        unknown = set(section) - names
        if unknown:
            raise ValueError(f"slurm section: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        values = {**section, **{k: v for k, v in flags.items() if v is not None}}
        values["extra"] = tuple(values.get("extra") or ())
        return cls(**values)

    def sbatch_args(self) -> list[str]:
        out = [f"--nodes={self.nodes}", f"--ntasks-per-node={max(1, self.gpus_per_node)}"]
        if self.gpus_per_node:
            out.append(f"--gpus-per-node={self.gpus_per_node}")
        for flag, value in (("partition", self.partition), ("account", self.account), ("time", self.time),
                            ("cpus-per-task", self.cpus_per_task), ("mem", self.mem), ("qos", self.qos)):
            if value is not None:
                out.append(f"--{flag}={value}")
        return out + list(self.extra)


@dataclass
class Submission:
    """One sbatch call: its arguments and, once submitted, its job id."""

    what: str
    argv: list[str]
    job_id: Optional[str] = None

    def line(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


def ablate_args(name: str, out: Path, seeds: Optional[list[int]], only: list[str], overrides: list[str],
                sweep: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> list[str]:
    """The ``infogap ablate`` arguments that re-create this exact set of runs in another process."""
    args = [str(Path(name).resolve()) if name.endswith((".yaml", ".yml")) else name, "--out", str(out)]
    if seeds is not None:
        args += ["--seeds", ",".join(map(str, seeds))]
    for item in sweep:
        args += ["--sweep", item]
    for item in only:
        args += ["--only", item]
    for item in exclude:
        args += ["--exclude", item]
    return args + list(overrides)


def slurm_plan(ablation: Ablation, runs: list[Run], args: list[str], options: SlurmOptions, out: Path) -> list[Submission]:
    """One array job per stage over its unfinished runs, each stage after the previous one succeeded,
    then a CPU job that aggregates whatever finished."""
    logs = out / ablation.name / "slurm"
    env = f"--export=ALL,INFOGAP_ROOT={ROOT}"
    plan: list[Submission] = []
    for st in ablation.stages:
        todo = [i for i, r in enumerate(stage_runs(runs, st["name"])) if not r.finished]
        if not todo:
            continue
        argv = ["sbatch", "--parsable", f"--job-name=infogap-{ablation.name}-{st['name']}", f"--array={_ranges(todo)}",
                f"--output={logs}/%x-%A_%a.out", env, *options.sbatch_args()]
        if plan:
            argv += ["--dependency=afterok:{previous}", "--kill-on-invalid-dep=yes"]
        argv += [str(SLURM_DIR / "array.sbatch"), "ablate", *args, "--stage", st["name"]]
        plan.append(Submission(f"stage {st['name']}: {len(todo)} run(s)", argv))
    aggregate = ["sbatch", "--parsable", f"--job-name=infogap-{ablation.name}-aggregate", f"--output={logs}/%x-%j.out", env,
                 "--nodes=1", "--ntasks=1"]
    aggregate += [f"--{k}={v}" for k, v in (("partition", options.partition), ("account", options.account)) if v]
    if plan:
        aggregate.append("--dependency=afterany:{all}")
    python = shlex.quote(sys.executable)
    aggregate.append("--wrap=" + f"cd {shlex.quote(str(ROOT))} && {python} -m infogap ablate " + " ".join(shlex.quote(a) for a in args) + " --aggregate-only")
    plan.append(Submission("aggregate", aggregate))
    return plan


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (sbatch --array syntax)."""
    parts, start = [], None
    for i, v in enumerate(indices):
        if start is None:
            start = v
        if i + 1 == len(indices) or indices[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(parts)


def submit(plan: list[Submission]) -> list[Submission]:
    """sbatch every submission in order, filling in the dependency placeholders with job ids."""
    ids: list[str] = []
    for sub in plan:
        sub.argv = [a.replace("{previous}", ids[-1] if ids else "").replace("{all}", ":".join(ids)) for a in sub.argv]
        try:
            proc = subprocess.run(sub.argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise FileNotFoundError("sbatch not found: --launcher slurm needs the SLURM client commands on PATH") from None
        if proc.returncode != 0:
            raise ValueError(f"sbatch failed for {sub.what}: {proc.stderr.strip() or proc.stdout.strip()}")
        sub.job_id = proc.stdout.strip().split(";")[0]
        ids.append(sub.job_id)
    return plan


def launch_slurm(ablation: Ablation, runs: list[Run], args: list[str], options: SlurmOptions, out: Path, dry_run: bool) -> list[Submission]:
    plan = slurm_plan(ablation, runs, args, options, out)
    if dry_run:
        print(f"# {SLURM_DIR / 'array.sbatch'}\n{(SLURM_DIR / 'array.sbatch').read_text()}")
        for sub in plan:
            print(f"# {sub.what}\n{sub.line()}")
        return plan
    (out / ablation.name / "slurm").mkdir(parents=True, exist_ok=True)
    submit(plan)
    for sub in plan:
        print(f"submitted {sub.what}: job {sub.job_id}")
    print(f"the aggregation job {plan[-1].job_id} writes {out / ablation.name / 'summary.csv'}; logs in {out / ablation.name / 'slurm'}")
    return plan
