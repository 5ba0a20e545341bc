"""An offline W&B run read back from its ``run-*.wandb`` log: records, history, config."""
from __future__ import annotations

from pathlib import Path


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
