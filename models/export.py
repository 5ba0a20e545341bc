"""``infogap export-ckpt CHECKPOINT --out FILE``: one plain state dict from any training checkpoint.

CHECKPOINT is a Lightning ``.ckpt`` file (DDP or single device) or the directory a DeepSpeed ZeRO
run saves (``checkpoints/last.ckpt/``, sharded per rank); DeepSpeed's ``zero_to_fp32`` consolidates
the shards. The output holds ``state_dict`` (the open_clip model's keys, fp32) and ``infogap`` (the
module's hyper-parameters and the global step), so ``model.pretrained``, open_clip's
``load_checkpoint`` and ``infogap metrics`` pipelines all read it without DeepSpeed installed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from infogap.models.clip import is_deepspeed_checkpoint, model_state_dict, read_checkpoint


def export_checkpoint(src: str | Path, out: str | Path) -> dict:
    out = Path(out)
    if out.exists() and out.resolve() == Path(src).resolve():
        raise ValueError(f"--out {out} is the input checkpoint; choose another path")
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give the file to write (e.g. {out / 'model.pt'})")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"--out {out}: {blocker} is a file, not a directory")
    checkpoint = read_checkpoint(src)
    state = {k: v.float() if v.is_floating_point() else v for k, v in model_state_dict(checkpoint).items()}
    meta = {"source": str(src), "deepspeed": is_deepspeed_checkpoint(src), "global_step": checkpoint.get("global_step"),
            "hyper_parameters": dict(checkpoint.get("hyper_parameters") or {})}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"state_dict": state, "infogap": meta}, tmp)
    tmp.replace(out)
    return {"out": str(out), "tensors": len(state), "parameters": sum(v.numel() for v in state.values()), **meta}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap export-ckpt", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a .ckpt file or a DeepSpeed checkpoint directory")
    p.add_argument("--out", required=True, help="the file to write (a state dict with open_clip keys)")
    args = p.parse_args(argv)
    info = export_checkpoint(args.checkpoint, args.out)
    kind = "DeepSpeed ZeRO directory" if info["deepspeed"] else "checkpoint"
    print(f"{kind} {args.checkpoint} (step {info['global_step']}) -> {info['out']}: {info['tensors']} tensors, "
          f"{info['parameters']:,} parameters")
    return 0
