"""The SLURM launcher without a cluster: array ranges, the plan of array jobs per stage and the aggregation job, the dry run, requeue on SIGUSR1, the newest checkpoint to resume from."""
from __future__ import annotations

import os

import pytest
import torch

from infogap.ablations.runner.local import resume_checkpoint
from infogap.ablations.runner.slurm import (
    SlurmOptions,
    _ranges,
    ablate_args,
    slurm_plan,
)
from infogap.ablations.runner.expand import expand
from infogap.ablations.runner.spec import load_ablation
from tests.helpers import ROOT


# --- SLURM plan ----------------------------------------------------------------------------------
def test_array_ranges():
    assert _ranges([0, 1, 2, 5]) == "0-2,5" and _ranges([3]) == "3" and _ranges([0, 2, 4]) == "0,2,4"


def test_slurm_plan_chains_stages_and_skips_finished_runs(tmp_path):
    ablation = load_ablation("temperature")
    ablation.slurm = {"partition": "gpu", "time": "02:00:00", "gpus_per_node": 2}
    runs = expand(ablation, tmp_path, [0, 1])
    base_seed0 = next(r for r in runs if r.stage == "base" and r.seed == 0)
    base_seed0.dir.mkdir(parents=True)
    (base_seed0.dir / "metrics.json").write_text('{"metrics": {}, "history": {}}')
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
    from infogap.cli import main as infogap

    assert infogap(["ablate", "imbalance", "--launcher", "slurm", "--dry-run", "--out", str(tmp_path), "--seeds", "0",
                    "--partition", "gpu", "--gpus-per-node", "4", "trainer.max_steps=10"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --signal=SIGUSR1@90" in out and "#SBATCH --requeue" in out
    lines = [line for line in out.splitlines() if line.startswith("sbatch ")]
    assert len(lines) == 2 and "--array=0-5" in lines[0] and "--partition=gpu" in lines[0]
    # the array's tasks expand the runs again: --exclude goes with them, or task i would train another run
    assert infogap(["ablate", "imbalance", "--launcher", "slurm", "--dry-run", "--out", str(tmp_path), "--seeds", "0",
                    "--exclude", "k=1,2", "trainer.max_steps=10"]) == 0
    first = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sbatch "))
    assert "--array=0-3" in first and "--exclude k=1,2 " in first


@pytest.mark.parametrize("script", ["train.sbatch", "multinode.sbatch", "array.sbatch"])
def test_sbatch_scripts_request_requeue_on_sigusr1(script):
    text = (ROOT / "slurm" / script).read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text and "#SBATCH --requeue" in text and "srun " in text
    assert os.access(ROOT / "slurm" / script, os.X_OK)


def test_resume_checkpoint_is_the_newest(tmp_path):
    assert resume_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 1}, last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    torch.save({"state_dict": {}, "global_step": 2}, hpc)
    os.utime(last, (1, 1))
    assert resume_checkpoint(tmp_path) == hpc
    os.utime(hpc, (0, 0))
    assert resume_checkpoint(tmp_path) == last
    hpc.write_text("half a checkpoint")  # not readable: skipped and set aside, whatever its time
    os.utime(hpc, (2, 2))
    assert resume_checkpoint(tmp_path) == last and (tmp_path / "hpc_ckpt_1.ckpt.corrupt").is_file()
