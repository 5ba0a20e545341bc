"""Lightning callbacks that stand in for what kills or stops a job, at a known step (named by class path
in ``--trainer.callbacks+=``: ``tests.helpers.faults.KillAtStep``)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """Simulates a killed job: the process exits abruptly once ``step`` optimizer steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os._exit(0)


class ParkAtStep(pl.Callback):
    """Parks the run at optimizer step ``step`` until the SLURM requeue signal has been handled (Lightning
    has written ``hpc_ckpt_*.ckpt``), so a test can signal the job mid-run without racing it: the test
    waits for the ``parked-at-step-N`` file, then signals. A run that starts with an HPC checkpoint (the
    requeued one) passes. The deadline is only a hang guard."""

    def __init__(self, step: int, timeout: float = 300.0):
        self.step, self.timeout = step, timeout

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        root = Path(trainer.default_root_dir)
        if trainer.global_step != self.step or list(root.glob("hpc_ckpt_*.ckpt")):
            return
        (root / f"parked-at-step-{self.step}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not list(root.glob("hpc_ckpt_*.ckpt")):  # SIGUSR1's handler runs in this thread, during the sleep
            if time.monotonic() > deadline:
                raise TimeoutError(f"parked at step {self.step} for {self.timeout:.0f} s and no requeue signal came")
            time.sleep(0.05)


class SignalAtStep(pl.Callback):
    """Sends its own process ``signal`` (SIGTERM, SIGINT) once ``step`` optimizer steps are done, as SLURM
    or a user would at that moment (deterministic: no timer)."""

    def __init__(self, step: int, signal: str = "SIGTERM"):
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import signal

        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))


class ParkUntilSignalled(pl.Callback):
    """Parks a run at optimizer step ``step`` (writing ``parked-at-step-N`` in its directory) until it is
    sent SIGTERM, so a test can stop the process that launched it at a known moment. A run resumed past
    ``step`` passes. The deadline is only a hang guard."""

    def __init__(self, step: int, timeout: float = 300.0):
        self.step, self.timeout = step, timeout

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        (Path(trainer.default_root_dir) / f"parked-at-step-{self.step}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm:  # the SIGTERM handler runs in this thread, during the sleep
            if time.monotonic() > deadline:
                raise TimeoutError(f"parked at step {self.step} for {self.timeout:.0f} s and no SIGTERM came")
            time.sleep(0.05)
