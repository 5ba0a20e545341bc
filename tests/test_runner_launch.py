"""The local launcher: a failed run is reported while the others aggregate, re-runs skip finished runs, an interrupted run resumes, a finished run of the same identity is reused, and progress is shown from what the runs write."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infogap.ablations.runner.expand import expand, parse_overrides
from infogap.ablations.runner.spec import load_ablation, parse_only
from tests.helpers import ROOT
from tests.helpers.processes import TINY_OVERRIDES, ablate
from tests.helpers.studies import read_csv, smoke_settings


@pytest.mark.slow
def test_failed_run_is_reported_and_the_others_aggregate_and_reruns_skip(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "configs/ablations/imbalance.yaml").read_text())
    spec["stages"][0]["axes"]["k"]["values"] = [0, 9]  # k=9 is rejected by the data module
    spec["study"] = None
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    proc = ablate(capsys, str(path), "--seeds", "0", "--out", str(out), "--jobs", "2", *TINY_OVERRIDES)
    assert proc.returncode == 1
    assert "2 to run, 2 at a time" in proc.stdout and "k=9 seed=0 FAILED" in proc.stdout
    assert "1 run(s) failed: train__k=9__seed=0" in proc.stdout
    rows = read_csv(out / "imbalance" / "summary.csv")
    assert [r["k"] for r in rows] == ["0"]
    report = (out / "imbalance" / "report.md").read_text()
    assert "## Failed runs" in report and "k=9 is out of range" in report

    again = ablate(capsys, str(path), "--seeds", "0", "--out", str(out), *TINY_OVERRIDES)
    assert "1 already finished, 1 to run" in again.stdout


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_finished_run_with_the_same_config_is_reused_not_trained_again(tmp_path, capsys, monkeypatch):
    """learn_forget trains what imbalance trains: at the same k, seed and overrides (logging aside; its
    ``data.always_present=object`` repeats the base config's value) the finished imbalance run is copied, not
    trained again; any other override trains anew."""
    from infogap.ablations.runner.identity import reuse_finished

    out = tmp_path / "out"
    first = ablate(capsys, "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES)
    assert "run(s) failed" not in first.stdout, first.stdout[-2000:]
    source = out / "imbalance" / "runs" / "train__k=0__seed=0"
    assert json.loads((source / "run.json").read_text())["overrides"]
    proc = ablate(capsys, "learn_forget", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES,
                  "log_with=csv", *smoke_settings("learn_forget"))
    assert "train k=0 always_present=object seed=0 (learn_forget): reused the finished run" in proc.stdout and "1 already finished, 0 to run" in proc.stdout, proc.stdout
    reused = out / "learn_forget" / "runs" / "train__k=0__always_present=object__seed=0"
    assert (reused / "metrics.json").read_bytes() == (source / "metrics.json").read_bytes()
    assert (reused / "checkpoints" / "last.ckpt").is_file() and (reused / "learn_forget.json").is_file()
    assert not (source / "learn_forget.json").exists(), "the source run is left as it was"
    ablation, elsewhere = load_ablation("learn_forget"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "imbalance").symlink_to(out / "imbalance")  # the finished 4-step run beside a new learn_forget
    only = parse_only(["k=0"], ablation)
    other = expand(ablation, elsewhere, [0], only, parse_overrides([*TINY_OVERRIDES, "trainer.max_steps=3"]))
    assert reuse_finished(ablation, other, elsewhere) == [] and not other[0].finished
    small = expand(ablation, elsewhere, [0], only, parse_overrides([*TINY_OVERRIDES, "model.model=small"]))
    assert reuse_finished(ablation, small, elsewhere) == [] and not small[0].finished, "another model size is another model"
    same = expand(ablation, elsewhere, [0], only, parse_overrides(TINY_OVERRIDES))
    assert reuse_finished(ablation, same, elsewhere) == same and same[0].finished


# --- progress while runs train -------------------------------------------------------------------
def test_an_override_that_repeats_the_base_config_is_not_part_of_the_training_identity(tmp_path):
    """``model.model=tiny`` over a base config whose model is tiny trains the same model: the training
    identities match; any other value, or another base config's content, keeps the override."""
    from infogap.ablations.runner.identity import identity_difference, training_identity

    base = tmp_path / "base.yaml"
    base.write_text("seed_everything: 0\nmodel:\n  model: tiny\ndata:\n  class_path: x.Y\n  init_args:\n    k: 5\n    seed: null\n")
    import hashlib

    sha = hashlib.sha256(base.read_bytes()).hexdigest()
    plain = {"base_config": sha, "overrides": [["data.k", "0"], ["data.seed", "0"]]}
    spelt = {"base_config": sha, "overrides": [["data.k", "0"], ["data.seed", "0"], ["model.model", "tiny"], ["seed_everything", "0"]]}
    assert training_identity(spelt, base) == training_identity(plain, base) and identity_difference(spelt, plain, base) is None
    assert training_identity(spelt) != training_identity(plain), "without the config nothing is dropped"
    assert training_identity({**spelt, "overrides": [["data.k", "5"]]}, base)["overrides"] == []  # data.k is data: init_args: k
    small = {"base_config": sha, "overrides": [["data.k", "0"], ["data.seed", "0"], ["model.model", "small"]]}
    assert identity_difference(small, plain, base) == "trained with model.model=small, this plan asks none"
    other = {**spelt, "base_config": "0" * 64}
    assert training_identity(other, base)["overrides"] == spelt["overrides"], "another config's content: its overrides stay"


def test_the_relative_cost_of_the_small_configs_by_hand():
    """Layers x tokens x width^2 x (4 + 2 mlp_ratio) over both towers (text: 8 words of context), relative to tiny:
    tiny 2*50*64^2*8 + 2*8*64^2*8 = 3,801,088; small 4*50*128^2*12 + 4*8*128^2*12 = 45,613,056 (12 x);
    tiny-64p8 2*65*64^2*8 + 524,288 = 4,784,128; small-h8-l6 6*50*128^2*12 + 6,291,456 = 65,273,856."""
    from infogap.ablations.runner.local import relative_cost

    assert relative_cost("tiny") == 1.0 and relative_cost("small") == pytest.approx(45_613_056 / 3_801_088)
    assert relative_cost("tiny-64p8") == pytest.approx(4_784_128 / 3_801_088)
    assert relative_cost("small-h8-l6") == pytest.approx(65_273_856 / 3_801_088)
    assert relative_cost("ViT-B-32") == 1.0  # not a small config: no estimate


def test_the_pool_starts_the_costliest_runs_first_and_keeps_the_plan_order_among_equals(tmp_path):
    """Heads' 48-head small-h8-l6 runs (10,302 tiny-steps), then dense's tiny-64p8 at 1,800 steps (2,268) before its 600-step
    runs (756), then the tiny 600-step runs (600) in the order the items list them."""
    from infogap.ablations.runner.local import start_order

    items = []
    for name, only in (("imbalance", ["k=0,1"]), ("dense", ["k=5", "layout_words=true"]), ("learn_forget", ["k=5"]), ("heads", ["k=5"])):
        a = load_ablation(name)
        items += [(a, r) for r in expand(a, tmp_path, [0, 1], parse_only(only, a)) if r.stage == "train"]
    order = [(a.name, r.name) for a, r in start_order(items)]
    assert [n for n, _ in order] == ["heads"] * 2 + ["dense"] * 4 + ["imbalance"] * 4 + ["learn_forget"] * 2
    assert [r for _, r in order[:4]] == ["train__k=5__seed=0", "train__k=5__seed=1", "train__layout_words=True__k=5__max_steps=1800__seed=0",
                                         "train__layout_words=True__k=5__max_steps=1800__seed=1"]
    assert [r for n, r in order if n != "heads" and "max_steps" not in r] == [r.name for a, r in items if a.name in ("imbalance", "learn_forget")]


def test_eta_and_status_line_against_hand_numbers():
    from infogap.ablations.runner.progress import (
        eta_seconds,
        format_seconds,
        status_line,
    )

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

    from infogap.ablations.runner.progress import ProgressDisplay

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


@pytest.mark.slow
def test_a_run_reports_its_own_progress_and_ablate_shows_it(tmp_path, capsys):
    out = tmp_path / "out"
    proc = ablate(capsys, "imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), "--progress-every", "0", *TINY_OVERRIDES)
    assert "run(s) failed" not in proc.stdout, proc.stdout[-2000:]
    assert "[1/1] train k=0 seed=0 started" in proc.stdout and "[1/1] train k=0 seed=0 done in" in proc.stdout
    record = json.loads((out / "imbalance" / "runs" / "train__k=0__seed=0" / "progress.json").read_text())
    assert record["step"] == record["max_steps"] == 4 and record["status"] == "done" and record["steps_per_second"] > 0
