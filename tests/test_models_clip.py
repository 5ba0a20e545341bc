"""Model builders: small open_clip CLIPs for the synthetic data, stock open_clip models without a download, local checkpoints, the loss options."""
from __future__ import annotations

import math

import open_clip
import pytest
import pytorch_lightning as pl
import torch

from infogap.data.factors import Vocabulary
from infogap.data.synthetic import SyntheticDataModule
from infogap.models import build_model, load_checkpoint, model_names
from infogap.train.module import ContrastiveModule

SPEC = Vocabulary().text_spec()


@pytest.mark.parametrize("name, dim", [("tiny", 64), ("small", 128)])
def test_small_models_are_open_clip_clips_with_a_word_level_text_tower(name, dim):
    model = build_model(name, **SPEC)
    assert isinstance(model, open_clip.model.CLIP)
    assert model.vocab_size == SPEC["vocab_size"] and model.context_length == SPEC["context_length"]
    tokens = torch.zeros(3, SPEC["context_length"], dtype=torch.long)
    tokens[:, 0], tokens[:, 1], tokens[:, 2] = SPEC["vocab_size"] - 2, 5, SPEC["eos_id"]
    out = model(torch.rand(3, 3, 28, 28), tokens)
    assert out["image_features"].shape == out["text_features"].shape == (3, dim)
    torch.testing.assert_close(out["image_features"].norm(dim=1), torch.ones(3))
    assert float(out["logit_scale"]) == pytest.approx(1 / 0.07, rel=1e-5)


def test_word_level_model_needs_the_vocabulary():
    with pytest.raises(ValueError, match="vocab_size"):
        build_model("tiny")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["RN50", "ViT-B-16"])
def test_stock_open_clip_models_build_without_download(name):
    model = build_model(name)
    assert isinstance(model, open_clip.model.CLIP) and model.output_dict
    assert name in model_names()


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'ViT-Q-99'"):
        build_model("ViT-Q-99")


def test_load_checkpoint_from_local_files(tmp_path):
    source = build_model("tiny", **SPEC)
    target = build_model("tiny", **SPEC)
    # a plain (open_clip-style) state dict, and one saved under DDP's "module." prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "openclip.pt")
    load_checkpoint(target, tmp_path / "openclip.pt")
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v)
    # a Lightning checkpoint of the training module, through build_model(pretrained=...)
    module = ContrastiveModule("tiny", text_spec=SPEC)
    torch.save({"state_dict": module.state_dict()}, tmp_path / "lightning.ckpt")
    loaded = build_model("tiny", **SPEC, pretrained=str(tmp_path / "lightning.ckpt"))
    assert torch.equal(loaded.visual.proj, module.model.visual.proj)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(target, tmp_path / "nope.pt")


def test_frozen_finetune_keeps_the_checkpoint_temperature(tmp_path):
    module = ContrastiveModule("tiny", init_temperature=0.02, text_spec=SPEC)
    torch.save({"state_dict": module.state_dict()}, tmp_path / "base.ckpt")
    frozen = ContrastiveModule("tiny", temperature="frozen", init_temperature=None, pretrained=str(tmp_path / "base.ckpt"), text_spec=SPEC)
    assert frozen.logit_scale == pytest.approx(50.0, rel=1e-5) and not frozen.model.logit_scale.requires_grad
    with pytest.raises(ValueError, match="needs model.pretrained"):
        ContrastiveModule("tiny", init_temperature=None, text_spec=SPEC)


def test_siglip_loss_trains_with_its_logit_bias():
    data = SyntheticDataModule(k=2, batch_size=16, train_size=64, val_size=32)
    module = ContrastiveModule("tiny", loss="siglip", text_spec=data.text_spec, warmup_steps=1)
    assert float(module.model.logit_bias) == -10.0 and module.logit_scale == pytest.approx(10.0)
    before = module.model.logit_bias.detach().clone()
    pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0).fit(module, data)
    assert not torch.equal(module.model.logit_bias.detach(), before)
    assert isinstance(module.loss_fn, open_clip.loss.SigLipLoss)


@pytest.mark.slow
def test_gap_push_pushes_the_modality_centroids_apart():
    data = SyntheticDataModule(k=5, batch_size=32, train_size=32 * 30, val_size=32)

    def centroid_cos(module):
        batch = data.source.val_batch(torch.arange(32).numpy())
        x, y = module.embed_images(batch["image"]), module.embed_texts(batch["text"])
        return float(torch.nn.functional.cosine_similarity(x.mean(0), y.mean(0), dim=0))

    pl.seed_everything(0)
    plain = ContrastiveModule("tiny", text_spec=data.text_spec, warmup_steps=1, lr=3e-3)
    pl.seed_everything(0)
    pushed = ContrastiveModule("tiny", text_spec=data.text_spec, warmup_steps=1, lr=3e-3, gap_push=1.0)
    for module in (plain, pushed):
        pl.Trainer(accelerator="cpu", max_steps=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0).fit(module, data)
    assert centroid_cos(pushed) < centroid_cos(plain) - 0.2
    assert math.isfinite(centroid_cos(pushed))
