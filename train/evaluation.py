"""The callback that logs representation metrics as curves during training."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from infogap.train.loggers import write_json_atomic
from infogap.train.metrics import compute_metrics, zero_shot_accuracy

CALLBACK_KEYS = ("temperature", "logit_scale")  # what the callback logs beside the metric suite


def curve_name(key: str) -> str:
    """Metric key of the suite -> the name of its logged curve."""
    for prefix, group in (("uniformity_", "uniformity/"), ("entropy_", "entropy/"), ("recall_", "retrieval/"), ("zeroshot_", "zeroshot/"),
                          ("neighbourhood_", "neighbourhood/")):
        if key.startswith(prefix):
            return group + key[len(prefix):]
    if key.startswith("moad"):
        return "bias/" + key
    if key in ("l2m", "l2i", "rmg"):
        return "gap/" + key
    if key.startswith("gap_"):
        return "gap/" + key[len("gap_"):]
    return key


def class_embeddings(embed_texts, prompts: torch.Tensor) -> torch.Tensor:
    """(classes, prompts per class, context) tokens -> one unit-norm class embedding each: the mean
    text embedding of its prompts (``embed_texts``: tokens -> embeddings), normalised."""
    v, m, ctx = prompts.shape
    emb = embed_texts(prompts.reshape(v * m, ctx)).reshape(v, m, -1).mean(1)
    return (emb / emb.norm(dim=1, keepdim=True)).cpu()


class RepresentationMetrics(pl.Callback):
    """Every ``eval_every_n_steps`` optimizer steps (and at the end of fit) embed a fixed evaluation set
    of the data module (its ``eval_size(n)`` and ``eval_samples(index)``: images, full captions,
    labels per factor if any; ``class_prompts`` for zero-shot accuracy), compute the metric suite and log it as curves (``gap/rmg``, ``bias/moad_image``,
    ``zeroshot/object_acc``, ``temperature``, ...). At the end it writes ``embeddings.npz`` (the format
    ``infogap metrics`` reads) and ``metrics.json`` into the run directory.

    Under DDP each rank embeds a slice of the set, the slices are gathered, and rank 0 computes once:
    the numbers equal the single-process ones. A data module without an evaluation set (real data
    without ``data.val_shards``) turns the callback off for the run, with one warning line before the
    first step.

    Args:
        eval_every_n_steps: 0 evaluates only at the end.
        num_samples: size of the evaluation set (the first samples of the validation split).
        prompt_mode: class embeddings for zero-shot accuracy: ``full`` (mean text embedding of
            full-description captions carrying the value, other factors drawn uniformly) or ``word``
            (the value's single word).
        prompts_per_value: captions averaged per class in ``full`` mode.
        metrics: a subset of the suite's keys or prefixes (default: everything).
        save_embeddings: write ``embeddings.npz`` at the end.
        eval_at_start: also evaluate before the first step (the initial gap).
    """

    def __init__(
        self,
        eval_every_n_steps: int = 100,
        num_samples: int = 2048,
        prompt_mode: Literal["full", "word"] = "full",
        prompts_per_value: int = 32,
        metrics: Optional[list[str]] = None,
        save_embeddings: bool = True,
        eval_at_start: bool = True,
        batch_size: int = 1024,
    ):
        super().__init__()
        if eval_every_n_steps < 0 or num_samples < 2:
            raise ValueError("metrics.eval_every_n_steps must be >= 0 and metrics.num_samples >= 2")
        self.every = eval_every_n_steps
        self.num_samples = num_samples
        self.prompt_mode = prompt_mode
        self.prompts_per_value = prompts_per_value
        self.metrics = metrics
        self.save_embeddings = save_embeddings
        self.eval_at_start = eval_at_start
        self.batch_size = batch_size
        self._last_step = -1
        self._cache: Optional[dict] = None
        self.last: dict[str, float] = {}
        self.history: dict[int, dict[str, float]] = {}
        self.seconds = 0.0
        self.enabled = True
        self._arrays: Optional[dict] = None
        self.split = "val"

    def setup(self, trainer, pl_module, stage: str) -> None:
        datamodule = trainer.datamodule
        n = datamodule.eval_size(self.num_samples) if hasattr(datamodule, "eval_size") else 0
        self.enabled = n >= 2
        if not self.enabled:
            why = "data.val_shards is not set" if hasattr(datamodule, "val_urls") else f"{type(datamodule).__name__} has {n} evaluation samples"
            rank_zero_warn(f"metrics: off for this run ({why}): no metric curves, no metrics.json", category=UserWarning)

    # --- when ---------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        if self.enabled and self.eval_at_start and trainer.global_step == 0:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.enabled and self.every and step > 0 and step % self.every == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "validate":  # infogap validate, not the validation loop of fit
            self._evaluate_checkpoint(trainer, pl_module, "validate", "val")

    def on_test_end(self, trainer, pl_module) -> None:
        self._evaluate_checkpoint(trainer, pl_module, "test", "test")

    def _evaluate_checkpoint(self, trainer, pl_module, stage: str, split: str) -> None:
        """``infogap validate|test``: the metric suite of the checkpoint on the evaluation set of ``split``
        (the test split where the data module has one, else the validation split, which is said), printed
        and written to ``STAGE_metrics.json`` in the run directory beside the loss Lightning prints."""
        if not self.enabled:
            return
        splits = getattr(trainer.datamodule, "EVAL_SPLITS", ("val",))
        self.split, self._cache = (split if split in splits else "val"), None
        values = self.evaluate(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        if split != self.split:
            rank_zero_info(f"metrics: {type(trainer.datamodule).__name__} has no {split} evaluation set; the suite is on the validation set")
        step = trainer.global_step
        if trainer.ckpt_path and Path(trainer.ckpt_path).is_file():  # validate/test do not restore the step: the checkpoint's own
            step = int(torch.load(trainer.ckpt_path, map_location="cpu", weights_only=False, mmap=True).get("global_step", step))
        record = {"stage": stage, "split": self.split, "step": step, "num_samples": int(len(self._arrays["image"])),
                  "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None, "metrics": values}
        path = Path(trainer.default_root_dir) / f"{stage}_metrics.json"
        write_json_atomic(path, record, indent=2, sort_keys=True)
        width = max(map(len, values))
        print("\n".join([f"metric suite on {record['num_samples']} {self.split} samples (checkpoint at step {step}):"]
                        + [f"  {k:<{width}}  {v:.4f}" for k, v in sorted(values.items())] + [f"metrics: wrote {path}"]), flush=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.enabled:
            return
        if trainer.global_step != self._last_step or self._arrays is None:  # a run resumed at its end re-embeds once
            self.evaluate(trainer, pl_module)
        if trainer.is_global_zero and self.last:
            self._write_outputs(trainer)

    # --- what survives a resume -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The evaluations made so far (every step's metrics), saved in each checkpoint, so a resumed run's
        ``metrics.json`` holds the whole history, the evaluation at step 0 included."""
        return {"history": {int(k): dict(v) for k, v in self.history.items()}, "last": dict(self.last), "last_step": self._last_step,
                "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = {int(k): dict(v) for k, v in state_dict.get("history", {}).items()}
        self.last = dict(state_dict.get("last", {}))
        self._last_step = int(state_dict.get("last_step", -1))
        self.seconds = float(state_dict.get("seconds", 0.0))

    # --- what ---------------------------------------------------------------------------------
    def _eval_set(self, datamodule, rank: int, world: int) -> dict:
        """This rank's contiguous slice of the evaluation set (of ``self.split``), rendered once and cached."""
        if self._cache is None:
            kwargs = {} if self.split == "val" else {"split": self.split}
            n = datamodule.eval_size(self.num_samples, **kwargs)
            index = np.array_split(np.arange(n), world)[rank]
            parts = [datamodule.eval_samples(index[i: i + self.batch_size], **kwargs) for i in range(0, len(index), self.batch_size)]
            self._cache = {
                "n": n,
                "image": torch.cat([p["image"] for p in parts]) if parts else None,
                "text": torch.cat([p["text_full"] for p in parts]) if parts else None,
                "labels": {f: torch.cat([p["labels"][f] for p in parts]) for f in parts[0]["labels"]} if parts else {},
            }
        return self._cache

    def _embed(self, fn, data: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(data[i: i + self.batch_size]) for i in range(0, len(data), self.batch_size)])

    def _gather(self, pl_module, local: torch.Tensor, n: int, world: int) -> torch.Tensor:
        """Concatenate the ranks' slices in order (slices may differ in length by one)."""
        if world == 1:
            return local
        sizes = [len(s) for s in np.array_split(np.arange(n), world)]
        padded = torch.zeros((max(sizes),) + tuple(local.shape[1:]), dtype=local.dtype, device=local.device)
        padded[: len(local)] = local
        gathered = pl_module.all_gather(padded)  # (world, max, ...)
        return torch.cat([gathered[r, : sizes[r]] for r in range(world)])

    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module) -> dict[str, float]:
        start = time.perf_counter()
        self._last_step = trainer.global_step
        datamodule = trainer.datamodule
        rank, world = trainer.global_rank, trainer.world_size
        was_training = pl_module.training
        pl_module.eval()
        data = self._eval_set(datamodule, rank, world)
        n = data["n"]
        x = self._gather(pl_module, self._embed(pl_module.embed_images, data["image"]), n, world).cpu()
        y = self._gather(pl_module, self._embed(pl_module.embed_texts, data["text"]), n, world).cpu()
        labels = {f: self._gather(pl_module, v.to(pl_module.device), n, world).cpu() for f, v in data["labels"].items()}
        folders = self._zeroshot_folders(datamodule, pl_module)  # every rank: ZeRO-3 forwards are collective
        if trainer.is_global_zero:
            classes = {}
            for f in labels:
                classes[f] = self._class_embeddings(pl_module, datamodule.class_prompts(f, self.prompts_per_value, self.prompt_mode))
            scale = pl_module.logit_scale
            values = compute_metrics(x, y, labels, logit_scale=scale, class_embeddings=classes, metrics=self.metrics)
            values["temperature"] = 1.0 / scale
            values["logit_scale"] = scale
            self.last = values
            self.history[trainer.global_step] = values
            self._arrays = {"image": x.numpy(), "text": y.numpy(), "logit_scale": np.float64(scale), "object_factor": "object"}
            self._arrays.update({f"labels_{f}": v.numpy() for f, v in labels.items()})
            self._arrays.update({f"classes_{f}": c.numpy() for f, c in classes.items()})
            values.update(folders)
            curves = {curve_name(k): v for k, v in values.items()}
            for logger in trainer.loggers:
                logger.log_metrics(curves, step=trainer.global_step)
        if was_training:
            pl_module.train()
        self.seconds += time.perf_counter() - start
        return self.last

    def _zeroshot_folders(self, datamodule, pl_module) -> dict[str, float]:
        """Zero-shot accuracy on the data module's labelled image folders (``zeroshot_sets``), if any:
        each image against the mean text embedding of the templated prompts of every class."""
        out = {}
        for name, zs in (getattr(datamodule, "zeroshot_sets", lambda: {})() or {}).items():
            x = self._embed(pl_module.embed_images, zs["image"]).cpu()
            out[f"zeroshot_{name}_acc"] = zero_shot_accuracy(x, self._class_embeddings(pl_module, zs["prompts"]), zs["labels"])
        return out

    def _class_embeddings(self, pl_module, prompts: torch.Tensor) -> torch.Tensor:
        return class_embeddings(lambda tokens: self._embed(pl_module.embed_texts, tokens), prompts)

    def _write_outputs(self, trainer: pl.Trainer) -> None:
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "step": trainer.global_step,
            "prompt_mode": self.prompt_mode,
            "num_samples": int(len(self._arrays["image"])),
            "eval_seconds": round(self.seconds, 3),
            "metrics": self.last,
            "history": {str(step): values for step, values in sorted(self.history.items())},
        }
        if self.save_embeddings:  # the embeddings first: metrics.json is what marks the run finished
            tmp = run_dir / "embeddings.npz.tmp"
            with open(tmp, "wb") as f:
                np.savez(f, **self._arrays)
            os.replace(tmp, run_dir / "embeddings.npz")
        write_json_atomic(run_dir / "metrics.json", record, indent=2, sort_keys=True)
        rank_zero_info(f"metrics: wrote {run_dir / 'metrics.json'}" + (f" and {run_dir / 'embeddings.npz'}" if self.save_embeddings else ""))
