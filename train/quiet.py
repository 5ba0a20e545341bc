"""The Lightning ``Trainer`` of the analyses' own short fits (a dense probe or fine-tune, the MAE
baseline, a learn/forget fine-tune): one device, ``max_steps`` optimizer steps, and nothing a
training run of ``infogap fit`` has: no logger, checkpoints, progress bar, model summary or sanity
validation, unless the caller asks (``logger=``, ``callbacks=``, validation settings)."""
from __future__ import annotations

import pytorch_lightning as pl


def quiet_trainer(steps: int, accelerator: str = "cpu", max_epochs: int = 1, **kwargs) -> pl.Trainer:
    """``pl.Trainer`` for ``steps`` steps on one device of ``accelerator``; ``kwargs`` override the quiet
    defaults (e.g. ``logger``, ``callbacks``, ``val_check_interval``, ``limit_val_batches``)."""
    options = dict(accelerator=accelerator, devices=1, max_steps=steps, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    return pl.Trainer(**{**options, **kwargs})
