"""Helpers shared by the tests (importable as ``tests.helpers`` from the repository root)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``infogap ARGS`` in a subprocess (W&B offline) and return the completed process.
    ``env`` entries set to None are removed from the environment."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT), **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "infogap", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


# key=value overrides that make every run of an ablation a few-second one (4 steps, small batches)
TINY_OVERRIDES = ["log_with=none", "trainer.max_steps=4", "data.batch_size=16", "data.val_size=64", "metrics.num_samples=64",
                  "metrics.prompts_per_value=2", "trainer.limit_val_batches=0", "metrics.eval_every_n_steps=2"]


def tiny_fit_args(run_dir: Path, steps: int, *extra: str) -> list[str]:
    """A few-second synthetic run through the user's config path."""
    return [
        "fit", "--config", str(ROOT / "configs/synthetic.yaml"),
        f"--trainer.default_root_dir={run_dir}", f"--trainer.max_steps={steps}",
        "--trainer.enable_progress_bar=false", "--trainer.val_check_interval=1000000", "--trainer.limit_val_batches=0",
        "--data.batch_size=16", "--data.val_size=64", "--metrics.num_samples=64", "--metrics.prompts_per_value=2",
        *extra,
    ]


class KillAtStep(pl.Callback):
    """Simulates a killed job: the process exits abruptly once ``step`` optimizer steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os._exit(0)


class ParkAtStep(pl.Callback):
    """Parks the run at optimizer step ``step`` until the SLURM requeue signal has been handled (Lightning
    has written ``hpc_ckpt_*.ckpt``), so a test can signal the job mid-run without racing it: the test
    waits for the ``parked-at-step-N`` file, then signals. A run that starts with an HPC checkpoint (the
    requeued one) passes. The deadline is only a hang guard."""

    def __init__(self, step: int, timeout: float = 300.0):
        self.step, self.timeout = step, timeout

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        root = Path(trainer.default_root_dir)
        if trainer.global_step != self.step or list(root.glob("hpc_ckpt_*.ckpt")):
            return
        (root / f"parked-at-step-{self.step}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not list(root.glob("hpc_ckpt_*.ckpt")):  # SIGUSR1's handler runs in this thread, during the sleep
            if time.monotonic() > deadline:
                raise TimeoutError(f"parked at step {self.step} for {self.timeout:.0f} s and no requeue signal came")
            time.sleep(0.05)


class SignalAtStep(pl.Callback):
    """Sends its own process ``signal`` (SIGTERM, SIGINT) once ``step`` optimizer steps are done, as SLURM
    or a user would at that moment (deterministic: no timer)."""

    def __init__(self, step: int, signal: str = "SIGTERM"):
        self.step, self.signal = step, signal

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import signal

        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))


class ParkUntilSignalled(pl.Callback):
    """Parks a run at optimizer step ``step`` (writing ``parked-at-step-N`` in its directory) until it is
    sent SIGTERM, so a test can stop the process that launched it at a known moment. A run resumed past
    ``step`` passes. The deadline is only a hang guard."""

    def __init__(self, step: int, timeout: float = 300.0):
        self.step, self.timeout = step, timeout

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        (Path(trainer.default_root_dir) / f"parked-at-step-{self.step}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm:  # the SIGTERM handler runs in this thread, during the sleep
            if time.monotonic() > deadline:
                raise TimeoutError(f"parked at step {self.step} for {self.timeout:.0f} s and no SIGTERM came")
            time.sleep(0.05)


def free_port() -> str:
    """A TCP port nothing listens on now (for a test's own rendezvous, instead of a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def wait_for(condition, what: str, timeout: float = 300.0, interval: float = 0.2, detail=lambda: "") -> None:
    """Until ``condition()`` holds; the deadline is only a hang guard (the state is reached by what the
    test does, never by waiting long enough)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"hang guard: {what} not within {timeout:.0f} s. {detail()}"
        time.sleep(interval)


def wandb_records(run_dir: Path) -> list:
    """The ``wandb_internal_pb2.Record`` messages of the offline W&B run under ``run_dir``, read back
    from its ``run-*.wandb`` log: a ':W&B' header (7 bytes) then LevelDB-log records (crc32, length,
    type; 32 KiB blocks)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {run_dir}"
    raw = files[-1].read_bytes()
    assert raw[:4] == b":W&B", "not a W&B transaction log"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # block trailer too short for a header
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos: pos + 7])
        data = raw[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):
            pending = data
        elif kind in (3, 4):
            pending += data
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def read_wandb_history(run_dir: Path) -> list[dict]:
    """History rows (one dict per logged step) of the offline W&B run under ``run_dir``."""
    import json

    return [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "history"]


def read_wandb_config(run_dir: Path) -> dict:
    """The run config of the offline W&B run under ``run_dir`` (every update, later ones winning)."""
    import json

    config: dict = {}
    for r in wandb_records(run_dir):
        if r.WhichOneof("record_type") == "config":
            config.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.config.update})
    return config


PHOTOS = {  # scikit-image's bundled sample photographs (no download) and a caption for each
    "astronaut": "an astronaut in a spacesuit in front of a flag", "coffee": "a cup of coffee on a saucer",
    "chelsea": "a tabby cat looking to the side", "rocket": "a rocket on its launch pad",
    "cat": "a tabby cat", "hubble_deep_field": "galaxies in deep space", "colorwheel": "a colour wheel",
    "immunohistochemistry": "stained tissue under a microscope", "camera": "a man with a camera on a tripod",
    "coins": "old coins on a table", "moon": "the surface of the moon", "page": "a page of printed text",
}


def photo_image(name: str, size: int = 96):
    """A scikit-image sample photograph as an RGB PIL image of ``size`` x ``size``."""
    import numpy as np
    import skimage.data
    from PIL import Image

    a = getattr(skimage.data, name)()
    a = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
    return Image.fromarray(a.astype(np.uint8)).resize((size, size))


def write_photo_shards(directory: Path, n_shards: int = 2, per_shard: int = 6, corrupt: bool = True, prefix: str = "photos",
                       size: int = 96) -> list[Path]:
    """webdataset shards of scikit-image photographs as JPEG with a ``txt`` caption and a ``json``
    record (``label``); with ``corrupt``, the first shard also holds an undecodable image and a sample
    without a caption."""
    import io
    import json

    import webdataset as wds

    names = list(PHOTOS)
    paths = []
    for s in range(n_shards):
        path = Path(directory) / f"{prefix}-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i in range(per_shard):
                name = names[(s * per_shard + i) % len(names)]
                buf = io.BytesIO()
                photo_image(name, size).save(buf, format="JPEG", quality=90)
                sink.write({"__key__": f"{prefix}{s}_{i:03d}_{name}", "jpg": buf.getvalue(), "txt": PHOTOS[name] + ".",
                            "json": json.dumps({"label": name}).encode()})
            if corrupt and s == 0:
                sink.write({"__key__": f"{prefix}{s}_corrupt", "jpg": b"\xff\xd8 truncated jpeg", "txt": "broken"})
                buf = io.BytesIO()
                photo_image("coins", size).save(buf, format="JPEG")
                sink.write({"__key__": f"{prefix}{s}_nocaption", "jpg": buf.getvalue()})
        paths.append(path)
    return paths


def make_tiny_captioner(path: Path) -> Path:
    """A randomly initialised transformers image-to-text model (ViT encoder, GPT-2 decoder, a word-level
    tokenizer, a ViT image processor) built from configs and saved with ``save_pretrained``: no download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GPT2Config,
        PreTrainedTokenizerFast,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    words = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "a", "photo", "of", "cat", "red", "small", "on", "the", "table", "with", "blue"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]", unk_token="[UNK]")
    enc = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    dec = GPT2Config(vocab_size=len(words), n_positions=32, n_embd=32, n_layer=1, n_head=2, add_cross_attention=True,
                     is_decoder=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec))
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 2
    gen = model.generation_config
    gen.decoder_start_token_id, gen.pad_token_id, gen.eos_token_id = 1, 0, 2
    gen.min_new_tokens, gen.suppress_tokens = 3, [0, 1, 3]  # a random model would emit only specials
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return Path(path)


# --- the smoke plan's studies (configs/reproduce/smoke.yaml: each at toy size, one seed) ----------
# name -> (number of runs the plan launches for it, axes of summary.csv, claims the plan's restriction
#          leaves without the arms or units they need: "not tested", exit 1)
TINY_RUNS = {
    "imbalance": (2, ["k"], 0),
    "presence": (2, ["always_present"], 2),
    "gap_dims": (1, ["k", "n"], 1),
    "posthoc": (1, ["k", "shift"], 2),
    "temperature": (3, ["temperature_mode"], 0),
    "init_gap": (3, ["init"], 0),
    "bias": (2, ["model_size", "cooccurrence_p", "test", "modality"], 6),  # no equivalence or correlation test from one seed, two runs
    "heads": (2, ["k"], 12),  # 4-step models have no CCS = 5 head: the 12 pruning claims are not tested
    "learn_forget": (2, ["k", "method", "task"], 30),  # 2 models: no clustered fit (14 fits x 2 claims; the 2 linear forgetting fits have no spread)
    "dense": (2, ["k", "encoder", "task", "fraction", "mode"], 0),
}


def smoke_settings(name: str) -> list[str]:
    """The study settings (``NAME.key=value``) that shrink a study's analyses in the smoke plan."""
    import yaml

    plan = yaml.safe_load((ROOT / "configs" / "reproduce" / "smoke.yaml").read_text())
    return [o for s in plan["studies"] if s["name"] == name for o in s.get("overrides", [])]


class Proc:
    """What a subprocess would return, from an in-process ``infogap ablate`` (the runs themselves are
    still separate processes; this saves only the runner's own start-up)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def ablate(capsys, *args) -> Proc:
    from infogap.cli import main as infogap

    capsys.readouterr()
    code = infogap(["ablate", *args])
    captured = capsys.readouterr()
    return Proc(code, captured.out, captured.err)


def read_csv(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


