"""Real image-text pairs from webdataset shards (or a CSV/TSV of file paths and captions).

Training draws shards with replacement (``ResampledShards``) and cuts the stream into epochs of a
fixed number of batches (what ``with_epoch`` does, split here across loader workers), the webdataset
maintainers' recipe for many nodes: each
rank and worker gets its own seeded shard stream and restarts need no loader state. Validation reads
the shards in order, split by rank then by worker. Corrupt samples (undecodable image, missing
caption) are skipped with one warning per shard and counted; the count is logged as ``data/skipped``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytorch_lightning as pl
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from infogap.data import tarstream
from infogap.data.captions import CaptionTransform
from infogap.data.synthetic import pin_memory, run_seed

log = logging.getLogger(__name__)
_REMOTE = ("pipe:", "http://", "https://", "gs://", "s3://", "ais://")


def expand_shards(pattern: str, what: str = "data.train_shards") -> list[str]:
    """Brace notation (``shards/train-{000000..000009}.tar``, ``a.tar::b.tar``) to a list of URLs;
    local paths must exist. Fails before training, naming the pattern."""
    if not pattern:
        raise ValueError(f"{what} is empty")
    urls = wds.shardlists.expand_urls(pattern)
    if not urls:
        raise ValueError(f"{what}={pattern!r} expands to no shard")
    missing = [u for u in urls if not u.startswith(_REMOTE) and not Path(u.removeprefix("file:")).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{what}={pattern!r}: shard not found: {missing[0]}{more}")
    return urls


class SkipCounter:
    """Counts skipped samples in one process; warns once per shard."""

    def __init__(self):
        self.count = 0
        self.warned: set[str] = set()

    def skip(self, url: str, key: str, reason: str) -> None:
        self.count += 1
        if url not in self.warned:
            self.warned.add(url)
            log.warning("skipping sample %s of %s: %s (further skips in this shard are only counted)", key, url, reason)


def image_bytes(sample: dict, image_keys: list[str]) -> Optional[bytes]:
    """The encoded image of a webdataset sample: the first of ``image_keys`` it has, or None."""
    return next((sample[k] for k in image_keys if k in sample), None)


def decode_image(raw: bytes) -> Image.Image:
    """Encoded image bytes -> an RGB PIL image (PIL's own errors for a corrupt file)."""
    with Image.open(io.BytesIO(raw)) as im:
        return im.convert("RGB")


class _Decoder:
    """A raw webdataset sample -> (image tensor, caption) or None (skipped and counted)."""

    def __init__(self, image_keys: list[str], caption_key: str, caption_field: Optional[str], enriched_field: Optional[str],
                 preprocess: Callable, transform: Optional[CaptionTransform], counter: SkipCounter, seed: int):
        self.image_keys, self.caption_key = image_keys, caption_key
        self.caption_field, self.enriched_field = caption_field, enriched_field
        self.preprocess, self.transform, self.counter = preprocess, transform, counter
        self.rng = random.Random(seed)

    def _field(self, sample: dict, field: str) -> Optional[str]:
        if "." not in field and field in sample:
            value = sample[field]
            return value.decode("utf-8") if isinstance(value, bytes) else str(value)
        if "json" not in sample:
            return None
        record = json.loads(sample["json"])
        value = record.get(field.removeprefix("json."))
        return None if value is None else str(value)

    def __call__(self, sample: dict) -> Optional[tuple[torch.Tensor, str]]:
        url, key = sample.get("__url__", "?"), sample.get("__key__", "?")
        raw = image_bytes(sample, self.image_keys)
        if raw is None:
            self.counter.skip(url, key, f"no image under {'/'.join(self.image_keys)}")
            return None
        try:
            caption = self._field(sample, self.caption_field or self.caption_key)
        except (ValueError, UnicodeDecodeError) as exc:
            self.counter.skip(url, key, f"unreadable caption ({exc})")
            return None
        if not caption:
            self.counter.skip(url, key, f"no caption under {self.caption_field or self.caption_key!r}")
            return None
        try:
            image = self.preprocess(decode_image(raw))
        except Exception as exc:  # PIL raises many types for a corrupt file
            self.counter.skip(url, key, f"corrupt image ({type(exc).__name__}: {exc})")
            return None
        if self.transform is not None:
            enriched = self._field(sample, self.enriched_field) if self.enriched_field else None
            caption = self.transform(caption, self.rng, enriched=enriched)
        return image, caption


class ShardStream(IterableDataset):
    """Batches of ``image`` (B, 3, H, W), ``text`` (B, context) and ``skipped`` (see ``skip_report``)."""

    def __init__(self, urls: list[str], *, train: bool, batch_size: int, tokenizer: Callable, preprocess: Callable,
                 image_keys: list[str], caption_key: str, caption_field: Optional[str], enriched_field: Optional[str],
                 transform: Optional[CaptionTransform], seed: int, rank: int, world_size: int,
                 batches_per_epoch: Optional[int] = None, shuffle_buffer: int = 1000):
        self.urls, self.train, self.batch_size = urls, train, batch_size
        self.tokenizer, self.preprocess = tokenizer, preprocess
        self.decode_args = dict(image_keys=image_keys, caption_key=caption_key, caption_field=caption_field,
                                enriched_field=enriched_field, transform=transform if train else None)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.batches_per_epoch, self.shuffle_buffer = batches_per_epoch, shuffle_buffer
        self.epoch = 0

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("validation shards have no length")
        return self.batches_per_epoch

    def _pipeline(self) -> Iterator:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stream_seed = self.seed * 1_000_003 + self.rank * 1000 + worker
        counter = SkipCounter()
        decode = _Decoder(preprocess=self.preprocess, counter=counter, seed=stream_seed + self.epoch * 7919, **self.decode_args)
        if self.train:
            shards = wds.ResampledShards(self.urls, seed=self.seed + self.epoch, worker_seed=lambda: self.rank * 1000 + worker, deterministic=True)
            stages = [shards, tarstream.tarfile_to_samples(handler=wds.warn_and_continue),
                      wds.shuffle(self.shuffle_buffer, rng=random.Random(stream_seed + self.epoch))]
        else:
            mine = self.urls[self.rank:: self.world_size][worker::workers]
            stages = [wds.SimpleShardList(mine), tarstream.tarfile_to_samples(handler=wds.warn_and_continue)]
        samples = (ex for ex in (decode(s) for s in wds.DataPipeline(*stages)) if ex is not None)
        batch: list = []
        for example in samples:
            batch.append(example)
            if len(batch) == self.batch_size:
                yield self._collate(batch, worker, counter)
                batch = []
        if batch and not self.train:
            yield self._collate(batch, worker, counter)

    def _collate(self, batch: list, worker: int, counter: SkipCounter) -> dict:
        images, captions = zip(*batch)
        return {"image": torch.stack(images), "text": self.tokenizer(list(captions)), "skipped": skip_report(worker, counter)}

    def __iter__(self) -> Iterator[dict]:
        it = self._pipeline()
        if self.batches_per_epoch is None:
            yield from it
            return
        info = get_worker_info()
        workers = info.num_workers if info else 1
        worker = info.id if info else 0
        share = len(range(worker, self.batches_per_epoch, workers))  # batches this worker contributes
        for _, b in zip(range(share), it):
            yield b


def skip_report(worker: Optional[int], counter: SkipCounter) -> torch.Tensor:
    """(loader worker, its cumulative count of skipped samples), carried by every batch."""
    if worker is None:
        info = get_worker_info()
        worker = info.id if info else 0
    return torch.tensor([worker, counter.count])


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(file path, caption) rows of a CSV or TSV with a header ``filepath,caption`` (relative paths are
    relative to the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption table not found: {path}")
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for col in ("filepath", "caption"):
            if col not in (reader.fieldnames or []):
                raise ValueError(f"{path}: needs a {col!r} column (has: {', '.join(reader.fieldnames or [])})")
        rows = [(str((path.parent / r["filepath"]) if not os.path.isabs(r["filepath"]) else r["filepath"]), r["caption"]) for r in reader]
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


class PairTable(torch.utils.data.Dataset):
    """A CSV/TSV of (filepath, caption): small fine-tuning sets (the reference's DCI runs)."""

    def __init__(self, rows, preprocess, tokenizer, transform: Optional[CaptionTransform], seed: int):
        self.rows, self.preprocess, self.tokenizer, self.transform, self.seed = rows, preprocess, tokenizer, transform, seed
        self.counter = SkipCounter()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        path, caption = self.rows[i]
        try:
            with Image.open(path) as im:
                image = self.preprocess(im.convert("RGB"))
        except Exception as exc:
            self.counter.skip(path, str(i), f"unreadable image ({type(exc).__name__})")
            return None
        if self.transform is not None:
            caption = self.transform(caption, random.Random(self.seed * 1_000_003 + i))
        return image, caption

    def collate(self, batch: list) -> dict:
        kept = [b for b in batch if b is not None]
        images, captions = zip(*kept) if kept else ((), ())
        return {"image": torch.stack(images) if kept else torch.empty(0), "text": self.tokenizer(list(captions)),
                "skipped": skip_report(None, self.counter)}


class WebDataModule(pl.LightningDataModule):
    """Real image-text data for open_clip models.

    Args:
        train_shards, val_shards: brace-notation shard lists (local paths or anything webdataset opens).
        train_table: instead of train shards, a CSV/TSV of ``filepath,caption`` (small fine-tuning sets).
        model: the open_clip model whose image transforms and tokenizer to use.
        image_keys: ';'-separated sample keys tried in turn for the image.
        caption_key / caption_field: the caption is ``sample[caption_key]``, or ``json[caption_field]``.
        enriched_field: the enriched caption (a sample key or a json field) for the enrichment transforms.
        caption_transform: ``{kind, p, fraction, n, p_drop}`` (see ``infogap.data.captions.CaptionTransform``),
            applied to training captions only; validation always sees the full caption.
        samples_per_epoch: training samples per epoch (per the whole job), the length of a resampled epoch.
        seed: None (default) follows the run's ``seed_everything``.
        zeroshot_folder: a local labelled image folder (``ROOT/<class>/<image>``, ImageFolder layout)
            on which the metrics callback also measures zero-shot accuracy (``zeroshot/<name>_acc``,
            name = the folder's name); class names are the sub-folder names, ``_`` read as a space.
        zeroshot_templates: prompt templates with ``{}`` for the class name, separated by ``|``; the class
            embedding is the normalised mean over templates.
        zeroshot_max_images: at most this many images of the folder (a fixed random subset, seeded by
            ``seed``), held in memory for every evaluation.
    """

    def __init__(
        self,
        train_shards: Optional[str] = None,
        val_shards: Optional[str] = None,
        train_table: Optional[str] = None,
        model: str = "RN50",
        image_keys: str = "jpg;jpeg;png;webp",
        caption_key: str = "txt",
        caption_field: Optional[str] = None,
        enriched_field: Optional[str] = None,
        caption_transform: Optional[dict] = None,
        batch_size: int = 64,
        num_workers: int = 4,
        samples_per_epoch: int = 100_000,
        shuffle_buffer: int = 1000,
        seed: Optional[int] = None,
        zeroshot_folder: Optional[str] = None,
        zeroshot_templates: str = "a photo of a {}.",
        zeroshot_max_images: int = 2000,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.seed = run_seed(seed)
        if not train_shards and not train_table:
            raise ValueError("set data.train_shards (webdataset shards) or data.train_table (CSV/TSV of filepath,caption)")
        self.train_urls = expand_shards(train_shards, "data.train_shards") if train_shards else None
        self.train_rows = read_pairs(train_table) if train_table else None
        self.val_urls = expand_shards(val_shards, "data.val_shards") if val_shards else None
        self.transform = CaptionTransform(**caption_transform) if caption_transform else None
        if self.transform is not None and self.transform.needs_enriched and not enriched_field:
            raise ValueError(f"caption_transform {self.transform.kind!r} needs data.enriched_field")
        self.image_size, self.preprocess_train, self.preprocess_val, self.tokenizer = transforms_for(model)
        if zeroshot_folder:
            image_folder_classes(zeroshot_folder, "data.zeroshot_folder")
        if zeroshot_max_images < 1:
            raise ValueError(f"data.zeroshot_max_images must be positive, got {zeroshot_max_images}")
        if "{}" not in zeroshot_templates:
            raise ValueError(f"data.zeroshot_templates needs '{{}}' for the class name, got {zeroshot_templates!r}")
        self.skipped: dict[int, int] = {}  # loader worker -> its cumulative count of skipped samples

    text_spec = None  # BPE tokenizer: the model keeps its own vocabulary

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _stream(self, urls, train: bool) -> ShardStream:
        rank, world = self._rank_world()
        h = self.hparams
        per_epoch = max(1, h.samples_per_epoch // (h.batch_size * world)) if train else None
        return ShardStream(
            urls, train=train, batch_size=h.batch_size, tokenizer=self.tokenizer,
            preprocess=self.preprocess_train if train else self.preprocess_val,
            image_keys=h.image_keys.split(";"), caption_key=h.caption_key, caption_field=h.caption_field,
            enriched_field=h.enriched_field, transform=self.transform, seed=self.seed, rank=rank, world_size=world,
            batches_per_epoch=per_epoch, shuffle_buffer=h.shuffle_buffer,
        )

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        if self.train_rows is not None:
            table = PairTable(self.train_rows, self.preprocess_train, self.tokenizer, self.transform, self.seed)
            return DataLoader(table, batch_size=h.batch_size, shuffle=True, num_workers=h.num_workers, collate_fn=table.collate,
                              drop_last=True, pin_memory=pin_memory(self.trainer), persistent_workers=h.num_workers > 0)
        stream = self._stream(self.train_urls, train=True)
        stream.epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return DataLoader(stream, batch_size=None, num_workers=h.num_workers, persistent_workers=False, pin_memory=pin_memory(self.trainer))

    def val_dataloader(self) -> DataLoader:
        if not self.val_urls:
            return []
        return DataLoader(self._stream(self.val_urls, train=False), batch_size=None, num_workers=self.hparams.num_workers,
                          pin_memory=pin_memory(self.trainer))

    # --- what the metrics callback needs: the first validation samples, with full captions ----------
    def _eval_cache(self, n: int) -> dict:
        if getattr(self, "_eval", None) is None or (len(self._eval["image"]) < n and not self._eval["complete"]):
            images, texts, complete = [], [], True
            stream = self._stream(self.val_urls, train=False)
            stream.rank, stream.world_size = 0, 1  # every rank reads the same set, then keeps its slice
            for batch in stream:
                images.append(batch["image"])
                texts.append(batch["text"])
                if sum(len(b) for b in images) >= n:
                    complete = False
                    break
            self._eval = {"image": torch.cat(images)[:n] if images else torch.empty(0),
                          "text": torch.cat(texts)[:n] if texts else torch.empty(0), "complete": complete}
        return self._eval

    def eval_size(self, n: int) -> int:
        """Samples in the evaluation set (the first ``n`` of ``data.val_shards``; 0 without them)."""
        return min(n, len(self._eval_cache(n)["image"])) if self.val_urls else 0

    def eval_samples(self, index) -> dict:
        cache = self._eval_cache(int(max(index)) + 1 if len(index) else 0)
        index = torch.as_tensor(index, dtype=torch.long)
        return {"image": cache["image"][index], "text_full": cache["text"][index], "labels": {}}

    def zeroshot_sets(self) -> dict[str, dict]:
        """{name: {image (N, 3, H, W), labels (N,), prompts (classes, templates, context)}} for the metrics
        callback: the labelled folder of ``data.zeroshot_folder``, read once."""
        folder = self.hparams.zeroshot_folder
        if not folder:
            return {}
        if getattr(self, "_zeroshot", None) is None:
            from torchvision.datasets import ImageFolder

            data = ImageFolder(folder, transform=self.preprocess_val)  # checked when the module was built
            index = sorted(random.Random(self.seed).sample(range(len(data)), min(len(data), self.hparams.zeroshot_max_images)))
            images, labels = zip(*(data[i] for i in index))
            templates = [t.strip() for t in self.hparams.zeroshot_templates.split("|") if t.strip()]
            names = [c.replace("_", " ") for c in data.classes]
            prompts = torch.stack([self.tokenizer([t.format(c) for t in templates]) for c in names])
            self._zeroshot = {Path(folder).name: {"image": torch.stack(images), "labels": torch.tensor(labels), "prompts": prompts,
                                                  "classes": names}}
        return self._zeroshot

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Each batch carries (worker, that worker's cumulative skip count); replace it by the total over
        workers, which the training step logs as ``data/skipped``."""
        if "skipped" in batch:
            worker, count = (int(v) for v in batch["skipped"])
            if self.trainer is None or self.trainer.training:
                self.skipped[worker] = count
            batch["skipped"] = torch.tensor(float(sum(self.skipped.values())))
        return batch


def image_folder_classes(folder: str, what: str) -> list[str]:
    """The class names of a labelled image folder (ImageFolder layout: one sub-folder per class), with
    one-line errors naming ``what`` and the folder or class when it is missing, has no class
    sub-folders, or a class has no image."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: no such directory: {folder}")
    try:
        classes, _ = find_classes(str(root))
    except FileNotFoundError:
        raise ValueError(f"{what} {folder}: no class sub-folders (ImageFolder layout: {folder}/<class>/<image>)") from None
    for name in classes:
        if not any(p.suffix.lower() in IMG_EXTENSIONS for p in (root / name).rglob("*") if p.is_file()):
            raise ValueError(f"{what} {folder}: class {name!r} has no images ({', '.join(IMG_EXTENSIONS)})")
    return classes


def transforms_for(model: str):
    """(image size, train transform, eval transform, tokenizer) of an open_clip model or a small config,
    built from its config (no model, no download)."""
    import open_clip

    from infogap.models.clip import SMALL_CONFIGS

    if model in SMALL_CONFIGS:
        cfg = SMALL_CONFIGS[model]
        if "vocab_size" not in cfg.text:
            raise ValueError(f"data.model={model!r} is a word-level model for the synthetic data; use a BPE model (e.g. tiny-bpe, RN50)")
        size, tokenizer = cfg.vision["image_size"], open_clip.get_tokenizer("ViT-B-32")
    elif model in open_clip.list_models():
        size, tokenizer = open_clip.get_model_config(model)["vision_cfg"]["image_size"], open_clip.get_tokenizer(model)
    else:
        raise ValueError(f"data.model: unknown model {model!r}")
    return size, open_clip.image_transform(size, is_train=True), open_clip.image_transform(size, is_train=False), tokenizer
