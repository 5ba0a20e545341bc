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


class TargetClock(pl.Callback):
    """Time to target (``python benchmarks/run.py time_to_target``): every ``every`` optimizer steps (and
    at step 0) the zero-shot accuracy of every factor on the fixed evaluation set, the first samples of
    the validation split that training never sees (the metrics callback's own evaluation, restricted to
    ``zeroshot_``), timed apart from training. Training seconds are the wall time since training started
    less every evaluation. Written to ``time_to_target.json`` at the end: one row per evaluation,
    ``{step, train_seconds, eval_seconds, acc: {factor: accuracy}}``. With ``stop_at_target`` the run
    stops at the first evaluation that reaches ``target`` (every factor's mean as ``reached`` defines)."""

    def __init__(self, every: int = 100, num_samples: int = 1024, prompts_per_value: int = 32, target: float = 0.80,
                 stop_at_target: bool = False):
        self.every, self.num_samples, self.prompts_per_value = every, num_samples, prompts_per_value
        self.target, self.stop_at_target = target, stop_at_target
        self.rows: list[dict] = []

    def on_train_start(self, trainer, pl_module) -> None:
        from infogap.train.evaluation import RepresentationMetrics

        self.evaluator = RepresentationMetrics(eval_every_n_steps=0, num_samples=self.num_samples, prompts_per_value=self.prompts_per_value,
                                               metrics=["zeroshot_"], save_embeddings=False, eval_at_start=False)
        self.evaluator.setup(trainer, pl_module, "fit")
        self.start = None
        self._evaluate(trainer, pl_module)
        self.start, self.eval_in_training = time.perf_counter(), 0.0  # training time starts after the step-0 evaluation

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0 and (not self.rows or self.rows[-1]["step"] != trainer.global_step):
            self._evaluate(trainer, pl_module)

    def _evaluate(self, trainer, pl_module) -> None:
        t = time.perf_counter()
        train = 0.0 if self.start is None else t - self.start - self.eval_in_training
        values = self.evaluator.evaluate(trainer, pl_module)
        spent = time.perf_counter() - t
        if self.start is not None:
            self.eval_in_training += spent
        acc = {k[len("zeroshot_"):-len("_acc")]: float(v) for k, v in values.items() if k.startswith("zeroshot_") and k.endswith("_acc")}
        self.rows.append({"step": trainer.global_step, "train_seconds": round(train, 3), "eval_seconds": round(spent, 3), "acc": acc})
        if self.stop_at_target and reached(acc, self.target):
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.rows[-1]["step"] != trainer.global_step:
            self._evaluate(trainer, pl_module)
        Path(trainer.default_root_dir, "time_to_target.json").write_text(json.dumps(self.rows, indent=1))


ATTRIBUTES = ("colour", "thickness", "swelling", "fracture", "scaling")


def reached(acc: dict, target: float) -> bool:
    """The target: zero-shot object accuracy >= ``target`` and the mean accuracy of the five attributes >= ``target``."""
    attrs = [acc[a] for a in ATTRIBUTES if a in acc]
    return acc.get("object", 0.0) >= target and len(attrs) == len(ATTRIBUTES) and sum(attrs) / len(attrs) >= target


def first_at_target(rows: list[dict], target: float) -> dict | None:
    """The first evaluation row that reaches ``target`` (``reached``), or None."""
    return next((r for r in rows if reached(r["acc"], target)), None)
