"""Logger defaults: W&B, offline when no API key is configured; CSV one line away (``log_with: csv``);
and every run's ``progress.json``."""
from __future__ import annotations

import json
import netrc
import os
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from pytorch_lightning import Callback
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info

PROGRESS = "progress.json"
_said_offline = False


def wandb_api_key_configured() -> bool:
    """An API key in ``WANDB_API_KEY`` or in the netrc entry of the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_offline() -> bool:
    """Offline unless a key is configured; an explicit ``WANDB_MODE`` wins. Says so once."""
    global _said_offline
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun", "disabled")
    if wandb_api_key_configured():
        return False
    os.environ["WANDB_MODE"] = "offline"
    if not _said_offline:
        rank_zero_info("W&B: no API key configured, logging offline (WANDB_MODE=offline); `wandb sync` the run directory later.")
        _said_offline = True
    return True


def make_logger(kind: str, run_dir: str | Path, name: Optional[str] = None, project: str = "infogap") -> Logger | bool:
    """``wandb`` (default), ``csv`` or ``none``; files go under ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = name or run_dir.name
    if kind == "wandb":
        return WandbLogger(name=name, save_dir=str(run_dir), project=project, offline=wandb_offline(), log_model=False)
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv", version="")
    if kind == "none":
        return False
    raise ValueError(f"log_with={kind!r}: choose wandb, csv or none")


class ProgressFile(Callback):
    """``progress.json`` in the run directory: ``step``, ``max_steps``, ``steps_per_second`` (since
    this process began training; a resumed run counts from its restart), ``status`` (training, done,
    interrupted by SIGTERM or Ctrl-C, failed)
    and ``updated`` (Unix time). Written by rank 0 at the start, at most every ``every_n_seconds``
    while training, and at the end, atomically (temporary file, then rename), so a reader never sees
    half a file. ``infogap ablate`` shows each running run's progress from it: the run reports itself.
    """

    def __init__(self, every_n_seconds: float = 2.0):
        if every_n_seconds < 0:
            raise ValueError(f"progress.every_n_seconds must be >= 0, got {every_n_seconds}")
        self.every = every_n_seconds
        self._start: Optional[tuple[float, int]] = None
        self._written = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = (time.monotonic(), trainer.global_step)
        self._write(trainer, "training")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.monotonic() - self._written >= self.every:
            self._write(trainer, "training")

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """``done`` once fit has ended whole: after the final checkpoint and ``metrics.json`` are written
        (Lightning calls ``teardown`` only when fit raised nothing)."""
        if stage == "fit" and self._start is not None:
            self._write(trainer, "done")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """``interrupted`` for SIGTERM and Ctrl-C (the run saved its checkpoint and can resume), else ``failed``
        with the reason (the exception's first line)."""
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            self._write(trainer, "interrupted")
        else:
            self._write(trainer, "failed", reason=f"{type(exception).__name__}: {str(exception).strip().splitlines()[0][:300] if str(exception).strip() else ''}")

    def _write(self, trainer, status: str, reason: Optional[str] = None) -> None:
        self._written = time.monotonic()
        if not trainer.is_global_zero:
            return
        started, first = self._start or (self._written, trainer.global_step)
        elapsed = self._written - started
        max_steps = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else int(trainer.estimated_stepping_batches)
        record = {"step": trainer.global_step, "max_steps": max_steps, "status": status, "updated": time.time(),
                  "steps_per_second": (trainer.global_step - first) / elapsed if elapsed > 0 else None}
        if reason is not None:
            record["reason"] = reason
        path = Path(trainer.default_root_dir) / PROGRESS
        try:
            write_json_atomic(path, record)
        except OSError:
            if status != "failed" or not path.is_file():
                raise
            overwrite_in_place(path, json.dumps(record))  # a full disk: the old file's own space still takes the reason


def write_json_atomic(path: str | Path, obj, indent: Optional[int] = None, sort_keys: bool = False) -> None:
    """Write ``obj`` as JSON through a temporary file renamed over ``path``: a reader (or a process
    killed mid-write) never sees half a file."""
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys))


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file renamed over it; a failed write (a full disk)
    removes the temporary file and leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def overwrite_in_place(path: str | Path, text: str) -> None:
    """``text`` over an existing file's bytes (no new file): what still fits on a full disk when the text is
    no longer than the file's allocated space. Not atomic: only for a last status that would be lost otherwise."""
    with open(path, "r+") as f:
        f.write(text)
        f.truncate()


def step_progress_bar():
    """Lightning's rich progress bar counting optimizer steps of the whole run (``step 160/600``), not the
    batches of an epoch: the synthetic world's epochs are an artefact of ``data.train_size``, a run is
    bounded by ``trainer.max_steps`` (so Lightning's ``Epoch 0/-2`` means nothing), and a resumed run's
    batch index ran past its epoch's length (``160/10``). Built lazily: rich is imported only for a bar."""
    from pytorch_lightning.callbacks import RichProgressBar

    class StepProgressBar(RichProgressBar):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if self.is_disabled or self.progress is None:
                return
            description = f"step (epoch {trainer.current_epoch})"
            total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
            if self.train_progress_bar_id is None:
                self.train_progress_bar_id = self._add_task(total, description)
                self._update(self.train_progress_bar_id, trainer.global_step)
            else:
                self.progress.update(self.train_progress_bar_id, description=description)
            self.refresh()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.is_disabled:
                return
            if self.train_progress_bar_id is None:
                self.on_train_epoch_start(trainer, pl_module)
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)

    return StepProgressBar()


def read_progress(run_dir: str | Path) -> Optional[dict]:
    """A run's ``progress.json``, or None before it has written one."""
    path = Path(run_dir) / PROGRESS
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
