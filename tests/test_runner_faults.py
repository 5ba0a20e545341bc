"""The ablation runner against faults: a corrupt metrics file makes a run unfinished (never finished, never
a crash of the aggregation), an older summary never looks current, bad overrides and list options are
refused once before anything launches, a corrupt checkpoint is skipped for an intact one, and an
analysis that needs a run's start refuses a run without it."""
from __future__ import annotations

import json

import pytest
import torch

from infogap.ablations.kit.study import Run
from infogap.ablations.runner.expand import parse_seeds
from infogap.ablations.runner.spec import load_ablation, parse_only
from tests.helpers.processes import TINY_OVERRIDES, ablate


@pytest.mark.parametrize("text", ['{"metrics": {"rmg": 0.1}, "hist', "{}", "", '{"metrics": [], "history": {}}'])
def test_a_corrupt_metrics_file_is_an_unfinished_run(text, tmp_path):
    run = Run("train", {"k": 0}, 0, {}, tmp_path)
    (tmp_path / "metrics.json").write_text(text)
    assert not run.finished and run.record() is None
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"rmg": 0.1}, "history": {"0": {}}}))
    assert run.finished


@pytest.mark.parametrize("text, message", [("0,0", "--seeds: 0 is given twice"), ("", "--seeds: give a comma-separated list"),
                                           ("a,b", "--seeds: 'a' is not an integer"), ("1,,2", "--seeds: give a comma-separated list")])
def test_bad_seeds_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(text)
    assert parse_seeds("2,0") == [2, 0]


def test_only_and_sweep_lists_refuse_duplicates():
    ablation = load_ablation("imbalance")
    with pytest.raises(ValueError, match="--only k: 5 is given twice"):
        parse_only(["k=5,5"], ablation)
    with pytest.raises(ValueError, match="--only: axis 'k' is given twice"):
        parse_only(["k=0", "k=5"], ablation)
    with pytest.raises(ValueError, match="--sweep trainer.max_steps: 600 is given twice"):
        load_ablation("imbalance", ["trainer.max_steps=600,600"])


@pytest.mark.slow
@pytest.mark.parametrize("override, message", [
    ("cooccurrence_p=0.0,0.9", "override cooccurrence_p=0.0,0.9: unrecognized arguments"),
    ("trainer.max_steps=abc", "override trainer.max_steps=abc: trainer.max_steps: Expected a <class 'int'>"),
])
def test_a_bad_override_is_refused_once_before_any_run_starts(override, message, tmp_path, capsys):
    proc = ablate(capsys, "bias", "--only", "model_size=tiny", "--only", "cooccurrence_p=0.0", "--seeds", "0", "--out", str(tmp_path), override)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and message in err and len(err.splitlines()) == 1, err
    if override.startswith("cooccurrence_p"):
        assert "use --only cooccurrence_p=" in err
    assert not (tmp_path / "bias").exists(), "nothing was launched, no report written"


@pytest.mark.slow
def test_corrupt_metrics_are_rerun_and_an_older_summary_never_looks_current(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["imbalance", "--only", "k=0,5", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES, "checkpoint.every_n_train_steps=2"]
    first = ablate(capsys, *args)
    assert first.returncode == 0, first.stdout[-2000:]
    results = out / "imbalance"
    run = results / "runs" / "train__k=5__seed=0"
    good = (run / "metrics.json").read_bytes()
    (run / "metrics.json").write_text(good.decode()[:100])  # truncated
    agg = ablate(capsys, *args, "--aggregate-only")
    assert agg.returncode == 1 and "1 run(s) failed: train__k=5__seed=0" in agg.stdout
    report = (results / "report.md").read_text()
    assert f"{run / 'metrics.json'} is not a whole metrics record" in report and "runs finished: 1 of 2" in report
    rows = list((results / "summary.csv").read_text().splitlines())
    assert len(rows) == 2 and rows[1].startswith("0,"), "only the finished run's row: no stale row of the corrupt run"
    again = ablate(capsys, *args)  # the run is unfinished: it resumes from its checkpoint and is evaluated again
    assert again.returncode == 0 and "1 already finished, 1 to run" in again.stdout
    record = json.loads((run / "metrics.json").read_text())
    assert record == json.loads(good) | {"eval_seconds": record["eval_seconds"]}


@pytest.mark.slow
def test_a_failing_aggregation_leaves_no_older_summary(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES]
    assert ablate(capsys, *args).returncode == 1  # k = 5 left out: claims not tested
    assert (out / "imbalance" / "summary.csv").is_file()
    from infogap.ablations.core.imbalance import Imbalance

    monkeypatch.setattr(Imbalance, "claims", lambda self, rows, design: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ablate(capsys, *args, "--aggregate-only")
    assert not (out / "imbalance" / "report.md").exists(), "the report of the earlier aggregation is gone, not left as if current"


@pytest.mark.slow
def test_the_runner_resumes_from_an_intact_checkpoint_beside_a_truncated_one(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["imbalance", "--only", "k=0", "--seeds", "0", "--out", str(out), *TINY_OVERRIDES, "checkpoint.every_n_train_steps=2"]
    assert ablate(capsys, *args).returncode == 1
    run = out / "imbalance" / "runs" / "train__k=0__seed=0"
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:2000])
    again = ablate(capsys, *args)
    assert f"warning: checkpoint {last} is skipped: not a readable checkpoint" in again.stdout and "resuming from" in again.stdout
    assert json.loads((run / "metrics.json").read_text())["step"] == 4
    assert torch.load(last, weights_only=False)["global_step"] == 4, "the resumed run wrote an intact last.ckpt"


def test_the_start_of_a_run_is_read_from_step_0_or_refused(golden_run):
    from infogap.ablations.core.temperature import Temperature
    from infogap.ablations.kit.results import run_start

    record = json.loads((golden_run / "metrics.json").read_text())
    assert run_start(golden_run) == record["history"]["0"]
    run = Run("finetune", {"temperature_mode": "learnable"}, 0, {}, golden_run)
    row = Temperature().rows(run, record)[0]
    assert row["rmg_start"] == record["history"]["0"]["rmg"] and row["temperature_start"] == record["history"]["0"]["temperature"]
    del record["history"]["0"]  # a history cut by a resume (what happened before checkpoints kept it)
    (golden_run / "metrics.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"metrics.json: no evaluation at step 0 \(its history starts at step 10\)"):
        Temperature().rows(run, record)



def test_read_summary_keeps_names_as_strings_and_numbers_as_floats(tmp_path):
    """An axis of names (a model size) reads back as its string, a number as a float, an empty cell as None."""
    from infogap.ablations.kit.results import read_summary

    (tmp_path / "summary.csv").write_text("method,k,model_size,gain,task\nfull,5,tiny,0.25,\nlinear,0,small,,0\n")
    assert read_summary(tmp_path, ("method", "task")) == [
        {"method": "full", "k": 5.0, "model_size": "tiny", "gain": 0.25, "task": ""},
        {"method": "linear", "k": 0.0, "model_size": "small", "gain": None, "task": "0"}]
    assert read_summary(tmp_path / "missing") == []
