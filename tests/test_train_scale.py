"""Scale-out without a GPU: strategy configs, DDP through the user's config path, activation checkpointing, checkpoint export (Lightning and real DeepSpeed ZeRO shards)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import ROOT
from tests.helpers.processes import cli, free_port, in_process, tiny_fit_args

STRATEGIES = ROOT / "configs" / "strategies"


# --- strategies ---------------------------------------------------------------------------------
def _strategy_from_config(path: Path):
    """The trainer.strategy of a config fragment, instantiated as LightningCLI would."""
    from jsonargparse import ArgumentParser
    from pytorch_lightning import Trainer

    trainer_cfg = yaml.safe_load(path.read_text())["trainer"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(Trainer, "trainer", fail_untyped=False, sub_configs=True)
    cfg = parser.parse_object({"trainer": trainer_cfg})
    return parser.instantiate_classes(cfg).trainer.strategy, trainer_cfg


@pytest.mark.parametrize("name,stage,offload", [("deepspeed_zero1", 1, False), ("deepspeed_zero2", 2, False),
                                                ("deepspeed_zero3", 3, False), ("deepspeed_zero3_offload", 3, True)])
def test_deepspeed_configs_build_the_strategy(name, stage, offload):
    pytest.importorskip("deepspeed")
    from pytorch_lightning.strategies import DeepSpeedStrategy

    strategy, trainer_cfg = _strategy_from_config(STRATEGIES / f"{name}.yaml")
    assert isinstance(strategy, DeepSpeedStrategy)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == stage
    assert ("offload_optimizer" in zero and zero["offload_optimizer"]["device"] == "cpu") == offload
    assert ("offload_param" in zero and zero["offload_param"]["device"] == "cpu") == offload
    assert strategy.config["zero_allow_untested_optimizer"] is True  # our AdamW with parameter groups
    assert trainer_cfg["precision"] == "bf16-mixed"


def test_ddp_config_fragment_builds_a_ddp_trainer_over_the_synthetic_config(tmp_path):
    """The fragment stacked on the default run config, as a user types it: a DDP strategy with one process
    per device, and the loss wired for the global batch (local loss, gathered features with gradients)."""
    from pytorch_lightning.strategies import DDPStrategy

    from infogap.train.cli import InfogapCLI

    cli_ = InfogapCLI([f"--config={ROOT / 'configs/synthetic.yaml'}", f"--config={STRATEGIES / 'ddp.yaml'}", "--trainer.accelerator=cpu",
                       "--trainer.devices=2", "--log_with=none", f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert type(cli_.trainer.strategy) is DDPStrategy and cli_.trainer.num_devices == 2
    assert cli_.model.hparams.local_loss is True and cli_.model.hparams.gather_with_grad is True


def test_grad_checkpointing_gives_the_same_loss_and_gradients():
    from infogap.data.factors import Vocabulary
    from infogap.train.module import ContrastiveModule

    spec = Vocabulary().text_spec()
    batch = {"image": torch.rand(8, 3, 28, 28), "text": torch.randint(1, spec["eos_id"], (8, spec["context_length"]))}
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        m = ContrastiveModule(model="tiny", grad_checkpointing=ckpt, text_spec=Vocabulary().text_spec())
        m.train()
        loss = m.contrastive_loss(m(batch["image"], batch["text"]), m._make_loss(rank=0, world_size=1))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
        assert m.model.visual.transformer.grad_checkpointing is ckpt
    (l0, g0), (l1, g1) = results
    assert torch.allclose(l0, l1, atol=1e-6) and g0.keys() == g1.keys()
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-5), n


@pytest.mark.slow
def test_ddp_two_cpu_processes_through_the_config_path(tmp_path):
    """What a user types: the DDP fragment on top of the synthetic config, two CPU processes (gloo)."""
    run = tmp_path / "run"
    proc = cli(*tiny_fit_args(run, 4, "--config", str(STRATEGIES / "ddp.yaml"), "--trainer.accelerator=cpu",
                              "--trainer.devices=2", "--log_with=csv"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["step"] == 4
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    assert "world_size=2" in proc.stderr or "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr


# --- checkpoint export --------------------------------------------------------------------------
@pytest.mark.slow
def test_export_ckpt_from_a_lightning_checkpoint(tmp_path, capsys):
    from infogap.data.factors import Vocabulary
    from infogap.models.clip import load_checkpoint
    from infogap.train.module import ContrastiveModule

    module = ContrastiveModule(model="tiny", text_spec=Vocabulary().text_spec())
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "global_step": 7, "hyper_parameters": dict(module.hparams)}, ckpt)
    out = tmp_path / "export" / "model.pt"
    proc = in_process(capsys, "export-ckpt", str(ckpt), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "step 7" in proc.stdout
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert saved["infogap"]["global_step"] == 7 and saved["infogap"]["hyper_parameters"]["model"] == "tiny"
    assert not any(k.startswith("model.") for k in saved["state_dict"])
    fresh = ContrastiveModule(model="tiny", text_spec=Vocabulary().text_spec()).model
    load_checkpoint(fresh, out)
    for k, v in module.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    missing = in_process(capsys, "export-ckpt", str(tmp_path / "nope.ckpt"), "--out", str(out))
    assert missing.returncode == 2 and "nope.ckpt" in missing.stderr


@pytest.mark.slow
def test_export_and_load_real_deepspeed_zero_checkpoints(tmp_path, capsys):
    """ZeRO-2 and ZeRO-3 shards written by a real DeepSpeed engine (CPU, gloo) in Lightning's layout
    consolidate into the engine's fp32 parameters, clamped temperature included (through the command
    line for stage 2, the function for stage 3); model.pretrained reads the shard directory too."""
    pytest.importorskip("deepspeed")
    import math
    import subprocess

    from infogap.data.factors import Vocabulary
    from infogap.models.export import export_checkpoint
    from infogap.train.module import ContrastiveModule

    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_PORT": free_port()}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "deepspeed_worker.py"), str(tmp_path), "2,3"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in (2, 3):
        shards = tmp_path / f"zero{stage}" / "last.ckpt"
        assert (shards / "latest").read_text().strip() == "checkpoint"
        expected = torch.load(tmp_path / f"zero{stage}" / "expected.pt", map_location="cpu")
        assert float(expected["model.logit_scale"]) == pytest.approx(math.log(100.0))  # the clamp reached the fp32 master
        out = tmp_path / f"zero{stage}" / "model.pt"
        if stage == 2:
            cli_proc = cli("export-ckpt", str(shards), "--out", str(out))
            assert cli_proc.returncode == 0, cli_proc.stderr[-3000:]
            assert "DeepSpeed ZeRO directory" in cli_proc.stdout and "step 2" in cli_proc.stdout
        else:
            info = export_checkpoint(shards, out)
            assert info["deepspeed"] and info["global_step"] == 2
        state = torch.load(out, map_location="cpu", weights_only=False)["state_dict"]
        assert set(state) == {k[len("model."):] for k in expected}
        for k, v in expected.items():
            assert torch.allclose(state[k[len("model."):]].reshape(v.shape), v), (stage, k)
        loaded = ContrastiveModule(model="tiny", text_spec=Vocabulary().text_spec(), pretrained=str(shards), init_temperature=None)
        for k, v in expected.items():
            assert torch.allclose(loaded.state_dict()[k].reshape(v.shape), v), (stage, k)
