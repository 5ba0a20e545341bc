"""Run identity and reuse: every launched run records what decides its result (``run.json``), and an
unfinished run takes a copy of a finished run with the same training identity from any ablation under
the same ``--out``, so nothing trains twice."""
from __future__ import annotations

import json
from pathlib import Path

from infogap.ablations.runner.spec import Ablation, Run, _cli_value, cli_key
from infogap.ablations.runner.study import settings_dict

NOT_IDENTITY = ("log_with", "wandb_project", "trainer.enable_progress_bar", "progress.every_n_seconds")


IDENTITY = "run.json"


TRAINING = ("base_config", "overrides")  # the part of the identity that decides the trained model


def run_identity(ablation: Ablation, run: Run) -> dict:
    """What decides a run's result: the content of its base config and its overrides as the command line
    spells them (seed included), less the keys of ``NOT_IDENTITY``; and the analysis the study makes of
    it (the study and its settings, which key the study's per-run caches). Runs are reused across
    ablations by the training part alone (``TRAINING``)."""
    import hashlib

    overrides = sorted([cli_key(k), _cli_value(v)] for k, v in run.overrides.items() if cli_key(k) not in NOT_IDENTITY)
    study = type(ablation.study)
    return {"base_config": hashlib.sha256(ablation.base_config.read_bytes()).hexdigest(), "overrides": overrides,
            "analysis": {"study": f"{study.__module__}:{study.__qualname__}", "settings": settings_dict(ablation.study.settings)}}


def write_identity(ablation: Ablation, run: Run) -> None:
    from infogap.train.loggers import write_json_atomic

    run.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.dir / IDENTITY, run_identity(ablation, run))


def reuse_finished(ablation: Ablation, runs: list[Run], out: Path) -> list[Run]:
    """Give each unfinished run the result of a finished run of any ablation under ``out`` with the same
    identity (``run.json``: the same base config and overrides; e.g. the training stage of
    ``learn_forget`` and ``imbalance`` at the same k and seed): its directory is copied (checkpoints,
    metrics, logs), so nothing trains twice. Returns the runs reused."""
    import shutil

    def canonical(identity: dict) -> str:
        return json.dumps({k: identity.get(k) for k in TRAINING}, sort_keys=True)

    finished: dict[str, list[Path]] = {}
    for path in sorted(Path(out).glob(f"*/runs/*/{IDENTITY}")):
        if (path.parent / "metrics.json").is_file() and not (path.parent / "FAILED").is_file():
            finished.setdefault(canonical(json.loads(path.read_text())), []).append(path.parent)
    reused = []
    for run in runs:
        if run.finished:
            continue
        match = next((d for d in finished.get(canonical(run_identity(ablation, run)), []) if d.resolve() != run.dir.resolve()), None)
        if match is None:
            continue
        if run.dir.exists():
            shutil.rmtree(run.dir)  # an unfinished attempt: the finished run replaces it
        shutil.copytree(match, run.dir)
        print(f"{run.label()}: reused the finished run {match}", flush=True)
        reused.append(run)
    return reused
