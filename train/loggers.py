"""Logger defaults: W&B, offline when no API key is configured; CSV one line away (``log_with: csv``)."""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info

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
