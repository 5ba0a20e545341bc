"""Re-scoring a finished run's saved embeddings after a transformation (removing gap dimensions,
shifting one modality): the post-hoc analyses of the core study."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from infogap.train.metrics import compute_metrics, normalize
from infogap.train.metrics_cli import load_embeddings

RESCORED = ["l2m", "rmg", "moad_image", "moad_text", "zeroshot"]


def rescore(run_dir: Path, transform: Optional[Callable] = None, metrics=RESCORED) -> dict[str, float]:
    """Metrics of a finished run's ``embeddings.npz`` after ``transform(x, y, classes) -> (x, y, classes)``
    (class embeddings are text embeddings and are transformed with the texts). ``attr_acc_mean`` is
    added by the aggregation, like for every row."""
    emb = load_embeddings(Path(run_dir) / "embeddings.npz")
    x, y = torch.from_numpy(emb["image"]).double(), torch.from_numpy(emb["text"]).double()
    classes = {f: torch.from_numpy(c).double() for f, c in emb["classes"].items()}
    if transform is not None:
        x, y, classes = transform(x, y, classes)
    return compute_metrics(x, y, emb["labels"], logit_scale=emb["logit_scale"], class_embeddings=classes, metrics=metrics)


def shift(z: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Move every embedding by ``delta``, then re-normalise."""
    return normalize(z + delta)
