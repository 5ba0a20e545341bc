"""The W&B launcher: a one-stage ablation as a grid sweep (one parameter per axis and one for the
seed), created on the W&B server, and the agent commands (local, or one per SLURM array task)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from infogap.ablations.runner.slurm import SLURM_DIR, SlurmOptions
from infogap.ablations.kit.study import ROOT, Ablation
from infogap.ablations.runner.expand import _cli_value, cli_key

SWEEP_ROOT_DIR = "runs/sweeps/{name}/$WANDB_RUN_ID"  # $WANDB_RUN_ID is expanded by `infogap fit`


def sweep_config(ablation: Ablation, seeds: list[int], only: dict[str, list], overrides: dict[str, Any]) -> dict:
    """A W&B grid sweep equivalent to a one-stage ablation: one parameter per axis, one for the seed
    (``seed_everything``; the data seed follows it), constant overrides as fixed ``value``s."""
    if len(ablation.stages) != 1:
        raise ValueError(f"ablation {ablation.name!r} has {len(ablation.stages)} stages that depend on each other; "
                         "a W&B sweep runs independent configurations: use --launcher slurm or local")
    st = ablation.stages[0]
    if st.get("exclude"):
        raise ValueError(f"ablation {ablation.name!r} excludes points of its axes' product ({'; '.join(st['exclude'])}), which a W&B "
                         "grid sweep cannot express: use --launcher slurm or local")
    params: dict[str, dict] = {}
    for axis, ax in (st.get("axes") or {}).items():
        if isinstance(ax["values"], dict):
            raise ValueError(f"axis {axis!r} maps labels to values; a sweep needs plain values")
        params[cli_key(ax["key"])] = {"values": list(only.get(axis, ax["values"]))}
    params["seed_everything"] = {"values": list(seeds)}
    for key, value in {**(st.get("overrides") or {}), **overrides}.items():
        params[cli_key(key)] = {"value": value}
    from infogap.train.evaluation import curve_name

    root = SWEEP_ROOT_DIR.format(name=ablation.name)
    return {
        "name": ablation.name,
        "method": "grid",  # the metric is what the W&B sweep page shows first: the ablation's first table column
        "metric": {"name": curve_name(ablation.table[0] if ablation.table else "rmg"), "goal": "minimize"},
        "parameters": params,
        "command": ["${env}", "infogap", "fit", "--config", _relative(ablation.base_config),
                    f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false", "${args}"],
    }


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def sweep_command(config: dict, values: dict[str, Any]) -> list[str]:
    """The command a W&B agent runs for one point of the sweep: ``${args}`` -> ``--key=value``."""
    args = [f"--{k}={_cli_value(v)}" for k, v in values.items()]
    out: list[str] = []
    for part in config["command"]:
        if part == "${args}":
            out += args
        elif part == "${env}":
            continue  # /usr/bin/env: the environment passes through
        elif part in ("${program}", "${interpreter}"):
            raise ValueError(f"sweep command uses {part}; infogap sweeps call the `infogap` console script")
        else:
            out.append(part)
    return out


def launch_wandb(config: dict, project: str, entity: Optional[str], dry_run: bool, array: SlurmOptions) -> Optional[str]:
    """Create the sweep (needs a W&B API key) and print the agent commands."""
    from infogap.train.loggers import wandb_api_key_configured

    n = _grid_size(config)
    if dry_run:
        print(yaml.safe_dump(config, sort_keys=False))
        print(f"# {n} configurations; create with: wandb sweep --project {project} FILE.yaml")
        return None
    if not wandb_api_key_configured():
        raise ValueError("--launcher wandb creates the sweep on the W&B server and needs an API key (`wandb login` or "
                         "WANDB_API_KEY); --dry-run prints the sweep config instead")
    import wandb

    sweep_id = wandb.sweep(config, project=project, entity=entity)
    path = "/".join(p for p in (entity, project, sweep_id) if p)
    print(f"sweep {path}: {n} configurations")
    print(f"  local agent:  wandb agent {path}")
    print(f"  SLURM agents: sbatch --array=0-{n - 1} {' '.join(array.sbatch_args())} {SLURM_DIR / 'array.sbatch'} agent {path}")
    return sweep_id


def _grid_size(config: dict) -> int:
    n = 1
    for p in config["parameters"].values():
        n *= len(p.get("values", [None]))
    return n
