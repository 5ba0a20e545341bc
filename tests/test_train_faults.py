"""A killed, preempted or corrupted run never changes a result (issue: faults): the evaluation history
survives a resume, SIGTERM and Ctrl-C save a checkpoint and exit non-zero, a run directory belongs to
one run, a corrupt checkpoint falls back to an intact one, and bad files are one-line errors."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT
from tests.helpers.processes import cli, in_process, tiny_fit_args

COMMON = ["--log_with=none", "--data.train_size=128", "--metrics.eval_every_n_steps=4", "--checkpoint.every_n_train_steps=2"]


def _record(run_dir) -> dict:
    record = json.loads((run_dir / "metrics.json").read_text())
    record.pop("eval_seconds")  # wall time, the one field that may differ
    return record


def _callback(name: str, **init) -> str:
    return '--trainer.callbacks+=' + json.dumps({"class_path": f"tests.helpers.faults.{name}", "init_args": init})


@pytest.mark.slow
def test_a_resumed_run_writes_the_metrics_and_history_of_an_uninterrupted_one(tmp_path):
    """Killed (SIGKILL, no chance to save anything) at step 7, between the evaluations of steps 4 and 8;
    resumed from its step-6 checkpoint: metrics.json, history from step 0 included, equals the run that
    was never interrupted."""
    full = cli(*tiny_fit_args(tmp_path / "full", 12, *COMMON))
    assert full.returncode == 0, full.stderr[-3000:]
    killed = cli(*tiny_fit_args(tmp_path / "resumed", 12, *COMMON, _callback("KillAtStep", step=7)))
    assert killed.returncode == 0 and not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = cli(*tiny_fit_args(tmp_path / "resumed", 12, *COMMON, "--ckpt_path=last"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _record(tmp_path / "full"), _record(tmp_path / "resumed")
    assert sorted(b["history"], key=int) == ["0", "4", "8", "12"]
    assert json.dumps(b, sort_keys=True) == json.dumps(a, sort_keys=True)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_nonzero_and_the_resume_completes_the_run(tmp_path):
    run = tmp_path / "run"
    stopped = cli(*tiny_fit_args(run, 12, *COMMON, _callback("SignalAtStep", step=5, signal="SIGTERM")))
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    line = stopped.stderr.strip().splitlines()[-1]
    assert line.startswith("infogap fit: interrupted by SIGTERM at step 5; checkpoint saved to") and "Traceback" not in stopped.stderr
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5
    assert json.loads((run / "progress.json").read_text())["status"] == "interrupted" and not (run / "metrics.json").exists()
    again = cli(*tiny_fit_args(run, 12, *COMMON, "--ckpt_path=last"))
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["step"] == 12 and sorted(record["history"], key=int) == ["0", "4", "8", "12"]
    assert json.loads((run / "progress.json").read_text())["status"] == "done"


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    run = tmp_path / "run"
    stopped = cli(*tiny_fit_args(run, 12, *COMMON, _callback("SignalAtStep", step=3, signal="SIGINT")))
    assert stopped.returncode == 130 and "interrupted by SIGINT at step 3" in stopped.stderr.strip().splitlines()[-1]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert json.loads((run / "progress.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_a_run_directory_belongs_to_one_run(tmp_path):
    """Training again into a finished run's directory is refused (its checkpoints and metrics stay as they
    are); --overwrite=true starts afresh and leaves no file of the old run."""
    run = tmp_path / "run"
    assert cli(*tiny_fit_args(run, 6, *COMMON)).returncode == 0
    before = {p.name: p.read_bytes() for p in [run / "metrics.json", run / "checkpoints" / "last.ckpt"]}
    again = cli(*tiny_fit_args(run, 4, *COMMON))
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert "holds another run" in again.stderr and "--ckpt_path=last" in again.stderr and "--overwrite=true" in again.stderr
    assert {p.name: p.read_bytes() for p in [run / "metrics.json", run / "checkpoints" / "last.ckpt"]} == before
    fresh = cli(*tiny_fit_args(run, 4, *COMMON, "--overwrite=true"))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["step"] == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step0000004.ckpt"]  # no last-v1.ckpt, no step 6
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


@pytest.mark.slow
def test_a_truncated_last_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    run = tmp_path / "run"
    killed = cli(*tiny_fit_args(run, 12, *COMMON, _callback("KillAtStep", step=7)))
    assert killed.returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    intact = run / "checkpoints" / "step0000006.ckpt"
    assert torch.load(intact, weights_only=False)["global_step"] == 6
    last.write_bytes(last.read_bytes()[:1000])  # a disk filled up, a copy cut short
    resumed = cli(*tiny_fit_args(run, 12, *COMMON, "--ckpt_path=last"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"infogap fit: warning: checkpoint {last} is skipped: not a readable checkpoint" in resumed.stderr
    assert f"resuming from {intact}" in resumed.stderr and (run / "checkpoints" / "last.ckpt.corrupt").is_file()
    assert json.loads((run / "metrics.json").read_text())["step"] == 12


def test_checkpoint_problems_by_kind(tmp_path):
    from infogap.train.checkpoints import checkpoint_problem, newest_intact

    good = tmp_path / "checkpoints" / "a.ckpt"
    good.parent.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 1}, good)
    (tmp_path / "checkpoints" / "empty.ckpt").write_bytes(b"")
    (tmp_path / "checkpoints" / "text.ckpt").write_text("not a checkpoint")
    torch.save([1, 2, 3], tmp_path / "checkpoints" / "list.ckpt")
    assert checkpoint_problem(good) is None
    assert checkpoint_problem(tmp_path / "checkpoints" / "empty.ckpt") == "an empty file"
    assert checkpoint_problem(tmp_path / "checkpoints" / "text.ckpt").startswith("not a readable checkpoint")
    assert checkpoint_problem(tmp_path / "checkpoints" / "list.ckpt") == "not a training checkpoint (no state_dict)"
    os.utime(good, (1, 1))  # the oldest: the corrupt ones are tried first and skipped
    use, skipped = newest_intact(tmp_path / "checkpoints")
    assert use == good and {p.name for p, _ in skipped} == {"empty.ckpt", "text.ckpt", "list.ckpt"}


# --- one line for every bad file ------------------------------------------------------------------
def _one_line(proc, *fragments):
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.golden_cases import GOLDEN

    path = tmp_path_factory.mktemp("ck") / "model.ckpt"
    shutil.copy(GOLDEN / "run" / "model.pt", path)
    return path


@pytest.mark.parametrize("kind, fragment", [("truncated", "not a readable PyTorch checkpoint"), ("empty", "the file is empty"),
                                            ("text", "not a readable PyTorch checkpoint"), ("list", "holds a list, not model weights")])
def test_export_ckpt_of_a_bad_file_is_one_line(kind, fragment, checkpoint, tmp_path, capsys):
    """In this process (the command's error path); the truncated file also through a real process."""
    bad = tmp_path / f"{kind}.ckpt"
    if kind == "truncated":
        bad.write_bytes(checkpoint.read_bytes()[:5000])
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "text":
        bad.write_text("trainer:\n  max_steps: 3\n")
    else:
        torch.save([1, 2], bad)
    out = tmp_path / "out.pt"
    _one_line(in_process(capsys, "export-ckpt", str(bad), "--out", str(out)), str(bad), fragment)
    if kind == "truncated":
        _one_line(cli("export-ckpt", str(bad), "--out", str(out)), str(bad), fragment)
    assert not out.exists()


def test_export_ckpt_out_must_be_a_file_path(checkpoint, tmp_path, capsys):
    _one_line(in_process(capsys, "export-ckpt", str(checkpoint), "--out", str(tmp_path)), "is a directory")
    (tmp_path / "afile").write_text("x")
    _one_line(in_process(capsys, "export-ckpt", str(checkpoint), "--out", str(tmp_path / "afile" / "m.pt")), "is a file, not a directory")


@pytest.mark.slow
@pytest.mark.parametrize("kind, fragment", [("yaml", "not a readable PyTorch checkpoint"), ("truncated", "not a readable PyTorch checkpoint"),
                                            ("other", "its weights do not fit this model")])
def test_a_bad_pretrained_checkpoint_is_one_line_before_step_0(kind, fragment, checkpoint, tmp_path):
    bad = tmp_path / f"{kind}.ckpt"
    if kind == "yaml":
        shutil.copy(ROOT / "configs" / "synthetic.yaml", bad)
    elif kind == "truncated":
        bad.write_bytes(checkpoint.read_bytes()[:5000])
    else:
        bad = checkpoint  # a tiny model's weights, given to a small one
    proc = cli(*tiny_fit_args(tmp_path / "run", 2, "--log_with=none", "--model.model=small", f"--model.pretrained={bad}"))
    _one_line(proc, "model.pretrained", str(bad), fragment)
    assert not (tmp_path / "run" / "checkpoints").exists()


def _npz(tmp_path, kind):
    import numpy as np

    path = tmp_path / f"{kind}.npz"
    good = tmp_path / "good.npz"
    np.savez_compressed(good, image=np.eye(6, 4), text=np.eye(6, 4), X=np.eye(3, 4), Y=np.eye(3, 4), A=np.eye(2, 4), B=np.eye(2, 4))
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:200])
    elif kind == "crc":
        data = bytearray(good.read_bytes())
        start = data.find(b"image.npy") + 60  # inside the first member's compressed data
        data[start: start + 8] = b"\x00" * 8
        path.write_bytes(bytes(data))
    else:
        np.savez(path, image=np.ones(5), text=np.ones(5), X=np.ones(3), Y=np.ones(3), A=np.ones(2), B=np.ones(2))
    return path


@pytest.mark.parametrize("kind, fragment", [("empty", "the file is empty"), ("truncated", "not a readable .npz"), ("crc", "not a readable .npz"),
                                            ("flat", "must be 2-D")])
def test_metrics_and_analyze_eat_on_a_bad_npz_are_one_line(kind, fragment, tmp_path, capsys):
    path = _npz(tmp_path, kind)
    _one_line(in_process(capsys, "metrics", "--embeddings", str(path)), str(path), fragment)
    _one_line(in_process(capsys, "analyze", "eat", "--embeddings", str(path)), str(path), fragment)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    from infogap.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_steps: [1\n")
    assert main(["fit", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"infogap fit: error: {bad}, line 3") and "YAML syntax error" in err and len(err.splitlines()) == 1
    assert main(["ablate", str(bad), "--dry-run"]) == 2
    assert f"{bad}, line 3" in capsys.readouterr().err


def test_version_and_help_of_each_analysis(capsys):
    from infogap import __version__
    from infogap.cli import main

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"infogap {__version__}"
    for name, words in (("gap-performance", "Kendall"), ("eat", "association"), ("heads", "TEXTSPAN"), ("learn-forget", "IIMM")):
        with pytest.raises(SystemExit) as exit_:
            main(["analyze", name, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert f"infogap analyze {name}" in text and words in text


def test_data_export_refuses_to_mix_with_older_shards(tmp_path, capsys):
    out = tmp_path / "shards"
    first = in_process(capsys, "data", "export", "--out", str(out), "--n", "30", "--shard-size", "20")
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.tar")) == ["synthetic-train-000000.tar", "synthetic-train-000001.tar"]
    again = in_process(capsys, "data", "export", "--out", str(out), "--n", "10", "--shard-size", "20")
    _one_line(again, "already holds 3 file(s) of the train split", "--overwrite")
    replaced = in_process(capsys, "data", "export", "--out", str(out), "--n", "10", "--shard-size", "20", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    manifest = json.loads(replaced.stdout.strip().splitlines()[-1])
    assert manifest["shards"] == ["synthetic-train-000000.tar"] and manifest["samples"] == 10
    assert sorted(p.name for p in out.glob("*.tar")) == ["synthetic-train-000000.tar"]
    assert json.loads((out / "synthetic-train.json").read_text()) == manifest
    (tmp_path / "afile").write_text("x")
    _one_line(in_process(capsys, "data", "export", "--out", str(tmp_path / "afile" / "sub"), "--n", "5"), "is a file, not a directory")


def test_sigterm_exit_code_is_128_plus_the_signal():
    from infogap.train.cli import Interrupted

    assert Interrupted("SIGTERM", 5, ROOT).exit_code == 128 + signal.SIGTERM
    assert Interrupted("SIGINT", 5, ROOT).exit_code == 128 + signal.SIGINT


@pytest.mark.slow
def test_the_ablate_process_stopped_by_sigint_stops_its_runs_and_resumes_them(tmp_path):
    """Ctrl-C in `infogap ablate` (SIGINT to the launcher, deterministically while its run is parked at
    step 2): the run saves its checkpoint and stops, progress says interrupted, one line, exit 130; the
    same command again resumes it to the end."""
    from tests.helpers.processes import TINY_OVERRIDES, wait_for

    out = tmp_path / "out"
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_steps")] + ["trainer.max_steps=8", "checkpoint.every_n_train_steps=2"]
    park = 'trainer.callbacks+=[{"class_path": "tests.helpers.faults.ParkUntilSignalled", "init_args": {"step": 2}}]'
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "infogap", "ablate", "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *overrides]
    proc = subprocess.Popen([*args, park], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = out / "imbalance" / "runs" / "train__k=0__seed=0"
    try:
        wait_for(lambda: (run / "parked-at-step-2").exists() or proc.poll() is not None, "the run to park at step 2")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("infogap ablate imbalance: interrupted by SIGINT: 1 running run(s) saved a checkpoint")
    assert "Traceback" not in stderr
    assert json.loads((run / "progress.json").read_text())["status"] == "interrupted"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3 and not (run / "metrics.json").exists()
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "run(s) failed" not in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]  # 1: k = 5 not run
    assert json.loads((run / "metrics.json").read_text())["step"] == 8
    assert "Restoring states from the checkpoint path" in (run / "train.log").read_text()
