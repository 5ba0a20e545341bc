"""No silent wrong result: a run trained with other settings is never reused, resumed or reported as the
plan's; ``last.ckpt`` is always a run's last state; one process per run directory and results folder;
bad embeddings, counts and flags are refused at the door; a full disk fails in one line and leaves no
half-written file; the tracebacks a new user met are one line. Each test fails on the code before this
was built (the case it guards is named in its docstring)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import ROOT
from tests.helpers.processes import TINY_OVERRIDES, ablate, cli, tiny_fit_args


def _infogap(capsys, *args) -> tuple[int, str, str]:
    """``infogap ARGS`` in this process: (exit code, stdout, stderr)."""
    from infogap.cli import main as infogap

    capsys.readouterr()
    code = infogap(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *named: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


# --- 1. a finished run is reused only when its recorded identity equals the plan's -----------------
def _fake_finished_run(out: Path, *overrides: str, ablation: str = "imbalance"):
    """A run of ``ablation`` (k=0, seed 0) recorded as trained with ``overrides``: its run.json as the
    launcher writes it, and a metrics.json that reads back whole."""
    from infogap.ablations.runner.identity import write_identity
    from infogap.ablations.runner.expand import resolve

    r = resolve(ablation, list(overrides), [], [0], ["k=0"], out)
    run = r.runs[0]
    write_identity(r.ablation, run)
    (run.dir / "metrics.json").write_text(json.dumps({"metrics": {"rmg": 0.5}, "history": {"0": {}}, "step": 4}))
    return r.ablation, run


def test_a_run_trained_with_another_max_steps_is_refused_in_one_line(tmp_path, capsys):
    """Was: "1 already finished, 0 to run" and the 4-step run reported for a plan of 6 steps."""
    out = tmp_path / "out"
    _fake_finished_run(out, "trainer.max_steps=4", "log_with=none")
    proc = ablate(capsys, "imbalance", "--out", str(out), "--seeds", "0", "--only", "k=0", "trainer.max_steps=6", "log_with=none")
    _one_line_error(proc.returncode, proc.stderr, "train k=0 seed=0", "trained with trainer.max_steps=4, this plan asks 6", "--rerun")
    dry = ablate(capsys, "imbalance", "--out", str(out), "--seeds", "0", "--only", "k=0", "trainer.max_steps=6", "--dry-run")
    assert dry.returncode == 0 and "[trained otherwise: trained with trainer.max_steps=4, this plan asks 6; refused without --rerun]" in dry.stdout
    # logging settings are not part of the identity: the same run with another logger is the plan's run
    same = ablate(capsys, "imbalance", "--out", str(out), "--seeds", "0", "--only", "k=0", "trainer.max_steps=4", "log_with=csv", "--dry-run")
    assert "[finished]" in same.stdout
    # --aggregate-only reports nothing trained otherwise either
    agg = ablate(capsys, "imbalance", "--out", str(out), "--seeds", "0", "--only", "k=0", "trainer.max_steps=6", "--aggregate-only")
    _one_line_error(agg.returncode, agg.stderr, "trained with trainer.max_steps=4")


def test_rerun_moves_the_old_run_aside_and_keeps_it(tmp_path):
    from infogap.ablations.runner.identity import check_identities
    from infogap.ablations.runner.expand import resolve

    out = tmp_path / "out"
    _, old = _fake_finished_run(out, "trainer.max_steps=4")
    r = resolve("imbalance", ["trainer.max_steps=6"], [], [0], ["k=0"], out)
    assert check_identities(r.ablation, r.runs, rerun=True) == r.runs[:1]
    kept = out / "imbalance" / "superseded" / "train__k=0__seed=0-1"
    assert not old.dir.exists() and json.loads((kept / "metrics.json").read_text())["step"] == 4
    assert not r.runs[0].finished
    _fake_finished_run(out, "trainer.max_steps=5")
    check_identities(r.ablation, r.runs, rerun=True)
    assert (out / "imbalance" / "superseded" / "train__k=0__seed=0-2").is_dir() and kept.is_dir()  # a second one never overwrites the first


def test_a_changed_base_config_is_refused(tmp_path):
    """Was: the same run reused after configs/synthetic.yaml changed (only its hash was recorded)."""
    from infogap.ablations.runner.identity import check_identities
    from infogap.ablations.runner.expand import resolve

    base = tmp_path / "synthetic.yaml"
    shutil.copy(ROOT / "configs" / "synthetic.yaml", base)
    spec = yaml.safe_load((ROOT / "configs" / "ablations" / "imbalance.yaml").read_text())
    spec["base_config"] = str(base)
    path = tmp_path / "imbalance.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    _fake_finished_run(out, ablation=str(path))
    r = resolve(str(path), [], [], [0], ["k=0"], out)
    check_identities(r.ablation, r.runs)  # unchanged: the run is the plan's
    changed = re.sub(r"(?m)^  lr: .*$", "  lr: 0.004", base.read_text())
    assert changed != base.read_text()
    base.write_text(changed)
    r = resolve(str(path), [], [], [0], ["k=0"], out)
    with pytest.raises(ValueError, match=r"trained with another content of synthetic\.yaml \(sha256 [0-9a-f]{12}, now [0-9a-f]{12}\)"):
        check_identities(r.ablation, r.runs)


def test_a_finished_run_without_a_recorded_identity_is_refused(tmp_path):
    from infogap.ablations.runner.identity import check_identities

    ablation, run = _fake_finished_run(tmp_path / "out")
    (run.dir / "run.json").unlink()
    with pytest.raises(ValueError, match="records no run.json, so how it was trained is unknown"):
        check_identities(ablation, [run])


def test_reproduce_refuses_a_plan_whose_runs_were_trained_otherwise(tmp_path):
    """The same rule in ``infogap reproduce``, checked for every study before any run starts."""
    from infogap.ablations.runner.reproduce import Entry, Plan, plan_runs

    out = tmp_path / "out"
    _fake_finished_run(out, *TINY_OVERRIDES)
    plan = Plan("test", "", [*TINY_OVERRIDES], [Entry("imbalance", [0], only=["k=0"])])
    assert plan_runs(plan, out, check=True) == {"imbalance": (1, 1)}
    plan.overrides = [o.replace("trainer.max_steps=4", "trainer.max_steps=8") for o in plan.overrides]
    with pytest.raises(ValueError, match="trained with trainer.max_steps=4, this plan asks 8"):
        plan_runs(plan, out, check=True)
    assert plan_runs(plan, out, check=True, rerun=True) == {"imbalance": (1, 1)}  # --rerun: the ablate lines move it


# --- 3. one process per run directory ------------------------------------------------------------
def _holder(directory: Path) -> subprocess.Popen:
    """A process that holds ``directory`` (as ``infogap fit`` holds its run directory) until killed."""
    code = ("import sys, time; sys.argv = ['infogap', 'fit', '--holder']; from infogap.train.locks import hold; "
            f"lock = hold({str(directory)!r}, 'dir'); print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_directory_is_refused_at_once_naming_its_holder_and_sigkill_leaves_no_lock(tmp_path, capsys, monkeypatch):
    """Was: two fits into one run directory both exit 0 with config.yaml of one, metrics.json of the other."""
    from infogap.train.locks import DirectoryInUse, hold

    run_dir = tmp_path / "run"
    holder = _holder(run_dir)
    try:
        with pytest.raises(DirectoryInUse, match=rf"dir={run_dir} is in use by pid {holder.pid} on .* \(infogap fit --holder\)"):
            hold(run_dir, "dir")
        monkeypatch.setattr(sys, "argv", ["infogap"])
        code, _, err = _infogap(capsys, *tiny_fit_args(run_dir, 2, "--log_with=none"))
        _one_line_error(code, err, f"trainer.default_root_dir={run_dir} is in use by pid {holder.pid}")
        assert not (run_dir / "config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    hold(run_dir, "dir").release()  # the killed holder left no lock


def test_ablate_and_reproduce_refuse_a_results_folder_in_use(tmp_path, capsys):
    out = tmp_path / "out"
    holder = _holder(out / "imbalance")
    try:
        proc = ablate(capsys, "imbalance", "--out", str(out), "--seeds", "0", "--only", "k=0", *TINY_OVERRIDES)
        _one_line_error(proc.returncode, proc.stderr, f"--out={out / 'imbalance'} is in use by pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    holder = _holder(out)
    try:
        code, _, err = _infogap(capsys, "reproduce", "--size", "smoke", "--out", str(out))
        _one_line_error(code, err, f"--out={out} is in use by pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# --- 4. inputs checked at the door ------------------------------------------------------------------
def _embeddings(path: Path, image: np.ndarray, text: np.ndarray) -> Path:
    labels = np.arange(len(image)) % 3
    np.savez(path, image=image, text=text, labels_object=labels)
    return path


def test_metrics_refuses_zero_rows_and_casts_mixed_dtypes(tmp_path, capsys):
    """Was: rmg 0.499 from all-zero image rows, and a traceback for float64 images with float32 texts."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    zero = x.copy()
    zero[5] = 0
    code, _, err = _infogap(capsys, "metrics", "--embeddings", str(_embeddings(tmp_path / "z.npz", zero, y)))
    _one_line_error(code, err, "'image' has all-zero rows (the first is row 5)")
    code, out, err = _infogap(capsys, "metrics", "--embeddings", str(_embeddings(tmp_path / "m.npz", x, y.astype(np.float32))), "--metrics", "l2m")
    same = _infogap(capsys, "metrics", "--embeddings", str(_embeddings(tmp_path / "s.npz", x, y.astype(np.float32).astype(np.float64))), "--metrics", "l2m")
    assert code == 0 and json.loads(out)["l2m"] == pytest.approx(json.loads(same[1])["l2m"], abs=1e-12), err


def _fake_run(root: Path, name: str, rmg: float) -> Path:
    run = root / name
    run.mkdir(parents=True)
    metrics = {"rmg": rmg, "l2m": rmg / 2, "l2i": rmg / 3, "recall_i2t@1": 1 - rmg, "recall_t2i@1": 1 - rmg}
    (run / "metrics.json").write_text(json.dumps({"metrics": metrics, "history": {}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"init_args": {"k": 5}}}))
    return run


def test_gap_performance_refuses_a_model_given_twice_and_a_broken_one(tmp_path, capsys):
    """Was: the same run given 3 times counted as 3 models, and τ = -1.000 from a NaN model."""
    a, b, c = (_fake_run(tmp_path, n, r) for n, r in (("a", 0.1), ("b", 0.2), ("c", 0.3)))
    code, _, err = _infogap(capsys, "analyze", "gap-performance", str(a), str(a), str(a), "--out", str(tmp_path / "gp"))
    _one_line_error(code, err, f"{a}: the same model as {a}")
    shutil.copytree(a, tmp_path / "copy")
    code, _, err = _infogap(capsys, "analyze", "gap-performance", str(a), str(b), str(tmp_path / "copy"), "--out", str(tmp_path / "gp"))
    _one_line_error(code, err, "the same model as", "(given twice, or a copy of it)")
    (c / "metrics.json").write_text(json.dumps({"metrics": {"rmg": float("nan"), "l2m": 0.1, "l2i": 0.1, "recall_i2t@1": 0.5,
                                                            "recall_t2i@1": 0.5}, "history": {}}))
    code, _, err = _infogap(capsys, "analyze", "gap-performance", str(a), str(b), str(c), "--out", str(tmp_path / "gp"))
    _one_line_error(code, err, "model c: rmg is nan, not a finite number")
    rng = np.random.default_rng(1)
    nan = rng.normal(size=(12, 4))
    nan[3, 1] = np.nan
    npz = _embeddings(tmp_path / "nan.npz", nan, rng.normal(size=(12, 4)))
    code, _, err = _infogap(capsys, "analyze", "gap-performance", str(a), str(b), str(npz), "--out", str(tmp_path / "gp"))
    _one_line_error(code, err, f"{npz}: 'image' contains NaN or infinite values")


def test_eat_refuses_an_all_zero_embedding(tmp_path, capsys):
    rng = np.random.default_rng(2)
    sets = {s: rng.normal(size=(4, 6)) for s in "XYAB"}
    sets["A"][2] = 0
    np.savez(tmp_path / "eat.npz", **sets)
    code, _, err = _infogap(capsys, "analyze", "eat", "--embeddings", str(tmp_path / "eat.npz"))
    _one_line_error(code, err, "array A has all-zero rows (the first is row 2)")


@pytest.mark.parametrize("args, named", [
    (["data", "export", "--out", "{tmp}/x", "--n", "0"], "--n must be >= 1, got 0"),
    (["data", "export", "--out", "{tmp}/x", "--n", "-5"], "--n must be >= 1, got -5"),
    (["data", "export", "--out", "{tmp}/x", "--shard-size", "0"], "--shard-size must be >= 1, got 0"),
    (["data", "preview", "--cols", "0", "--out", "{tmp}/g.png"], "--cols must be >= 1, got 0"),
    (["data", "preview", "--epoch", "-3", "--out", "{tmp}/g.png"], "--epoch must be >= 0, got -3"),
    (["data", "preview", "--split", "val", "--epoch", "2", "--out", "{tmp}/g.png"], "--epoch 2: the val split is one fixed set"),
    (["ablate", "imbalance", "--seeds", "-1", "--dry-run"], "--seeds: seed -1 is out of range"),
    (["ablate", "imbalance", "--launcher", "slurm", "--partition", "", "--dry-run"], "--partition: an empty value"),
    (["ablate", "imbalance", "--dry-run", "--aggregate-only"], "--dry-run and --aggregate-only contradict each other"),
    (["ablate", "imbalance", "--launcher", "slurm", "--jobs", "4", "--dry-run"], "--jobs 4 is for the local launcher"),
    (["ablate", "imbalance", "--rerun", "--aggregate-only"], "--rerun trains runs again; it does not go with --aggregate-only"),
    (["reproduce", "--size", "smoke", "--launcher", "slurm", "--jobs", "2", "--dry-run"], "--jobs 2 is for the local launcher"),
    (["reproduce", "--size", "smoke", "--dry-run", "--report-only"], "--dry-run and --report-only contradict each other"),
    (["embed", "--model", "tiny-bpe", "--shards", "x.tar", "--out", "{tmp}/file/x.npz"], "--out {tmp}/file/x.npz: {tmp}/file is a file"),
    (["embed", "--model", "tiny-bpe", "--shards", "{tmp}/none-{{000..001}}.tar", "--out", "{tmp}/e.npz"], "--shards='{tmp}/none-"),
])
def test_bad_counts_flags_and_paths_are_one_line_before_anything_runs(args, named, tmp_path, capsys):
    """Was: an empty shard for --n 0, --epoch -3 ignored, --seeds -1 failing only in train.log, a
    partition of '', conflicting flags ignored, tracebacks for --cols 0 and --out under a file, and an
    error naming data.train_shards instead of the command's --shards."""
    (tmp_path / "file").write_text("a file")
    code, _, err = _infogap(capsys, *[a.format(tmp=tmp_path) for a in args])
    _one_line_error(code, err, named.format(tmp=tmp_path))
    assert not (tmp_path / "x").exists() and not (tmp_path / "g.png").exists()


def test_reproduce_refuses_a_foreign_or_incomplete_report(tmp_path, capsys):
    """Was: --compare against another plan's report listed every claim as new; --merge and --render-docs
    of a reproduce.json lacking fields gave a traceback."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "reproduce.json").write_text(json.dumps({"size": "cpu", "studies": []}))
    for args in (["--merge", str(foreign), str(foreign), "--out", str(tmp_path / "m")], ["--render-docs", str(foreign)],
                 ["--size", "smoke", "--compare", str(foreign), "--dry-run"]):
        code, _, err = _infogap(capsys, "reproduce", *args)
        _one_line_error(code, err, "is not a report of infogap reproduce (no field 'finished')")
    code, _, err = _infogap(capsys, "reproduce", "--size", "smoke", "--compare", str(ROOT / "docs" / "reproduce-cpu"), "--dry-run")
    _one_line_error(code, err, "is a report of the 'cpu' plan, this is 'smoke': their claims do not compare")
    broken = json.loads((ROOT / "docs" / "reproduce-cpu" / "reproduce.json").read_text())
    del broken["studies"][1]["claims"]
    (foreign / "reproduce.json").write_text(json.dumps(broken))
    code, _, err = _infogap(capsys, "reproduce", "--merge", str(foreign), "--out", str(tmp_path / "m"))
    _one_line_error(code, err, "studies[1] lacks the field 'claims'")


# --- 5. a full disk ---------------------------------------------------------------------------------
def test_a_checkpoint_write_on_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path):
    """The temporary file of the write is /dev/full, which refuses every byte with ENOSPC."""
    import errno

    from infogap.train.checkpoints import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 3}, path)
    before = path.read_bytes()
    (tmp_path / "last.ckpt.tmp").symlink_to("/dev/full")
    with pytest.raises(OSError) as info:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 9}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before and not os.path.lexists(tmp_path / "last.ckpt.tmp")
    assert torch.load(path, weights_only=False)["global_step"] == 3


def test_a_failed_status_reaches_progress_json_on_a_full_disk(tmp_path):
    """Was: progress.json said "done" when the final checkpoint failed; its own atomic write needs a new
    file, which a full disk refuses, so the reason is written over the old file's bytes."""
    from types import SimpleNamespace

    from infogap.train.loggers import ProgressFile, write_json_atomic

    write_json_atomic(tmp_path / "progress.json", {"status": "training", "step": 3, "pad": "x" * 400})
    (tmp_path / "progress.json.tmp").symlink_to("/dev/full")
    trainer = SimpleNamespace(is_global_zero=True, global_step=4, max_steps=4, default_root_dir=str(tmp_path))
    ProgressFile().on_exception(trainer, None, OSError(28, "No space left on device", "last.ckpt"))
    record = json.loads((tmp_path / "progress.json").read_text())
    assert record["status"] == "failed" and record["step"] == 4 and "No space left on device" in record["reason"]


def test_fit_on_a_full_disk_ends_in_one_line_with_no_result_and_a_failed_status(tmp_path, capsys, monkeypatch):
    """Was: a 107-line traceback, a half-written last.ckpt and a progress.json saying "done"."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt.tmp").symlink_to("/dev/full")  # the final checkpoint's write finds the disk full
    monkeypatch.setattr(sys, "argv", ["infogap"])
    code, _, err = _infogap(capsys, *tiny_fit_args(run, 2, "--log_with=none"))
    _one_line_error(code, err, f"no space left on device writing {run / 'checkpoints' / 'last.ckpt'}", "free space")
    assert not (run / "checkpoints" / "last.ckpt").exists() and not (run / "metrics.json").exists()
    progress = json.loads((run / "progress.json").read_text())
    assert progress["status"] == "failed" and "No space left on device" in progress["reason"]


# --- 6-8. tracebacks that are one line now, and help that tells the truth ----------------------------
def test_fit_and_validate_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """Was: tracebacks for max_steps=-5, a run directory under a file and validate of a corrupt checkpoint."""
    monkeypatch.setattr(sys, "argv", ["infogap"])
    code, _, err = _infogap(capsys, *tiny_fit_args(tmp_path / "a", 2, "--log_with=none", "--trainer.max_steps=-5"))
    _one_line_error(code, err, "`max_steps` must be a non-negative integer or -1", "You passed in -5")
    (tmp_path / "file").write_text("x")
    code, _, err = _infogap(capsys, *tiny_fit_args(tmp_path / "file" / "run", 2, "--log_with=none"))
    _one_line_error(code, err, f"trainer.default_root_dir={tmp_path / 'file' / 'run'}: cannot be a directory")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    code, _, err = _infogap(capsys, "validate", "--config", str(ROOT / "configs/synthetic.yaml"), f"--ckpt_path={tmp_path / 'bad.ckpt'}",
                            "--log_with=none", f"--trainer.default_root_dir={tmp_path / 'v'}")
    _one_line_error(code, err, f"--ckpt_path {tmp_path / 'bad.ckpt'}: not a readable checkpoint")


def test_the_progress_bar_counts_steps_and_lightnings_noise_is_quiet(tmp_path, capsys, monkeypatch):
    """Was: "Epoch 0/-2" (the epoch of a run bounded by steps), "160/10" after a resume (the batch index
    past the epoch's length), and the litlogger advertisement and our own data module's __len__ warning
    at every start. The bar is Lightning's rich bar counting the run's optimizer steps."""
    from pytorch_lightning.callbacks import RichProgressBar

    from infogap.train.cli import InfogapCLI

    monkeypatch.setattr(sys, "argv", ["infogap"])
    built = InfogapCLI(tiny_fit_args(tmp_path / "run", 3, "--log_with=none", "--trainer.enable_progress_bar=true")[1:], run=False)
    bar = built.trainer.progress_bar_callback
    assert isinstance(bar, RichProgressBar) and type(bar).__name__ == "StepProgressBar"

    class Progress:  # what the bar's task shows: completed of total
        def __init__(self):
            self.tasks = {}

        def update(self, task, **kw):
            self.tasks[task].update(kw)

    shown = Progress()
    bar._progress_stopped, bar.progress = False, shown
    bar._add_task = lambda total, description, visible=True: shown.tasks.setdefault(0, {"total": total, "description": description}) and 0
    bar._update = lambda task, current, visible=True: shown.tasks[task].update(completed=current)
    bar._update_metrics = lambda trainer, module: None
    bar.refresh = lambda: None
    trainer = type("T", (), {"max_steps": 600, "global_step": 160, "current_epoch": 16})()
    bar.on_train_epoch_start(trainer, None)  # a run resumed at step 160 of 600
    assert shown.tasks[0] == {"total": 600, "description": "step (epoch 16)", "completed": 160}
    trainer.global_step = 161
    bar.on_train_batch_end(trainer, None, None, None, 0)
    assert shown.tasks[0]["completed"] == 161

    code, out, err = _infogap(capsys, *tiny_fit_args(tmp_path / "quiet", 2, "--log_with=none"))
    assert code == 0, err[-2000:]
    for noise in ("Tip:", "has `__len__` defined", "Seed set to"):
        assert noise not in out + err, noise


def test_pretrained_none_is_a_random_initialisation():
    """Was: ``--pretrained none`` documented in four commands and refused as a missing file."""
    from infogap.models import build_model

    torch.manual_seed(0)
    a = build_model("tiny-bpe", pretrained="none")
    torch.manual_seed(0)
    b = build_model("tiny-bpe")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_validate_and_test_write_the_metric_suite_and_config_lands_in_the_run_directory(tmp_path, capsys, monkeypatch):
    """Was: validate and test printed only their loss, and log_with=csv put config.yaml in csv/. The
    suite of validate is the fit's own final evaluation (same model, same validation samples); --ckpt_path=last
    without a checkpoint says it trains from scratch (was: silence)."""
    monkeypatch.setattr(sys, "argv", ["infogap"])
    run = tmp_path / "run"
    code, _, err = _infogap(capsys, *tiny_fit_args(run, 2, "--log_with=csv", "--ckpt_path=last"))
    assert code == 0, err[-3000:]
    assert f"--ckpt_path=last: {run / 'checkpoints'} holds no checkpoint yet; training from scratch" in err
    assert (run / "config.yaml").is_file() and not (run / "csv" / "config.yaml").exists()
    fit = json.loads((run / "metrics.json").read_text())
    common = [f"--config={ROOT / 'configs/synthetic.yaml'}", f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "--log_with=none",
              f"--trainer.default_root_dir={tmp_path / 'eval'}", "--data.batch_size=16", "--data.val_size=64", "--metrics.num_samples=64",
              "--metrics.prompts_per_value=2", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false"]
    code, out, err = _infogap(capsys, "validate", *common)
    assert code == 0, err[-3000:]
    record = json.loads((tmp_path / "eval" / "validate_metrics.json").read_text())
    assert record["split"] == "val" and record["step"] == 2 and record["num_samples"] == 64
    for key in ("rmg", "l2m", "zeroshot_object_acc", "moad_image", "entropy_i2t"):
        assert record["metrics"][key] == pytest.approx(fit["metrics"][key], abs=1e-5), key
    assert "metric suite on 64 val samples (checkpoint at step 2)" in out
    code, out, err = _infogap(capsys, "test", *common)
    assert code == 0, err[-3000:]
    record = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    assert record["split"] == "test" and record["step"] == 2 and record["metrics"]["rmg"] != pytest.approx(fit["metrics"]["rmg"], abs=1e-9)


# --- 2. last.ckpt is the run's last state after any interrupt and resume ------------------------------
def _step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


@pytest.mark.slow
def test_last_ckpt_is_the_last_state_after_an_early_interrupt_and_a_resume_here_or_in_a_copy(tmp_path):
    """Was: interrupted (SIGTERM) before its first periodic checkpoint and resumed, a run wrote its final
    state to last-v1.ckpt and left last.ckpt at the interrupt, which every analysis reads. The same
    happened when the interrupted run directory was copied and resumed there."""
    run = tmp_path / "run"
    common = ("--log_with=none", "--checkpoint.every_n_train_steps=100", "--metrics.eval_every_n_steps=4")
    park = '--trainer.callbacks+={"class_path": "tests.helpers.faults.SignalAtStep", "init_args": {"step": 3, "signal": "SIGTERM"}}'
    stopped = cli(*tiny_fit_args(run, 8, *common, park))
    assert stopped.returncode == 143 and _step(run / "checkpoints" / "last.ckpt") == 3, stopped.stderr[-2000:]
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    for directory in (run, copy):
        again = cli(*tiny_fit_args(directory, 8, *common, "--ckpt_path=last"))
        assert again.returncode == 0, again.stderr[-2000:]
        said = again.stdout + again.stderr  # the resume is exact, and the log says so instead of Lightning's warning
        assert "data: resumed mid-epoch at epoch 0, batch 3" in said and "dataloader is not resumable" not in said, said[-2000:]
        names = sorted(p.name for p in (directory / "checkpoints").iterdir())
        assert names == ["last.ckpt"], names
        assert _step(directory / "checkpoints" / "last.ckpt") == json.loads((directory / "metrics.json").read_text())["step"] == 8
