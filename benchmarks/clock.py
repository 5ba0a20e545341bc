"""A Lightning callback for the benchmarks: the time at the end of every training step, written to
``step_times.json`` in the run directory when training ends (``--trainer.callbacks+=benchmarks.clock.StepClock``)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl


class StepClock(pl.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        Path(trainer.default_root_dir, "step_times.json").write_text(json.dumps(self.times))


def steady_rate(times: list[float], batch: int, warm: int) -> float:
    """Samples/s after the first ``warm`` steps, from the step end times ``StepClock`` writes: the
    ``len(times) - warm`` later steps over the time from the end of step ``warm`` to the end of the last."""
    if not 1 <= warm < len(times):
        raise ValueError(f"{len(times)} steps timed: none after the first {warm}")
    return (len(times) - warm) * batch / (times[-1] - times[warm - 1])


class KillAtStep(pl.Callback):
    """A job killed without warning (SIGKILL to itself) once ``step`` optimizer steps are done: nothing
    is saved but the checkpoints already written (``benchmarks/gpu_check.py``'s kill and resume)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
