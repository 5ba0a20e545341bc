"""The W&B launcher: the sweep files equal their ablations, a multi-stage ablation is refused, sweep commands run one configuration each (offline)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from infogap.ablations.runner.slurm import SlurmOptions
from infogap.ablations.runner.spec import load_ablation
from infogap.ablations.runner.sweeps import sweep_command, sweep_config
from tests.helpers import ROOT
from tests.helpers.processes import tiny_fit_args
from tests.helpers.wandb_logs import read_wandb_config

SWEEPS = ROOT / "configs" / "sweeps"


# --- W&B sweeps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["imbalance", "presence"])
def test_sweep_files_match_their_ablations(name):
    ablation = load_ablation(name)
    assert yaml.safe_load((SWEEPS / f"{name}.yaml").read_text()) == sweep_config(ablation, ablation.seeds, {}, {})


def test_wandb_launcher_refuses_multi_stage_ablations_and_needs_a_key(capsys, monkeypatch):
    from infogap.cli import main as infogap

    assert infogap(["ablate", "temperature", "--launcher", "wandb", "--dry-run"]) == 2
    assert "stages" in capsys.readouterr().err
    assert infogap(["ablate", "learn_forget", "--launcher", "wandb", "--dry-run"]) == 2  # its stage excludes points of the product
    assert "excludes points of its axes' product (always_present=colour,thickness,scaling k=0,2,5; always_present=object k=1)" \
        in capsys.readouterr().err
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert infogap(["ablate", "imbalance", "--launcher", "wandb"]) == 2
    assert "API key" in capsys.readouterr().err


def _first_point(config: dict) -> dict:
    point = {}
    for key, spec in config["parameters"].items():
        point[key] = spec["value"] if "value" in spec else spec["values"][0] if "values" in spec else spec["min"]
    return point


@pytest.mark.slow
def test_sweep_commands_run_one_configuration_each_offline(tmp_path):
    """For every sweep file, the command a W&B agent would run for its first point (W&B offline, the
    four at once); each run writes under the directory named by WANDB_RUN_ID and logs the swept keys."""
    import subprocess

    (tmp_path / "configs").symlink_to(ROOT / "configs")
    tiny = [a for a in tiny_fit_args(tmp_path / "ignored", 2, "--data.val_size=32", "--metrics.num_samples=32")
            if a.startswith(("--data.", "--metrics.", "--trainer.max_steps", "--trainer.val_check", "--trainer.limit_val"))]
    procs = {}
    for path in sorted(SWEEPS.glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        point = _first_point(config)
        command = sweep_command(config, point)
        assert command[0] == "infogap"
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_RUN_ID": f"test{path.stem[:4]}", "PYTHONPATH": str(ROOT),
               "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        procs[path.stem] = (point, subprocess.Popen(command + tiny, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE, text=True))
    assert len(procs) == 4
    for name, (point, proc) in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        run = tmp_path / "runs" / "sweeps" / name / f"test{name[:4]}"
        assert (run / "metrics.json").is_file(), name
        logged = read_wandb_config(run)
        for key, value in point.items():
            if key != "data.batch_size":  # the tiny run overrides the batch size
                assert logged[key] == value, (name, key)


def test_wandb_launcher_creates_the_sweep_and_prints_agent_commands(monkeypatch, capsys):
    """With a key configured, the sweep goes to wandb.sweep as rendered (the server call is replaced)."""
    import wandb

    from infogap.ablations.runner import sweeps as launchers

    calls = {}
    monkeypatch.setattr(wandb, "sweep", lambda config, project=None, entity=None: calls.update(config=config, project=project, entity=entity) or "abc123")
    monkeypatch.setattr("infogap.train.loggers.wandb_api_key_configured", lambda: True)
    ablation = load_ablation("imbalance")
    config = sweep_config(ablation, [0, 1], {"k": [0, 5]}, {"trainer.max_steps": 300})
    assert launchers.launch_wandb(config, "infogap", "me", dry_run=False, array=SlurmOptions(partition="gpu")) == "abc123"
    assert calls["project"] == "infogap" and calls["entity"] == "me"
    assert calls["config"]["parameters"]["data.k"] == {"values": [0, 5]}
    assert calls["config"]["parameters"]["trainer.max_steps"] == {"value": 300}
    out = capsys.readouterr().out
    assert "wandb agent me/infogap/abc123" in out and "--array=0-3" in out and "--partition=gpu" in out
