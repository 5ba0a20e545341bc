"""``infogap ablate NAME``: expand an ablation into runs, launch them, aggregate the results."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from infogap.ablations.runner.aggregate import aggregate, format_table, timings_line, untested, write_timings
from infogap.ablations.runner.identity import check_identities, identity_problems, reuse_finished, run_identity
from infogap.ablations.runner.local import Interrupted, launch_local
from infogap.ablations.runner.slurm import SlurmOptions, ablate_args, launch_slurm, run_task
from infogap.ablations.runner.expand import check_runs, fit_command, parse_seeds, resolve
from infogap.ablations.runner.spec import available
from infogap.ablations.runner.sweeps import launch_wandb, sweep_config
from infogap.train.locks import held

DEMO_COLUMNS = ["rmg", "l2m", "moad_image", "moad_text", "entropy_i2t", "zeroshot_object_acc", "attr_acc_mean"]


def check_flags(args) -> None:
    """Counts positive, no empty SLURM resource, and no two flags that contradict each other: one line each."""
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.analysis_jobs < 1:
        raise ValueError(f"--analysis-jobs must be >= 1, got {args.analysis_jobs}")
    if args.dry_run and args.aggregate_only:
        raise ValueError("--dry-run and --aggregate-only contradict each other (one prints what would run, the other aggregates); give one")
    if args.rerun and (args.aggregate_only or args.dry_run):
        raise ValueError(f"--rerun trains runs again; it does not go with {'--aggregate-only' if args.aggregate_only else '--dry-run'}")
    if args.launcher == "wandb" and args.exclude and not args.aggregate_only:
        raise ValueError("--exclude drops points of the axes' product, which a W&B grid sweep cannot express; launch it locally or on "
                         "SLURM, or sweep with --only")
    if args.launcher != "local" and args.jobs != 1:
        raise ValueError(f"--jobs {args.jobs} is for the local launcher; with --launcher {args.launcher} the scheduler runs the runs "
                         "side by side (leave --jobs out)")
    for flag in ("partition", "account", "time", "mem", "qos"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise ValueError(f"--{flag}: an empty value; leave the flag out to use the ablation's (or the cluster's) default")
    for flag in ("nodes", "cpus_per_task"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.gpus_per_node is not None and args.gpus_per_node < 0:
        raise ValueError(f"--gpus-per-node must be >= 0, got {args.gpus_per_node}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="infogap ablate",
        description=f"Run an ablation of configs/ablations/ ({', '.join(available())}) and aggregate it into "
                    "results/NAME/summary.csv, report.md and figures.",
    )
    p.add_argument("name", help="ablation name or path to an ablation YAML")
    p.add_argument("overrides", nargs="*", help="key=value applied to every run, e.g. trainer.max_steps=300; NAME.key=value sets "
                                                "a setting of the study (e.g. learn_forget.steps=200)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the ablation's)")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=v1,v2",
                   help="one more axis on the reported stage, crossed with its axes, named by the key's last part, "
                        "e.g. --sweep trainer.max_steps=600,2400,9600 (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="AXIS=v1,v2", help="restrict a swept axis to some of its values")
    p.add_argument("--exclude", action="append", default=[], metavar="'AXIS=v1,v2 AXIS=v'",
                   help="drop the points of the axes' product where every listed condition holds (repeatable)")
    p.add_argument("--launcher", choices=["local", "slurm", "wandb"], default="local",
                   help="local: one run after another here; slurm: one array job per stage, then an aggregation job; "
                        "wandb: create a W&B grid sweep (one-stage ablations)")
    p.add_argument("--jobs", type=int, default=1, help="local: runs at a time (each gets its share of the cores; default 1)")
    p.add_argument("--analysis-jobs", type=int, default=1,
                   help="worker processes for a study's per-run analyses when it aggregates (learn_forget, dense, heads; default 1: "
                        "one process; more pays only where cores outnumber what one analysis uses, see BENCHMARKS.md)")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="local, output not a terminal: a progress line every SECONDS (on a terminal the display is live)")
    p.add_argument("--dry-run", action="store_true", help="print the runs (local), the sbatch lines (slurm) or the sweep (wandb); launch nothing")
    p.add_argument("--aggregate-only", action="store_true", help="aggregate the finished runs, launch nothing")
    p.add_argument("--rerun", action="store_true",
                   help="train again every run whose directory holds a run trained with other settings (another override or base "
                        "config; without --rerun such a plan is refused); the old run is moved to OUT/NAME/superseded/")
    g = p.add_argument_group("one run (what a SLURM array task executes)")
    g.add_argument("--stage", default=None, help="stage of --task (default: the first)")
    g.add_argument("--task", type=int, default=None, metavar="INDEX", help="run only run INDEX of --stage, in this process")
    g = p.add_argument_group("SLURM resources (override the ablation's `slurm:` section)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--time", help="time limit per run, e.g. 04:00:00")
    g.add_argument("--nodes", type=int)
    g.add_argument("--gpus-per-node", type=int, help="GPUs (= tasks) per node; 0 runs one CPU task")
    g.add_argument("--cpus-per-task", type=int)
    g.add_argument("--mem")
    g.add_argument("--qos")
    g.add_argument("--sbatch-arg", action="append", default=None, dest="extra", help="a further sbatch argument, verbatim (repeatable)")
    g = p.add_argument_group("W&B")
    g.add_argument("--project", default="infogap", help="W&B project of the sweep (default: infogap)")
    g.add_argument("--entity", default=None, help="W&B entity (default: yours)")
    args = p.parse_intermixed_args(argv)

    check_flags(args)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    out = Path(args.out).resolve()
    resolved = resolve(args.name, args.overrides, args.sweep, seeds, args.only, out, args.exclude)
    ablation, runs, overrides, only = resolved.ablation, resolved.runs, resolved.overrides, resolved.only
    if args.task is not None:
        return run_task(ablation, runs, args.stage or ablation.stages[0]["name"], args.task)
    if not args.aggregate_only:
        check_runs(ablation, runs, overrides)  # every stage's command parses, before anything is launched
    if args.dry_run or (args.launcher == "wandb" and not args.aggregate_only):
        return _plan(args, ablation, runs, overrides, only, seeds, out)
    with held(out / ablation.name, "--out"):  # one infogap ablate (or reproduce) at a time in an ablation's results
        return _plan(args, ablation, runs, overrides, only, seeds, out)


def _plan(args, ablation, runs, overrides, only, seeds, out: Path) -> int:
    """Check identities, launch (or print) and aggregate the runs, as ``main`` parsed and checked them."""
    if args.launcher in ("local", "slurm") and not args.dry_run:
        check_identities(ablation, runs, rerun=args.rerun and not args.aggregate_only)  # never reuse or report a run trained otherwise
    if args.launcher in ("local", "slurm") and not (args.dry_run or args.aggregate_only):
        reuse_finished(ablation, runs, out)  # a finished run of the same config (any ablation under --out) is not trained twice
    if args.launcher == "slurm" and not args.aggregate_only:
        flags = {k: getattr(args, k) for k in ("partition", "account", "time", "nodes", "gpus_per_node", "cpus_per_task", "mem", "qos", "extra")}
        options = SlurmOptions.from_sources(ablation.slurm, flags)
        launch_slurm(ablation, runs, ablate_args(args.name, out, seeds, args.only, args.overrides, args.sweep, args.exclude), options, out, args.dry_run)
        return 0
    if args.launcher == "wandb" and not args.aggregate_only:
        config = sweep_config(ablation, seeds if seeds is not None else ablation.seeds, only, overrides)
        launch_wandb(config, args.project, args.entity, args.dry_run, SlurmOptions.from_sources(ablation.slurm, {}))
        return 0
    if args.dry_run:
        problems = identity_problems(ablation, runs)
        for run in runs:
            state = (f"trained otherwise: {problems[run.name]}; refused without --rerun" if run.name in problems
                     else "finished" if run.finished else "to run")
            print(f"{run.name}  [{state}]\n    infogap {' '.join(fit_command(ablation, run))}\n"
                  f"    identity: {json.dumps(run_identity(ablation, run), sort_keys=True)}")
        print(f"{len(runs)} runs")
        return 0
    clock = time.perf_counter()
    try:
        failed = {} if args.aggregate_only else launch_local(ablation, runs, args.jobs, args.progress_every)
    except Interrupted as exc:
        print(f"infogap ablate {ablation.name}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    training_s = None if args.aggregate_only else time.perf_counter() - clock
    result = aggregate(ablation, runs, out, failed, jobs=args.analysis_jobs)
    write_timings(out / ablation.name, training_s, result["timings"])
    cols = [c for c in (ablation.table or DEMO_COLUMNS) if c in result["table"]]
    print()
    print(format_table(result["axes"], cols, result["groups"]))
    print()
    for claim in result["claims"]:
        print(claim.line())
    print(timings_line({"training_s": training_s, **result["timings"]}))
    print(f"summary: {result['summary']}")
    print(f"report:  {result['report']}")
    for fig in result["figures"]:
        print(f"figure:  {fig}")
    code = 0
    if result["failed"]:
        print(f"{len(result['failed'])} run(s) failed: " + ", ".join(result["failed"]))
        code = 1
    if untested(result["claims"]):
        print(f"{len(untested(result['claims']))} claim(s) not tested: too few runs, seeds or models for them (each says why; see report.md)")
        code = 1
    return code
