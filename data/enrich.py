"""``infogap data enrich``: new webdataset shards whose samples carry an enriched caption.

Every input shard becomes one output shard of the same name in ``--out``, each sample copied with all
its members plus the enriched caption as a field of its ``json`` record (``enriched`` by default,
read back with ``data.enriched_field: enriched``). The caption comes from either

- ``--captioner DIR``: an image-to-text model saved with ``transformers`` (``save_pretrained``:
  model, image processor, tokenizer) in a local directory, run in batches, on the GPU when there is
  one; or
- ``--annotations FILE.jsonl``: structured annotations joined by sample key, one JSON object per line
  with ``key`` and the ``--fields`` to join (DCI style: a short caption and a list of extra captions,
  joined in order into one text).

Resumable per shard: a shard is written to ``NAME.tmp``, renamed when complete, and then gets a
``NAME.done.json`` record (its sample count, size and SHA-256); on restart a shard is skipped only
when its record matches the file, so an interrupted one, or any file that merely has a shard's name,
is redone from its start (never duplicated, never half-kept). The input is never overwritten (``--out`` may not hold an input shard). A shard that
fails is reported in ``enrich-report.json`` and the others go on; ``--only NAME`` retries one.
Samples whose image cannot be decoded (captioner) are dropped and counted; samples without an
annotation are kept without the field and counted.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import webdataset as wds

from infogap.data.webdata import decode_image, expand_shards, image_bytes

REPORT = "enrich-report.json"
# Test-only fault injection, for deterministic kill/resume tests: "NAME:N" makes the process SIGKILL
# itself right after it has written sample N of shard NAME (to NAME.tmp). Never set in normal use.
KILL_AFTER_ENV = "INFOGAP_ENRICH_KILL_AFTER"


def _kill_after(shard: str) -> Optional[int]:
    """The sample count of ``KILL_AFTER_ENV`` if it names this shard, else None."""
    name, _, n = os.environ.get(KILL_AFTER_ENV, "").rpartition(":")
    return int(n) if name == shard and n.isdigit() else None


class Captioner:
    """A local ``transformers`` image-to-text model: PIL images -> captions, batched."""

    def __init__(self, path: str, device: str = "auto", max_new_tokens: int = 40, num_beams: int = 1):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer, VisionEncoderDecoderModel

        if not Path(path, "config.json").is_file():
            raise FileNotFoundError(f"--captioner {path}: no config.json (a directory written by save_pretrained)")
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        try:
            self.model = VisionEncoderDecoderModel.from_pretrained(path, local_files_only=True)
        except (ValueError, OSError, TypeError):
            self.model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
        self.model.to(self.device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.generate_args = {"max_new_tokens": max_new_tokens, "num_beams": num_beams}

    def __call__(self, images: list) -> list[str]:
        import torch

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.no_grad():
            ids = self.model.generate(pixel_values=pixels, **self.generate_args)
        return [" ".join(t.split()) for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def load_annotations(path: str, fields: list[str]) -> dict[str, str]:
    """JSON lines -> {key: the fields joined in order (lists flattened)}; bad lines are named."""
    out: dict[str, str] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if "key" not in record:
                raise ValueError(f"{path}:{n}: no 'key' field")
            parts: list[str] = []
            for field in fields:
                value = record.get(field)
                parts += [str(v) for v in value] if isinstance(value, list) else ([str(value)] if value else [])
            if not parts:
                raise ValueError(f"{path}:{n}: none of the fields {', '.join(fields)} has a value")
            out[str(record["key"])] = " ".join(p.strip() for p in parts if p.strip())
    return out


def _record(sample: dict) -> dict:
    raw = sample.get("json")
    if raw is None:
        return {}
    return json.loads(raw if isinstance(raw, (str, bytes)) else bytes(raw))


def _image(sample: dict, image_keys: list[str]):
    raw = image_bytes(sample, image_keys)
    if raw is None:
        raise ValueError(f"no image under {'/'.join(image_keys)}")
    return decode_image(raw)


def _tmp(dest: Path) -> Path:
    """Where a shard is written until it is complete."""
    return dest.with_name(dest.name + ".tmp")


def _done_file(dest: Path) -> Path:
    """The record a finished shard gets last: its sample count, size and SHA-256."""
    return dest.with_name(dest.name + ".done.json")


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_done(dest: Path) -> bool:
    """A shard counts as done only when its ``.done.json`` record exists and the shard is the file it
    describes (size and SHA-256): a file with a shard's name and no record, or another content, is
    redone."""
    record = _done_file(dest)
    if not (dest.is_file() and record.is_file()):
        return False
    try:
        saved = json.loads(record.read_text())
    except ValueError:
        return False
    return saved.get("bytes") == dest.stat().st_size and saved.get("sha256") == _sha256(dest)


def enrich_shard(url: str, dest: Path, *, field: str, image_keys: list[str], batch_size: int,
                 captioner: Optional[Callable] = None, annotations: Optional[dict[str, str]] = None,
                 progress: Optional[Callable[[int], None]] = None) -> dict:
    """One shard -> ``dest`` (through ``dest.tmp``, renamed at the end). Returns its counts."""
    tmp = _tmp(dest)
    _done_file(dest).unlink(missing_ok=True)
    counts = {"samples": 0, "enriched": 0, "dropped_corrupt": 0, "no_annotation": 0}
    pending: list[tuple[dict, object]] = []
    kill_at, written = _kill_after(dest.name), 0

    def write(sink, sample: dict, text: Optional[str]) -> None:
        nonlocal written
        _write(sink, sample, field, text)
        written += 1
        if written == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def flush(sink) -> None:
        captions = captioner([im for _, im in pending]) if pending else []
        for (sample, _), caption in zip(pending, captions):
            write(sink, sample, caption)
            counts["enriched"] += 1
        if progress:
            progress(len(pending))
        pending.clear()

    with wds.TarWriter(str(tmp)) as sink:
        for sample in wds.WebDataset(url, shardshuffle=False, empty_check=False):
            counts["samples"] += 1
            sample = {k: v for k, v in sample.items() if k != "__url__" and not k.startswith("__local")}
            if annotations is not None:
                text = annotations.get(sample["__key__"])
                counts["no_annotation" if text is None else "enriched"] += 1
                write(sink, sample, text)
                if progress:
                    progress(1)
                continue
            try:
                pending.append((sample, _image(sample, image_keys)))
            except Exception as exc:  # noqa: BLE001 - PIL raises many types for a corrupt file
                counts["dropped_corrupt"] += 1
                print(f"enrich: {Path(url).name}: dropping {sample['__key__']} ({type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            if len(pending) >= batch_size:
                flush(sink)
        if captioner is not None:
            flush(sink)
    os.replace(tmp, dest)
    _done_file(dest).write_text(json.dumps({"samples_written": written, "bytes": dest.stat().st_size, "sha256": _sha256(dest)}))
    return counts


def _write(sink, sample: dict, field: str, text: Optional[str]) -> None:
    out = dict(sample)
    if text is not None:
        record = _record(sample)
        record[field] = text
        out["json"] = json.dumps(record).encode("utf-8")
    sink.write(out)


def run(inputs: list[str], out: Path, *, field: str, image_keys: list[str], batch_size: int, only: Optional[list[str]],
        make_captioner: Optional[Callable[[], Callable]], annotations: Optional[dict[str, str]]) -> dict:
    from infogap.data.files import check_output_dir

    check_output_dir(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / REPORT
    report = json.loads(report_path.read_text()) if report_path.is_file() else {"done": {}, "failed": {}}
    names = [Path(u.removeprefix("file:")).name for u in inputs]
    if len(set(names)) != len(names):
        raise ValueError("--in: two input shards have the same file name; they would map to one output shard")
    inputs_resolved = {Path(u.removeprefix("file:")).resolve() for u in inputs}
    todo = []
    for url, name in zip(inputs, names):
        dest = out / name
        if dest.resolve() in inputs_resolved:
            raise ValueError(f"--out {out}: would overwrite the input shard {url}; choose another directory")
        if only and name not in only:
            continue
        if shard_done(dest):
            continue  # finished in an earlier run (its record and content agree)
        todo.append((url, name, dest))
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ValueError(f"--only: {', '.join(unknown)} not among the input shards")
    selected = len(only) if only else len(inputs)
    print(f"enrich: {selected} shard(s) selected, {selected - len(todo)} already done, {len(todo)} to do", file=sys.stderr)
    captioner = make_captioner() if (make_captioner and todo) else None
    from tqdm import tqdm

    bar = tqdm(unit="sample", desc="enrich", file=sys.stderr, disable=not todo)
    for url, name, dest in todo:
        start = time.perf_counter()
        try:
            counts = enrich_shard(url, dest, field=field, image_keys=image_keys, batch_size=batch_size, captioner=captioner,
                                  annotations=annotations, progress=bar.update)
        except Exception as exc:  # noqa: BLE001 - one shard failing must not stop the others
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
            _tmp(dest).unlink(missing_ok=True)
            print(f"enrich: {name} FAILED: {report['failed'][name]} (retry: --only {name})", file=sys.stderr)
        else:
            report["failed"].pop(name, None)
            report["done"][name] = {**counts, "seconds": round(time.perf_counter() - start, 2)}
        report_path.write_text(json.dumps(report, indent=1, sort_keys=True))
    bar.close()
    return report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap data enrich", description=__doc__.split("\n\n")[0],
                                epilog="Resumable per shard; see data/enrich.py for the details.")
    p.add_argument("--in", dest="inputs", required=True, help="input shards, brace notation (a/train-{000000..000009}.tar)")
    p.add_argument("--out", required=True, help="output directory (never one holding an input shard)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--captioner", help="local directory of a transformers image-to-text model (save_pretrained)")
    src.add_argument("--annotations", help="JSON lines with 'key' and the --fields, joined by sample key")
    p.add_argument("--fields", default="short_caption,extra_captions", help="annotation fields joined in order (default: DCI's short_caption,extra_captions)")
    p.add_argument("--field", default="enriched", help="name of the new field in each sample's json record (default: enriched)")
    p.add_argument("--image-keys", default="jpg;jpeg;png;webp")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--only", action="append", default=None, metavar="SHARD", help="process only this shard file name (repeatable)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    inputs = expand_shards(args.inputs, "--in")
    annotations = load_annotations(args.annotations, [f for f in args.fields.split(",") if f]) if args.annotations else None
    make = (lambda: Captioner(args.captioner, args.device, args.max_new_tokens)) if args.captioner else None
    report = run(inputs, Path(args.out), field=args.field, image_keys=args.image_keys.split(";"), batch_size=args.batch_size,
                 only=args.only, make_captioner=make, annotations=annotations)
    totals = {k: sum(d.get(k, 0) for d in report["done"].values()) for k in ("samples", "enriched", "dropped_corrupt", "no_annotation")}
    print(json.dumps({"out": args.out, "shards_done": len(report["done"]), "failed": report["failed"], **totals}))
    return 1 if report["failed"] else 0
