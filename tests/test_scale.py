"""Scale-out without a GPU: strategy configs, DDP through the user's config path, checkpoint export,
the SLURM plan, W&B sweeps (offline)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

from infogap.ablations.core import expand, load_ablation, resume_checkpoint
from infogap.ablations.launchers import SlurmOptions, _ranges, ablate_args, slurm_plan, sweep_command, sweep_config
from tests.helpers import ROOT, cli, free_port, read_wandb_config, tiny_fit_args

STRATEGIES = ROOT / "configs" / "strategies"
SWEEPS = ROOT / "configs" / "sweeps"


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
def test_export_ckpt_from_a_lightning_checkpoint(tmp_path, capsys):
    from infogap.data.factors import Vocabulary
    from infogap.models.clip import load_checkpoint
    from infogap.train.module import ContrastiveModule

    module = ContrastiveModule(model="tiny", text_spec=Vocabulary().text_spec())
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "global_step": 7, "hyper_parameters": dict(module.hparams)}, ckpt)
    out = tmp_path / "export" / "model.pt"
    proc = cli("export-ckpt", str(ckpt), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "step 7" in proc.stdout
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert saved["infogap"]["global_step"] == 7 and saved["infogap"]["hyper_parameters"]["model"] == "tiny"
    assert not any(k.startswith("model.") for k in saved["state_dict"])
    fresh = ContrastiveModule(model="tiny", text_spec=Vocabulary().text_spec()).model
    load_checkpoint(fresh, out)
    for k, v in module.model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    from infogap.train.cli import main as infogap

    assert infogap(["export-ckpt", str(tmp_path / "nope.ckpt"), "--out", str(out)]) == 2
    assert "nope.ckpt" in capsys.readouterr().err


# --- SLURM plan ----------------------------------------------------------------------------------
def test_array_ranges():
    assert _ranges([0, 1, 2, 5]) == "0-2,5" and _ranges([3]) == "3" and _ranges([0, 2, 4]) == "0,2,4"


def test_slurm_plan_chains_stages_and_skips_finished_runs(tmp_path):
    ablation = load_ablation("temperature")
    ablation.slurm = {"partition": "gpu", "time": "02:00:00", "gpus_per_node": 2}
    runs = expand(ablation, tmp_path, [0, 1])
    base_seed0 = next(r for r in runs if r.stage == "base" and r.seed == 0)
    base_seed0.dir.mkdir(parents=True)
    (base_seed0.dir / "metrics.json").write_text("{}")
    options = SlurmOptions.from_sources(ablation.slurm, {"partition": "debug", "nodes": None})
    plan = slurm_plan(ablation, runs, ablate_args("temperature", tmp_path, [0, 1], [], ["trainer.max_steps=5"]), options, tmp_path)
    assert [p.what for p in plan] == ["stage base: 1 run(s)", "stage finetune: 4 run(s)", "aggregate"]
    base, finetune, agg = (p.argv for p in plan)
    assert "--array=1" in base and "--array=0-3" in finetune
    assert "--partition=debug" in base and "--time=02:00:00" in base  # the flag wins over the YAML section
    assert "--gpus-per-node=2" in base and "--ntasks-per-node=2" in base
    assert "--dependency=afterok:{previous}" in finetune and not any(a.startswith("--dependency") for a in base)
    assert "--dependency=afterany:{all}" in agg and agg[-1].endswith("--aggregate-only")
    tail = finetune[finetune.index(str(ROOT / "slurm" / "array.sbatch")) + 1:]
    assert tail[:2] == ["ablate", "temperature"] and tail[-2:] == ["--stage", "finetune"] and "trainer.max_steps=5" in tail
    with pytest.raises(ValueError, match="unknown key"):
        SlurmOptions.from_sources({"gpus": 4}, {})


def test_slurm_dry_run_prints_scripts_and_sbatch_lines(tmp_path, capsys):
    from infogap.train.cli import main as infogap

    assert infogap(["ablate", "imbalance", "--launcher", "slurm", "--dry-run", "--out", str(tmp_path), "--seeds", "0",
                    "--partition", "gpu", "--gpus-per-node", "4", "trainer.max_steps=10"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --signal=SIGUSR1@90" in out and "#SBATCH --requeue" in out
    lines = [line for line in out.splitlines() if line.startswith("sbatch ")]
    assert len(lines) == 2 and "--array=0-5" in lines[0] and "--partition=gpu" in lines[0]


@pytest.mark.parametrize("script", ["train.sbatch", "multinode.sbatch", "array.sbatch"])
def test_sbatch_scripts_request_requeue_on_sigusr1(script):
    text = (ROOT / "slurm" / script).read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text and "srun " in text
    assert os.access(ROOT / "slurm" / script, os.X_OK)


def test_resume_checkpoint_is_the_newest(tmp_path):
    assert resume_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_text("a")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_text("b")
    os.utime(last, (1, 1))
    assert resume_checkpoint(tmp_path) == hpc
    os.utime(hpc, (0, 0))
    assert resume_checkpoint(tmp_path) == last


# --- W&B sweeps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["imbalance", "presence"])
def test_sweep_files_match_their_ablations(name):
    ablation = load_ablation(name)
    assert yaml.safe_load((SWEEPS / f"{name}.yaml").read_text()) == sweep_config(ablation, ablation.seeds, {}, {})


def test_wandb_launcher_refuses_multi_stage_ablations_and_needs_a_key(capsys, monkeypatch):
    from infogap.train.cli import main as infogap

    assert infogap(["ablate", "temperature", "--launcher", "wandb", "--dry-run"]) == 2
    assert "stages" in capsys.readouterr().err
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    assert infogap(["ablate", "imbalance", "--launcher", "wandb"]) == 2
    assert "API key" in capsys.readouterr().err


def _first_point(config: dict) -> dict:
    point = {}
    for key, spec in config["parameters"].items():
        point[key] = spec["value"] if "value" in spec else spec["values"][0] if "values" in spec else spec["min"]
    return point


@pytest.mark.slow
def test_sweep_commands_run_one_configuration_each_offline(tmp_path):
    """For every sweep file, the command a W&B agent would run for its first point (W&B offline, the
    four at once); each run writes under the directory named by WANDB_RUN_ID and logs the swept keys."""
    import subprocess

    (tmp_path / "configs").symlink_to(ROOT / "configs")
    tiny = [a for a in tiny_fit_args(tmp_path / "ignored", 2, "--data.val_size=32", "--metrics.num_samples=32")
            if a.startswith(("--data.", "--metrics.", "--trainer.max_steps", "--trainer.val_check", "--trainer.limit_val"))]
    procs = {}
    for path in sorted(SWEEPS.glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        point = _first_point(config)
        command = sweep_command(config, point)
        assert command[0] == "infogap"
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_RUN_ID": f"test{path.stem[:4]}", "PYTHONPATH": str(ROOT),
               "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        procs[path.stem] = (point, subprocess.Popen(command + tiny, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE, text=True))
    assert len(procs) == 4
    for name, (point, proc) in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
        run = tmp_path / "runs" / "sweeps" / name / f"test{name[:4]}"
        assert (run / "metrics.json").is_file(), name
        logged = read_wandb_config(run)
        for key, value in point.items():
            if key != "data.batch_size":  # the tiny run overrides the batch size
                assert logged[key] == value, (name, key)


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


def test_wandb_launcher_creates_the_sweep_and_prints_agent_commands(monkeypatch, capsys):
    """With a key configured, the sweep goes to wandb.sweep as rendered (the server call is replaced)."""
    import wandb

    from infogap.ablations import launchers

    calls = {}
    monkeypatch.setattr(wandb, "sweep", lambda config, project=None, entity=None: calls.update(config=config, project=project, entity=entity) or "abc123")
    monkeypatch.setattr("infogap.train.loggers.wandb_api_key_configured", lambda: True)
    ablation = load_ablation("imbalance")
    config = sweep_config(ablation, [0, 1], {"k": [0, 5]}, {"trainer.max_steps": 300})
    assert launchers.launch_wandb(config, "infogap", "me", dry_run=False, array=SlurmOptions(partition="gpu")) == "abc123"
    assert calls["project"] == "infogap" and calls["entity"] == "me"
    assert calls["config"]["parameters"]["data.k"] == {"values": [0, 5]}
    assert calls["config"]["parameters"]["trainer.max_steps"] == {"value": 300}
    out = capsys.readouterr().out
    assert "wandb agent me/infogap/abc123" in out and "--array=0-3" in out and "--partition=gpu" in out
