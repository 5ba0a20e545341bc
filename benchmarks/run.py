"""Benchmarks behind BENCHMARKS.md: ``make bench`` or ``python benchmarks/run.py [NAME ...]``.

  data          synthetic samples/s of one loader worker (one thread), word and BPE captions
  jpeg          webdataset JPEG (224 px) decode + open_clip RN50 transforms + BPE tokens, samples/s of one worker
  metrics_1m    all O(N d) metrics at N = 1,000,000, d = 512, float32: time and peak memory
  metrics_100k  the full suite (entropy, uniformity, retrieval included) at N = 100,000, d = 512
  callback      wall time of the default synthetic run with and without the metrics callback
  eat           1,000,000 sampled permutations of an embedding association test
  heads         head contributions of 10,000 images and TEXTSPAN over every head of small-h8
  dense         patch-feature caching (images/s) and probe training on cached features (samples/s), tiny and small
  vs_open_clip  the same model, data, batch and precision trained by open_clip_train and by infogap fit:
                steady-state samples/s and whole-process time, alternating runs (prints the ratio table)
  loaders       where a loader worker's time goes on the caption-table and the shards paths: each stage
                (read, decode, transform, tokenise, collate) alone on the same samples, then each path whole
  startup       whole-process floor: the imports of each tool, and a one-step run of each (start-up and exit)
  aggregate_jobs  the per-run analyses of an aggregation (learn_forget's fine-tunes of 4 runs) in one
                process and in --analysis-jobs 2 worker processes
  factor_visibility  whether each factor can be read off the rendered images at all: a small supervised CNN per
                factor (global max pooling) on 14,336 validation images, accuracy on 2,048 others after each of
                8 epochs (VIS_SWELL_POWER=P: another swelling strength; VIS_FACTORS=a,b: some factors)
  time_to_target  optimizer steps and training seconds (evaluation apart) until k = 5 reaches zero-shot object
                accuracy >= 0.80 and mean attribute accuracy >= 0.80 on the validation set, per recipe
                (TTT_RECIPES), median over seeds (TTT_SEEDS); k = 0 on the same recipe beside it

Each benchmark runs in its own process (so peak memory is its own) and prints one JSON line; the
results are also written to benchmarks/results.json. ``--smoke`` runs a benchmark at a few steps
(the test suite does, so the script cannot rot) and writes nothing.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["data", "jpeg", "metrics_1m", "metrics_100k", "callback", "eat", "heads", "dense", "vs_open_clip", "loaders", "startup",
         "aggregate_jobs", "time_to_target", "factor_visibility", "layout_resolution"]
SMOKE = {"vs_open_clip", "loaders", "startup", "aggregate_jobs", "time_to_target", "factor_visibility", "layout_resolution"}  # benchmarks with a smoke mode


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench_data() -> dict:
    out = {}
    for name, extra in (("word_k5", []), ("word_k0", ["--k", "0"]), ("bpe_k5", ["--tokenizer", "ViT-B-32"]),
                        ("word_k5_dense", ["--dense"]), ("word_k5_all_on", ["--all-on"])):
        proc = subprocess.run([sys.executable, "-m", "infogap", "data", "bench", "--n", "40960", *extra],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout)["samples_per_s"]
    return out


def bench_jpeg() -> dict:
    """Local shards of 224 x 224 JPEGs (scikit-image's photographs via the tests' ``photo_image``, q 90, ~15 KiB each) with captions,
    read by WebDataModule in the main process (one loader worker, one thread): decode, RN50 training
    transform (RandomResizedCrop 224, normalise) and tokenisation, in batches of 64."""
    import io
    import tempfile

    import numpy as np
    import torch
    import webdataset as wds

    from infogap.data.webdata import WebDataModule
    from tests.helpers import photo_image

    torch.set_num_threads(1)
    names = ["astronaut", "coffee", "chelsea", "rocket", "cat", "hubble_deep_field", "immunohistochemistry", "colorwheel"]
    jpegs = []
    for name in names:
        buf = io.BytesIO()
        photo_image(name, 224).save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    out = {"jpeg_kib": round(float(np.mean([len(j) for j in jpegs])) / 1024, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(4):
            with wds.TarWriter(f"{tmp}/jpeg-{s:06d}.tar") as sink:
                for i in range(500):
                    sink.write({"__key__": f"{s}_{i:05d}", "jpg": jpegs[i % len(jpegs)],
                                "txt": f"a photograph of {names[i % len(names)]} number {i}, taken outdoors on a sunny day."})
        for split in ("train", "val"):
            dm = WebDataModule(train_shards=f"{tmp}/jpeg-{{000000..000003}}.tar", val_shards=f"{tmp}/jpeg-{{000000..000003}}.tar",
                               model="RN50", batch_size=64, num_workers=0, samples_per_epoch=2000, shuffle_buffer=500)
            loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
            next(iter(loader))  # warm-up: imports, first shard open
            start, n = time.perf_counter(), 0
            for batch in loader:
                n += len(batch["image"])
            out[f"{split}_samples_per_s"] = round(n / (time.perf_counter() - start))
            out[f"{split}_samples"] = n
    return out


def embeddings(n: int, d: int, seed: int = 0):
    """Normalised float32 pairs with a gap, generated chunk by chunk into the final arrays (so the
    process's peak memory before the metrics is the inputs, not generation temporaries)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.empty((n, d), dtype=np.float32)
    y = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 65536):
        cx = rng.standard_normal((min(65536, n - s), d), dtype=np.float32)
        cy = rng.standard_normal(cx.shape, dtype=np.float32) + 0.5 * cx + 0.3
        x[s: s + len(cx)] = cx / np.linalg.norm(cx, axis=1, keepdims=True)
        y[s: s + len(cy)] = cy / np.linalg.norm(cy, axis=1, keepdims=True)
    labels = {"object": rng.integers(0, 10, n), "colour": rng.integers(0, 7, n), "thickness": rng.integers(0, 3, n)}
    return x, y, labels


def bench_metrics_1m() -> dict:
    import torch

    from infogap.train.metrics import compute_metrics

    n, d = 1_000_000, 512
    x, y, labels = embeddings(n, d)
    input_gib = (x.nbytes + y.nbytes) / 2**30
    before = _rss_gib()
    keys = ["l2m", "l2i", "rmg", "alignment", "gap", "moad"]
    start = time.perf_counter()
    out = compute_metrics(torch.from_numpy(x), torch.from_numpy(y), labels, metrics=keys)
    seconds = time.perf_counter() - start
    peak = _rss_gib()
    return {"n": n, "d": d, "metrics": sorted(out), "seconds": round(seconds, 2), "input_gib": round(input_gib, 2),
            "peak_rss_gib": round(peak, 2), "rss_before_gib": round(before, 2), "peak_over_input": round(peak / input_gib, 2),
            "torch_threads": torch.get_num_threads()}


def bench_metrics_100k() -> dict:
    import torch

    from infogap.train.metrics import compute_metrics

    n, d = 100_000, 512
    x, y, labels = embeddings(n, d)
    start = time.perf_counter()
    out = compute_metrics(torch.from_numpy(x), torch.from_numpy(y), labels, logit_scale=100.0)
    seconds = time.perf_counter() - start
    return {"n": n, "d": d, "n_metrics": len(out), "seconds": round(seconds, 1), "peak_rss_gib": round(_rss_gib(), 2)}


def bench_callback() -> dict:
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("with_callback", []), ("end_only", ["--metrics.eval_every_n_steps=0", "--metrics.eval_at_start=false"])):
            run = Path(tmp) / name
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "infogap", "fit", "--config", "configs/synthetic.yaml", "--log_with=none",
                            f"--trainer.default_root_dir={run}", "--trainer.enable_progress_bar=false", *extra],
                           cwd=ROOT, capture_output=True, text=True, check=True)
            out[f"{name}_s"] = round(time.perf_counter() - start, 1)
            out[f"{name}_eval_s"] = json.loads((run / "metrics.json").read_text())["eval_seconds"]
    out["overhead_pct"] = round(100 * (out["with_callback_s"] - out["end_only_s"]) / out["end_only_s"], 1)
    out["eval_share_pct"] = round(100 * out["with_callback_eval_s"] / out["with_callback_s"], 1)
    return out


def bench_eat() -> dict:
    """1,000,000 sampled permutations of an embedding association test with |X| = |Y| = 100 (target: <= 5 s)."""
    import numpy as np

    from infogap.ablations.bias.eat import eat_test

    rng = np.random.default_rng(0)
    x, y, a, b = (rng.standard_normal((n, 512)) for n in (100, 100, 20, 20))
    start = time.perf_counter()
    result = eat_test(x, y, a, b, permutations=1_000_000, seed=0)
    seconds = time.perf_counter() - start
    return {"targets": "100 + 100", "attributes": "20 + 20", "d": 512, "permutations": result.permutations,
            "exact": result.exact, "seconds": round(seconds, 2), "p_value": round(result.p_value, 4)}


def bench_heads() -> dict:
    """Head contributions of 10,000 synthetic images on the ablation's `small-h8` ViT (4 layers x 8 heads), then
    TEXTSPAN (5 texts) for every head with a pool of 3,500 texts (targets: each <= 60 s)."""
    import numpy as np
    import torch

    from infogap.data.synthetic import SyntheticSource
    from infogap.models import build_model
    from infogap.ablations.heads.textspan import textspan
    from infogap.models.decompose import head_contributions
    from infogap.train.embed import BATCH

    source = SyntheticSource(seed=0)
    model = build_model("small-h8", **source.vocab.text_spec()).eval()
    images = torch.cat([source.val_batch(np.arange(i, min(i + 2048, 10_000)))["image"] for i in range(0, 10_000, 2048)])
    start = time.perf_counter()
    heads = torch.cat([head_contributions(model, images[i: i + BATCH])[0] for i in range(0, len(images), BATCH)])
    contrib_s = time.perf_counter() - start
    pool = torch.nn.functional.normalize(torch.randn(3500, heads.shape[-1]), dim=1)
    start = time.perf_counter()
    for layer in range(heads.shape[1]):
        for head in range(heads.shape[2]):
            textspan(heads[:, layer, head], pool, m=5)
    textspan_s = time.perf_counter() - start
    return {"images": len(images), "heads": heads.shape[1] * heads.shape[2], "texts": len(pool), "contributions_s": round(contrib_s, 1),
            "textspan_all_heads_s": round(textspan_s, 1), "torch_threads": torch.get_num_threads()}


def bench_dense() -> dict:
    """Feature caching: patch features (last block) of 4,096 synthetic renders into a memory-mapped cache,
    images/s, for the tiny and small ViTs; probe training: 300 steps of a linear segmentation probe
    (batch 64) on the cached features, training samples/s (the dense ablation's setting)."""
    import tempfile

    import numpy as np
    import torch

    from infogap.data.synthetic import SyntheticSource
    from infogap.models import build_model
    from infogap.ablations.dense.probe import FeatureCache, patch_features, synthetic_targets, train_probe

    source = SyntheticSource(seed=0, dense=True)
    batch = source.train_batch(0, np.arange(4096))
    target = synthetic_targets(batch, "object")
    out = {"images": 4096, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny", "small"):
            model = build_model(name, **source.vocab.text_spec()).eval()
            start = time.perf_counter()
            features = FeatureCache(tmp).get({"model": name}, lambda: patch_features(model, batch["image"]))
            out[f"{name}_cache_images_per_s"] = round(4096 / (time.perf_counter() - start))
            out[f"{name}_features"] = list(features.shape[1:])
            start = time.perf_counter()
            train_probe(features, target, np.arange(4096), "seg", 11, steps=300, batch_size=64, accelerator="cpu")
            out[f"{name}_probe_samples_per_s"] = round(300 * 64 / (time.perf_counter() - start))
    return out


def _export_table(out: Path, n: int) -> Path:
    """``n`` synthetic training samples (seed 0, epoch 0, k = 5) as PNG files and a TSV of filepath, caption:
    the samples ``infogap data export`` writes as shards."""
    import numpy as np
    import torch
    from PIL import Image

    from infogap.data.synthetic import SyntheticSource, caption_strings

    (out / "png").mkdir(parents=True, exist_ok=True)
    source, rows = SyntheticSource(seed=0), ["filepath\tcaption"]
    for start in range(0, n, 512):
        index = np.arange(start, min(start + 512, n))
        batch = source.train_batch(0, index)
        captions = caption_strings(batch["text"].numpy(), source.vocab)
        images = (batch["image"].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i, idx in enumerate(index):
            path = out / "png" / f"{idx:06d}.png"
            Image.fromarray(images[i]).save(path)
            rows.append(f"{path}\t{captions[i]}")
    table = out / "train.tsv"
    table.write_text("\n".join(rows) + "\n")
    return table


def _open_clip_model_dir(out: Path, name: str) -> str:
    """A small infogap config as an open_clip ``local-dir:`` model (open_clip_config.json, no weights)."""
    from infogap.models.clip import SMALL_CONFIGS

    cfg = SMALL_CONFIGS[name]
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": cfg.embed_dim, "vision_cfg": cfg.vision,
                                                                         "text_cfg": cfg.text}, "preprocess_cfg": {}}))
    return f"local-dir:{out}"


def _export_shards(out: Path, n: int) -> list[str]:
    """The same ``n`` samples as ``_export_table``, as four webdataset shards (``infogap data export``)."""
    subprocess.run([sys.executable, "-m", "infogap", "data", "export", "--out", str(out), "--n", str(n), "--shard-size", str(max(1, n // 4))],
                   cwd=ROOT, capture_output=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return [str(p) for p in sorted(out.glob("*.tar"))]


def _open_clip_train_command(model_dir: str, table: Path, batch: int, device: str, *extra: str) -> list[str]:
    """open_clip_train on the caption table: one epoch, one loader worker, fp32, no reporting; the run
    directory is ``{run}``."""
    return [sys.executable, "-m", "open_clip_train.main", "--model", model_dir, "--train-data", str(table), "--dataset-type", "csv",
            "--csv-img-key", "filepath", "--csv-caption-key", "caption", "--batch-size", str(batch), "--workers", "1", "--epochs", "1",
            "--precision", "fp32", "--report-to", "", "--device", device, "--logs", "{run}", "--name", "run", *extra]


def _infogap_fit_command(batch: int, steps: int, *extra: str) -> list[str]:
    """``infogap fit`` of ``tiny-bpe`` on real-data loading (``WebDataModule``, one worker), fp32, no
    logger; the run directory is ``{run}``; ``extra`` names the data."""
    return [sys.executable, "-m", "infogap", "fit", "--model.model=tiny-bpe", f"--trainer.max_steps={steps}", "--trainer.precision=32-true",
            "--log_with=none", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--data.class_path=infogap.data.webdata.WebDataModule", "--data.model=tiny-bpe", f"--data.batch_size={batch}",
            "--data.num_workers=1", "--trainer.default_root_dir={run}", *extra]


def _open_clip_steady(log: str, batch: int, warm: int) -> float:
    """Steady-state samples/s from open_clip_train's log: its lines give the samples seen so far and the
    mean batch time of the window since the previous line; the windows that start after step ``warm``."""
    import re

    seen, prev, samples, seconds = [], 0, 0, 0.0
    for done, mean_t in re.findall(r"Train Epoch: \d+ \[\s*(\d+)/\d+ .*?Batch \(t\): ([\d.]+)", log):
        steps = (int(done) - prev) // batch
        if prev // batch >= warm:
            samples, seconds = samples + steps * batch, seconds + steps * float(mean_t)
        prev = int(done)
        seen.append(done)
    if not seconds:
        raise RuntimeError(f"no open_clip_train log line after step {warm}: {seen}")
    return samples / seconds


def bench_vs_open_clip(smoke: bool = False) -> dict:
    """The issue's comparison, repeatable: the ``tiny-bpe`` model (given to open_clip_train as a
    ``local-dir:`` config), the same synthetic samples as PNG files listed in a TSV, batch 128, one
    loader worker, fp32, one epoch of 100 steps, AdamW (lr 0.002, wd 0.1, betas 0.9/0.98, eps 1e-6,
    50 warm-up steps), each tool's default checkpointing. Three runs each, alternating; per run the
    whole process (wall clock) and the steady state (samples/s after the first fifth of the steps).
    infogap also reads the same samples from webdataset shards (``infogap data export``), a row of its
    own: open_clip_train's webdataset path fails with webdataset 1.0.2 (KeyError 'fname')."""
    import statistics
    import tempfile

    import torch

    from benchmarks.clock import steady_rate

    device = "cuda" if torch.cuda.is_available() else "cpu"  # infogap fit picks the same (accelerator auto)
    n, batch, pairs = (96, 16, 1) if smoke else (12_800, 128, 3)
    steps, warm = n // batch, max(1, n // batch // 5)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    runs: dict[str, list[dict]] = {"open_clip_train": [], "infogap_table": [], "infogap_shards": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = _export_table(tmp / "data", n)
        model_dir = _open_clip_model_dir(tmp / "model", "tiny-bpe")
        shards = _export_shards(tmp / "shards", n)
        train = ["--model.lr=0.002", "--model.weight_decay=0.1", "--model.warmup_steps=50", "--trainer.callbacks+=benchmarks.clock.StepClock"]
        commands = {
            "open_clip_train": _open_clip_train_command(model_dir, table, batch, device, "--lr", "0.002", "--wd", "0.1", "--beta1", "0.9",
                                                        "--beta2", "0.98", "--eps", "1e-6", "--warmup", "50", "--log-every-n-steps", str(warm),
                                                        "--seed", "0"),
            "infogap_table": _infogap_fit_command(batch, steps, *train, f"--data.train_table={table}"),
            "infogap_shards": _infogap_fit_command(batch, steps, *train, f"--data.train_shards={'::'.join(shards)}",
                                                   f"--data.samples_per_epoch={n}"),
        }
        for pair in range(pairs):
            order = list(commands) if pair % 2 == 0 else list(reversed(commands))
            for tool in order:
                run = tmp / f"{tool}-{pair}"
                start = time.perf_counter()
                proc = subprocess.run([a.replace("{run}", str(run)) for a in commands[tool]], cwd=tmp, capture_output=True,
                                      text=True, env=env)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    raise RuntimeError(f"{tool} failed:\n{proc.stderr[-3000:]}")
                if tool == "open_clip_train":
                    steady = _open_clip_steady(proc.stdout + proc.stderr, batch, warm)
                else:
                    times = json.loads((run / "step_times.json").read_text())
                    if len(times) != steps:
                        raise RuntimeError(f"{tool}: {len(times)} steps timed, expected {steps}")
                    steady = steady_rate(times, batch, warm)
                runs[tool].append({"wall_s": round(wall, 2), "steady_samples_per_s": round(steady, 1)})
    out: dict = {"device": device, "samples": n, "batch_size": batch, "steps": steps, "steady_after_step": warm, "runs": runs}
    for tool, rs in runs.items():
        out[tool] = {"wall_s": round(statistics.median(r["wall_s"] for r in rs), 2),
                     "steady_samples_per_s": round(statistics.median(r["steady_samples_per_s"] for r in rs), 1)}
    for tool in ("infogap_table", "infogap_shards"):
        pair_ratios = [(i["steady_samples_per_s"] / o["steady_samples_per_s"], i["wall_s"] / o["wall_s"])
                       for i, o in zip(runs[tool], runs["open_clip_train"])]
        out[f"{tool}_over_open_clip"] = {"steady_ratio": round(statistics.median(r[0] for r in pair_ratios), 3),
                                         "wall_ratio": round(statistics.median(r[1] for r in pair_ratios), 3),  # time: > 1 is slower
                                         "speed_ratio": round(statistics.median(1 / r[1] for r in pair_ratios), 3)}  # > 1 is faster
    return out


def ratio_table(result: dict) -> str:
    """The vs_open_clip result as the markdown table of BENCHMARKS.md (medians; ratios are the
    medians of per-pair ratios, speed over open_clip_train's: > 1 is faster)."""
    lines = ["| | whole process (median) | steady state (median) | speed ratio to open_clip_train: steady / whole process |",
             "|---|---|---|---|"]
    names = {"open_clip_train": "open_clip_train, CSV of PNGs", "infogap_table": "infogap, the same CSV (`data.train_table`)",
             "infogap_shards": "infogap, the same samples as webdataset shards"}
    for tool, label in names.items():
        r = result[tool]
        ratio = "1 / 1" if tool == "open_clip_train" else "{steady_ratio:.3f} / {speed_ratio:.3f}".format(**result[f"{tool}_over_open_clip"])
        lines.append(f"| {label} | {r['wall_s']:.2f} s | {r['steady_samples_per_s']:.0f} samples/s | {ratio} |")
    return "\n".join(lines)


def _timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def bench_loaders(smoke: bool = False) -> dict:
    """One loader worker's work (main process, one thread) on the same synthetic samples (``tiny-bpe``
    transforms, batch 128) as a caption table of PNG files and as webdataset shards: first each stage
    alone (µs per sample), then each path whole through ``WebDataModule.train_dataloader`` (samples/s).
    What a path's whole costs beyond its stages is the pipeline (shuffle buffer, sample grouping,
    generators). webdataset's own tar reader is timed beside infogap's."""
    import tempfile

    import torch
    import webdataset as wds

    from infogap.data import tarstream
    from infogap.data.webdata import WebDataModule, decode_image, read_pairs

    torch.set_num_threads(1)
    n, batch = (512, 64) if smoke else (6400, 128)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        table = _export_table(tmp / "data", n)
        urls = _export_shards(tmp / "shards", n)
        rows = read_pairs(table)
        dm = WebDataModule(train_table=str(table), model="tiny-bpe", batch_size=batch, num_workers=0, seed=0)
        per = {}  # stage -> µs per sample
        t, raw = _timed(lambda: [Path(p).read_bytes() for p, _ in rows])
        per["read: PNG files"] = t
        t, samples = _timed(lambda: list(tarstream.tar_samples(iter([{"url": u} for u in urls]))))
        per["read: shards, infogap's tar reader"] = t
        t, _ = _timed(lambda: list(wds.tarfile_to_samples()(iter([{"url": u} for u in urls]))))
        per["read: shards, webdataset's tarfile_to_samples"] = t
        t, images = _timed(lambda: [decode_image(b) for b in raw])
        per["decode (PIL, RGB)"] = t
        t, tensors = _timed(lambda: [dm.preprocess_train(im) for im in images])
        per["transform (open_clip train)"] = t
        captions = [c for _, c in rows]
        t, _ = _timed(lambda: [dm.tokenizer(captions[i:i + batch]) for i in range(0, n, batch)])
        per["tokenise (open_clip BPE, per batch)"] = t
        t, _ = _timed(lambda: [torch.stack(tensors[i:i + batch]) for i in range(0, n, batch)])
        per["collate (stack)"] = t
        assert len(samples) == n, f"{len(samples)} samples read from the shards, expected {n}"
        out: dict = {"samples": n, "batch_size": batch, "stage_us_per_sample": {k: round(v / n * 1e6, 1) for k, v in per.items()}}
        paths = {"table": dm, "shards": WebDataModule(train_shards="::".join(urls), model="tiny-bpe", batch_size=batch, num_workers=0,
                                                       seed=0, samples_per_epoch=n)}
        for name, module in paths.items():
            it = iter(module.train_dataloader())
            first, _ = _timed(next, it)
            t, count = _timed(lambda: sum(len(b["image"]) for b in it))
            shared = sum(v for k, v in out["stage_us_per_sample"].items() if not k.startswith("read"))
            read = out["stage_us_per_sample"]["read: PNG files" if name == "table" else "read: shards, infogap's tar reader"]
            out[name] = {"first_batch_s": round(first, 3), "samples_per_s": round(count / t), "us_per_sample": round(t / count * 1e6, 1),
                         "pipeline_us_per_sample": round(t / count * 1e6 - shared - read, 1)}
    return out


def bench_startup(smoke: bool = False) -> dict:
    """The whole-process floor (median of 3, smoke 1): each tool's imports, ``infogap --help``, and a
    run of one step (batch 128, the ``tiny-bpe`` model, the caption table of vs_open_clip) by each tool,
    so start-up and exit with almost no training."""
    import statistics
    import tempfile

    reps = 1 if smoke else 3
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        batch = 16 if smoke else 128
        table = _export_table(tmp / "data", batch)
        model_dir = _open_clip_model_dir(tmp / "model", "tiny-bpe")
        py = sys.executable
        commands = {
            "import torch": [py, "-c", "import torch"],
            "import torch, open_clip": [py, "-c", "import torch, open_clip"],
            "import open_clip_train.main (its imports)": [py, "-c", "import open_clip_train.main"],
            "import pytorch_lightning": [py, "-c", "import pytorch_lightning"],
            "import pytorch_lightning, open_clip, jsonargparse (infogap's floor)": [py, "-c", "import pytorch_lightning, open_clip, jsonargparse"],
            "infogap --help": [py, "-m", "infogap", "--help"],
            "open_clip_train, one step": _open_clip_train_command(model_dir, table, batch, "cpu"),
            "infogap fit, one step": _infogap_fit_command(batch, 1, f"--data.train_table={table}"),
        }
        out = {}
        for name, command in commands.items():
            times = []
            for rep in range(reps):
                run = tmp / f"run-{len(out)}-{rep}"
                t, proc = _timed(lambda: subprocess.run([a.replace("{run}", str(run)) for a in command], cwd=tmp, capture_output=True,
                                                        text=True, env=env))
                if proc.returncode != 0:
                    raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
                times.append(t)
            out[name] = {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times]}
    return out


def bench_aggregate_jobs(smoke: bool = False) -> dict:
    """The per-run analyses of an aggregation (``parallel_rows``) in one process against
    ``--analysis-jobs 2`` worker processes: ``infogap ablate learn_forget --aggregate-only`` over 4 finished tiny runs (smoke:
    2 runs, toy settings), one fine-tuning seed, every method, the analyses' caches cleared before each
    timing."""
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    ks = "0,5" if smoke else "0,1,4,5"
    steps = ["trainer.max_steps=4", "data.batch_size=16", "data.val_size=64", "metrics.num_samples=64", "trainer.limit_val_batches=0"] \
        if smoke else ["trainer.max_steps=300"]
    settings = ["learn_forget.finetune_seeds=[0]"] + (["learn_forget.steps=4", "learn_forget.n_train=64", "learn_forget.n_eval=64"] if smoke else [])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        common = [sys.executable, "-m", "infogap", "ablate", "learn_forget", "--seeds", "0", "--only", f"k={ks}", "--out", tmp, "log_with=none",
                  *steps]
        base = [*common, *settings]
        cheap = ["learn_forget.methods=[linear]", "learn_forget.finetune_seeds=[0]", "learn_forget.steps=1", "learn_forget.n_train=64",
                 "learn_forget.n_eval=64"]  # training the runs aggregates too: a cheap analysis there (the timings clear it)
        train = subprocess.run([*common, *cheap, "--jobs", "2"], cwd=ROOT, capture_output=True, text=True, env=env)
        if train.returncode not in (0, 1):  # 1: a claim does not hold (at toy size)
            raise RuntimeError(f"training failed:\n{train.stderr[-3000:]}")
        for jobs in (1, 2):
            for cache in Path(tmp).rglob("learn_forget.json"):
                cache.unlink()
            t, proc = _timed(lambda: subprocess.run([*base, "--aggregate-only", "--analysis-jobs", str(jobs)], cwd=ROOT, capture_output=True,
                                                    text=True, env=env))
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"aggregation with --analysis-jobs {jobs} failed:\n{proc.stderr[-3000:]}")
            out[f"jobs_{jobs}_s"] = round(t, 1)
    out.update(runs=len(ks.split(",")), speedup=round(out["jobs_1_s"] / out["jobs_2_s"], 2), cpus=os.cpu_count())
    return out


# time_to_target: each recipe is a list of infogap fit arguments over configs/synthetic.yaml, with the
# schedule's length (trainer.max_steps); ``TTT_RECIPES=name,name`` picks some, ``TTT_SEEDS=0,1,2`` the seeds
# (``TTT_SEEDS="0,1,2;3,4,5"``: seeds tuned on, then held-out seeds, summarised apart; k = 0 runs the first set)
LEGACY = ["--config", "configs/recipes/legacy-600.yaml"]
TTT_RECIPES = {
    "legacy-9600": [*LEGACY, "--trainer.max_steps=9600"],  # the AdamW recipe, run long enough to reach the target
    "legacy-600": LEGACY,  # the yardstick: the AdamW recipe's 600-step run (does not reach the target)
    # one change at a time against the AdamW recipe (BENCHMARKS.md, time to target); those that did not help:
    "legacy-2400": [*LEGACY, "--trainer.max_steps=2400"],
    "lr6e-3-1200": [*LEGACY, "--trainer.max_steps=1200", "--model.lr=0.006"],
    "batch512-lr4e-3-600": [*LEGACY, "--data.batch_size=512", "--model.lr=0.004"],
    "small-1200": [*LEGACY, "--trainer.max_steps=1200", "--model.model=small"],
    "patch2-600": [*LEGACY, "--model.model=tiny-p2"],
    # and the path to the default recipe, each row one change on top of the row before:
    "muon-600": [*LEGACY, "--model.optimizer=muon"],  # Muon for the block matrices at AdamW's lr 2e-3 (RMS-matched)
    "muon0.02-600": [*LEGACY, "--model.optimizer=muon", "--model.muon_lr=0.02"],  # Muon at lr 0.02, Keller Jordan's scaling
    "muon0.02-adamw5e-4-600": [*LEGACY, "--model.optimizer=muon", "--model.muon_lr=0.02", "--model.lr=0.0005"],  # the AdamW part at 5e-4
    "default": [],  # + warm-up 20 steps (not 50): configs/synthetic.yaml as it stands
    "default-small-h8": ["--model.model=small-h8"],  # the default recipe on the head study's model
}
TTT_TARGET = 0.80


def _time_to_target_run(run_dir: Path, args: list[str], k: int, seed: int, every: int, smoke: bool) -> list[dict]:
    """One ``infogap fit`` alone on the machine with ``benchmarks.clock.TargetClock``: its evaluation rows
    (those of an earlier finished run in ``run_dir``, when ``TTT_OUT`` keeps the runs)."""
    if (run_dir / "time_to_target.json").is_file() and (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "time_to_target.json").read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished attempt: timed again from the start
    clock = {"class_path": "benchmarks.clock.TargetClock",
             "init_args": {"every": every, "stop_at_target": k == 5, "target": TTT_TARGET, **({"num_samples": 64, "prompts_per_value": 2} if smoke else {})}}
    command = [sys.executable, "-m", "infogap", "fit", "--config", "configs/synthetic.yaml", *args, f"--trainer.default_root_dir={run_dir}",
               f"--data.k={k}", f"--seed_everything={seed}", "--log_with=none", "--trainer.enable_progress_bar=false",
               "--trainer.limit_val_batches=0", "--metrics.eval_every_n_steps=0", "--metrics.eval_at_start=false",
               "--trainer.callbacks+=" + json.dumps(clock)]
    if smoke:
        command += ["--trainer.max_steps=4", "--data.batch_size=16", "--data.val_size=64", "--metrics.num_samples=64", "--metrics.prompts_per_value=2"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"})
    if proc.returncode != 0:
        raise RuntimeError(f"time_to_target: {' '.join(command[3:])} failed:\n{proc.stderr[-3000:]}")
    return json.loads((run_dir / "time_to_target.json").read_text())


def time_to_target_summary(rows_by_seed: dict[int, list[dict]], target: float) -> dict:
    """Per seed, the first evaluation at the target (step, training seconds, each factor's accuracy), or
    the last one with ``reached: false``; and the medians over every seed, a seed that did not reach the
    target counting as later than any that did (None when the median seed did not reach it: a median of
    the others alone would flatter the recipe)."""
    import math
    import statistics

    from benchmarks.clock import first_at_target

    per_seed = {}
    for seed, rows in rows_by_seed.items():
        hit = first_at_target(rows, target)
        row = hit or rows[-1]
        per_seed[seed] = {"reached": hit is not None, "step": row["step"], "train_seconds": row["train_seconds"],
                          "eval_seconds": round(sum(r["eval_seconds"] for r in rows if r["step"] <= row["step"]), 3), "acc": row["acc"]}

    def median(key: str):
        value = statistics.median(v[key] if v["reached"] else math.inf for v in per_seed.values())
        return None if math.isinf(value) else value

    seconds = median("train_seconds")
    return {"seeds": per_seed, "reached": f"{sum(v['reached'] for v in per_seed.values())}/{len(per_seed)}",
            "median_steps": median("step"), "median_train_seconds": None if seconds is None else round(seconds, 2)}


def bench_time_to_target(smoke: bool = False) -> dict:
    """Every recipe of ``TTT_RECIPES`` (or those ``TTT_RECIPES`` names) at k = 5 (stopped at the target)
    and k = 0 (run whole: the same recipe, as the studies compare them), each seed alone on the machine,
    evaluated every ``TTT_EVERY`` (100) steps; a figure of accuracy against training seconds per recipe
    (``benchmarks/time_to_target.png``)."""
    import tempfile

    names = [n for n in os.environ.get("TTT_RECIPES", ",".join(TTT_RECIPES)).split(",") if n]
    seed_sets = [[int(s) for s in part.split(",")] for part in os.environ.get("TTT_SEEDS", "0,1,2").split(";")]
    ks = [int(k) for k in os.environ.get("TTT_K", "5,0").split(",")]
    every = int(os.environ.get("TTT_EVERY", "2" if smoke else "100"))
    if smoke:
        names, seed_sets, ks = names[:1], [seed_sets[0][:1]], ks[:1]
    result = {"target": TTT_TARGET, "every": every, "recipes": {}}
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.environ.get("TTT_OUT") or tmp  # TTT_OUT=DIR keeps the runs (and reuses the finished ones: a long benchmark resumes)
        for name in names:
            entry = {"args": TTT_RECIPES[name]}
            for k in ks:
                for i, seeds in enumerate(seed_sets if k == 5 else seed_sets[:1]):
                    rows = {seed: _time_to_target_run(Path(tmp) / f"{name}-k{k}-s{seed}", TTT_RECIPES[name], k, seed, every, smoke) for seed in seeds}
                    entry[f"k{k}" if i == 0 else f"k{k} seeds {','.join(map(str, seeds))}"] = time_to_target_summary(rows, TTT_TARGET)
                    curves.setdefault((name, k), {}).update(rows)
            result["recipes"][name] = entry
    if not smoke:
        figure = ROOT / "benchmarks" / f"time_to_target_{'+'.join(names)}.png"  # one per set of recipes: a later run never overwrites another's
        result["figure"] = str(_time_to_target_figure(curves, figure).relative_to(ROOT))
    return result


def _time_to_target_figure(curves: dict, path: Path) -> Path:
    """Object and mean attribute accuracy against training seconds, one panel per k, a colour per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.clock import ATTRIBUTES

    ks = sorted({k for _, k in curves}, reverse=True)
    fig, axes = plt.subplots(1, len(ks), figsize=(5.2 * len(ks), 3.6), squeeze=False)
    names = sorted({n for n, _ in curves})
    for ax, k in zip(axes[0], ks):
        for i, name in enumerate(names):
            for seed, rows in curves.get((name, k), {}).items():
                t = [r["train_seconds"] for r in rows]
                ax.plot(t, [r["acc"]["object"] for r in rows], color=f"C{i}", lw=1, label=f"{name} object" if seed == min(curves[(name, k)]) else None)
                ax.plot(t, [sum(r["acc"][a] for a in ATTRIBUTES) / len(ATTRIBUTES) for r in rows], color=f"C{i}", lw=1, ls="--",
                        label=f"{name} attributes" if seed == min(curves[(name, k)]) else None)
        ax.axhline(TTT_TARGET, color="k", lw=0.8, ls=":")
        ax.set_xlabel("training seconds (evaluation apart)")
        ax.set_ylabel("zero-shot accuracy (validation)")
        ax.set_title(f"k = {k}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bench_factor_visibility(smoke: bool = False) -> dict:
    """Per factor, the test accuracy of a small CNN (3 convolutions, 32-64 channels, global max pooling)
    trained with labels on the first 14,336 validation images of the default synthetic data (k = 5, seed 0)
    for 8 epochs, tested on the next 2,048 after every epoch: whether the renderer puts the factor into the
    28-px image where a network can see it. A factor no supervised network reads is out of reach of any
    contrastive recipe, whatever its captions say. The pooling is a maximum because swelling and fracture
    are local marks: an average over the 14 x 14 map dilutes one blob into the glyph's other strokes (the
    first version averaged, and read swelling at 0.544 after 4 epochs; the maximum reads 0.850 after 8).

    ``VIS_SWELL_POWER=P`` renders with another swelling strength (``data.render.SWELL_POWER``; Morpho-MNIST's
    default strength 3 is P = 2), ``VIS_FACTORS=a,b`` picks factors."""
    import numpy as np
    import torch

    from infogap.data import render
    from infogap.data.factors import FACTOR_NAMES
    from infogap.data.synthetic import SyntheticDataModule

    if os.environ.get("VIS_SWELL_POWER"):
        render.SWELL_POWER = float(os.environ["VIS_SWELL_POWER"])
    factors = [f for f in os.environ.get("VIS_FACTORS", ",".join(FACTOR_NAMES)).split(",") if f]
    n_train, n_test, epochs = (256, 64, 1) if smoke else (14_336, 2_048, 8)
    dm = SyntheticDataModule(k=5, seed=0, batch_size=512, val_size=n_train + n_test)
    batch = dm.eval_samples(np.arange(n_train + n_test))
    x = batch["image"].float()
    out = {"n_train": n_train, "n_test": n_test, "epochs": epochs, "swell_power": render.SWELL_POWER, "factors": {}}
    for factor in (factors[:2] if smoke else factors):
        y = batch["labels"][factor].long()
        classes = int(y.max()) + 1
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.MaxPool2d(2), torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, classes))
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        by_epoch = []
        for _ in range(epochs):
            order = torch.randperm(n_train)
            for i in range(0, n_train, 128):
                idx = order[i: i + 128]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
            with torch.no_grad():
                by_epoch.append(round((net(x[n_train:]).argmax(1) == y[n_train:]).float().mean().item(), 3))
        majority = torch.bincount(y[n_train:], minlength=classes).max().item() / n_test
        out["factors"][factor] = {"test_acc": by_epoch[-1], "by_epoch": by_epoch, "majority_class": round(majority, 3), "classes": classes}
    return out


def bench_layout_resolution(smoke: bool = False) -> dict:
    """What the layout world's resolution costs: seconds per training step (forward, backward, AdamW) of
    ``tiny``'s towers on one core, batch 128, at 28 px with 4-px patches (7 x 7 tokens, today's), 64 px
    with 8-px patches (8 x 8, ``tiny-64p8``) and 56 px with 4-px patches (14 x 14), on rendered batches
    of the world each size belongs to (the median of ``steps`` steps after two of warm-up)."""
    import numpy as np
    import torch

    from infogap.data.synthetic import SyntheticSource
    from infogap.models import build_model
    from infogap.models.clip import SMALL_CONFIGS, SmallClipConfig

    torch.set_num_threads(1)
    steps, batch = (2, 8) if smoke else (8, 128)
    tiny = SMALL_CONFIGS["tiny"]
    SMALL_CONFIGS["tiny-56p4"] = SmallClipConfig(tiny.embed_dim, dict(tiny.vision, image_size=56, patch_size=4), dict(tiny.text))  # measured only
    out = {"threads": 1, "batch": batch, "steps": steps, "seconds_per_step": {}}
    try:
        for name, layout in (("tiny", False), ("tiny-64p8", True), ("tiny-56p4", True)):
            source = SyntheticSource(seed=0, layout=layout)
            data = source.train_batch(0, np.arange(batch))
            size = SMALL_CONFIGS[name].vision["image_size"]
            image = torch.nn.functional.interpolate(data["image"], size=(size, size), mode="bilinear") if size != data["image"].shape[-1] else data["image"]
            model = build_model(name, **source.vocab.text_spec())
            opt = torch.optim.AdamW(model.parameters())
            times = []
            for i in range(steps + 2):
                t = time.perf_counter()
                o = model(image, data["text"])
                loss = (o["image_features"] @ o["text_features"].T * o["logit_scale"]).log_softmax(1).diagonal().mean().neg()
                loss.backward()
                opt.step()
                opt.zero_grad()
                times.append(time.perf_counter() - t)
            out["seconds_per_step"][f"{name} ({size} px, {size // SMALL_CONFIGS[name].vision['patch_size']}^2 tokens)"] = round(float(np.median(times[2:])), 4)
    finally:
        del SMALL_CONFIGS["tiny-56p4"]
    return out


def main(names: list[str]) -> None:
    smoke = "--smoke" in names
    names = [n for n in names if n != "--smoke"]
    if len(names) == 1 and names[0] in ORDER and os.environ.get("INFOGAP_BENCH_CHILD"):
        fn = globals()[f"bench_{names[0]}"]
        print(json.dumps(fn(smoke=True) if smoke else fn()))
        return
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    for name in names or ORDER:
        if name not in ORDER:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(ORDER)}")
        if smoke and name not in SMOKE:
            raise SystemExit(f"benchmark {name!r} has no smoke mode (those with one: {', '.join(sorted(SMOKE))})")
        proc = subprocess.run([sys.executable, __file__, name, *(["--smoke"] if smoke else [])], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "INFOGAP_BENCH_CHILD": "1", "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"})
        if proc.returncode != 0:
            raise SystemExit(f"benchmark {name} failed:\n{proc.stderr[-3000:]}")
        results[name] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "measured": time.strftime("%Y-%m-%d %H:%M %Z")}
        print(name, json.dumps(results[name]), flush=True)
        if name == "vs_open_clip":
            print(ratio_table(results[name]), flush=True)
    if smoke:
        return
    path = ROOT / "benchmarks" / "results.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if "time_to_target" in results and "time_to_target" in previous:  # recipes measured apart are kept side by side, each with its date
        stamped = {n: {**r, "measured": results["time_to_target"]["measured"]} for n, r in results["time_to_target"]["recipes"].items()}
        results["time_to_target"]["recipes"] = {**previous["time_to_target"].get("recipes", {}), **stamped}
    previous.update(results)
    path.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
