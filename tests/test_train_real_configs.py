"""The reference's real-data configs build what they say (paths swapped for local test shards)."""
from __future__ import annotations

import pytest
import torch

from infogap.train.cli import InfogapCLI
from tests.helpers import ROOT
from tests.helpers.data import write_photo_shards

REAL = ROOT / "configs" / "real"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("real")
    write_photo_shards(d, n_shards=2, per_shard=4, corrupt=False)
    return f"{d}/photos-{{000000..000001}}.tar"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny-bpe checkpoint standing in for the configs' pretrained open_clip / full-caption weights."""
    from infogap.train.module import ContrastiveModule

    module = ContrastiveModule(model="tiny-bpe", init_temperature=0.02)
    path = tmp_path_factory.mktemp("ckpt") / "base.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    return path


def _build(name, shards, tmp_path, *extra):
    return InfogapCLI([f"--config={REAL / name}.yaml", f"--data.train_shards={shards}", f"--data.val_shards={shards}",
                       "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto", "--trainer.precision=32-true",
                       "--log_with=none", f"--trainer.default_root_dir={tmp_path}", *extra], run=False)


@pytest.mark.slow
@pytest.mark.parametrize("name,fraction", [("cc_full", None), ("cc_half", 0.5), ("cc_quarter", 0.25)])
def test_cc_configs(name, fraction, shards, tmp_path):
    cli = _build(name, shards, tmp_path)
    h, d = cli.model.hparams, cli.datamodule
    assert h.model == "RN50" and type(cli.model.model.visual).__name__ == "ModifiedResNet"
    assert (h.lr, h.weight_decay, h.warmup_steps, h.temperature) == (1e-3, 0.2, 10000, "learnable")
    assert h.local_loss and h.gather_with_grad and cli.model.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)
    assert d.hparams.batch_size == 110 and cli.trainer.max_epochs == 30
    assert (d.transform is None) if fraction is None else (d.transform.kind == "keep_fraction" and d.transform.fraction == fraction)
    cfg = cli.config.as_dict()
    assert str(cfg["trainer"]["devices"]) == "1" and "devices: 8" in (REAL / f"{name}.yaml").read_text()  # the file asks for 8 GPUs


@pytest.mark.parametrize("temperature", ["learnable", "frozen"])
def test_cc_entropy_configs_start_from_a_checkpoint(temperature, shards, tiny_checkpoint, tmp_path):
    cli = _build(f"cc_entropy_{temperature}", shards, tmp_path, "--model.model=tiny-bpe", "--data.model=tiny-bpe",
                 f"--model.pretrained={tiny_checkpoint}")
    h = cli.model.hparams
    assert h.temperature == temperature and h.init_temperature is None and cli.trainer.max_epochs == 10
    assert cli.model.logit_scale == pytest.approx(1 / 0.02, rel=1e-5)  # the checkpoint's temperature, kept
    assert cli.model.model.logit_scale.requires_grad is (temperature == "learnable")
    assert cli.datamodule.transform.kind == "keep_fraction" and cli.datamodule.transform.fraction == 0.25


@pytest.mark.parametrize("name", ["dci_short", "dci_long"])
def test_dci_configs(name, shards, tiny_checkpoint, tmp_path):
    text = (REAL / f"{name}.yaml").read_text()
    assert "model: ViT-B-16" in text and "pretrained: /path/to/open_clip/ViT-B-16.pt" in text
    cli = _build(name, shards, tmp_path, "--model.model=tiny-bpe", "--data.model=tiny-bpe", f"--model.pretrained={tiny_checkpoint}")
    h, d = cli.model.hparams, cli.datamodule
    assert (h.lr, h.weight_decay, h.warmup_steps, cli.trainer.max_epochs) == (1e-5, 0.1, 30, 10)
    assert d.hparams.batch_size == 32 and d.hparams.enriched_field == "enriched"
    assert (d.transform is not None and d.transform.kind == "concat_enriched") == (name == "dci_long")
    siglip = _build(name, shards, tmp_path, "--model.model=tiny-bpe", "--data.model=tiny-bpe", "--model.loss=siglip",
                    "--model.init_temperature=0.1", "--model.pretrained=null")
    from open_clip.loss import SigLipLoss

    assert isinstance(siglip.model.loss_fn, SigLipLoss) and siglip.model.model.logit_bias is not None
    assert float(siglip.model.model.logit_bias) == pytest.approx(-10.0) and siglip.model.logit_scale == pytest.approx(10.0)


def test_placeholder_paths_fail_before_training_naming_the_pattern(tmp_path):
    with pytest.raises(Exception, match=r"data.train_shards=.*/path/to/cc12m/train-\{000000..001099\}.tar.*shard not found"):
        InfogapCLI([f"--config={REAL / 'cc_full.yaml'}", "--trainer.accelerator=cpu", "--log_with=none",
                    f"--trainer.default_root_dir={tmp_path}"], run=False)
