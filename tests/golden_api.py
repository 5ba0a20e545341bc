"""How the golden cases reach a study: its rows of one finished run (and its extra rows), and its claims
over a design, through the ablation runner as it is now."""
from __future__ import annotations

import dataclasses
from pathlib import Path

# study setting -> the module global it was before settings became dataclasses
_GLOBALS = {
    "bias": {"permutations": "PERMUTATIONS"},
    "dense": {"n_train": "N_TRAIN", "n_val": "N_VAL", "probe_steps": "PROBE_STEPS"},
    "learn_forget": {"steps": "STEPS", "finetune_seeds": "FINETUNE_SEEDS", "n_train": "N_TRAIN", "n_eval": "N_EVAL",
                     "batch_size": "BATCH_SIZE", "lr": "LR"},
    "heads": {"images": "ABLATION_IMAGES"},
}


def study_outputs(name: str, run_dir: Path, point: dict, settings: dict, results: Path) -> dict:
    from infogap.ablations.core import Run, design, load_ablation, run_rows
    from tests.golden_cases import _perturbed, design_rows

    ablation = load_ablation(name)
    hooks = ablation.hooks()
    saved = {}
    try:
        for key, value in settings.items():
            attr = _GLOBALS[name][key]
            saved[attr] = getattr(hooks, attr)
            setattr(hooks, attr, tuple(value) if isinstance(value, list) else value)
        run = Run(ablation.report_stage, dict(point), 0, {"trainer.max_steps": 3, "data.init_args.batch_size": 16}, Path(run_dir))
        rows = run_rows(ablation, run)
        extra = []
        if hasattr(hooks, "extra_rows"):
            results.mkdir(parents=True, exist_ok=True)
            extra = hooks.extra_rows(ablation, [run], results)
        plan = design(ablation)
        keep = set(plan) | set(getattr(hooks, "EXTRA_AXES", ()))
        claim_rows = design_rows(name, rows, plan, keep) + [dict(r, seed=s) for s in (0, 1, 2) for r in _perturbed(extra, 0, s, keep)]
        claims = hooks.claims(claim_rows, plan) if hasattr(hooks, "claims") else []
    finally:
        for attr, value in saved.items():
            setattr(hooks, attr, value)
    return {"rows": rows, "extra_rows": extra, "claims": [dataclasses.asdict(c) for c in claims]}
