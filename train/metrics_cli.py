"""``infogap metrics --embeddings FILE.npz``: the metric suite as one JSON object.

The file holds ``image`` (N, d) and ``text`` (N, d) (row i of text matches image i), optionally
``logit_scale`` (the multiplier s, default 100), ``labels_<factor>`` integer arrays, ``object_factor``
(default ``object``) and ``classes_<factor>`` class embeddings (n_values, d) for zero-shot accuracy.
Embeddings that are not L2-normalised are normalised first (a note goes to stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from infogap.train.metrics import ROW_CHUNK, check_inputs, compute_metrics, is_normalized


def read_npz(path: str | Path, what: str = "embeddings file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, read now: an empty, truncated or corrupt file (a bad CRC shows only
    when an array is read) is one ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (not an .npz)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None


def load_embeddings(path: str | Path) -> dict:
    path = Path(path)
    npz = read_npz(path)
    for key in ("image", "text"):
        if key not in npz:
            raise ValueError(f"{path}: missing array {key!r} (found: {', '.join(npz)})")
        if npz[key].ndim != 2:
            raise ValueError(f"{path}: {key!r} must be 2-D (rows are embeddings), got shape {npz[key].shape}")
    out = {
        "image": np.ascontiguousarray(npz["image"]),
        "text": np.ascontiguousarray(npz["text"]),
        "logit_scale": float(npz["logit_scale"]) if "logit_scale" in npz else 100.0,
        "object_factor": str(npz["object_factor"]) if "object_factor" in npz else "object",
        "labels": {k[len("labels_"):]: npz[k].astype(np.int64) for k in npz if k.startswith("labels_")},
        "classes": {k[len("classes_"):]: npz[k] for k in npz if k.startswith("classes_")},
    }
    for name in ("image", "text"):
        if not np.issubdtype(out[name].dtype, np.floating):
            raise ValueError(f"{path}: {name!r} must be a float array, got {out[name].dtype}")
    common = np.result_type(out["image"], out["text"], *out["classes"].values())  # mixed float32/float64: one dtype for both towers
    for name in ("image", "text"):
        out[name] = out[name].astype(common, copy=False)
    out["classes"] = {f: np.asarray(c).astype(common, copy=False) for f, c in out["classes"].items()}
    for f, lab in out["labels"].items():
        if lab.ndim != 1:
            raise ValueError(f"{path}: 'labels_{f}' must be 1-D, got shape {lab.shape}")
    for f in out["classes"]:
        if f not in out["labels"]:
            raise ValueError(f"{path}: 'classes_{f}' needs 'labels_{f}'")
    return out


def normalize_in_place(a: np.ndarray) -> None:
    for start in range(0, len(a), ROW_CHUNK):
        chunk = a[start: start + ROW_CHUNK]
        chunk /= np.maximum(np.linalg.norm(chunk, axis=1, keepdims=True), 1e-12)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap metrics", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True, help=".npz with image, text [, logit_scale, labels_<factor>, classes_<factor>]")
    p.add_argument("--metrics", default=None, help="comma-separated keys or prefixes (e.g. l2m,rmg,moad); default: all")
    p.add_argument("--object-factor", default=None, help="the object factor of MOAD (default: the file's, else 'object')")
    args = p.parse_args(argv)
    data = load_embeddings(args.embeddings)
    x, y, labels = data["image"], data["text"], data["labels"]
    check_inputs(x, y, labels, source=args.embeddings)
    for name, a in (("image", x), ("text", y)):
        if not is_normalized(torch.from_numpy(a)):
            print(f"infogap metrics: note: '{name}' rows are not unit-norm; normalising them", file=sys.stderr)
            normalize_in_place(a)
    object_factor = args.object_factor or data["object_factor"]
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = compute_metrics(
        torch.from_numpy(x), torch.from_numpy(y), labels,
        logit_scale=data["logit_scale"], object_factor=object_factor,
        class_embeddings={f: torch.from_numpy(c) for f, c in data["classes"].items()}, metrics=metrics,
    )
    print(json.dumps(result))
    return 0
