"""The smoke plan (``infogap reproduce --size smoke``, slow): every study of every paper end to end at toy
size in one command, once per test session; the report has every study's section and summary row, and
each study's own outputs are checked here (its runs, exit code, untested claims, summary, report,
figures and what the study alone writes)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from infogap.ablations.runner.spec import load_ablation
from tests.helpers import ROOT
from tests.helpers.studies import TINY_RUNS, read_csv

pytestmark = pytest.mark.slow
STUDIES = ["imbalance", "presence", "gap_dims", "temperature", "posthoc", "init_gap", "bias", "dense", "learn_forget", "heads"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run([sys.executable, "-m", "infogap", "reproduce", "--size", "smoke", "--out", str(out), "--jobs", "2",
                           "--analysis-jobs", "1"], cwd=ROOT,  # at toy size two workers' start-up costs more than they save (BENCHMARKS.md)
                          capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, out


def study(smoke, name: str) -> tuple[str, list[dict], object]:
    """A study's part of the plan's output and what every ablation must do (``TINY_RUNS``): its runs
    and exit code, the claims it leaves untested, one seed never "holds", summary.csv with the axes
    first and the core metrics, a report with claims and figures. Returns its output, summary rows and
    results folder."""
    stdout, out = smoke
    part = re.split(r"\n=== reproduce smoke \[\d+/\d+\] ", stdout)[STUDIES.index(name) + 1]
    assert part.startswith(f"{name}: "), part[:200]
    n_runs, axes, untested = TINY_RUNS[name]
    record = next(s for s in json.loads((out / "reproduce.json").read_text())["studies"] if s["name"] == name)
    assert record["exit_code"] == (1 if untested else 0), part[-3000:]
    assert "run(s) failed" not in part, part[-3000:]
    assert part.count("\nnot tested: ") == untested == sum(c["verdict"] == "not tested" for c in record["claims"]), part[-3000:]
    verdicts = [line for line in part.splitlines()
                if line.startswith(("holds:", "contradicted:", "not shown:", "inconclusive:", "not tested:", "not testable here:"))]
    if name != "learn_forget":  # its fits are over (model, task) points, not seeds
        assert verdicts and all(not v.startswith("holds:") for v in verdicts)  # one seed never "holds": no test, "not shown"
    assert "does NOT hold" not in part and "direction only" not in part
    results = out / name
    assert len(list((results / "runs").iterdir())) == n_runs
    rows = read_csv(results / "summary.csv")
    assert rows and list(rows[0])[: len(axes) + 1] == axes + ["seed"]
    for key in ("rmg", "l2m", "moad_image", "zeroshot_object_acc", "attr_acc_mean"):
        assert key in rows[0] and rows[0][key] != ""
    report = (results / "report.md").read_text()
    assert f"# Ablation `{name}`" in report and "## Claims" in report and "## Figures" in report
    figures = list(results.glob("*.png"))
    assert figures and all(fig.stat().st_size > 10_000 for fig in figures)
    return part, rows, results


def test_the_report_has_every_study(smoke):
    stdout, out = smoke
    report = (out / "REPORT.md").read_text()
    for name in STUDIES:
        row = re.search(rf"\n\| \[{name}\]\(#{name}\) \| (\d+)/\1 \| (holds|did not hold|none) \| \d+ \| \d+ \| \d+ \| \d+ \| \d+ \| ", report)
        assert row, name  # every run finished
        # every study but the core's other parts runs its positive control, first; one seed cannot make it hold
        assert row.group(2) == ("none" if name in ("presence", "gap_dims", "temperature", "posthoc") else "did not hold"), name
        title = load_ablation(name).title
        assert " et al. 20" in title and f'\n<a id="{name}"></a>\n\n## {title}\n' in report  # the study's title and its paper
    assert "## Environment" in report and "torch 2.14" in report
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= len(STUDIES) and "http" not in page
    # one pool for the plan: posthoc's run is imbalance's k = 0 run, trained once and copied
    assert "train k=0 seed=0 (posthoc): reused the finished run" in stdout and "posthoc train k=0" not in stdout
    for s in json.loads((out / "reproduce.json").read_text())["studies"]:
        controls = [c for c in s["claims"] if c["role"] == "positive control"]
        if s["name"] not in ("presence", "gap_dims", "temperature", "posthoc"):
            assert controls and s["claims"][0] == controls[0], s["name"]  # the control comes first ...
            others = [c for c in s["claims"] if c["role"] != "positive control" and c["kind"] != "sanity"]
            assert {c["verdict"] for c in others} <= {"not testable here", "not tested"}, s["name"]  # ... and failing, it makes the rest untestable


@pytest.mark.parametrize("name", ["imbalance", "presence", "init_gap"])
def test_core_study(smoke, name):
    study(smoke, name)


def test_temperature(smoke):
    _, rows, _ = study(smoke, "temperature")
    # the axis keeps its labels beside the logged temperature (a float)
    assert {r["temperature_mode"] for r in rows} == {"learnable", "frozen"} and all(float(r["temperature"]) > 0 for r in rows)


def test_gap_dims(smoke):
    _, rows, _ = study(smoke, "gap_dims")
    assert sorted({int(r["n"]) for r in rows}) == list(range(13))  # the plan's gap_dims.max_removed=12 decides the rows


def test_posthoc(smoke):
    _, rows, _ = study(smoke, "posthoc")
    by_shift = {r["shift"]: float(r["l2m"]) for r in rows}
    assert by_shift["text"] < by_shift["none"]


def test_bias(smoke):
    """4 tests x 4 modality combinations per run, scored once and kept beside the run."""
    _, rows, results = study(smoke, "bias")
    assert len(rows) == 2 * 16 and {r["modality"] for r in rows} == {"image-image", "text-text", "image-text", "text-image"}
    assert all(json.loads((run / "eat.json").read_text())["results"] for run in (results / "runs").iterdir())
    assert {p.name for p in results.glob("*.png")} == {"bias_effect_vs_p.png", "bias_effect_vs_accuracy.png"}
    assert all(json.loads((run / "eat.json").read_text())["key"]["permutations"] == 2000 for run in (results / "runs").iterdir())


def test_dense(smoke):
    """The layout world: 2 runs (captions with and without layout words, k = 5, one budget of 4 steps), each
    probed on 3 tasks x 2 label fractions (the plan's), linear, and fine-tuned with the conv decoder on the 2
    tasks that are not the control at both fractions; the random encoder and the masked autoencoder of the
    runs' budget (seed 0), fine-tuned at 100 % only, and the two references (linear only: the word oracle
    and the ceiling)."""
    _, rows, results = study(smoke, "dense")
    report = (results / "report.md").read_text()
    linear = 3 * 2
    counts = {e: sum(r["encoder"] == e for r in rows) for e in {r["encoder"] for r in rows}}
    assert counts == {"clip": 2 * (linear + 2 * 2), "random": linear + 2, "mae": linear + 2, "oracle": linear, "ceiling": linear}
    assert not [r for r in rows if r["task"] == "plane" and r["mode"] != "linear"]
    assert {r["mode"] for r in rows if r["encoder"] in ("oracle", "ceiling")} == {"linear"}
    assert {r["mode"] for r in rows if r["encoder"] == "clip"} == {"linear", "finetune_conv"}
    assert {r["layout_words"] for r in rows if r["encoder"] == "clip"} == {"True", "False"}
    assert {r["max_steps"] for r in rows if r["encoder"] in ("clip", "mae")} == {"4"}
    assert "runs finished: 2 of 2 " in report  # runs, not rows
    assert all(r["k"] == "" for r in rows if r["encoder"] != "clip") and all(r["k"] == "5" for r in rows if r["encoder"] == "clip")
    seg = [r for r in rows if r["task"] == "object"]
    depth = [r for r in rows if r["task"] in ("depth", "plane")]
    assert all(0 <= float(r["miou"]) <= 1 for r in seg) and all(float(r["rmse"]) >= 0 and float(r["rmse_pooled"]) >= 0 for r in depth)
    assert (results / "baselines" / "seed0" / "mae4.ckpt").is_file() and (results / "baselines" / "seed0" / "references.json").is_file()
    assert (results / "dense_probes.png").is_file() and (results / "mae_loss.png").is_file()
    assert "beats the masked autoencoder at the same images seen (4 steps" in report and "Study settings:" in report
    assert "rmse at layout_words=True is below layout_words=False (encoder=clip, task=plane" in report  # the control


def test_learn_forget(smoke):
    """3 methods x 6 tasks per run, each task's zero-shot measures and its gain and forgetting."""
    _, rows, results = study(smoke, "learn_forget")
    report = (results / "report.md").read_text()
    control = [r for r in rows if r["method"] == "control_full"]  # the positive control: the k = 5 run, 5 fractions of permuted prompts
    assert sorted(float(r["control_q"]) for r in control) == [0.0, 0.2, 0.3, 0.4, 0.5] and {r["k"] for r in control} == {"5"}
    rows = [r for r in rows if r not in control]
    assert len(rows) == 2 * 3 * 6 and {r["method"] for r in rows} == {"full", "linear", "bitfit"}
    assert "runs finished: 2 of 2 " in report
    assert all(float(r["forgetting"]) == 0 for r in rows if r["method"] == "linear"), "a frozen tower forgets nothing"
    assert all(r[k] != "" for r in rows for k in ("zs_iimm", "zs_s_inter", "zs_s_intra", "zs_acc", "zs_rmg", "gain"))
    fits = read_csv(results / "fits.csv")
    # (3 methods + pooled) x (gain, relative gain, forgetting, OOD) x (IIMM train/eval, H-score, TransRate, GBC x 2, SFDA, NCTI, acc, RMG, L2M)
    assert len(fits) == 4 * 4 * 11
    assert all(r[k] != "" for r in rows for k in ("zs_hscore", "zs_transrate", "zs_gbc_spherical", "zs_gbc_diagonal", "zs_sfda", "zs_ncti_seli", "zs_ncti_ncc", "zs_ncti_vc"))


def test_heads(smoke):
    """Every head of the 48-head ViT analysed, kept beside the run, with the reachable CCS and the labels over the second pool."""
    _, rows, results = study(smoke, "heads")
    for run in (results / "runs").iterdir():
        saved = json.loads((run / "heads.json").read_text())
        assert len(saved["heads"]) == 48 and set(saved["reachable"]) == {"object", "colour", "thickness", "swelling", "fracture", "scaling"}
        assert len(saved["confound"]["labels"]) == 48
    assert 0 < float(rows[0]["ccs_mean"]) <= 5 and (results / "heads_by_k.png").is_file()
