"""The LightningModule for contrastive training of an open_clip CLIP model."""
from __future__ import annotations

import math
from typing import Literal, Optional, Union

import pytorch_lightning as pl
import torch
from open_clip.loss import ClipLoss, SigLipLoss

from infogap.models import build_model, is_word_level


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """open_clip's rule: gains, biases, norms and the logit scale/bias are not decayed."""
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor: linear warm-up to 1 over ``warmup_steps``, then cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _side(size) -> Optional[int]:
    """An image size as pixels per side (open_clip keeps an int or an (h, w) pair)."""
    return None if size is None else int(size[0] if isinstance(size, (tuple, list)) else size)


def is_hidden_matrix(name: str, param: torch.Tensor) -> bool:
    """Muon's share of the weights, as in the modded-nanogpt speedruns: the 2-D weights inside the
    transformer blocks (attention and MLP, both towers). Embeddings, the patch convolution, the output
    projections, gains, biases and the logit scale stay with AdamW."""
    return param.ndim == 2 and ".resblocks." in f".{name}"


class MuonWithAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` (momentum 0.95, Nesterov, 5 Newton-Schulz steps) for the hidden matrices
    (``is_hidden_matrix``) and ``torch.optim.AdamW`` for every other parameter, as one optimizer: one
    ``step``, one ``zero_grad``, one state dict. ``param_groups`` are the two optimizers' own group
    dicts, so a learning-rate scheduler scales both by the same factor.

    Muon's learning rate: ``muon_lr`` with Keller Jordan's scaling (update x sqrt(max(1, fan_out /
    fan_in))), or, when ``muon_lr`` is None, AdamW's ``lr`` with Moonshot's RMS matching (x 0.2 x
    sqrt(max(fan_out, fan_in))). Weight decay is decoupled in both, at ``weight_decay`` for the hidden
    matrices and as ``adamw_groups`` say for the rest."""

    def __init__(self, named_parameters, adamw_groups: list[dict], *, lr: float, weight_decay: float,
                 muon_lr: Optional[float], adamw: dict):
        named = [(n, p) for n, p in named_parameters if p.requires_grad]
        hidden = {id(p) for n, p in named if is_hidden_matrix(n, p)}
        if not hidden:
            raise ValueError("model.optimizer=muon: the model has no 2-D weight inside a transformer block (resblocks) for Muon; use model.optimizer=adamw")
        rest = [dict(g, params=[p for p in g["params"] if id(p) not in hidden]) for g in adamw_groups]
        self.muon = torch.optim.Muon([p for _, p in named if id(p) in hidden], lr=muon_lr or lr, weight_decay=weight_decay,
                                     adjust_lr_fn="original" if muon_lr else "match_rms_adamw")
        self.adamw = torch.optim.AdamW([g for g in rest if g["params"]], lr=lr, **adamw)
        super().__init__([p for _, p in named], {})
        self.param_groups = self.muon.param_groups + self.adamw.param_groups

    @property
    def state(self) -> dict:
        """Both optimizers' per-parameter state (Lightning moves it between devices in place)."""
        return {**self.muon.state, **self.adamw.state}

    @state.setter
    def state(self, value) -> None:  # torch.optim.Optimizer.__init__ assigns an empty one
        pass

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


class ContrastiveModule(pl.LightningModule):
    """Contrastive image-text training (CLIP or SigLIP loss) of an open_clip model.

    Args:
        model: a small config (``tiny``, ``small``) or an open_clip model name (``RN50``, ``ViT-B-16``).
        loss: ``clip`` (``open_clip.loss.ClipLoss``) or ``siglip`` (``open_clip.loss.SigLipLoss``).
        temperature: ``learnable`` (logit scale initialised at 1/init_temperature, clamped at
            ``max_logit_scale`` after every step) or ``frozen`` at 1/init_temperature.
        init_temperature: None keeps the temperature of the ``pretrained`` checkpoint (a frozen
            fine-tune then stays at the value the checkpoint learned).
        local_loss, gather_with_grad: open_clip's distributed loss options; rank and world size come
            from the trainer, so each rank computes the loss of its rows against the global batch.
        optimizer: ``adamw``, or ``muon``: Muon for the transformer blocks' matrices and AdamW for the
            rest (``MuonWithAdamW``; the synthetic default recipe, which reaches the time-to-target
            benchmark's target in about a twelfth of AdamW's steps: BENCHMARKS.md).
        lr, weight_decay, betas, eps: AdamW; gains, biases and the logit scale get no weight decay.
            With ``optimizer: muon``, ``weight_decay`` is also Muon's.
        muon_lr: Muon's learning rate with Keller Jordan's shape scaling (None: ``lr`` with Moonshot's
            RMS matching to AdamW).
        logit_scale_lr: a learning rate of its own for a learnable logit scale (None: ``lr``), on the
            same warm-up and cosine schedule: lets the temperature move within a short fine-tune.
        warmup_steps: linear warm-up, then a cosine schedule over the run (stepped per optimizer step).
        pretrained: a local checkpoint (open_clip, state dict, or an infogap/Lightning checkpoint) to
            load the weights from (the optimizer starts fresh).
        text_spec: the word vocabulary of the data (linked from the data module by the CLI).
        grad_checkpointing: open_clip's activation checkpointing.
        gap_push: weight of an extra loss term, cos(mean image, mean text) over the batch, that pushes
            the two modalities apart: used to build a large-gap initialisation (0 = plain CLIP).
        compile: ``torch.compile`` the CLIP model's forward in place (``nn.Module.compile``: checkpoints
            keep their keys); ``true`` for the default backend (inductor), or a backend's name.
        channels_last: the vision tower's weights and the images in channels-last memory format (faster
            convolutions on GPUs: RN50 and ViT patch embeddings); the same results to float tolerance.

    On CUDA the optimizer is PyTorch's fused AdamW (one kernel for every parameter); the numbers are
    those of the loop implementation to float tolerance.
    """

    def __init__(
        self,
        model: str = "tiny",
        loss: Literal["clip", "siglip"] = "clip",
        temperature: Literal["learnable", "frozen"] = "learnable",
        init_temperature: Optional[float] = 0.07,
        max_logit_scale: float = 100.0,
        lr: float = 1e-3,
        logit_scale_lr: Optional[float] = None,
        weight_decay: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        warmup_steps: int = 100,
        local_loss: bool = True,
        gather_with_grad: bool = True,
        pretrained: Optional[str] = None,
        text_spec: Optional[dict] = None,
        grad_checkpointing: bool = False,
        gap_push: float = 0.0,
        compile: Union[bool, str] = False,
        channels_last: bool = False,
        optimizer: Literal["adamw", "muon"] = "adamw",
        muon_lr: Optional[float] = None,
    ):
        super().__init__()
        if init_temperature is None and not pretrained:
            raise ValueError("model.init_temperature: null keeps a checkpoint's temperature and needs model.pretrained")
        if init_temperature is not None and init_temperature <= 0:
            raise ValueError(f"model.init_temperature must be positive, got {init_temperature}")
        if max_logit_scale <= 0:
            raise ValueError(f"model.max_logit_scale must be positive, got {max_logit_scale}")
        if optimizer not in ("adamw", "muon"):
            raise ValueError(f"model.optimizer must be adamw or muon, got {optimizer!r}")
        if muon_lr is not None and (muon_lr <= 0 or optimizer != "muon"):
            raise ValueError(f"model.muon_lr={muon_lr} needs model.optimizer=muon and a positive value")
        if logit_scale_lr is not None and logit_scale_lr <= 0:
            raise ValueError(f"model.logit_scale_lr must be positive, got {logit_scale_lr}")
        self.save_hyperparameters()
        init_scale = math.log(1.0 / (init_temperature or 0.07)) if loss == "clip" or temperature == "frozen" else math.log(10.0)
        try:
            self.model = build_model(
                model,
                **(text_spec or {}),
                init_logit_scale=init_scale,
                init_logit_bias=-10.0 if loss == "siglip" else None,
                pretrained=pretrained,
            )
        except (ValueError, FileNotFoundError) as exc:
            if not pretrained or str(pretrained) not in str(exc):
                raise
            raise type(exc)(f"model.pretrained: {exc}") from None
        if temperature == "frozen":
            if init_temperature is not None:
                with torch.no_grad():
                    self.model.logit_scale.fill_(math.log(1.0 / init_temperature))
            self.model.logit_scale.requires_grad_(False)
        if grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        if channels_last:
            self.model.visual.to(memory_format=torch.channels_last)
        if compile:
            self.model.compile(**({} if compile is True else {"backend": compile}))
        self.loss_fn = self._make_loss(rank=0, world_size=1)
        self.eval_loss_fn = self._make_loss(rank=0, world_size=1)

    def _make_loss(self, rank: int, world_size: int) -> torch.nn.Module:
        if self.hparams.loss == "siglip":
            return SigLipLoss(rank=rank, world_size=world_size)
        return ClipLoss(
            local_loss=self.hparams.local_loss,
            gather_with_grad=self.hparams.gather_with_grad,
            cache_labels=True,
            rank=rank,
            world_size=world_size,
        )

    def setup(self, stage: str) -> None:
        self.check_data(self.trainer.datamodule)
        # The training loss sees the global batch: wire rank and world size from the trainer.
        self.loss_fn = self._make_loss(rank=self.trainer.global_rank, world_size=self.trainer.world_size)

    def check_data(self, datamodule) -> None:
        """Refuse, before the first step, data this model cannot train on: word-level captions for a
        BPE text tower, or images of another size than the vision tower takes. A data module says what
        it gives by ``text_spec`` (its word vocabulary, None for BPE) and ``image_size``."""
        if datamodule is None:
            return
        name, data = self.hparams.model, type(datamodule).__name__
        if getattr(datamodule, "text_spec", None) is not None and not is_word_level(name):
            raise ValueError(f"model.model={name!r} has a BPE text tower but {data} gives word-level captions "
                             "(data.tokenizer=word): use a word-level model (tiny, small) or a BPE tokenizer (data.tokenizer=ViT-B-32)")
        data_size, size = _side(getattr(datamodule, "image_size", None)), _side(getattr(self.model.visual, "image_size", None))
        if data_size is not None and size is not None and data_size != size:
            raise ValueError(f"model.model={name!r} takes {size} px images but {data} gives {data_size} px images: "
                             "choose a model and data of one size (synthetic data: tiny or small; its layout world: tiny-64p8; real data: data.model names the model)")

    # --- the science ------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, text: torch.Tensor) -> dict:
        if self.hparams.get("channels_last"):
            image = image.contiguous(memory_format=torch.channels_last)
        return self.model(image, text)

    def contrastive_loss(self, out: dict, loss_fn: torch.nn.Module) -> torch.Tensor:
        if self.hparams.loss == "siglip":
            return loss_fn(out["image_features"], out["text_features"], out["logit_scale"], out["logit_bias"])
        return loss_fn(out["image_features"], out["text_features"], out["logit_scale"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch["image"], batch["text"])
        loss = self.contrastive_loss(out, self.loss_fn)
        n = batch["image"].shape[0]
        if self.hparams.gap_push:
            centroid_cos = torch.nn.functional.cosine_similarity(out["image_features"].mean(0), out["text_features"].mean(0), dim=0)
            loss = loss + self.hparams.gap_push * centroid_cos
            self.log("train/centroid_cos", centroid_cos.detach(), batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("temperature", 1.0 / out["logit_scale"].detach(), batch_size=n)
        self.log("train/logit_scale", out["logit_scale"].detach(), batch_size=n)
        if "skipped" in batch:  # corrupt samples the data module skipped so far (real data)
            self.log("data/skipped", batch["skipped"], reduce_fx="max", batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch["image"], batch["text"])
        loss = self.contrastive_loss(out, self.eval_loss_fn)
        self.log("val/loss", loss, sync_dist=True, batch_size=batch["image"].shape[0])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch["image"], batch["text"])
        loss = self.contrastive_loss(out, self.eval_loss_fn)
        self.log("test/loss", loss, sync_dist=True, batch_size=batch["image"].shape[0])

    # --- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        decay, no_decay, scale = [], [], []
        own_lr = self.hparams.get("logit_scale_lr") is not None
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (scale if own_lr and name == "logit_scale" else no_decay if no_weight_decay(name, p) else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if scale:
            groups.append({"params": scale, "weight_decay": 0.0, "lr": self.hparams.logit_scale_lr})
        adamw = dict(betas=tuple(self.hparams.betas), eps=self.hparams.eps, fused=self._fused_adamw())
        if self.hparams.get("optimizer", "adamw") == "muon":
            if self._deepspeed():
                raise ValueError("model.optimizer=muon: DeepSpeed ZeRO partitions an optimizer of its own; use model.optimizer=adamw with DeepSpeed")
            optimizer = MuonWithAdamW(self.model.named_parameters(), groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
                                      muon_lr=self.hparams.get("muon_lr"), adamw=adamw)
        else:
            optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, **adamw)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(self.hparams.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _fused_adamw(self) -> Optional[bool]:
        """PyTorch's fused AdamW on CUDA (not under DeepSpeed, whose ZeRO optimizer wraps its own); None
        elsewhere (PyTorch's default implementation)."""
        on_cuda = self.device.type == "cuda" and all(p.is_cuda for p in self.model.parameters())
        return True if on_cuda and not self._deepspeed() else None

    def _deepspeed(self) -> bool:
        from pytorch_lightning.strategies import DeepSpeedStrategy

        return self._trainer is not None and isinstance(self._trainer.strategy, DeepSpeedStrategy)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.clamp_logit_scale()

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """CLIP clamps the learnable scale at 100 (log 100 on the stored parameter). Under DeepSpeed ZeRO
        the optimizer updates its own fp32 master copy, so the clamp goes there too (else the next step
        would undo it)."""
        if self.hparams.temperature != "learnable":
            return
        param, hi = self.model.logit_scale, math.log(self.hparams.max_logit_scale)
        if param.numel():  # a ZeRO-3 partitioned parameter is empty outside a gather
            param.clamp_(0, hi)
        engine = getattr(self._trainer.strategy, "deepspeed_engine", None) if self._trainer is not None else None
        if engine is not None and engine.zero_optimization_stage() > 0:
            from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

            master = safe_get_full_fp32_param(param)
            if master is not None and bool((master > hi).any() or (master < 0).any()):
                safe_set_full_fp32_param(param, master.clamp(0, hi))

    # --- embeddings for evaluation ----------------------------------------------------------
    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images.to(self.device), normalize=True).float()

    @torch.no_grad()
    def embed_texts(self, texts: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(texts.to(self.device), normalize=True).float()

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())
