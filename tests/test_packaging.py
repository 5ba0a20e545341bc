"""infogap installs under one import namespace: a user's own ``models/``, ``data/`` or ``train/``
package cannot shadow it, and a regular (non-editable) wheel carries the code, the configs and the
SLURM scripts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

SHADOWS = ("models", "data", "train", "ablations")


def _user_project(tmp_path: Path) -> Path:
    """A research directory with packages named like infogap's folders, each raising on import."""
    for name in SHADOWS:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package was imported')\n")
    return tmp_path


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user has it: nothing of the repository on the path
    return {**env, "WANDB_MODE": "offline", **extra}


@pytest.mark.slow
def test_user_packages_named_like_the_folders_do_not_shadow_infogap(tmp_path):
    cwd = _user_project(tmp_path / "project")
    probe = subprocess.run([sys.executable, "-c", "import infogap.train.module, infogap.ablations.runner.spec; print('infogap imported'); import models"],
                           cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert probe.stdout.strip() == "infogap imported", probe.stderr[-3000:]
    assert "the user's own models package was imported" in probe.stderr  # and `models` still means theirs
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "infogap", "fit", "--config", str(ROOT / "configs/synthetic.yaml"),
                           f"--trainer.default_root_dir={run}", "--trainer.max_steps=4", "--trainer.enable_progress_bar=false",
                           "--trainer.limit_val_batches=0", "--log_with=none", "--data.batch_size=16", "--data.val_size=64",
                           "--metrics.num_samples=64", "--metrics.prompts_per_value=2"],
                          cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.json").is_file()


@pytest.mark.slow
def test_regular_wheel_in_a_fresh_venv(tmp_path):
    """``pip wheel`` builds a regular wheel; a new venv gets it with ``pip install --no-deps`` (its
    dependencies are the dev environment's, reached through a .pth path line, so nothing is downloaded;
    the editable install's import hook is not: infogap comes from the wheel alone)."""
    src, dist = tmp_path / "src", tmp_path / "dist"  # a copy: setuptools writes build/ beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs", "results", "wandb", "__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(dist), "-q"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("infogap-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                          check=True).stdout.strip()
    Path(site, "dev-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True,
                             text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    cwd = _user_project(tmp_path / "project")
    where = subprocess.run([str(py), "-c", "import infogap, infogap.data.cli as c; print(infogap.__file__); print(c.__file__)"],
                           cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(line.startswith(site) for line in where.stdout.split()), where.stdout  # from the wheel, not the repository
    infogap = str(venv / "bin" / "infogap")
    help_ = subprocess.run([infogap, "--help"], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0 and "ablate" in help_.stdout, help_.stderr[-3000:]
    preview = subprocess.run([infogap, "data", "preview", "--n", "8", "--out", str(tmp_path / "grid.png")], cwd=cwd, env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert preview.returncode == 0, preview.stderr[-3000:]
    assert (tmp_path / "grid.png").stat().st_size > 1000
    # the configs ship inside the package: an ablation expands from the wheel alone
    dry = subprocess.run([infogap, "ablate", "imbalance", "--dry-run", "--out", str(tmp_path / "results")], cwd=cwd, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "18 runs" in dry.stdout and f"{site}/infogap/configs/synthetic.yaml" in dry.stdout
    assert Path(site, "infogap", "slurm", "array.sbatch").is_file()
    plan = subprocess.run([infogap, "reproduce", "--size", "smoke", "--dry-run", "--out", str(tmp_path / "results")], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "reproduce smoke: 10 studies" in plan.stdout, plan.stdout


def test_every_config_folder_ships_in_the_wheel():
    """A configs/ folder missing from pyproject's packages or package-data installs editable but not
    as a wheel (configs/reproduce once did)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.parent for p in (ROOT / "configs").rglob("*.yaml")}
    for folder in folders:
        package = ".".join(("infogap", *folder.relative_to(ROOT).parts))
        assert package in tool["packages"], f"{package} is not in [tool.setuptools] packages"
        assert tool["package-data"].get(package) == ["*.yaml"], f"{package} has no *.yaml package-data"
