"""The benchmark script runs (a smoke mode of a few steps), so it cannot rot; the numbers live in
BENCHMARKS.md, never in assertions."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_file_the_reader_reads(tmp_path):
    """The prepared GPU check on the CPU (``--dry-run``): every part written, DeepSpeed skipped with its
    reason, the DDP run killed by SIGKILL, resumed with its history from step 0 and exported; the
    comparison with open_clip_train has every tool; and the reader renders each part."""
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parts = {p: json.loads((tmp_path / f"{p}.json").read_text())
             for p in ("time_to_target", "strategies", "vs_open_clip", "speed_paths", "metrics", "loaders", "imbalance")}
    t = parts["time_to_target"]
    assert t["recipe"] == "default" and t["every"] == 2 and list(t["tiny"]["seeds"]) == ["0"] and "small" not in t
    assert t["tiny"]["seeds"]["0"]["step"] <= 4 and t["tiny"]["reached"] in ("0/1", "1/1")
    s = parts["strategies"]
    for name in ("zero1", "zero2", "zero3"):
        assert "without" in s[name]["skipped"]
    assert s["ddp"]["killed_at_step"] == 4 and s["ddp"]["resumed_from"] == "step0000003.ckpt" and s["ddp"]["final_step"] == 6
    assert s["ddp"]["history_steps"][0] == 0 and s["ddp"]["history_steps"][-1] == 6 and s["ddp"]["exported_mib"] > 0
    v = parts["vs_open_clip"]
    assert v["steps"] == 6
    for tool in ("open_clip_train", "infogap_table", "infogap_shards"):
        assert len(v["runs"][tool]) == 1 and v[tool]["wall_s"] > 0 and v[tool]["steady_samples_per_s"] > 0
    assert parts["speed_paths"]["bf16_channels_last"]["steady_samples_per_s"] > 0 and "skipped" in parts["speed_paths"]["bf16_compile"]
    # L2M, L2I, RMG, alignment, 4 gap shares, MOAD image / text and per non-object factor (colour, thickness) on each: 14
    assert parts["metrics"]["n1000"]["metrics"] == 14 and parts["metrics"]["n500"]["suite"] == "full"
    assert "skipped" in parts["loaders"]
    assert parts["imbalance"]["runs"] == ["k5_seed0"]
    run = json.loads((tmp_path / "imbalance" / "k5_seed0.json").read_text())
    assert run["k"] == 5 and 0 <= run["metrics"]["rmg"] <= 1
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_report import benchmarks_md, load, readme_table

    data = load(tmp_path)
    text = benchmarks_md(data)
    assert "DRY RUN" in text and "| zero2 | skipped (no CUDA" in text and "| ddp |" in text and "killed at step 4" in text
    assert "| infogap_shards |" in text and "| N = 1000 (O(N d)) | 14 |" in text and "- loaders: skipped" in text and "missing" not in text
    assert "| time to target (default recipe, k = 5: object and attribute mean ≥ 0.8, evaluated every 2 steps) |" in text
    assert "\n| tiny | " in text.split("| time to target")[1].split("\n\n")[0]
    assert readme_table(data).count("\n| ") == 2  # the header and the one run


def test_gpu_report_reads_a_fabricated_directory(tmp_path):
    """The reader on hand-made results: numbers as written, a part that failed listed with its error, a
    missing part listed as not reached, imbalance rows sorted by (k, seed)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_report import benchmarks_md, load, readme_table

    (tmp_path / "machine.json").write_text(json.dumps({"date": "2026-12-02 10:00 UTC", "cpus": 16, "torch": "2.14.1", "gpu": "H200",
                                                       "gpu_memory_gib": 139.8, "commit": "abc1234", "dry_run": False}))
    (tmp_path / "strategies.json").write_text(json.dumps({
        "model": "small", "steps": 200, "precision": "bf16-mixed", "ddp": {"wall_s": 30.0, "steady_samples_per_s": 41234.5},
        "zero1": {"wall_s": 31.0, "steady_samples_per_s": 39000.0},
        "zero2": {"killed_at_step": 101, "resumed_from": "step0000100.ckpt", "resumed": {"wall_s": 20.0, "steady_samples_per_s": 38000.0},
                  "exported_mib": 90.5, "final_step": 200, "metrics": {}, "history_steps": [0, 100, 200]},
        "zero3": {"skipped": "no CUDA: Lightning refuses DeepSpeed without it"}}))
    (tmp_path / "metrics.error.txt").write_text("RuntimeError: CUDA out of memory\n")
    (tmp_path / "time_to_target.json").write_text(json.dumps({"target": 0.8, "every": 50, "recipe": "default", "tiny": {
        "seeds": {}, "reached": "3/3", "median_steps": 250, "median_train_seconds": 4.52, "wall_s_last_run": 20.0}, "small": {
        "seeds": {}, "reached": "1/3", "median_steps": None, "median_train_seconds": None, "wall_s_last_run": 30.0}}))
    (tmp_path / "imbalance").mkdir()
    for k, seed, rmg in ((5, 0, 0.081), (0, 1, 0.402), (0, 0, 0.4219)):
        (tmp_path / "imbalance" / f"k{k}_seed{seed}.json").write_text(json.dumps({"k": k, "seed": seed, "seconds": 61.0,
                                                                                  "metrics": {"rmg": rmg, "l2m": 0.5}}))
    (tmp_path / "imbalance.json").write_text(json.dumps({"model": "small", "steps": 6000, "runs": [], "complete": False}))
    data = load(tmp_path)
    text = benchmarks_md(data)
    assert "H200 (139.8 GiB), 16 CPUs, torch 2.14.1, commit abc1234" in text and "DRY RUN" not in text
    assert "| ddp | 41,234 |" in text and "| zero1 | 39,000 |" in text
    assert "| zero2 | 38,000 | killed at step 101, resumed from step0000100.ckpt to step 200, exported (90.5 MiB); evaluations at steps [0, 100, 200] |" in text
    assert "| zero3 | skipped (no CUDA: Lightning refuses DeepSpeed without it) |" in text
    assert "- metrics: missing (RuntimeError: CUDA out of memory)" in text and "- loaders: missing (not reached)" in text
    assert "| tiny | 3/3 | 250 | 4.52 |" in text and "| small | 1/3 | not reached by the median seed | not reached by the median seed |" in text
    rows = [line for line in readme_table(data).splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["| 0 | 0 | 0.422 | 0.500 | – | – | – | 61.0 |", "| 0 | 1 | 0.402 | 0.500 | – | – | – | 61.0 |",
                    "| 5 | 0 | 0.081 | 0.500 | – | – | – | 61.0 |"]
    assert "6000 steps" in readme_table(data)


def test_open_clip_steady_state_reads_the_log_windows():
    """The windows that start after the warm-up steps; each holds (samples since the last line) / batch
    steps at its mean batch time."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.run import _open_clip_steady

    log = "\n".join(f"2026 | INFO | Train Epoch: 0 [{done:>5}/12800 (x%)] Data (t): 0.01 Batch (t): {t:.3f}, 1/s LR: 0"
                    for done, t in ((128, 3.0), (2688, 0.5), (5248, 0.25), (12800, 0.25)))
    # lines at steps 1, 21, 41, 100: after step 21, 20 steps then 59 steps at 0.25 s
    assert _open_clip_steady(log, 128, warm=21) == pytest.approx(128 / 0.25)
    assert _open_clip_steady(log, 128, warm=1) == pytest.approx(128 * 99 / (20 * 0.5 + 20 * 0.25 + 59 * 0.25))
    assert _open_clip_steady(log, 128, warm=20) == pytest.approx(128 * 79 / (20 * 0.25 + 59 * 0.25))
    with pytest.raises(RuntimeError, match="no open_clip_train log line"):
        _open_clip_steady(log, 128, warm=100)


def test_the_ratio_table_reads_speed_over_open_clip_train():
    """Ratios as speed (> 1 faster): steady samples/s over open_clip_train's, and its wall time over
    infogap's, medians of the pairs; open_clip_train's own row is 1 / 1."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.run import ratio_table

    result = {"open_clip_train": {"wall_s": 28.27, "steady_samples_per_s": 589.0},
              "infogap_table": {"wall_s": 30.71, "steady_samples_per_s": 635.4},
              "infogap_shards": {"wall_s": 32.81, "steady_samples_per_s": 539.0},
              "infogap_table_over_open_clip": {"steady_ratio": 1.08, "wall_ratio": 1.086, "speed_ratio": 0.92},
              "infogap_shards_over_open_clip": {"steady_ratio": 0.915, "wall_ratio": 1.16, "speed_ratio": 0.862}}
    rows = ratio_table(result).splitlines()[2:]
    assert rows == ["| open_clip_train, CSV of PNGs | 28.27 s | 589 samples/s | 1 / 1 |",
                    "| infogap, the same CSV (`data.train_table`) | 30.71 s | 635 samples/s | 1.080 / 0.920 |",
                    "| infogap, the same samples as webdataset shards | 32.81 s | 539 samples/s | 0.915 / 0.862 |"]


@pytest.mark.slow
def test_the_loader_benchmark_times_every_stage_of_both_paths():
    """``benchmarks/run.py loaders --smoke``: every stage timed on the same 512 samples (the benchmark
    itself checks the shards hold all of them), both paths whole; nothing written."""
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "loaders", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("loaders ", 1)[1])
    assert result["samples"] == 512 and set(result["stage_us_per_sample"]) == {
        "read: PNG files", "read: shards, infogap's tar reader", "read: shards, webdataset's tarfile_to_samples", "decode (PIL, RGB)",
        "transform (open_clip train)", "tokenise (open_clip BPE, per batch)", "collate (stack)"}
    assert all(v > 0 for v in result["stage_us_per_sample"].values())
    assert result["table"]["samples_per_s"] > 0 and result["shards"]["samples_per_s"] > 0


def test_steady_rate_counts_the_steps_after_the_warm_up():
    """Step end times 0, 10, 11, 12, 13 (s): after 1 warm-up step, 4 steps of 8 samples in 13 - 0 s;
    after 2, 3 steps in 13 - 10 s."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.clock import steady_rate

    times = [0.0, 10.0, 11.0, 12.0, 13.0]
    assert steady_rate(times, 8, warm=1) == pytest.approx(4 * 8 / 13)
    assert steady_rate(times, 8, warm=2) == pytest.approx(3 * 8 / 3)
    with pytest.raises(ValueError, match="none after the first 5"):
        steady_rate(times, 8, warm=5)


def test_time_to_target_reads_the_first_evaluation_at_the_target_from_hand_rows():
    """The target needs object >= 0.80 and the mean of the five attributes >= 0.80 (not any one factor);
    the medians count a seed that missed it as later than every seed that reached it, and are None when
    the median seed missed it."""
    from benchmarks.clock import first_at_target, reached
    from benchmarks.run import time_to_target_summary

    attrs = dict(colour=1.0, thickness=0.9, scaling=0.9, swelling=0.6, fracture=0.6)  # mean 0.80
    assert reached({"object": 0.80, **attrs}, 0.80)
    assert not reached({"object": 0.79, **attrs}, 0.80)
    assert not reached({"object": 0.95, **{**attrs, "fracture": 0.59}}, 0.80)  # mean 0.798
    assert not reached({"object": 0.95, "colour": 1.0}, 0.80)  # attributes missing: not reached

    def row(step, seconds, obj, attr):
        return {"step": step, "train_seconds": seconds, "eval_seconds": 0.5, "acc": {"object": obj, **{a: attr for a in attrs}}}

    a = [row(0, 0.0, 0.1, 0.4), row(100, 5.0, 0.85, 0.70), row(200, 10.0, 0.81, 0.80), row(300, 15.0, 0.9, 0.9)]
    b = [row(0, 0.0, 0.1, 0.4), row(100, 6.0, 0.81, 0.81)]
    c = [row(0, 0.0, 0.1, 0.4), row(100, 7.0, 0.5, 0.5)]
    assert first_at_target(a, 0.80)["step"] == 200 and first_at_target(c, 0.80) is None
    summary = time_to_target_summary({0: a, 1: b, 2: c}, 0.80)
    assert summary["reached"] == "2/3" and summary["median_steps"] == 200 and summary["median_train_seconds"] == 10.0
    assert summary["seeds"][0]["eval_seconds"] == 1.5 and summary["seeds"][2] == {
        "reached": False, "step": 100, "train_seconds": 7.0, "eval_seconds": 1.0, "acc": c[-1]["acc"]}
    one = time_to_target_summary({0: a, 1: c, 2: c}, 0.80)
    assert one["reached"] == "1/3" and one["median_steps"] is None and one["median_train_seconds"] is None
    even = time_to_target_summary({0: a, 1: b}, 0.80)  # two seeds: the median of 100 and 200 steps
    assert even["median_steps"] == 150 and even["median_train_seconds"] == 8.0


@pytest.mark.slow
def test_the_time_to_target_benchmark_runs_and_times_training_apart_from_evaluation():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "time_to_target", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1].split(" ", 1)[1])
    seed = result["recipes"]["legacy-9600"]["k5"]["seeds"]["0"]
    assert seed["step"] == 4 and seed["train_seconds"] > 0 and seed["eval_seconds"] > 0
    assert set(seed["acc"]) == {"object", "colour", "thickness", "swelling", "fracture", "scaling"}


@pytest.mark.slow
def test_the_factor_visibility_benchmark_runs():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "factor_visibility", "--smoke"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "VIS_SWELL_POWER": "2", "VIS_FACTORS": "swelling,colour"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1].split(" ", 1)[1])
    assert result["n_train"] == 256 and result["swell_power"] == 2.0 and set(result["factors"]) == {"swelling", "colour"}
    for factor in result["factors"].values():
        assert 0.0 <= factor["test_acc"] <= 1.0 and 0.0 < factor["majority_class"] <= 1.0 and factor["by_epoch"] == [factor["test_acc"]]


@pytest.mark.slow
def test_the_layout_resolution_benchmark_times_the_three_settings():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "layout_resolution", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1].split(" ", 1)[1])
    assert list(result["seconds_per_step"]) == ["tiny (28 px, 7^2 tokens)", "tiny-64p8 (64 px, 8^2 tokens)", "tiny-56p4 (56 px, 14^2 tokens)"]
    assert all(v > 0 for v in result["seconds_per_step"].values())


def test_gpu_check_starts_a_run_only_with_time_for_it(tmp_path):
    """The one budget rule of every timed part: a first run starts while any time is left (of the check and of the
    part's share), a later one only while 1.3 of the last run's time is; a refusal is logged with the time left."""
    import time

    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_check import Check

    check = Check(tmp_path, dry_run=True, budget_s=100.0, steps=4, sweep_steps=4)
    assert check.room("imbalance", "k=0 seed=0", None)
    assert check.room("imbalance", "k=1 seed=0", 70.0)  # about 100 s left >= 91 s
    assert not check.room("imbalance", "k=2 seed=0", 80.0)  # 104 s needed
    assert not check.room("time_to_target", "tiny seed=0", None, until=time.monotonic() - 1.0)  # the part's share is spent
    assert check.room("time_to_target", "tiny seed=0", 10.0, until=time.monotonic() + 20.0)  # 20 s >= 13 s
    assert not check.room("time_to_target", "tiny seed=1", 10.0, until=time.monotonic() + 12.0)  # 12 s < 13 s
    log = (tmp_path / "log.txt").read_text().splitlines()
    assert len(log) == 3 and "imbalance: stopped before k=2 seed=0 (" in log[0] and log[0].endswith(", a run takes 80 s)")
    assert "time_to_target: stopped before tiny seed=0 (-1 s left)" in log[1] and "tiny seed=1 (12 s left" in log[2]
