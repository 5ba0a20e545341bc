"""``infogap ablate NAME``: expand an ablation into runs, launch them, aggregate the results."""
from __future__ import annotations

import argparse
from pathlib import Path

from ablations.core import (
    aggregate,
    available,
    expand,
    fit_command,
    format_table,
    launch_local,
    load_ablation,
    parse_only,
    parse_overrides,
)

DEMO_COLUMNS = ["rmg", "l2m", "moad_image", "moad_text", "entropy_i2t", "zeroshot_object_acc", "attr_acc_mean"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="infogap ablate",
        description=f"Run an ablation of configs/ablations/ ({', '.join(available())}) and aggregate it into "
                    "results/NAME/summary.csv, report.md and figures.",
    )
    p.add_argument("name", help="ablation name or path to an ablation YAML")
    p.add_argument("overrides", nargs="*", help="key=value applied to every run, e.g. trainer.max_steps=300")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the ablation's)")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--only", action="append", default=[], metavar="AXIS=v1,v2", help="restrict a swept axis to some of its values")
    p.add_argument("--launcher", choices=["local"], default="local", help="local: one run after another on this machine")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their commands, launch nothing")
    p.add_argument("--aggregate-only", action="store_true", help="aggregate the finished runs, launch nothing")
    args = p.parse_intermixed_args(argv)

    ablation = load_ablation(args.name)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    out = Path(args.out).resolve()
    runs = expand(ablation, out, seeds, parse_only(args.only, ablation), parse_overrides(args.overrides))
    if args.dry_run:
        for run in runs:
            state = "finished" if run.finished else "to run"
            print(f"{run.name}  [{state}]\n    infogap {' '.join(fit_command(ablation, run))}")
        print(f"{len(runs)} runs")
        return 0
    failed = {} if args.aggregate_only else launch_local(ablation, runs)
    result = aggregate(ablation, runs, out, failed)
    cols = [c for c in (ablation.table or DEMO_COLUMNS) if c in result["table"]]
    print()
    print(format_table(result["axes"], cols, result["groups"]))
    print()
    for claim, ok, detail in result["claims"]:
        print(f"{'holds' if ok else 'does NOT hold'}: {claim} ({detail})")
    print(f"summary: {result['summary']}")
    print(f"report:  {result['report']}")
    for fig in result["figures"]:
        print(f"figure:  {fig}")
    if result["failed"]:
        print(f"{len(result['failed'])} run(s) failed: " + ", ".join(result["failed"]))
        return 1
    return 0
