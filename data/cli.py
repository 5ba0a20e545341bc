"""``infogap data``: preview grid, throughput benchmark and webdataset export of the synthetic data."""
from __future__ import annotations

import argparse
import io
import json
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from infogap.data.factors import FACTOR_NAMES, FACTORS, LAYOUT_FACTORS, OBJECT
from infogap.data.synthetic import CaptionSpec, SyntheticBatches, SyntheticDataModule, caption_strings


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=5, help="attribute factors named in each caption (0..5)")
    p.add_argument("--always-present", default=OBJECT, help="the factor every caption names")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "val", "test"], default="train")
    p.add_argument("--epoch", type=int, default=0, help="training epoch to draw (train split)")
    p.add_argument("--layout", action="store_true", help="the layout world: 64-px scenes placed by a position, a size and a plane word")
    p.add_argument("--no-layout-words", action="store_true", help="(--layout) captions without the layout words")


def _check_args(args, positive: tuple[str, ...]) -> None:
    """Before anything is rendered: the counts and sizes in ``positive`` are >= 1, the seed and epoch are not
    negative, and an epoch is given only for the train split (the others are fixed sets); one line each."""
    for name in positive:
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("seed", "epoch"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.no_layout_words and not args.layout:
        raise ValueError("--no-layout-words needs --layout (only the layout world's captions can name layout words)")
    if args.epoch and args.split != "train":
        raise ValueError(f"--epoch {args.epoch}: the {args.split} split is one fixed set of samples; --epoch draws an epoch of the train split")


def _module(args, batch_size: int, **kwargs) -> SyntheticDataModule:
    return SyntheticDataModule(k=args.k, always_present=args.always_present, seed=args.seed, batch_size=batch_size, layout=args.layout,
                               layout_words=not args.no_layout_words, **kwargs)


def _batches(dm: SyntheticDataModule, split: str, n: int, epoch: int, batch_size: int):
    """The first ``n`` samples of a split, in batches, with their indices."""
    size = {"train": max(n, dm.train_size), "val": dm.val_size, "test": dm.test_size}[split]
    if n > size:
        raise ValueError(f"--n {n} exceeds the {split} split ({size} samples)")
    ds = SyntheticBatches(dm.source, split, size, batch_size)
    ds.epoch = epoch
    done = 0
    for j in range(len(ds)):
        if done >= n:
            break
        batch = ds.make_batch(j)
        index = ds.batch_indices(j)
        take = min(len(index), n - done)
        done += take
        yield {k: (v[:take] if torch.is_tensor(v) else {f: t[:take] for f, t in v.items()}) for k, v in batch.items()}, index[:take]


def preview(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap data preview", description="Write a grid of samples with their captions.")
    _add_data_args(p)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--out", default="grid.png")
    args = p.parse_args(argv)
    _check_args(args, ("n", "cols"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dm = _module(args, batch_size=args.n)
    batch, _ = next(_batches(dm, args.split, args.n, args.epoch, args.n))
    captions = caption_strings(batch["text"].numpy(), dm.source.vocab)
    rows = int(np.ceil(args.n / args.cols))
    fig, axes = plt.subplots(rows, args.cols, figsize=(args.cols * 1.9, rows * 2.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(args.n):
        ax = axes.flat[i]
        ax.imshow(batch["image"][i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(textwrap.fill(captions[i], 22), fontsize=6.5)
    world = (" layout world" + (", no layout words" if args.no_layout_words else "")) if args.layout else ""
    fig.suptitle(f"synthetic data{world}, {args.split} split, k = {args.k} (always present: {args.always_present})", fontsize=9)
    fig.tight_layout(h_pad=1.5)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)
    return 0


def bench(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap data bench", description="Samples per second of one loader worker (one thread).")
    _add_data_args(p)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--tokenizer", default="word", help="word, or an open_clip model name (BPE strings)")
    p.add_argument("--dense", action="store_true", help="also render the mask and depth targets")
    p.add_argument("--all-on", action="store_true", help="worst case: every sample thickened, swollen, fractured and small")
    p.add_argument("--device", default=None,
                   help="render on this device (cpu, cuda) as data.render_on_device does: the worker's part (labels, captions, "
                        "random numbers; one thread) and the device's part (images) are timed apart")
    args = p.parse_args(argv)
    _check_args(args, ("n", "batch_size"))
    torch.set_num_threads(1)  # what a DataLoader worker gets
    dm = _module(args, batch_size=args.batch_size, tokenizer=args.tokenizer, dense_targets=args.dense, train_size=max(args.n, args.batch_size),
                 render_on_device=args.device is not None)
    if args.all_on:
        dm.source.force = {"thickness": 1, "swelling": 1, "fracture": 1, "scaling": 1}
    ds = dm.train_dataloader().dataset
    n_batches = max(1, args.n // args.batch_size)
    n = n_batches * args.batch_size
    result = {"samples": n, "batch_size": args.batch_size, "k": args.k, "tokenizer": args.tokenizer, "dense": args.dense,
              "all_on": args.all_on, "threads": 1}
    finish = _device_renderer(args.device) if args.device else None
    if finish:
        finish(ds.make_batch(0))  # glyph templates, kernels, allocator warm-up
    else:
        ds.make_batch(0)
    start = time.perf_counter()
    batches = []  # deferred batches (a few floats per sample) are kept to render apart; rendered ones are not
    for j in range(n_batches):
        batch = ds.make_batch(j)
        if finish:
            batches.append(batch)
    seconds = time.perf_counter() - start
    result.update(samples_per_s=round(n / seconds, 1), seconds=round(seconds, 3), text_shape=list(batch["text"].shape))
    if finish:
        start = time.perf_counter()
        for j in range(len(batches)):
            finish(batches[j])
            batches[j] = None  # as training does: each rendered batch is dropped after its step
        device_seconds = time.perf_counter() - start
        result = {"device": args.device, "worker_samples_per_s": result.pop("samples_per_s"), "worker_seconds": result.pop("seconds"),
                  "device_samples_per_s": round(n / device_seconds, 1), "device_seconds": round(device_seconds, 3), **result}
    print(json.dumps(result))
    return 0


def _device_renderer(device: str):
    """Move a deferred batch to ``device`` and render it there, waiting for the device to finish."""
    from pytorch_lightning.utilities import move_data_to_device

    from infogap.data.synthetic import finish_render

    target = torch.device(device)

    def finish(batch: dict) -> dict:
        out = finish_render(move_data_to_device(batch, target))
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        return out

    return finish


def export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap data export", description="Write samples as webdataset shards (png, txt, json).")
    _add_data_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--shard-size", type=int, default=5_000)
    p.add_argument("--dense", action="store_true", help="also write mask.png and depth.npy")
    p.add_argument("--overwrite", action="store_true", help="replace the shards of this split already in --out (default: refuse)")
    args = p.parse_args(argv)
    _check_args(args, ("n", "shard_size"))
    import webdataset as wds
    from PIL import Image

    out = Path(args.out)
    from infogap.data.files import check_output_dir

    check_output_dir(out, "--out")
    old = sorted(out.glob(f"synthetic-{args.split}-*.tar")) + ([out / f"synthetic-{args.split}.json"] if (out / f"synthetic-{args.split}.json").exists() else [])
    if old and not args.overwrite:
        raise ValueError(f"--out {out} already holds {len(old)} file(s) of the {args.split} split ({old[0].name}, ...): they would mix with the "
                         "new shards; choose another directory or pass --overwrite to replace them")
    for path in old:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    dm = _module(args, batch_size=512, dense_targets=args.dense)
    full = CaptionSpec(len(FACTOR_NAMES) - 1, args.always_present)
    pattern = str(out / f"synthetic-{args.split}-%06d.tar")
    written = 0
    with wds.ShardWriter(pattern, maxcount=args.shard_size, verbose=0) as sink, tqdm(total=args.n, desc="export", unit="sample") as bar:
        for batch, index in _batches(dm, args.split, args.n, args.epoch, 512):
            captions = caption_strings(batch["text"].numpy(), dm.source.vocab)
            order = (full.always_present,) + full.others  # full description, always-present word first
            full_captions = [", ".join(FACTORS[f][int(batch["labels"][f][i])] for f in order) for i in range(len(index))]
            images = (batch["image"].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for i, idx in enumerate(index):
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="PNG")
                record = {
                    "index": int(idx), "split": args.split, "seed": args.seed, "epoch": args.epoch, "k": args.k,
                    "always_present": args.always_present, "caption_full": full_captions[i],
                    "labels": {f: int(batch["labels"][f][i]) for f in FACTOR_NAMES},
                    "values": {f: FACTORS[f][int(batch["labels"][f][i])] for f in FACTOR_NAMES},
                }
                if "layout" in batch:  # the layout world's words, named or not in the caption
                    record["labels"].update({f: int(t[i]) for f, t in batch["layout"].items()})
                    record["values"].update({f: LAYOUT_FACTORS[f][int(t[i])] for f, t in batch["layout"].items()})
                sample = {"__key__": f"{args.split}{int(idx):09d}", "png": buf.getvalue(), "txt": captions[i], "json": record}
                if args.dense:
                    m = io.BytesIO()
                    Image.fromarray(batch["mask"][i].numpy() * 255).save(m, format="PNG")
                    d = io.BytesIO()
                    np.save(d, batch["depth"][i].numpy())
                    sample["mask.png"], sample["depth.npy"] = m.getvalue(), d.getvalue()
                sink.write(sample)
            written += len(index)
            bar.update(len(index))
    manifest = {"out": str(out), "samples": written, "shards": sorted(p.name for p in out.glob(f"synthetic-{args.split}-*.tar"))}
    (out / f"synthetic-{args.split}.json").write_text(json.dumps(manifest, indent=1) + "\n")  # written last: the export is whole
    print(json.dumps(manifest))
    return 0


def enrich(argv: list[str]) -> int:
    from infogap.data.enrich import main as enrich_main

    return enrich_main(argv)


COMMANDS = {"preview": preview, "bench": bench, "export": export, "enrich": enrich}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: infogap data {preview,bench,export,enrich} [options]\n\n"
              "  preview  grid of samples with their captions (PNG)\n"
              "  bench    samples/s of one loader worker, as JSON\n"
              "  export   webdataset shards: png, txt (caption), json (all labels)\n"
              "  enrich   new shards with an enriched caption (local captioning model or JSONL annotations)")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    return COMMANDS[argv[0]](argv[1:])
