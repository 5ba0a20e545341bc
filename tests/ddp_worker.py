"""Run one training step (DDP or single process) and dump the loss and gradients: used by test_training."""
from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from infogap.data.synthetic import SyntheticDataModule
from infogap.train.evaluation import RepresentationMetrics
from infogap.train.module import ContrastiveModule


class DumpGradients(pl.Callback):
    def __init__(self, out: str):
        self.out, self.loss = out, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.loss = outputs["loss"].detach()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None}

    def on_train_end(self, trainer, pl_module):
        losses = pl_module.all_gather(self.loss)
        if trainer.is_global_zero:
            metrics = next(c for c in trainer.callbacks if isinstance(c, RepresentationMetrics)).history
            torch.save({"loss": losses.mean().item(), "grads": self.grads, "world": trainer.world_size, "metrics": metrics}, self.out)


def main(devices: int, global_batch: int, out: str) -> None:
    pl.seed_everything(0)
    data = SyntheticDataModule(k=3, batch_size=global_batch // devices, train_size=global_batch * 4, val_size=64)
    model = ContrastiveModule("tiny", text_spec=data.text_spec, warmup_steps=1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=str(Path(out).parent / f"run{devices}"),
        callbacks=[DumpGradients(out), RepresentationMetrics(eval_every_n_steps=0, num_samples=51, prompts_per_value=4, save_embeddings=False)],
    )
    trainer.fit(model, data)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
