"""Local dense-prediction datasets for probes on real images, in two common layouts (nothing downloads).

Each split (``DIR/train``, ``DIR/val``) holds ``images/`` and, by task:

- segmentation (ADE20k / VOC style): ``labels/NAME.png``, an 8-bit mask of class indices per image
  ``images/NAME.*`` (255: ignored pixels), and ``DIR/classes.txt``, one class name per line (label i
  is line i + 1; background, if any, is a class like the others);
- depth (NYUv2 style): ``depth/NAME.png`` (16-bit, millimetres) or ``depth/NAME.npy`` (float, metres);
  0 (or less) marks a missing depth.

Images go through the model's evaluation transform; targets through the same geometry (shortest
side resized to the model's size, centre crop) with nearest-neighbour sampling. A missing target,
a target of another size than its image, or a label outside the class list is a one-line error
naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IGNORE = 255


def read_classes(root: str | Path) -> list[str]:
    path = Path(root) / "classes.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (segmentation needs the class names, one per line)")
    names = [line.strip() for line in path.read_text().splitlines()]
    if not names or any(not n for n in names):
        raise ValueError(f"{path}: one class name per line, no blank lines")
    return names


def _target_file(split: Path, task: str, image: Path) -> Path:
    folder = split / ("labels" if task == "seg" else "depth")
    candidates = [folder / f"{image.stem}.png"] + ([folder / f"{image.stem}.npy"] if task == "depth" else [])
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{candidates[0]}: missing (the {'label mask' if task == 'seg' else 'depth map'} of {image})")
    return found


def _read_target(path: Path, task: str) -> np.ndarray:
    if path.suffix == ".npy":
        return np.asarray(np.load(path), dtype=np.float32)
    with Image.open(path) as im:
        array = np.asarray(im)
    if task == "depth":
        if array.dtype != np.uint16:
            raise ValueError(f"{path}: a depth PNG must be 16-bit (millimetres), got {array.dtype}")
        return array.astype(np.float32) / 1000.0
    if array.ndim != 2:
        raise ValueError(f"{path}: a label mask must be a single-channel PNG of class indices, got shape {array.shape}")
    return array.astype(np.int64)


def read_dense_split(split: str | Path, task: str, preprocess: Callable, size: int, num_classes: Optional[int] = None,
                     max_images: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images as the model takes them (N, 3, size, size), targets (N, size, size): long classes for
    ``seg``, float metres for ``depth``) of one split, images in sorted order."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    split = Path(split)
    folder = split / "images"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (a split holds images/ and {'labels/' if task == 'seg' else 'depth/'})")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    files = files[:max_images] if max_images else files
    geometry = lambda t: CenterCrop(size)(Resize(size, interpolation=InterpolationMode.NEAREST)(t))  # noqa: E731
    images, targets = [], []
    for image in files:
        target_path = _target_file(split, task, image)
        target = _read_target(target_path, task)
        with Image.open(image) as im:
            rgb = im.convert("RGB")
        if target.shape[:2] != (rgb.height, rgb.width):
            raise ValueError(f"{target_path}: {target.shape[1]}x{target.shape[0]} target for the {rgb.width}x{rgb.height} image {image}")
        if task == "seg" and num_classes is not None:
            bad = np.setdiff1d(np.unique(target), np.r_[np.arange(num_classes), IGNORE])
            if len(bad):
                raise ValueError(f"{target_path}: label value {int(bad[0])} is not a class (classes.txt has 0..{num_classes - 1}; "
                                 f"{IGNORE} = ignore)")
        images.append(preprocess(rgb))
        targets.append(geometry(torch.from_numpy(target)[None])[0])
    return torch.stack(images), torch.stack(targets)
