"""How the golden cases reach a study: its rows of one finished run (and its extra rows), and its claims
over a design, through the ablation runner: the ablation loaded with the golden settings, its
``Study`` called as the runner calls it."""
from __future__ import annotations

import dataclasses
from pathlib import Path


def study_outputs(name: str, run_dir: Path, point: dict, settings: dict, results: Path) -> dict:
    from infogap.ablations.runner.aggregate import run_rows
    from infogap.ablations.kit.study import Run
    from infogap.ablations.runner.spec import design, load_ablation, parse_exclude
    from tests.golden_cases import _perturbed, design_rows

    ablation = load_ablation(name, settings=settings)
    study = ablation.study
    run = Run(ablation.report_stage, dict(point), 0, {"trainer.max_steps": 30, "data.init_args.batch_size": 32}, Path(run_dir))
    rows = run_rows(ablation, run)
    results.mkdir(parents=True, exist_ok=True)
    extra = study.extra_rows(ablation, [run], results)
    plan = design(ablation)
    keep = set(plan) | set(study.extra_axes)
    stage = next(st for st in ablation.stages if st["name"] == ablation.report_stage)
    dropped = parse_exclude(stage.get("exclude") or [], ablation)  # the points the stage never runs
    claim_rows = design_rows(name, rows, plan, keep, dropped) + [dict(r, seed=s) for s in (0, 1, 2) for r in _perturbed(extra, 0, s, keep)]
    claims = study.claims(claim_rows, plan)
    return {"rows": rows, "extra_rows": extra, "claims": [dataclasses.asdict(c) for c in claims]}
