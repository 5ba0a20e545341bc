"""Helpers shared by the tests, by concern: ``processes`` (``infogap`` in a subprocess or in process,
tiny run arguments, ports, waiting), ``faults`` (callbacks that kill, park or signal a run at a step),
``wandb_logs`` (an offline W&B run read back), ``data`` (photo shards, a tiny captioner) and ``studies``
(the smoke plan's studies, summary tables). Importable from the repository root."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
