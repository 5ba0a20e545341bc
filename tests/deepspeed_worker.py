"""A real DeepSpeed ZeRO engine on CPU (one process, gloo) around the ContrastiveModule, saving its
checkpoint the way Lightning's DeepSpeedStrategy does (``engine.save_checkpoint(path, client_state=
checkpoint without state_dict and optimizer states, tag="checkpoint")``). Lightning itself refuses
DeepSpeed without CUDA; this writes the same directory layout so the export and loading code are
tested on real ZeRO shards.

    python tests/deepspeed_worker.py OUT_DIR STAGE[,STAGE...]

writes OUT_DIR/zeroS/last.ckpt/ (the DeepSpeed checkpoint) and OUT_DIR/zeroS/expected.pt (the fp32
parameters, the logit scale after the clamp) for each stage S."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch


def main(out: str, stages: list[int]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29541"), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    for stage in stages:
        run_stage(Path(out) / f"zero{stage}", stage)


def run_stage(out: Path, stage: int) -> None:
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    from infogap.data.factors import Vocabulary
    from infogap.train.module import ContrastiveModule

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    spec = Vocabulary().text_spec()
    module = ContrastiveModule(model="tiny", text_spec=spec, lr=0.01)
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.01)
    config = {"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
    loss_fn = module._make_loss(rank=0, world_size=1)
    for _ in range(2):
        out_ = engine(torch.rand(8, 3, 28, 28), torch.randint(1, spec["eos_id"], (8, spec["context_length"])))
        loss = module.contrastive_loss(out_, loss_fn)
        engine.backward(loss)
        engine.step()
    # the temperature clamp reaches DeepSpeed's fp32 master copy
    scale = module.model.logit_scale
    safe_set_full_fp32_param(scale, torch.full_like(safe_get_full_fp32_param(scale), 7.0))
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(deepspeed_engine=engine))
    module.clamp_logit_scale()
    clamped = float(safe_get_full_fp32_param(scale))
    assert abs(clamped - math.log(100.0)) < 1e-6, clamped
    expected = {n: safe_get_full_fp32_param(p).detach().clone() for n, p in module.named_parameters()}
    checkpoint = {"global_step": 2, "epoch": 0, "hyper_parameters": dict(module.hparams), "pytorch-lightning_version": "2.6.6"}
    engine.save_checkpoint(str(Path(out) / "last.ckpt"), client_state=checkpoint, tag="checkpoint")
    torch.save(expected, Path(out) / "expected.pt")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(sys.argv[1], [int(v) for v in sys.argv[2].split(",")])
