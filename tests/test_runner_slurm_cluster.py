"""On a real one-node SLURM cluster started by the fixture (munge + slurmctld + slurmd): an ablation
submitted as array jobs aggregates into summary.csv, and a pre-empted job (SIGUSR1) checkpoints,
requeues itself and resumes from that checkpoint without losing steps."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT
from tests.helpers.processes import TINY_OVERRIDES, cli, wait_for
from tests.slurm_cluster import (
    ClusterUnavailable,
    LocalCluster,
    squeue_state,
    wait_for_jobs,
)

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def slurm():
    # not under pytest's private (0700) tmp dir: munged runs as the munge user and must reach its files
    root = Path(tempfile.mkdtemp(prefix="infogap-slurm-"))
    try:
        with LocalCluster(root) as env:
            yield {**env, "INFOGAP_PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    except ClusterUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no SLURM cluster in CI: {exc}")
        pytest.skip(str(exc))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_ablation_as_slurm_array_jobs_aggregates(slurm, tmp_path):
    out = tmp_path / "results"
    proc = cli("ablate", "imbalance", "--launcher", "slurm", "--only", "k=0,5", "--seeds", "0", "--out", str(out),
               "--cpus-per-task", "1", "--time", "00:20:00", *TINY_OVERRIDES, env=slurm)
    assert proc.returncode == 0, proc.stderr
    jobs = [line.split("job ")[-1].strip() for line in proc.stdout.splitlines() if line.startswith("submitted")]
    assert len(jobs) == 2, proc.stdout  # the array of the one stage, then the aggregation
    wait_for_jobs(slurm, jobs, timeout=400)
    logs = sorted((out / "imbalance" / "slurm").glob("*.out"))
    assert len(logs) == 3, logs  # two array tasks, one aggregation
    summary = out / "imbalance" / "summary.csv"
    assert summary.is_file(), "\n".join(p.read_text()[-2000:] for p in logs)
    rows = list(csv.DictReader(summary.open()))
    assert sorted(int(r["k"]) for r in rows) == [0, 5]
    assert all(float(r["rmg"]) > 0 for r in rows)
    for k in (0, 5):
        ckpt = torch.load(out / "imbalance" / "runs" / f"train__k={k}__seed=0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == 4


def test_sigusr1_requeues_and_resumes_without_losing_steps(slurm, tmp_path):
    """The run parks itself at step 30 (tests.helpers.faults.ParkAtStep) until the signal is handled, so the
    signal always lands mid-run, whatever the machine's speed."""
    run = tmp_path / "run"
    steps, park = 60, 30
    argv = ["sbatch", "--parsable", "--job-name=infogap-requeue", f"--output={tmp_path}/%x-%j.out", f"--export=ALL,INFOGAP_ROOT={ROOT}",
            "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1", "--time=00:20:00",
            str(ROOT / "slurm" / "train.sbatch"), "--config", str(ROOT / "configs" / "synthetic.yaml"),
            f"--trainer.default_root_dir={run}", f"--trainer.max_steps={steps}", "--trainer.enable_progress_bar=false",
            "--trainer.limit_val_batches=0", "--trainer.val_check_interval=1000000", "--log_with=none",
            "--checkpoint.every_n_train_steps=25", "--metrics.eval_every_n_steps=0", "--metrics.eval_at_start=false",
            "--metrics.num_samples=64", "--metrics.prompts_per_value=2", "--data.val_size=64",
            '--trainer.callbacks+={"class_path": "tests.helpers.faults.ParkAtStep", "init_args": {"step": %d}}' % park]
    proc = subprocess.run(argv, env=slurm, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    log = tmp_path / f"infogap-requeue-{job}.out"
    tail = lambda: log.read_text()[-3000:] if log.exists() else "no log"  # noqa: E731

    wait_for(lambda: (run / f"parked-at-step-{park}").is_file() or squeue_state(slurm, job) not in ("PENDING", "RUNNING"),
             "the run parked at its step", detail=tail)
    assert (run / f"parked-at-step-{park}").is_file(), tail()
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm, check=True)

    hpc = run / "hpc_ckpt_1.ckpt"
    wait_for(lambda: squeue_state(slurm, job) in ("PENDING", "REQUEUED") and hpc.is_file(), "the requeue", detail=tail)
    # SLURM holds a requeued job back (BeginTime) for a while; release it now to keep the test short
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm, check=True)
    wait_for_jobs(slurm, [job], timeout=400)

    text = log.read_text()
    assert torch.load(hpc, map_location="cpu", weights_only=False)["global_step"] == park, text[-3000:]
    assert "Handling auto-requeue signal" in text and "requeued" in text.lower()
    assert "restart 1" in text  # the second start of the same job (slurm/common.sh prints SLURM_RESTART_COUNT)
    assert f"Restoring states from the checkpoint path at {hpc}" in text, text[-3000:]
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == steps
    assert (run / "metrics.json").is_file()
