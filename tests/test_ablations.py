"""Ablations: expansion (--dry-run), tiny end-to-end runs of each, failure isolation, re-runs, and the
reduced imbalance experiment whose direction must reproduce (slow)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from infogap.ablations.core import available, expand, load_ablation, parse_only, parse_overrides
from tests.helpers import ROOT, TINY_OVERRIDES, cli
from infogap.train.cli import main as infogap


# name -> (--only restriction for a tiny run, number of runs it then launches, axes of summary.csv,
#          claims the restriction leaves without the arm they compare: "not tested", exit 1)
TINY_RUNS = {
    "imbalance": (["k=0,5"], 2, ["k"], 0),
    "presence": (["always_present=object,colour"], 2, ["always_present"], 2),
    "gap_dims": (["k=5"], 1, ["k", "n"], 1),
    "posthoc": (["k=0"], 1, ["k", "shift"], 2),
    "temperature": ([], 3, ["temperature_mode"], 0),
    "init_gap": ([], 3, ["init"], 0),
    "bias": (["model_size=tiny", "cooccurrence_p=0.0,0.9"], 2, ["model_size", "cooccurrence_p", "test", "modality"], 2),
    "heads": (["k=0,5"], 2, ["k"], 4),  # 4-step models have no CCS = 5 head: the pruning claims are not tested
    "learn_forget": (["k=0,5"], 2, ["k", "method", "task"], 1),  # a linear probe forgets nothing: no forgetting fit
    "dense": (["k=0,5"], 2, ["k", "encoder", "task", "fraction"], 0),
}
# module constants a tiny run shrinks (the analyses an ablation runs on each finished model)
TINY_PATCHES = {"dense": {"N_TRAIN": 64, "N_VAL": 32, "PROBE_STEPS": 3},
                "learn_forget": {"STEPS": 3, "FINETUNE_SEEDS": (0,), "N_TRAIN": 64, "N_EVAL": 64, "BATCH_SIZE": 16,
                                 "LR": {"full": 1e-3, "linear": 1e-2, "bitfit": 1e-2}}}


def test_every_ablation_config_is_covered():
    assert set(available()) == set(TINY_RUNS)


@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_dry_run_lists_every_run(name, tmp_path, capsys):
    ablation = load_ablation(name)
    runs = expand(ablation, tmp_path, seeds=[0, 1])
    n_stage_runs = sum(_stage_size(st) for st in ablation.stages)
    assert len(runs) == 2 * n_stage_runs
    assert infogap(["ablate", name, "--dry-run", "--seeds", "0,1", "--out", str(tmp_path), "trainer.max_steps=7"]) == 0
    out = capsys.readouterr().out
    assert f"{2 * n_stage_runs} runs" in out
    assert out.count("--trainer.max_steps=7") == 2 * n_stage_runs
    assert not (tmp_path / name).exists(), "a dry run launches nothing"


def _stage_size(stage):
    size = 1
    for ax in (stage.get("axes") or {}).values():
        size *= len(ax["values"])
    return size


def test_imbalance_expands_k_seeds_and_overrides(tmp_path):
    ablation = load_ablation("imbalance")
    runs = expand(ablation, tmp_path, seeds=[0, 1], only=parse_only(["k=0,5"], ablation), overrides=parse_overrides(["trainer.max_steps=300"]))
    assert [(r.axes["k"], r.seed) for r in runs] == [(0, 0), (5, 0), (0, 1), (5, 1)]
    assert all(r.overrides["trainer.max_steps"] == 300 and r.overrides["data.k"] == r.axes["k"] for r in runs)
    assert all(r.overrides["seed_everything"] == r.seed == r.overrides["data.init_args.seed"] for r in runs)


def test_later_stages_point_at_the_same_seeds_checkpoint(tmp_path):
    runs = expand(load_ablation("temperature"), tmp_path, seeds=[3])
    base = next(r for r in runs if r.stage == "base")
    for r in runs:
        if r.stage == "finetune":
            assert r.overrides["model.pretrained"] == f"{base.dir}/checkpoints/last.ckpt"
            assert r.overrides["model.init_temperature"] is None


@pytest.mark.parametrize("bad, message", [
    (["--only", "k=9"], "k has no value(s) 9"),
    (["--only", "temperature=frozen"], "no axis 'temperature'"),
    (["oops"], "not key=value"),
])
def test_bad_ablation_arguments_are_named(bad, message, tmp_path, capsys):
    assert infogap(["ablate", "imbalance", "--dry-run", "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


class _Proc:
    """What a subprocess would return, from an in-process ``infogap ablate`` (the runs themselves are
    still separate processes; this saves only the runner's own start-up)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def ablate(capsys, *args) -> _Proc:
    capsys.readouterr()
    code = infogap(["ablate", *args])
    captured = capsys.readouterr()
    return _Proc(code, captured.out, captured.err)


def _summary(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_tiny_end_to_end(name, tmp_path, capsys, monkeypatch):
    only, n_runs, axes, untested = TINY_RUNS[name]
    for key, value in TINY_PATCHES.get(name, {}).items():
        monkeypatch.setattr(load_ablation(name).hooks(), key, value)
    args = [name, "--seeds", "0", "--out", str(tmp_path), "--jobs", "2"] + [a for o in only for a in ("--only", o)] + TINY_OVERRIDES
    proc = ablate(capsys, *args)
    assert proc.returncode == (1 if untested else 0), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("\nnot tested: ") == untested and "run(s) failed" not in proc.stdout
    assert ("claim(s) not tested" in proc.stdout) == bool(untested)
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith(("holds:", "does NOT hold:", "direction only", "not tested:"))]
    if name != "learn_forget":  # its fits are over (run, task) points, not seeds
        assert verdicts and all(not v.startswith("holds:") for v in verdicts)  # one seed never "holds": it gives the direction only
    results = tmp_path / name
    assert len(list((results / "runs").iterdir())) == n_runs
    rows = _summary(results / "summary.csv")
    assert rows and list(rows[0])[: len(axes) + 1] == axes + ["seed"]
    for key in ("rmg", "l2m", "moad_image", "zeroshot_object_acc", "attr_acc_mean"):
        assert key in rows[0] and rows[0][key] != ""
    report = (results / "report.md").read_text()
    assert f"# Ablation `{name}`" in report and "## Claims" in report and "## Figures" in report
    if name == "temperature":  # the axis keeps its labels beside the logged temperature (a float)
        assert {r["temperature_mode"] for r in rows} == {"learnable", "frozen"} and all(float(r["temperature"]) > 0 for r in rows)
    for fig in results.glob("*.png"):
        assert fig.stat().st_size > 10_000
    assert any(results.glob("*.png"))
    if name == "gap_dims":
        assert sorted({int(r["n"]) for r in rows}) == list(range(21))
    if name == "bias":  # 4 tests x 4 modality combinations per run, scored once and kept beside the run
        assert len(rows) == 2 * 16 and {r["modality"] for r in rows} == {"image-image", "text-text", "image-text", "text-image"}
        assert all(json.loads((run / "eat.json").read_text())["results"] for run in (results / "runs").iterdir())
        assert {p.name for p in results.glob("*.png")} == {"bias_effect_vs_p.png", "bias_effect_vs_accuracy.png"}
    if name == "learn_forget":  # 3 methods x 6 tasks per run, each task's zero-shot measures and its gain and forgetting
        assert len(rows) == 2 * 3 * 6 and {r["method"] for r in rows} == {"full", "linear", "bitfit"}
        assert "runs finished: 2 of 2 " in report
        assert all(float(r["forgetting"]) == 0 for r in rows if r["method"] == "linear"), "a frozen tower forgets nothing"
        assert all(r[k] != "" for r in rows for k in ("zs_iimm", "zs_s_inter", "zs_s_intra", "zs_acc", "zs_rmg", "gain"))
        fits = _summary(results / "fits.csv")
        assert len(fits) == 4 * 2 * 4  # (3 methods + pooled) x 2 outcomes x 4 predictors
    if name == "dense":  # 3 tasks x 3 label fractions per encoder: 2 trained runs, then the random and MAE encoders of seed 0
        assert len(rows) == 4 * 9 and {r["encoder"] for r in rows} == {"clip", "random", "mae"}
        assert "runs finished: 2 of 2 " in report  # runs, not rows (36 of them here)
        assert all(r["k"] == "" for r in rows if r["encoder"] != "clip") and all(r["k"] != "" for r in rows if r["encoder"] == "clip")
        assert all(0 <= float(r["miou"]) <= 1 for r in rows if r["task"] != "depth") and all(float(r["rmse"]) > 0 for r in rows if r["task"] == "depth")
        assert (results / "baselines" / "seed0" / "mae.ckpt").is_file() and (results / "dense_probes.png").is_file()
    if name == "heads":  # every head of the 32-head ViT analysed, kept beside the run
        assert all(len(json.loads((run / "heads.json").read_text())["heads"]) == 32 for run in (results / "runs").iterdir())
        assert 0 < float(rows[0]["ccs_mean"]) <= 5 and (results / "heads_by_k.png").is_file()
    if name == "posthoc":
        by_shift = {r["shift"]: float(r["l2m"]) for r in rows}
        assert by_shift["text"] < by_shift["none"]


def test_training_length_axis_tiny_end_to_end(tmp_path, capsys):
    """``--sweep trainer.max_steps=...`` crosses training length with k: one run per (k, length), its own
    directory, the claims at each length and the recovery claim across lengths."""
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("trainer.max_steps=")]
    args = ["imbalance", "--only", "k=0,5", "--sweep", "trainer.max_steps=2,4", "--seeds", "0", "--out", str(tmp_path)]
    proc = ablate(capsys, *args, "--jobs", "2", *overrides)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = tmp_path / "imbalance"
    assert sorted(p.name for p in (results / "runs").iterdir()) == [
        f"train__k={k}__max_steps={m}__seed=0" for k in (0, 5) for m in (2, 4)]
    for run in (results / "runs").iterdir():
        assert json.loads((run / "metrics.json").read_text())["step"] == int(run.name.split("max_steps=")[1].split("__")[0])
    rows = _summary(results / "summary.csv")
    assert list(rows[0])[:3] == ["k", "max_steps", "seed"]
    assert sorted((r["k"], r["max_steps"]) for r in rows) == [("0", "2"), ("0", "4"), ("5", "2"), ("5", "4")]
    lines = proc.stdout.splitlines()
    assert sum("[max_steps=2]" in line for line in lines) == 6 and sum("[max_steps=4]" in line for line in lines) == 6
    assert any(line.startswith("direction only") and "object accuracy at k=5 rises from 2 to 4 training steps" in line for line in lines)
    assert "| k | max_steps | seeds |" in (results / "report.md").read_text()
    slurm = cli("ablate", *args[:-1], str(tmp_path / "fresh"), "--launcher", "slurm", "--dry-run")
    assert slurm.returncode == 0 and slurm.stdout.count("--sweep trainer.max_steps=2,4") == 2  # array tasks and aggregation
    clash = cli("ablate", *args, "--dry-run", "trainer.max_steps=3")
    assert clash.returncode == 2 and "would overwrite a swept axis" in clash.stderr


def test_failed_run_is_reported_and_the_others_aggregate_and_reruns_skip(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "configs/ablations/imbalance.yaml").read_text())
    spec["stages"][0]["axes"]["k"]["values"] = [0, 9]  # k=9 is rejected by the data module
    spec["module"] = None
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    proc = ablate(capsys, str(path), "--seeds", "0", "--out", str(out), "--jobs", "2", *TINY_OVERRIDES)
    assert proc.returncode == 1
    assert "2 to run, 2 at a time" in proc.stdout and "k=9 seed=0 FAILED" in proc.stdout
    assert "1 run(s) failed: train__k=9__seed=0" in proc.stdout
    rows = _summary(out / "imbalance" / "summary.csv")
    assert [r["k"] for r in rows] == ["0"]
    report = (out / "imbalance" / "report.md").read_text()
    assert "## Failed runs" in report and "k=9 is out of range" in report

    again = ablate(capsys, str(path), "--seeds", "0", "--out", str(out), *TINY_OVERRIDES)
    assert "1 already finished, 1 to run" in again.stdout


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    first = ablate(capsys, "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES, "checkpoint.every_n_train_steps=2")
    assert "run(s) failed" not in first.stdout, first.stdout[-2000:]
    run_dir = out / "imbalance" / "runs" / "train__k=0__seed=0"
    (run_dir / "metrics.json").unlink()  # as if the job died after its last checkpoint
    again = ablate(capsys, "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES, "checkpoint.every_n_train_steps=2")
    assert again.returncode == 1 and "6 claim(s) not tested" in again.stdout, again.stderr  # k=5 was left out
    log = (run_dir / "train.log").read_text()
    assert "Restoring states from the checkpoint path" in log
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == 4


def test_a_finished_run_with_the_same_config_is_reused_not_trained_again(tmp_path, capsys, monkeypatch):
    """learn_forget trains what imbalance trains: at the same k, seed and overrides (logging aside) the
    finished imbalance run is copied, not trained again; any other override trains anew."""
    from infogap.ablations.core import reuse_finished

    out = tmp_path / "out"
    first = ablate(capsys, "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES)
    assert "run(s) failed" not in first.stdout, first.stdout[-2000:]
    source = out / "imbalance" / "runs" / "train__k=0__seed=0"
    assert json.loads((source / "run.json").read_text())["overrides"]
    for key, value in TINY_PATCHES["learn_forget"].items():
        monkeypatch.setattr(load_ablation("learn_forget").hooks(), key, value)
    proc = ablate(capsys, "learn_forget", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES, "log_with=csv")
    assert "train k=0 seed=0: reused the finished run" in proc.stdout and "1 already finished, 0 to run" in proc.stdout
    reused = out / "learn_forget" / "runs" / "train__k=0__seed=0"
    assert (reused / "metrics.json").read_bytes() == (source / "metrics.json").read_bytes()
    assert (reused / "checkpoints" / "last.ckpt").is_file() and (reused / "learn_forget.json").is_file()
    assert not (source / "learn_forget.json").exists(), "the source run is left as it was"
    ablation, elsewhere = load_ablation("learn_forget"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "imbalance").symlink_to(out / "imbalance")  # the finished 4-step run beside a new learn_forget
    other = expand(ablation, elsewhere, [0], parse_only(["k=0"], ablation), parse_overrides([*TINY_OVERRIDES, "trainer.max_steps=3"]))
    assert reuse_finished(ablation, other, elsewhere) == [] and not other[0].finished
    same = expand(ablation, elsewhere, [0], parse_only(["k=0"], ablation), parse_overrides(TINY_OVERRIDES))
    assert reuse_finished(ablation, same, elsewhere) == same and same[0].finished


@pytest.mark.slow
def test_reduced_imbalance_reproduces_the_direction_of_gap_and_bias(tmp_path):
    """k = 0 vs k = 5, one seed, the default CPU size: RMG, L2M and MOAD (image) are smaller at k = 5."""
    proc = cli("ablate", "imbalance", "--only", "k=0,5", "--seeds", "0", "--out", str(tmp_path), "--jobs", "2", "log_with=none", timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {int(r["k"]): {k: float(v) for k, v in r.items() if k != "k"} for r in _summary(tmp_path / "imbalance" / "summary.csv")}
    assert rows[5]["rmg"] < rows[0]["rmg"]
    assert rows[5]["l2m"] < rows[0]["l2m"]
    assert rows[5]["moad_image"] < rows[0]["moad_image"]
    assert rows[5]["attr_acc_mean"] > rows[0]["attr_acc_mean"]


# --- progress while runs train -------------------------------------------------------------------
def test_eta_and_status_line_against_hand_numbers():
    from infogap.ablations.progress import eta_seconds, format_seconds, status_line

    a = {"step": 100, "max_steps": 600, "steps_per_second": 5.0}
    b = {"step": 300, "max_steps": 600, "steps_per_second": 3.0}
    # running: 500 + 300 steps left at 8 steps/s = 100 s; pending: 2 runs x 600 steps at 4 steps/s per run, 2 slots = 150 s
    assert eta_seconds([a, b], [600, 600], jobs=2) == pytest.approx(250.0)
    assert eta_seconds([a, None], [], jobs=1) == pytest.approx(100.0)  # a run that has not reported yet adds nothing
    assert eta_seconds([None], [600], jobs=1) is None  # no rate yet
    assert eta_seconds([a], [None], jobs=1) is None  # a pending run of unknown length
    assert format_seconds(250) == "4m10s" and format_seconds(3725) == "1h02m" and format_seconds(None) == "?"
    line = status_line("imbalance", 2, 6, {"k=2 seed=0": a, "k=3 seed=0": None}, 250.0)
    assert line == "imbalance: 2/6 runs done; running: k=2 seed=0 step 100/600 (5.0 it/s), k=3 seed=0 starting; ETA 4m10s"


def _write_progress(run_dir: Path, **record) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "progress.json").write_text(json.dumps(record))


def test_display_reads_what_the_runs_write(tmp_path):
    """Plain lines (not a terminal) every `every` seconds, from the runs' own progress files; live tqdm
    bars take their step counts from the same files."""
    import io

    from infogap.ablations.progress import ProgressDisplay

    a, b = tmp_path / "a", tmp_path / "b"
    _write_progress(a, step=120, max_steps=600, steps_per_second=4.0, status="training")
    out = io.StringIO()
    display = ProgressDisplay("imbalance", total=3, jobs=2, every=0, stream=out)
    display.started("a", "k=0 seed=0", a)
    display.started("b", "k=1 seed=0", b)
    display.update([600])
    # 480 left at 4/s = 120 s; one pending run of 600 steps at 4/s (one slot needed) = 150 s
    assert out.getvalue().splitlines()[-1] == ("imbalance: 0/3 runs done; running: k=0 seed=0 step 120/600 (4.0 it/s), "
                                               "k=1 seed=0 starting; ETA 4m30s")
    _write_progress(a, step=600, max_steps=600, steps_per_second=4.0, status="done")
    display.finished("a", "[1/3] k=0 seed=0 done in 150 s")
    _write_progress(b, step=60, max_steps=600, steps_per_second=6.0, status="training")
    display.update([600])  # 540 left at 6/s = 90 s, then 600 steps at 6/s = 100 s
    assert out.getvalue().splitlines()[-2:] == ["[1/3] k=0 seed=0 done in 150 s",
                                                "imbalance: 1/3 runs done; running: k=1 seed=0 step 60/600 (6.0 it/s); ETA 3m10s"]
    quiet = ProgressDisplay("imbalance", total=1, jobs=1, every=3600, stream=io.StringIO())
    quiet.started("a", "k=0 seed=0", a)
    quiet.update([])
    assert quiet.stream.getvalue() == ""  # not before `every` seconds

    live = ProgressDisplay("imbalance", total=2, jobs=1, stream=io.StringIO(), live=True)
    live.started("b", "k=1 seed=0", b)
    live.update([600])
    bar = live._bars["b"]
    assert (bar.n, bar.total) == (60, 600) and "6.0 it/s" in str(bar)
    live.close()


def test_a_run_reports_its_own_progress_and_ablate_shows_it(tmp_path, capsys):
    out = tmp_path / "out"
    proc = ablate(capsys, "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), "--progress-every", "0", *TINY_OVERRIDES)
    assert "run(s) failed" not in proc.stdout, proc.stdout[-2000:]
    assert "[1/1] train k=0 seed=0 started" in proc.stdout and "[1/1] train k=0 seed=0 done in" in proc.stdout
    record = json.loads((out / "imbalance" / "runs" / "train__k=0__seed=0" / "progress.json").read_text())
    assert record["step"] == record["max_steps"] == 4 and record["status"] == "done" and record["steps_per_second"] > 0
