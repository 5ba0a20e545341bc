"""Run identity and reuse: every launched run records what decides its result (``run.json``), and an
unfinished run takes a copy of a finished run with the same training identity from any ablation under
the same ``--out``, so nothing trains twice.

A run directory that already holds a run trained under another identity (a changed override, a changed
base config) is never reused, resumed or aggregated as if it were the plan's: ``check_identities``
refuses the plan with one line naming the run and the setting that differs, before anything is
launched; ``--rerun`` moves such runs aside (``NAME/superseded/``, nothing is deleted) and trains them
anew. Refusing, rather than training into directories named by a hash of the identity, keeps run
directories readable and stable (later stages, SLURM array tasks and the docs name them) and never
leaves an old run silently beside a new one: a user who changed a setting on purpose says so."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from infogap.ablations.kit.study import Ablation, Run, settings_dict
from infogap.ablations.runner.expand import _cli_value, cli_key

# what does not decide a run's result: where it logs, what it shows, and callbacks added on the command line
# (a profiler's, a test's that parks or stops a run: they observe the run; a resumed run may drop them)
NOT_IDENTITY = ("log_with", "wandb_project", "trainer.enable_progress_bar", "progress.every_n_seconds", "trainer.callbacks",
                "trainer.callbacks+")


IDENTITY = "run.json"


TRAINING = ("base_config", "overrides")  # the part of the identity that decides the trained model


def run_identity(ablation: Ablation, run: Run) -> dict:
    """What decides a run's result: the content of its base config and its overrides as the command line
    spells them (seed included), less the keys of ``NOT_IDENTITY``; and the analysis the study makes of
    it (the study and its settings, which key the study's per-run caches). Runs are reused across
    ablations by the training part alone (``TRAINING``)."""
    overrides = sorted([cli_key(k), _cli_value(v)] for k, v in run.overrides.items() if cli_key(k) not in NOT_IDENTITY)
    study = type(ablation.study)
    return {"base_config": _sha256(ablation.base_config), "overrides": overrides,
            "analysis": {"study": f"{study.__module__}:{study.__qualname__}", "settings": settings_dict(ablation.study.settings)}}


def write_identity(ablation: Ablation, run: Run) -> None:
    from infogap.train.loggers import write_json_atomic

    run.dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run.dir / IDENTITY, run_identity(ablation, run))


def training_identity(identity: dict, base_config: Optional[Path] = None) -> dict:
    """The part of a run's identity that decides the trained model (``TRAINING``); with ``base_config``, and
    when the identity was trained from that config's content, less the overrides that repeat its own value
    (``model.model=tiny`` over a config whose model is tiny, ``seed_everything=0`` over one that seeds 0):
    they train the same model, so a run of one study is the run another study asks for with the value
    spelt out (an axis over model sizes reuses the runs of the default size)."""
    out = {k: identity.get(k) for k in TRAINING}
    if base_config is not None and out["overrides"] and out["base_config"] == _sha256(base_config):
        config = _read_config(base_config)
        out["overrides"] = [[k, v] for k, v in out["overrides"] if _config_value(config, k) != v]
    return out


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_config(path: Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


_ABSENT = object()


def _config_value(config: dict, key: str):
    """The base config's value at an override key as the command line spells it (``data.k`` is
    ``data: init_args: k``), spelt as an override value (``_cli_value``); a sentinel when it has none."""
    node = config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and isinstance(node.get("init_args"), dict) and part in node["init_args"]:
            node = node["init_args"][part]
        else:
            return _ABSENT
    return _cli_value(node)


def recorded_identity(run: Run) -> Optional[dict]:
    """The identity a run directory records (``run.json``), or None when it has none or it does not read."""
    try:
        identity = json.loads((run.dir / IDENTITY).read_text())
    except (OSError, ValueError):
        return None
    return identity if isinstance(identity, dict) else None


def identity_difference(recorded: dict, planned: dict, base_config: Path) -> Optional[str]:
    """None when the recorded training identity equals the planned one, else what differs, in words:
    ``trained with trainer.max_steps=4, this plan asks 6`` (the first differing override) or that the
    base config's content changed."""
    recorded, planned = training_identity(recorded, base_config), training_identity(planned, base_config)
    if recorded == planned:
        return None
    if recorded.get("base_config") != planned["base_config"]:
        return f"trained with another content of {base_config.name} (sha256 {str(recorded.get('base_config'))[:12]}, now {planned['base_config'][:12]})"
    was = {k: v for k, v in recorded.get("overrides") or []}
    now = {k: v for k, v in planned.get("overrides") or []}
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            before = f"{key}={was[key]}" if key in was else f"no {key} override"
            after = now[key] if key in now else "none"
            return f"trained with {before}, this plan asks {after}"
    return f"trained with another content of {base_config.name} (sha256 {str(recorded.get('base_config'))[:12]}, now {planned['base_config'][:12]})"


def identity_problems(ablation: Ablation, runs: list[Run]) -> dict[str, str]:
    """{run name: why} for every run whose directory holds a run (its ``run.json``, or a finished run's
    ``metrics.json``) trained under another training identity than the plan's."""
    problems = {}
    for run in runs:
        if not run.dir.is_dir():
            continue
        recorded = recorded_identity(run)
        if recorded is None and not run.finished:
            continue  # nothing launched there under an identity yet
        why = ("it records no run.json, so how it was trained is unknown" if recorded is None
               else identity_difference(recorded, run_identity(ablation, run), ablation.base_config))
        if why is not None:
            problems[run.name] = why
    return problems


def check_identities(ablation: Ablation, runs: list[Run], rerun: bool = False) -> list[Run]:
    """Before anything is launched or aggregated: every run directory that holds a run holds the run the
    plan asks for (``identity_problems``). A mismatch is refused with one line naming the run and the
    differing setting; with ``rerun`` each mismatched run is moved to ``OUT/NAME/superseded/RUN-N``
    (kept, not deleted) and will train anew. Returns the runs moved."""
    import shutil

    problems = identity_problems(ablation, runs)
    moved = []
    for run in runs:
        why = problems.get(run.name)
        if why is None:
            continue
        if not rerun:
            raise ValueError(f"run {run.label()} of {ablation.name!r} ({run.dir}): {why}; use another --out, or --rerun to train it "
                             "again (the old run is moved to superseded/)")
        n = 1
        while (run.dir.parent.parent / "superseded" / f"{run.dir.name}-{n}").exists():
            n += 1
        target = run.dir.parent.parent / "superseded" / f"{run.dir.name}-{n}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run.dir), str(target))
        print(f"{run.label()}: {why}; moved to {target}, training it again (--rerun)", flush=True)
        moved.append(run)
    return moved


def identity_key(identity: dict, base_config: Path) -> str:
    """What two runs share when one may stand for the other: the training identity of ``identity`` (a
    ``run.json``; ``training_identity``, the overrides that repeat the base config's values left out), as a string."""
    return json.dumps(training_identity(identity, base_config), sort_keys=True)


def training_key(ablation: Ablation, run: Run) -> str:
    """``identity_key`` of ``run`` as the plan asks for it."""
    return identity_key(run_identity(ablation, run), ablation.base_config)


def copy_run(source: Path, run: Run) -> None:
    """Give ``run`` the finished run at ``source``: its directory (checkpoints, metrics, logs) is copied over
    whatever an unfinished attempt left there."""
    import shutil

    if run.dir.exists():
        shutil.rmtree(run.dir)  # an unfinished attempt: the finished run replaces it
    shutil.copytree(source, run.dir)
    print(f"{run.label()} ({run.dir.parent.parent.name}): reused the finished run {source}", flush=True)


def reuse_finished(ablation: Ablation, runs: list[Run], out: Path) -> list[Run]:
    """Give each unfinished run the result of a finished run of any ablation under ``out`` with the same
    identity (``run.json``: the same base config and overrides; e.g. the training stage of
    ``learn_forget`` and ``imbalance`` at the same k and seed): its directory is copied (``copy_run``), so
    nothing trains twice. Returns the runs reused."""
    finished: dict[str, list[Path]] = {}
    for path in sorted(Path(out).glob(f"*/runs/*/{IDENTITY}")):
        if (path.parent / "metrics.json").is_file() and not (path.parent / "FAILED").is_file():
            finished.setdefault(identity_key(json.loads(path.read_text()), ablation.base_config), []).append(path.parent)
    reused = []
    for run in runs:
        if run.finished:
            continue
        match = next((d for d in finished.get(training_key(ablation, run), []) if d.resolve() != run.dir.resolve()), None)
        if match is None:
            continue
        copy_run(match, run)
        reused.append(run)
    return reused
