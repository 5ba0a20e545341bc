"""``infogap`` in a subprocess (``cli``) or in this process (``ablate``), the arguments of a few-second
run, a free port and a hang-guarded wait."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``infogap ARGS`` in a subprocess (W&B offline) and return the completed process.
    ``env`` entries set to None are removed from the environment."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "infogap", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


# key=value overrides that make every run of an ablation a few-second one (4 steps, small batches)
TINY_OVERRIDES = ["log_with=none", "trainer.max_steps=4", "data.batch_size=16", "data.val_size=64", "metrics.num_samples=64",
                  "metrics.prompts_per_value=2", "trainer.limit_val_batches=0", "metrics.eval_every_n_steps=2"]


def tiny_fit_args(run_dir: Path, steps: int, *extra: str) -> list[str]:
    """A few-second synthetic run through the user's config path."""
    return [
        "fit", "--config", str(ROOT / "configs/synthetic.yaml"),
        f"--trainer.default_root_dir={run_dir}", f"--trainer.max_steps={steps}",
        "--trainer.enable_progress_bar=false", "--trainer.val_check_interval=1000000", "--trainer.limit_val_batches=0",
        "--data.batch_size=16", "--data.val_size=64", "--metrics.num_samples=64", "--metrics.prompts_per_value=2",
        *extra,
    ]


def free_port() -> str:
    """A TCP port nothing listens on now (for a test's own rendezvous, instead of a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def wait_for(condition, what: str, timeout: float = 300.0, interval: float = 0.2, detail=lambda: "") -> None:
    """Until ``condition()`` holds; the deadline is only a hang guard (the state is reached by what the
    test does, never by waiting long enough)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"hang guard: {what} not within {timeout:.0f} s. {detail()}"
        time.sleep(interval)


class Proc:
    """What a subprocess would return, from an in-process ``infogap`` command (``in_process``)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def in_process(capsys, *args: str) -> Proc:
    """``infogap ARGS`` in this process (``infogap.cli.main``), its output captured: the command's own
    code path without a process's start-up (about 10 s of imports under load). For a test about the
    command, not about the process (exit on a signal, a kill, the entry point's own exit)."""
    from infogap.cli import main as infogap

    capsys.readouterr()
    code = infogap(list(args))
    captured = capsys.readouterr()
    return Proc(code, captured.out, captured.err)


def ablate(capsys, *args) -> Proc:
    """``infogap ablate ARGS`` in this process (the runs themselves are still separate processes)."""
    return in_process(capsys, "ablate", *args)
