"""An image-only self-supervised baseline: a masked autoencoder (He et al. 2022) on the ViT tower of a
CLIP config, trained on the same synthetic images without captions (the dense-probe experiment's
"no text" encoder of the same size).

Per image a random ``mask_ratio`` of the patches is hidden; the open_clip ViT encodes the visible
patches (class token, positional embeddings, ``ln_pre``, its transformer, ``ln_post``), a small
transformer decoder sees the encoded tokens and a learned mask token at every hidden position, and
predicts the hidden patches' pixels, normalised per patch; the loss is their mean squared error on
the hidden patches only. The model is a whole open_clip ``CLIP`` (its text tower untouched), so the
checkpoint loads wherever a CLIP checkpoint does (``load_encoder``, ``infogap probe``).
"""
from __future__ import annotations

import math
from typing import Optional

import pytorch_lightning as pl
import torch

from infogap.models import build_model
from infogap.train.module import no_weight_decay, warmup_cosine
from infogap.train.quiet import quiet_trainer


class MaskedAutoencoder(pl.LightningModule):
    """Args:
        model: a CLIP config with a ViT tower (``tiny``, ``small``, ...).
        text_spec: the data's word vocabulary (word-level configs), as for ``ContrastiveModule``.
        mask_ratio: share of patches hidden per image (MAE: 0.75).
        decoder_width, decoder_layers, decoder_heads: the decoder transformer.
        lr, weight_decay, warmup_steps: AdamW, linear warm-up then cosine.
    """

    def __init__(self, model: str = "tiny", text_spec: Optional[dict] = None, mask_ratio: float = 0.75, decoder_width: int = 64,
                 decoder_layers: int = 1, decoder_heads: int = 2, lr: float = 1.5e-3, weight_decay: float = 0.05, warmup_steps: int = 50):
        super().__init__()
        from open_clip.transformer import Transformer

        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.save_hyperparameters()
        self.model = build_model(model, **(text_spec or {}))
        visual = self.model.visual
        if not hasattr(visual, "conv1"):
            raise ValueError(f"model {model!r}: a masked autoencoder needs a ViT image tower")
        self.patch = visual.patch_size[0]
        width = visual.conv1.out_channels
        n = visual.grid_size[0] * visual.grid_size[1]
        self.decoder_embed = torch.nn.Linear(width, decoder_width)
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.decoder_pos = torch.nn.Parameter(torch.randn(1, n + 1, decoder_width) * 0.02)
        self.decoder = Transformer(decoder_width, decoder_layers, decoder_heads)
        self.decoder_norm = torch.nn.LayerNorm(decoder_width)
        self.decoder_pred = torch.nn.Linear(decoder_width, self.patch * self.patch * 3)
        torch.nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, L, p*p*3), patches in row-major order as the ViT's tokens."""
        p = self.patch
        b, c, h, w = images.shape
        x = images.reshape(b, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)

    def encode_visible(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The ViT on the class token and the kept patches ``keep`` (B, n_keep indices): (B, 1 + n_keep, width)."""
        v = self.model.visual
        x = v.conv1(images).flatten(2).transpose(1, 2) + v.positional_embedding[1:].to(images.dtype)
        x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (v.class_embedding + v.positional_embedding[0]).to(x.dtype).expand(x.shape[0], 1, -1)
        return v.ln_post(v.transformer(v.ln_pre(torch.cat([cls, x], 1))))

    def forward(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, hidden): the mean squared error of the predicted hidden patches (each target patch
        normalised to mean 0, variance 1) and the (B, L) mask of hidden patches."""
        b = images.shape[0]
        target = self.patchify(images)
        n = target.shape[1]
        n_keep = max(1, int(round(n * (1 - self.hparams.mask_ratio))))
        order = torch.rand(b, n, device=images.device, generator=generator).argsort(1)
        keep, restore = order[:, :n_keep], order.argsort(1)
        hidden = torch.ones(b, n, device=images.device)
        hidden[:, :n_keep] = 0
        hidden = torch.gather(hidden, 1, restore)  # back in patch order: 1 where hidden
        tokens = self.decoder_embed(self.encode_visible(images, keep))
        fill = self.mask_token.expand(b, n - n_keep, -1)
        patches = torch.gather(torch.cat([tokens[:, 1:], fill], 1), 1, restore[..., None].expand(-1, -1, tokens.shape[-1]))
        x = torch.cat([tokens[:, :1], patches], 1) + self.decoder_pos
        pred = self.decoder_pred(self.decoder_norm(self.decoder(x)))[:, 1:]
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(-1)
        return (per_patch * hidden).sum() / hidden.sum(), hidden

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self(batch["image"])
        self.log("mae/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if name.startswith("model.") and not name.startswith("model.visual."):
                continue  # the text tower is not part of an image-only model
            (no_decay if no_weight_decay(name, p) or "token" in name or "pos" in name else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                      lr=self.hparams.lr, betas=(0.9, 0.95))
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(self.hparams.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class _LossCurve(pl.Callback):
    """The training loss every ``every`` steps: the MAE's loss curve (does it converge?)."""

    def __init__(self, every: int):
        self.every, self.curve = max(1, every), {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0 or trainer.global_step == trainer.max_steps:
            self.curve[trainer.global_step] = float(outputs["loss"] if isinstance(outputs, dict) else outputs)


def train_mae(model: str, data, steps: int, checkpoint: str, seed: int = 0, accelerator: str = "auto", curve_every: int = 0,
              **kwargs) -> MaskedAutoencoder:
    """Train a masked autoencoder of ``model`` on the images of a synthetic data module ``data`` for
    ``steps`` steps and save its checkpoint (a Lightning checkpoint whose ``model.*`` weights are a CLIP).
    With ``curve_every``, ``module.loss_curve`` holds the training loss every that many steps."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    pl.seed_everything(seed, verbose=False)
    module = MaskedAutoencoder(model, text_spec=data.text_spec, **kwargs)
    curve = _LossCurve(curve_every or steps)
    trainer = quiet_trainer(steps, accelerator, max_epochs=math.ceil(steps / max(1, data.train_size // data.batch_size)) + 1,
                            limit_val_batches=0, callbacks=[curve])
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(checkpoint)
    module.loss_curve = curve.curve
    return module
