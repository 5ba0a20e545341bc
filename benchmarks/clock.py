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
