"""Helpers shared by the tests (importable as ``tests.helpers`` from the repository root)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``infogap ARGS`` in a subprocess (W&B offline) and return the completed process."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "train.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def tiny_fit_args(run_dir: Path, steps: int, *extra: str) -> list[str]:
    """A few-second synthetic run through the user's config path."""
    return [
        "fit", "--config", str(ROOT / "configs/synthetic.yaml"),
        f"--trainer.default_root_dir={run_dir}", f"--trainer.max_steps={steps}",
        "--trainer.enable_progress_bar=false", "--trainer.val_check_interval=1000000", "--trainer.limit_val_batches=0",
        "--data.batch_size=16", "--data.val_size=64", "--metrics.num_samples=64", "--metrics.prompts_per_value=2",
        *extra,
    ]


class KillAtStep(pl.Callback):
    """Simulates a killed job: the process exits abruptly once ``step`` optimizer steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os._exit(0)
