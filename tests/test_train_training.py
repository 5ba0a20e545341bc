"""The foundation: distributed loss, exact resume, temperature handling, configuration errors."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from infogap.data.synthetic import SyntheticDataModule
from infogap.train.module import ContrastiveModule, no_weight_decay, warmup_cosine
from tests.helpers import ROOT
from tests.helpers.processes import cli, in_process, tiny_fit_args


def _one_step(devices: int, global_batch: int, out) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tests/ddp_worker.py"), str(devices), str(global_batch), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.slow
def test_ddp_loss_and_gradients_equal_single_process(tmp_path):
    """2 gloo processes with local_loss + gather_with_grad see the same global batch as one process."""
    single = _one_step(1, 32, tmp_path / "single.pt")
    ddp = _one_step(2, 32, tmp_path / "ddp.pt")
    assert ddp["world"] == 2 and single["world"] == 1
    assert ddp["loss"] == pytest.approx(single["loss"], abs=1e-5)
    assert set(ddp["grads"]) == set(single["grads"])
    assert "model.logit_scale" in single["grads"]
    for name, g in single["grads"].items():
        torch.testing.assert_close(ddp["grads"][name], g, atol=1e-5, rtol=0, msg=lambda m: f"{name}: {m}")
    # the metrics callback gathers the ranks' slices (26 + 25 of 51 samples) and computes once
    before_ddp, before_single = ddp["metrics"][0], single["metrics"][0]
    assert set(before_ddp) == set(before_single) and "zeroshot_object_acc" in before_ddp
    for key, value in before_single.items():
        assert before_ddp[key] == pytest.approx(value, abs=1e-5, nan_ok=True), key


def _final_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return ckpt


@pytest.mark.slow
def test_resume_from_last_checkpoint_equals_uninterrupted_run(tmp_path):
    """N steps, killed, `--ckpt_path last` to 2N == 2N uninterrupted (parameters, Muon and AdamW state).
    The epoch is 8 batches, so the resumed run also crosses an epoch boundary."""
    n = 6
    common = ["--log_with=none", "--checkpoint.every_n_train_steps=6", "--data.train_size=128", "--metrics.eval_every_n_steps=0"]
    full = cli(*tiny_fit_args(tmp_path / "full", 2 * n, *common))
    assert full.returncode == 0, full.stderr[-3000:]

    kill = '--trainer.callbacks+={"class_path": "tests.helpers.faults.KillAtStep", "init_args": {"step": 6}}'
    killed = cli(*tiny_fit_args(tmp_path / "resumed", 2 * n, *common, kill))
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert not (tmp_path / "resumed" / "metrics.json").exists(), "the killed run must not have finished"
    assert torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=False)["global_step"] == n

    resumed = cli(*tiny_fit_args(tmp_path / "resumed", 2 * n, *common, "--ckpt_path=last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = _final_state(tmp_path / "full"), _final_state(tmp_path / "resumed")
    assert a["global_step"] == b["global_step"] == 2 * n
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, atol=1e-6, rtol=0, msg=lambda m: f"{key}: {m}")
    states_a, states_b = a["optimizer_states"][0], b["optimizer_states"][0]  # the default recipe: Muon and AdamW
    assert set(states_a) == {"muon", "adamw"} and len(states_a["muon"]["state"]) == 16
    for part, keys in (("muon", ("momentum_buffer",)), ("adamw", ("exp_avg", "exp_avg_sq", "step"))):
        for sa, sb in zip(states_a[part]["state"].values(), states_b[part]["state"].values()):
            for k in keys:
                torch.testing.assert_close(sb[k], sa[k], atol=1e-6, rtol=0)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 2 * n


def test_last_checkpoint_is_the_final_step_when_max_steps_is_off_the_checkpoint_schedule(tmp_path, capsys, monkeypatch):
    """5 steps, a checkpoint every 2: ``last.ckpt`` holds step 5, the step of the run's metrics, not step 4,
    where Lightning's ModelCheckpoint alone leaves it; the scheduled step-4 checkpoint is still there."""
    monkeypatch.setattr(sys, "argv", ["infogap"])
    proc = in_process(capsys, *tiny_fit_args(tmp_path, 5, "--log_with=none", "--checkpoint.every_n_train_steps=2", "--metrics.eval_every_n_steps=0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 5 and json.loads((tmp_path / "metrics.json").read_text())["step"] == 5
    assert torch.load(tmp_path / "checkpoints" / "step0000004.ckpt", weights_only=False)["global_step"] == 4


class _RecordScale(pl.Callback):
    def __init__(self):
        self.scales = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.scales.append(float(pl_module.model.logit_scale.detach()))


def _train(module: ContrastiveModule, data: SyntheticDataModule, steps: int) -> list[float]:
    rec = _RecordScale()
    pl.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, limit_val_batches=0, callbacks=[rec]).fit(module, data)
    return rec.scales


def test_frozen_temperature_stays_frozen():
    data = SyntheticDataModule(k=0, batch_size=32, train_size=512, val_size=64)
    module = ContrastiveModule("tiny", temperature="frozen", init_temperature=0.05, lr=1e-2, text_spec=data.text_spec)
    assert not module.model.logit_scale.requires_grad
    initial = float(module.model.logit_scale)
    assert initial == pytest.approx(math.log(20.0), abs=1e-6)
    scales = _train(module, data, 5)
    assert scales == [initial] * 5
    assert module.logit_scale == pytest.approx(20.0, rel=1e-6)


def test_learnable_temperature_moves_and_is_clamped():
    data = SyntheticDataModule(k=0, batch_size=32, train_size=512, val_size=64)
    module = ContrastiveModule("tiny", temperature="learnable", lr=0.01, warmup_steps=1, text_spec=data.text_spec)
    assert module.model.logit_scale.requires_grad
    scales = _train(module, data, 4)
    assert len(set(scales)) == 4, "a learnable temperature must change every step"
    # started above the clamp (scale 30 > 20): clamped after the first step and never above it
    module = ContrastiveModule("tiny", temperature="learnable", init_temperature=1 / 30, max_logit_scale=20.0, lr=0.01,
                               warmup_steps=1, text_spec=data.text_spec)
    scales = _train(module, data, 4)
    assert scales[0] == pytest.approx(math.log(20.0), abs=1e-6)
    assert max(scales) <= math.log(20.0) + 1e-6


def test_logit_scale_lr_gives_the_temperature_its_own_rate():
    """Same data, same start: only the logit scale's rate differs, so only it moves differently. Adam's
    first steps move a parameter by about its learning rate, so 4 steps at 100x the rate move the
    logit scale far more; the other weights get the plain rate (the group's lr)."""
    data = SyntheticDataModule(k=0, batch_size=32, train_size=512, val_size=64)
    moves = {}
    for own in (None, 0.1):
        torch.manual_seed(0)
        module = ContrastiveModule("tiny", lr=1e-3, logit_scale_lr=own, warmup_steps=1, text_spec=data.text_spec)
        start = module.model.logit_scale.item()
        scales = _train(module, data, 4)
        moves[own] = abs(scales[-1] - start)
        groups = module.trainer.optimizers[0].param_groups
        assert len(groups) == (2 if own is None else 3)
        if own is not None:
            assert groups[2]["params"][0] is module.model.logit_scale and groups[2]["initial_lr"] == own
            assert groups[2]["weight_decay"] == 0.0 and all(g["initial_lr"] == 1e-3 for g in groups[:2])
    assert moves[0.1] > 20 * moves[None] and moves[0.1] > 0.1
    with pytest.raises(ValueError, match="logit_scale_lr must be positive"):
        ContrastiveModule("tiny", logit_scale_lr=0.0, text_spec=data.text_spec)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"channels_last": True}, {"compile": "aot_eager"}])
def test_speed_options_keep_the_numbers(options):
    """channels_last and torch.compile (the aot_eager backend: no C++ toolchain needed) train to the same
    weights as the plain module within float tolerance, and checkpoints keep the plain keys."""
    from torch._dynamo.utils import counters

    counters.clear()
    states = []
    for extra in ({}, options):
        pl.seed_everything(0)
        data = SyntheticDataModule(k=2, batch_size=16, train_size=64, val_size=32)
        module = ContrastiveModule("tiny", text_spec=data.text_spec, warmup_steps=1, **extra)
        _train(module, data, 3)
        states.append(module.state_dict())
    plain, fast = states
    assert list(fast) == list(plain)
    for key, value in plain.items():
        torch.testing.assert_close(fast[key].contiguous(), value, atol=1e-5, rtol=1e-4, msg=lambda m: f"{key}: {m}")
    assert not torch.equal(plain["model.logit_scale"], torch.tensor(math.log(1 / 0.07))), "the runs trained"
    assert (counters["frames"]["ok"] > 0) == ("compile" in options), "the compiled forward ran through dynamo"


def test_no_weight_decay_on_gains_biases_and_logit_scale():
    data = SyntheticDataModule(batch_size=8)
    module = ContrastiveModule("tiny", text_spec=data.text_spec)
    names = {n for n, p in module.model.named_parameters() if no_weight_decay(n, p)}
    assert "logit_scale" in names
    assert any(n.endswith("ln_final.weight") for n in names) and any(n.endswith(".bias") for n in names)
    assert not any(n.endswith("attn.in_proj_weight") for n in names)


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    f = warmup_cosine(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)


def _fit_in_process(args, capsys, monkeypatch) -> tuple[int, str]:
    """``infogap fit ARGS`` in this process (exit code, stderr): the error path without the import cost
    of a subprocess; one case below also runs as a real process."""
    from infogap.cli import main as infogap

    monkeypatch.setattr(sys, "argv", ["infogap"])
    code = infogap(["fit", *args, "--log_with=none", "--trainer.fast_dev_run=true"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, named",
    [
        (["--config", "configs/missing.yaml"], "configs/missing.yaml"),
        (["--config", "configs/synthetic.yaml", "--model.learning_rate=0.1"], "--model.learning_rate"),
        (["--config", "configs/synthetic.yaml", "--model.lr=fast"], "model.lr"),
        (["--config", "configs/synthetic.yaml", "--data.k=7"], "k=7"),
        (["--config", "configs/synthetic.yaml", "--model.pretrained=/nonexistent/weights.pt"], "/nonexistent/weights.pt"),
    ],
)
def test_bad_config_exits_nonzero_with_one_line(args, named, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the configs' relative paths; the run directory is the test's own (runs/synthetic may hold a user's run)
    code, err = _fit_in_process([*args, f"--trainer.default_root_dir={tmp_path / 'run'}"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("infogap fit: error:") and named in last


@pytest.mark.slow
def test_bad_config_as_a_real_process():
    proc = cli("fit", "--config", "configs/synthetic.yaml", "--model.learning_rate=0.1", "--log_with=none")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("infogap fit: error:")


def test_unknown_key_in_yaml_file_is_named(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "bad.yaml"
    text = (ROOT / "configs/synthetic.yaml").read_text()
    assert text.count("\nmodel:\n") == 1
    cfg.write_text(text.replace("\nmodel:\n", "\nmodel:\n  lr_decay: 0.5\n"))
    code, err = _fit_in_process(["--config", str(cfg)], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert "lr_decay" in err.strip().splitlines()[-1]


def test_help_lists_every_subcommand(capsys, monkeypatch):
    from infogap.cli import SUBCOMMANDS
    from infogap.cli import main as infogap

    assert infogap(["--help"]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"  {name} " in out
    monkeypatch.setattr(sys, "argv", ["infogap"])
    with pytest.raises(SystemExit) as exc:
        infogap(["fit", "--help"])
    assert exc.value.code == 0 and "--model.temperature" in capsys.readouterr().out


def test_the_quiet_trainer_of_the_analyses_fits_has_no_logger_checkpoint_or_bar_unless_asked(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    from infogap.train.quiet import quiet_trainer

    t = quiet_trainer(7)
    assert (t.max_steps, t.max_epochs, t.num_devices) == (7, 1, 1)
    assert t.logger is None and t.checkpoint_callback is None and t.progress_bar_callback is None and t.num_sanity_val_steps == 0
    logged = quiet_trainer(3, max_epochs=4, logger=CSVLogger(tmp_path), limit_val_batches=0)
    assert isinstance(logged.logger, CSVLogger) and logged.max_epochs == 4 and logged.limit_val_batches == 0
