"""Helpers shared by the tests (importable as ``tests.helpers`` from the repository root)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``infogap ARGS`` in a subprocess (W&B offline) and return the completed process.
    ``env`` entries set to None are removed from the environment."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
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


def wandb_records(run_dir: Path) -> list:
    """The ``wandb_internal_pb2.Record`` messages of the offline W&B run under ``run_dir``, read back
    from its ``run-*.wandb`` log: a ':W&B' header (7 bytes) then LevelDB-log records (crc32, length,
    type; 32 KiB blocks)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {run_dir}"
    raw = files[-1].read_bytes()
    assert raw[:4] == b":W&B", "not a W&B transaction log"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # block trailer too short for a header
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos: pos + 7])
        data = raw[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):
            pending = data
        elif kind in (3, 4):
            pending += data
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def read_wandb_history(run_dir: Path) -> list[dict]:
    """History rows (one dict per logged step) of the offline W&B run under ``run_dir``."""
    import json

    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "history"]


def read_wandb_config(run_dir: Path) -> dict:
    """The run config of the offline W&B run under ``run_dir`` (every update, later ones winning)."""
    import json

    config: dict = {}
    for r in wandb_records(run_dir):
        if r.WhichOneof("record_type") == "config":
            config.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.config.update})
    return config
