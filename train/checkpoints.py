"""Which checkpoint a run resumes from, and what a run directory already holds.

A checkpoint counts only when it can be read back: a truncated or garbage file (a disk filling up, a
copy cut short) is skipped with a warning that names it and the checkpoint used instead, so one bad
file never blocks a run that has an intact checkpoint beside it. Every checkpoint file is written to a
temporary name and renamed over the old one (``AtomicCheckpointIO``), so neither a killed writer nor a
full disk ever leaves half a checkpoint under a checkpoint's name.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

RESULTS = ("metrics.json", "embeddings.npz")  # what a finished (or finishing) run leaves beside its checkpoints


def last_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run leaves in its directory (``trainer.default_root_dir``) when it ends or is
    stopped: ``checkpoints/last.ckpt``, the one every analysis of a finished run reads."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def checkpoint_problem(path: str | Path) -> Optional[str]:
    """None when ``path`` is a checkpoint that loads (a file, or a DeepSpeed directory with its ``latest``
    tag and shards), else why not, in a few words."""
    import torch

    path = Path(path)
    if path.is_dir():
        latest = path / "latest"
        if not latest.is_file():
            return "a directory without a DeepSpeed 'latest' file"
        tag = latest.read_text().strip()
        if not (path / tag).is_dir() or not any((path / tag).iterdir()):
            return f"its DeepSpeed tag {tag!r} has no shards"
        return None
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "an empty file"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
        return f"not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    if not isinstance(state, dict) or "state_dict" not in state:
        return "not a training checkpoint (no state_dict)"
    return None


def candidates(checkpoint_dir: str | Path) -> list[Path]:
    """The checkpoints a run could resume from, newest first: ``last*.ckpt``, the SLURM requeue's
    ``hpc_ckpt_*.ckpt`` (in the run directory, the parent of ``checkpoint_dir``) and the periodic ones."""
    ckpt_dir = Path(checkpoint_dir)
    found = [p for p in ckpt_dir.glob("*.ckpt")] if ckpt_dir.is_dir() else []
    found += list(ckpt_dir.parent.glob("hpc_ckpt_*.ckpt"))
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def newest_intact(checkpoint_dir: str | Path, first: Optional[Path] = None) -> tuple[Optional[Path], list[tuple[Path, str]]]:
    """(the newest checkpoint that loads, [(skipped checkpoint, why)]), trying ``first`` before the
    others; (None, skipped) when none loads."""
    order = ([Path(first)] if first is not None else []) + [p for p in candidates(checkpoint_dir) if first is None or p != Path(first)]
    skipped = []
    for path in order:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def resolve_resume(ckpt_path: Optional[str], checkpoint_dir: str | Path) -> tuple[Optional[str], list[str]]:
    """(the checkpoint ``--ckpt_path`` should resume from, warnings): ``last`` (or ``hpc``) is the newest
    intact checkpoint of the run; a path that does not load falls back to the newest intact one beside
    it. A skipped file is renamed ``NAME.corrupt`` (never read again) and named in a warning with the one
    used instead; a skipped ``last.ckpt`` is replaced by a copy of the intact one, since later stages of
    an ablation read ``last.ckpt``. (None, warnings): train from scratch."""
    if ckpt_path is None:
        return None, []
    if ckpt_path == "hpc":  # the SLURM requeue's checkpoint first, as Lightning's own auto-resume takes it
        hpc = sorted(Path(checkpoint_dir).parent.glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]) if p.stem.rsplit("_", 1)[-1].isdigit() else -1)
        use, skipped = newest_intact(checkpoint_dir, hpc[-1] if hpc else None)
    elif ckpt_path == "last":
        use, skipped = newest_intact(checkpoint_dir)
    else:
        given = Path(ckpt_path)
        if checkpoint_problem(given) is None:
            return ckpt_path, []
        if not given.exists():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint")
        use, skipped = newest_intact(checkpoint_dir, given)
        if use is None:
            raise ValueError(f"--ckpt_path {ckpt_path}: {skipped[0][1]}, and no intact checkpoint lies beside it")
    messages = []
    for path, why in skipped:
        messages.append(f"checkpoint {path} is skipped: {why}; " + (f"resuming from {use}" if use else "no intact checkpoint is left"))
        if path.is_file():
            path.replace(path.with_name(path.name + ".corrupt"))
            if path.name == "last.ckpt" and use is not None:
                tmp = path.with_name("last.ckpt.tmp")
                shutil.copyfile(use, tmp)
                tmp.replace(path)
    return (None if use is None else str(use)), messages


def previous_results(run_dir: str | Path, checkpoint_dir: str | Path) -> list[Path]:
    """What another run left in ``run_dir``: checkpoints, metrics and embeddings (not the files a run
    writes before its first step, such as an ablation's ``run.json`` or a ``train.log``)."""
    run_dir = Path(run_dir)
    return [p for p in candidates(checkpoint_dir)] + [run_dir / f for f in RESULTS if (run_dir / f).exists()]


def clear_results(run_dir: str | Path, checkpoint_dir: str | Path) -> None:
    """Remove another run's checkpoints, metrics, embeddings and progress (``--overwrite``)."""
    import shutil

    for path in previous_results(run_dir, checkpoint_dir) + [Path(run_dir) / "progress.json"]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``NAME.tmp`` beside the checkpoint, then a rename over ``NAME``; a failed write
    (``ENOSPC`` on a full disk) removes the temporary file and raises an ``OSError`` naming the
    checkpoint. Lightning's own ``TorchCheckpointIO`` writes through an fsspec transaction that left a
    truncated ``last.ckpt`` under its final name when the disk filled up mid-write."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        import io

        import torch

        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialised in memory first (as Lightning does): a full disk is then a plain ENOSPC on write
        torch.save(checkpoint, buffer)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
            tmp.replace(path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None:
                raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
            raise


def use_atomic_checkpoints(trainer) -> None:
    """Give the trainer's strategy ``AtomicCheckpointIO`` where it writes plain torch checkpoint files
    (DeepSpeed writes its own sharded directories and is left as it is)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


class StepCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (``--checkpoint.*``), with ``last.ckpt`` always the run's last state:

    - it is written at the final step whenever training ends. Lightning's own writes ``last`` at the end
      only when it has never written one, so a run whose ``max_steps`` is not a multiple of
      ``every_n_train_steps`` (250 steps, every 200) ended with ``last.ckpt`` at step 200: the analyses
      that read the trained encoder from it, and a later ``--ckpt_path=last``, got a model 50 steps short
      of the run's metrics;
    - it is overwritten, never versioned (``enable_version_counter`` off): a resumed run whose restored
      callback state does not name the ``last.ckpt`` on disk (one written by ``SaveOnInterrupt`` before
      the first periodic checkpoint, or a copied run directory) wrote ``last-v1.ckpt`` beside it, and
      ``last.ckpt`` stayed at the interrupt."""

    def __init__(self, *args, enable_version_counter: bool = False, **kwargs):
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class SaveOnInterrupt(Callback):
    """When a run is stopped by SIGTERM (what SLURM sends on cancel and at its time limit) or SIGINT
    (Ctrl-C), save ``last.ckpt`` at the step it reached (through a temporary file, as every Lightning
    checkpoint) and remember the signal, so that ``infogap fit`` ends with a non-zero exit and one line,
    and ``--ckpt_path=last`` resumes the run."""

    def __init__(self):
        self.signal: Optional[str] = None
        self.path: Optional[Path] = None
        self.step: Optional[int] = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        self.signal = "SIGTERM" if isinstance(exception, SIGTERMException) else "SIGINT"
        self.step = trainer.global_step
        ckpt = trainer.checkpoint_callback
        if isinstance(ckpt, ModelCheckpoint) and ckpt.save_last and ckpt.dirpath:
            # through the checkpoint callback, so that its state (saved in the checkpoint, restored on resume) names this last.ckpt
            ckpt._save_last_checkpoint(trainer, ckpt._monitor_candidates(trainer))
            self.path = Path(ckpt.last_model_path)
        else:
            self.path = last_checkpoint(trainer.default_root_dir)
            trainer.save_checkpoint(self.path)
