"""``infogap reproduce``: plans load with one-line errors and every shipped plan's commands parse; the
report's summary counts, its comparison with an earlier report and its self-contained HTML; and a plan
killed after its first finished run, restarted, trains nothing twice and reports what an uninterrupted
one reports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from infogap.ablations.runner.spec import load_ablation
from tests.helpers import ROOT


def _claim(claim: str, verdict: str, mean: float = 0.1, kind: str = "effect", role: str = "paper") -> dict:
    return {"claim": claim, "verdict": verdict, "detail": "", "seeds": 3, "mean": mean, "ci": [mean - 0.05, mean + 0.05], "p_value": 0.01,
            "effect_size": 1.0, "kind": kind, "margin": float("nan"), "unit": "seeds", "mde": float("nan"), "needed": None, "source": "",
            "role": role}


@pytest.mark.parametrize("size", ["smoke", "cpu", "gpu"])
def test_every_shipped_plan_expands_and_its_fit_commands_parse(size, tmp_path):
    from infogap.ablations.runner.reproduce import load_plan, plan_runs

    plan = load_plan(size)
    assert [s.name for s in plan.studies] == ["imbalance", "presence", "gap_dims", "temperature", "posthoc", "init_gap", "bias", "dense",
                                               "learn_forget", "heads"]
    counts = plan_runs(plan, tmp_path, check=True)
    assert all(done == 0 and n > 0 for done, n in counts.values())


def test_the_cpu_plan_trains_each_model_once(tmp_path):
    """119 runs, 83 models: by hand, imbalance 18; presence 12 less the object-always-present ones (imbalance's k = 1);
    gap_dims and posthoc imbalance's k = 0 and 5; temperature 6 fine-tunes on imbalance's k = 5; init_gap 3 pushes and
    6 runs; bias 30 (3 rates x k = 5, 0 x 5 seeds); dense 6; learn_forget none (imbalance's runs at k = 0, 2, 5 and
    presence's at k = 1); heads 5."""
    from infogap.ablations.runner.expand import resolve
    from infogap.ablations.runner.identity import training_key
    from infogap.ablations.runner.reproduce import load_plan

    plan = load_plan("cpu")
    seen, new = set(), {}
    for e in plan.studies:
        r = resolve(e.name, [*plan.overrides, *e.overrides], e.sweep, e.seeds, e.only, tmp_path, e.exclude)
        keys = [training_key(r.ablation, run) for run in r.runs]
        new[e.name] = (len(set(keys) - seen), len(keys))
        seen |= set(keys)
    assert new == {"imbalance": (18, 18), "presence": (9, 12), "gap_dims": (0, 6), "temperature": (6, 9), "posthoc": (0, 6),
                   "init_gap": (9, 9), "bias": (30, 30), "dense": (6, 6), "learn_forget": (0, 18), "heads": (5, 5)}


def test_a_bad_plan_is_one_line_naming_the_file_and_field(tmp_path):
    from infogap.ablations.runner.reproduce import load_plan

    cases = {"studies:\n  - {name: imbalance, seeds: [0], sede: 1}\n": r"studies\[0\] \(imbalance\): unknown field\(s\) sede",
             "studies:\n  - {name: imbalance}\n": r"studies\[0\] needs a name and seeds",
             "studies:\n  - {name: imbalance, seeds: []}\n": "seeds must be a non-empty list of integers",
             "studies:\n  - {name: imbalance, seeds: [0]}\n  - {name: imbalance, seeds: [1]}\n": "each ablation once",
             "size: x\nstudy: []\n": r"unknown field\(s\) study"}
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"plan{i}.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as err:
            load_plan(str(path))
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="choose a size from cpu, gpu, smoke"):
        load_plan("huge")


def test_summary_counts_compare_and_the_html_stands_alone(tmp_path):
    from infogap.ablations.runner.report import claim_row, compare, counts, render_html, render_markdown

    claims = [_claim("planted", "holds", role="positive control"), _claim("a falls", "holds"), _claim("b falls", "contradicted"),
              _claim("c same", "inconclusive", kind="equivalence"), _claim("d rises", "not tested"), _claim("e rises", "not shown"),
              _claim("f rises", "not testable here"), _claim("g beyond", "holds", role="beyond the paper"),
              _claim("h beyond", "not shown", role="beyond the paper"), _claim("closes", "check passed", kind="sanity"),
              _claim("closes at k=5", "not tested", kind="sanity")]  # a check with no data: not tested, not FAILED
    c = counts(claims)
    assert [c[k] for k in ("holds", "contradicted", "not shown", "inconclusive", "not tested", "checks passed")] == [1, 1, 1, 1, 3, 1]
    assert c["checks FAILED"] == 0 and c["beyond"] == "1 holds, 1 not shown" and c["control"] == "holds"
    assert counts([_claim("planted", "not shown", role="positive control")])["control"] == "did not hold"
    two = [_claim("planted [k=5]", "contradicted", role="positive control"), _claim("planted [k=0]", "holds", role="positive control")]
    assert counts(two)["control"] == "held at 1 of 2 points"
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "fig.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "s" / "report.md").write_text("# Ablation `s`\n\n## Figures\n\n![fig](fig.png)\n")
    study = {"name": "s", "title": "S study", "published": ["a falls"], "wall_s": 60.0, "exit_code": 0, "claims": claims, "counts": c,
             "report": "s/report.md", "runs": [2, 3]}  # relative to the results directory
    env = {"python": "3.11", "platform": "linux", "cpus": 2, "machine": "x86_64", "commit": "abc", "packages": {"torch": "2.14.1"}}
    new = {"size": "smoke", "description": "d", "command": "infogap reproduce", "finished": "now", "wall_s": 60.0, "environment": env,
           "studies": [study]}
    text = render_markdown(new, out=tmp_path)
    assert "| [s](#s) | 2/3 | holds | 1 | 1 | 1 | 1 | 3 | 1 holds, 1 not shown | 1 passed | 1.0 min |" in text
    assert text.index("Positive control (") < text.index("The paper's claims:") < text.index("Beyond the paper (counted apart):")
    assert "**Incomplete**: 2 of 3 runs finished when this was aggregated" in text
    reused = render_markdown({**new, "studies": [{**study, "reused": 2}]}, out=tmp_path)  # two runs finished by an earlier invocation
    assert "| 1 passed | 1.0 min (2 runs reused) |" in reused
    assert "2 of the 3 runs of the aggregated studies were finished before this invocation started and were reused" in reused
    assert "were reused" not in text  # nothing reused: nothing said
    left_out = {**study, "name": "t", "claims": [], "counts": counts([]), "exit_code": None, "aggregated": False, "runs": [3, 3]}
    text2 = render_markdown({**new, "studies": [study, left_out]}, out=tmp_path)
    assert "| [t](#t) | 3/3 | none | 0 | 0 | 0 | 0 | 0 | – | not aggregated | – |" in text2 and "**Not aggregated** by this invocation" in text2
    aggregated = render_markdown({**new, "report_only": True}, out=tmp_path)  # no run trained by this command: no wall time per study
    assert "| [s](#s) | 2/3 | holds | 1 | 1 | 1 | 1 | 3 | 1 holds, 1 not shown | 1 passed | – |" in aggregated and "(aggregation only" in aggregated
    assert "Published:\n- a falls" in text and "| a falls | – | effect | +0.1 | [+0.05, +0.15] | 0.01 | 3 seeds | **holds** | – |" in text
    assert "- check passed: closes" in text and "![fig](s/fig.png)" in text and "torch 2.14.1" in text
    weak = {**claims[1], "seeds": 3, "verdict": "not shown", "mde": 0.2, "needed": 7, "source": "Paper 2025: a falls"}
    assert claim_row(weak).endswith("| 3 seeds | **not shown** | \u2265 0.2; observed needs 7 seeds |") and "| Paper 2025: a falls |" in claim_row(weak)
    assert "| 2 runs |" in claim_row({**claims[1], "seeds": 2, "unit": "runs"}) and claim_row({**claims[1], "seeds": 1}).count("| 1 seed |") == 1
    page = render_html(text, tmp_path)
    assert 'src="data:image/png;base64,' in page and "http" not in page and "<table>" in page
    old = json.loads(json.dumps(new))
    assert compare(new, old) == []
    old["studies"][0]["claims"][2]["verdict"] = "holds"
    assert compare(new, old) == ["s: b falls: verdict holds -> contradicted"]
    old = json.loads(json.dumps(new))
    old["studies"][0]["claims"][1]["mean"] = 0.2
    old["studies"][0]["claims"].append(_claim("gone", "holds"))
    assert compare(new, old) == ["s: a falls: estimate +0.2 -> +0.1", "s: claim no longer made: gone"]


MINI_PLAN = """size: mini
description: two studies sharing their runs
overrides: [log_with=none, trainer.max_steps=4, data.batch_size=16, data.val_size=64, metrics.num_samples=64, metrics.prompts_per_value=2,
            trainer.limit_val_batches=0, metrics.eval_every_n_steps=2]
studies:
  - {name: imbalance, seeds: [0], only: ["k=0,5"], published: ["the gap falls with k"]}
  - {name: posthoc, seeds: [0], only: ["k=0"]}
"""


def _reproduce(plan, out, env=None, *extra):
    return subprocess.run([sys.executable, "-m", "infogap", "reproduce", "--size", str(plan), "--out", str(out), "--jobs", "1", *extra],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled", **(env or {})}, timeout=900)


@pytest.mark.slow
def test_a_killed_plan_restarts_without_training_twice_and_reports_as_an_uninterrupted_one(tmp_path):
    plan = tmp_path / "mini.yaml"
    plan.write_text(MINI_PLAN)
    killed = _reproduce(plan, tmp_path / "a", {"INFOGAP_KILL_AFTER_RUNS": "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    first = [p for p in (tmp_path / "a" / "imbalance" / "runs").iterdir() if (p / "metrics.json").is_file()]
    assert len(first) == 1 and not (tmp_path / "a" / "REPORT.md").exists()
    stamp = (first[0] / "metrics.json").stat().st_mtime_ns
    again = _reproduce(plan, tmp_path / "a")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "3 runs (1 finished, the rest to run)" in again.stdout  # 2 of imbalance, 1 of posthoc (its own directory)
    assert (first[0] / "metrics.json").stat().st_mtime_ns == stamp, "a finished run was trained again"
    # posthoc's run is imbalance's finished k = 0 run, reused before the pool starts
    assert "reproduce mini: 3 runs, 2 already finished, 1 to run, " not in again.stdout
    assert "reproduce mini: 3 runs, 2 already finished, 1 to run" in again.stdout
    assert "train k=0 seed=0 (posthoc): reused the finished run" in again.stdout and "posthoc train k=0" not in again.stdout
    whole = _reproduce(plan, tmp_path / "b")
    assert whole.returncode == 0, whole.stderr[-2000:]
    # one pool: imbalance's k = 0 run trains once, posthoc's identical run takes a copy of it when it has finished
    assert "reproduce mini: 3 runs, 0 already finished, 2 to run (1 more are copies of identical runs of this launch)" in whole.stdout
    assert "train k=0 seed=0 (posthoc): reused the finished run" in whole.stdout and "posthoc train k=0" not in whole.stdout
    a, b = (json.loads((tmp_path / d / "reproduce.json").read_text()) for d in ("a", "b"))
    assert [s["claims"] for s in a["studies"]] == [s["claims"] for s in b["studies"]] and a["studies"][0]["claims"]
    report = (tmp_path / "a" / "REPORT.md").read_text()
    html_page = (tmp_path / "a" / "report.html").read_text()
    for name in ("imbalance", "posthoc"):  # each section opens with its anchor, the study's title and paper, its command
        title = load_ablation(name).title
        assert "Schrodi et al. 2025" in title
        assert f"| [{name}](#{name}) |" in report and f'\n<a id="{name}"></a>\n\n## {title}\n\n`infogap ablate {name}`\n' in report
        assert f'<a id="{name}"></a>' in html_page
    assert "Published:\n- the gap falls with k" in report and (tmp_path / "a" / "report.html").stat().st_size > 10_000
    timed = b["studies"][0]["timings"]  # where imbalance's time went: its runs in the plan's pool and each phase of its aggregation
    assert timed["pool_runs"] == 2 and timed["pool_run_s"] > 0 and all(timed[k] >= 0 for k in ("analyses_s", "baselines_s", "report_s"))
    assert b["studies"][1]["timings"]["pool_runs"] == 0 and b["pool_s"] > 0 and b["jobs"] == 1  # posthoc trained nothing: a copy
    assert "Wall time: training 2 runs in the plan's pool, " in (tmp_path / "b" / "REPORT.md").read_text()
    same = _reproduce(plan, tmp_path / "b", None, "--report-only", "--compare", str(tmp_path / "a"))
    assert same.returncode == 0 and "0 change(s) against" in same.stdout
    again = json.loads((tmp_path / "b" / "reproduce.json").read_text())["studies"][0]["timings"]
    assert again["training_s"] is None and "Wall time: no training (every run had finished before this aggregation)" in same.stdout \
        + (tmp_path / "b" / "REPORT.md").read_text()


def test_rendered_docs_tables_come_from_the_report_and_a_hand_edit_is_stale(tmp_path):
    """``--render-docs``: the README's summary and a study's claims table are rewritten from the report
    (rows written out by hand here), text outside the blocks is kept, the report is copied under
    docs/reproduce-SIZE/ with its figures, and a number edited by hand in a block is reported stale."""
    from infogap.ablations.runner.report import block, counts, render_docs, stale_blocks

    report = tmp_path / "results"
    (report / "imbalance").mkdir(parents=True)
    (report / "imbalance" / "rmg.png").write_bytes(b"\x89PNG fake")
    (report / "REPORT.md").write_text("# report\n\n![rmg](imbalance/rmg.png)\n")
    claims = [_claim("RMG falls with k", "holds", mean=-0.35), _claim("the shift closes the gap", "check passed", kind="sanity")]
    env = {"python": "3.11", "platform": "linux", "cpus": 2, "machine": "x86_64", "commit": "abc1234", "packages": {}}
    result = {"size": "cpu", "description": "d", "command": "c", "finished": "2026-12-02 18:00 UTC", "wall_s": 1.0, "environment": env,
              "studies": [{"name": "imbalance", "title": "Imbalance (claim 1)", "published": [], "wall_s": 1.0, "exit_code": 0,
                           "folder": "core", "claims": claims, "counts": counts(claims), "report": None},
                          {"name": "heads", "title": "Heads", "published": [], "wall_s": 1.0, "exit_code": 3, "folder": "heads",
                           "claims": [], "counts": counts([]), "report": None},
                          {"name": "posthoc", "title": "Posthoc", "published": [], "wall_s": 1.0, "exit_code": 0, "folder": "core",
                           "claims": claims, "counts": counts(claims), "report": None, "runs": [4, 6]},
                          {"name": "dense", "title": "Dense", "published": [], "wall_s": 0.0, "exit_code": None, "folder": "dense",
                           "claims": [], "counts": counts([]), "report": None, "runs": [18, 18], "aggregated": False}]}
    (report / "reproduce.json").write_text(json.dumps(result))
    root = tmp_path / "repo"
    (root / "docs" / "results").mkdir(parents=True)
    (root / "README.md").write_text("# x\n\nbefore\n\n" + block("summary", "old\n") + "\n\nafter\n")
    (root / "docs" / "results" / "core.md").write_text("# core\n\n" + block("imbalance", "| hand | made |\n") + "\n\n"
                                                       + block("posthoc", "x\n") + "\n")
    changed = render_docs(report, root)
    assert [p.name for p in changed] == ["README.md", "core.md"]
    readme = (root / "README.md").read_text()
    assert readme.startswith("# x\n\nbefore\n\n<!-- reproduce:summary ") and readme.endswith("<!-- /reproduce:summary -->\n\nafter\n")
    assert ("From the `cpu` reproduction report ([REPORT.md](docs/reproduce-cpu/REPORT.md), commit abc1234, finished 2026-12-02 18:00 UTC)."
            in readme)
    assert "| Imbalance (claim 1) | `infogap ablate imbalance` | none | 1 | 0 | 0 | 0 | 0 | – | 1 passed | [core](docs/results/core.md) |" in readme
    assert "| Heads | `infogap ablate heads` | none | 0 | 0 | 0 | 0 | 0 | – | no result (exit 3) | [heads](docs/results/heads.md) |" in readme
    core = (root / "docs" / "results" / "core.md").read_text()
    assert "([REPORT.md](../reproduce-cpu/REPORT.md#imbalance)" in core and "| hand | made |" not in core
    assert "| RMG falls with k | – | effect | -0.35 | [-0.4, -0.3] | 0.01 | 3 seeds | **holds** | – |" in core
    assert "- check passed: the shift closes the gap" in core
    assert "`posthoc` is incomplete in this report: 4 of 6 runs finished; its claims are shown once it is whole." in core
    assert "| Posthoc | `infogap ablate posthoc` | – | – | – | – | – | – | – | incomplete: 4/6 runs | [core](docs/results/core.md) |" in readme
    assert "| Dense | `infogap ablate dense` | – | – | – | – | – | – | – | not aggregated: 18/18 runs | [dense](docs/results/dense.md) |" in readme
    published = root / "docs" / "reproduce-cpu"
    assert sorted(p.name for p in published.rglob("*") if p.is_file()) == ["REPORT.md", "reproduce.json", "rmg.png"]
    assert stale_blocks(root) == [] and render_docs(published, root) == []  # rendering again changes nothing
    (root / "docs" / "results" / "core.md").write_text(core.replace("-0.35", "-0.36"))
    assert stale_blocks(root) == ["docs/results/core.md: imbalance"]


def test_studies_outside_the_plan_are_one_line_errors(capsys):
    from infogap.ablations.runner.reproduce import main

    with pytest.raises(ValueError, match=r"--studies: densse not in the plan 'smoke' \(imbalance, presence, .*heads\)"):
        main(["--size", "smoke", "--studies", "imbalance,densse", "--dry-run"])


def _part(folder, commit: str, finished: str, aggregated: dict[str, list[dict]], size: str = "cpu") -> None:
    """A fabricated report whose studies ``a`` and ``b`` are aggregated with the given claims, or (absent
    from ``aggregated``) left out by --studies; each aggregated study has a figure."""
    from infogap.ablations.runner.report import counts, render_markdown

    studies = []
    for name in ("a", "b"):
        claims = aggregated.get(name, [])
        if name in aggregated:
            (folder / name).mkdir(parents=True)
            (folder / name / "fig.png").write_bytes(b"\x89PNG " + commit.encode())
            (folder / name / "report.md").write_text(f"# Ablation `{name}`\n\n## Figures\n\n![fig](fig.png)\n")
        studies.append({"name": name, "title": name.upper(), "published": [], "wall_s": 60.0, "exit_code": 0 if claims else None,
                        "folder": name, "runs": [3, 3], "aggregated": name in aggregated, "claims": claims, "counts": counts(claims),
                        "report": f"{name}/report.md" if name in aggregated else None})
    env = {"python": "3.11", "platform": "linux", "cpus": 2, "machine": "x86_64", "commit": commit, "packages": {"torch": "2.14.1"}}
    result = {"size": size, "description": "d", "command": f"infogap reproduce --size {size} --studies {','.join(aggregated)}",
              "finished": finished, "wall_s": 60.0, "environment": env, "studies": studies, "report_only": False}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "REPORT.md").write_text(render_markdown(result, out=folder))
    (folder / "reproduce.json").write_text(json.dumps(result))


def test_merge_takes_each_study_from_the_part_that_aggregated_it_with_that_parts_commit(tmp_path, capsys):
    """``--merge``: study ``a`` from part 1 and ``b`` from part 2 (which left ``a`` out), each with its
    claims, section, figure and its own part's commit in the rendered docs; the summary lists both parts."""
    from infogap.ablations.runner.report import block, render_docs
    from infogap.ablations.runner.reproduce import main

    _part(tmp_path / "one", "aaa1111", "2026-12-01 17:00 UTC", {"a": [_claim("a falls", "holds")], "b": [_claim("b old", "holds")]})
    _part(tmp_path / "two", "bbb2222", "2026-12-02 20:00 UTC", {"b": [_claim("b rises", "contradicted")]})
    assert main(["--merge", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "reproduce.json").read_text())
    assert [(s["name"], s["part"], [c["claim"] for c in s["claims"]]) for s in merged["studies"]] == [("a", 0, ["a falls"]),
                                                                                                   ("b", 1, ["b rises"])]
    report = (tmp_path / "merged" / "REPORT.md").read_text()
    assert "| [a](#a) | 3/3 | none | 1 | 0 | 0 | 0 | 0 | – | 0 passed | 1.0 min |" in report
    assert "| [b](#b) | 3/3 | none | 0 | 1 | 0 | 0 | 0 | – | 0 passed | 1.0 min |" in report
    assert "| b rises | – | effect |" in report and "b old" not in report and report.count("![fig](a/fig.png)") == 1
    assert "- part 1: `infogap reproduce --size cpu --studies a,b`, finished 2026-12-01 17:00 UTC; studies aggregated: a" in report
    assert "- part 2: `infogap reproduce --size cpu --studies b`, finished 2026-12-02 20:00 UTC; studies aggregated: b" in report
    assert "commit aaa1111" in report and "commit bbb2222" in report
    assert (tmp_path / "merged" / "a" / "fig.png").read_bytes() == b"\x89PNG aaa1111"
    assert (tmp_path / "merged" / "b" / "fig.png").read_bytes() == b"\x89PNG bbb2222"
    root = tmp_path / "repo"
    (root / "docs" / "results").mkdir(parents=True)
    (root / "README.md").write_text(block("summary", "x\n") + "\n")
    (root / "docs" / "results" / "x.md").write_text(block("a", "x\n") + "\n" + block("b", "x\n") + "\n")
    render_docs(tmp_path / "merged", root)
    page = (root / "docs" / "results" / "x.md").read_text()
    assert "REPORT.md#a), commit aaa1111, finished 2026-12-01 17:00 UTC)" in page
    assert "REPORT.md#b), commit bbb2222, finished 2026-12-02 20:00 UTC)" in page
    assert ("merged from 2 parts: commit aaa1111, finished 2026-12-01 17:00 UTC; commit bbb2222, finished 2026-12-02 20:00 UTC."
            in (root / "README.md").read_text())
    # a merged report merged again keeps each study's own part; a part no study comes from any more is dropped
    _part(tmp_path / "three", "ccc3333", "2026-12-03 09:00 UTC", {"b": [_claim("b rises", "holds")]})
    capsys.readouterr()
    assert main(["--merge", str(tmp_path / "merged"), str(tmp_path / "three"), "--out", str(tmp_path / "again")]) == 0
    printed = capsys.readouterr().out.splitlines()  # each study named by its own part, not by the input folder
    assert printed[1:] == ["  a             from part 1 (commit aaa1111, finished 2026-12-01 17:00 UTC)",
                           "  b             from part 2 (commit ccc3333, finished 2026-12-03 09:00 UTC)"]
    again = json.loads((tmp_path / "again" / "reproduce.json").read_text())
    assert [p["environment"]["commit"] for p in again["parts"]] == ["aaa1111", "ccc3333"]
    assert [(s["name"], s["part"], s["claims"][0]["verdict"]) for s in again["studies"]] == [("a", 0, "holds"), ("b", 1, "holds")]
    text = (tmp_path / "again" / "REPORT.md").read_text()
    assert "bbb2222" not in text and (tmp_path / "again" / "a" / "fig.png").read_bytes() == b"\x89PNG aaa1111"
    # --compare beside --merge: what changed against an earlier report, in the merged report
    assert main(["--merge", str(tmp_path / "one"), str(tmp_path / "three"), "--out", str(tmp_path / "cmp"), "--compare", str(tmp_path / "one")]) == 0
    text = (tmp_path / "cmp" / "REPORT.md").read_text()
    changes = text.split(f"## Changes against {tmp_path / 'one'}\n\n")[1].split("\n\n")[0].splitlines()
    assert changes == ["- b: new claim: b rises: holds", "- b: claim no longer made: b old"]
    assert json.loads((tmp_path / "cmp" / "reproduce.json").read_text())["compared_with"] == str(tmp_path / "one")
    _part(tmp_path / "gpu", "ccc", "now", {"a": []}, size="gpu")
    with pytest.raises(ValueError, match=r"--compare: .* is a report of the 'gpu' plan, this one of 'cpu'"):
        main(["--merge", str(tmp_path / "one"), "--out", str(tmp_path / "m3"), "--compare", str(tmp_path / "gpu")])
    with pytest.raises(ValueError, match=r"--merge: the reports are of different plans \(cpu, gpu\)"):
        main(["--merge", str(tmp_path / "one"), str(tmp_path / "gpu"), "--out", str(tmp_path / "m2")])
    with pytest.raises(ValueError, match="--merge: give --out"):
        main(["--merge", str(tmp_path / "one")])


def test_reproduce_passes_analysis_jobs_to_every_study_and_checks_it():
    from infogap.ablations.runner.reproduce import Entry, main

    entry = Entry("dense", [0], only=["k=5"])
    assert entry.argv(Path("out"), 2, "local", [], analysis_jobs=2)[-6:] == ["--jobs", "2", "--analysis-jobs", "2", "--only", "k=5"]
    assert "--analysis-jobs" not in entry.argv(Path("out"), 2, "local", [])
    with pytest.raises(ValueError, match=r"^--analysis-jobs must be >= 1, got 0$"):
        main(["--size", "smoke", "--analysis-jobs", "0", "--dry-run"])


def test_the_reports_command_line_shows_every_option_that_shaped_it(tmp_path, monkeypatch):
    """The report's "Command:" line is the command to run again: --compare (what its changes are against) included,
    as a path relative to the working directory."""
    from argparse import Namespace

    from infogap.ablations.runner.reproduce import argv_display

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "reproduce-cpu").mkdir(parents=True)
    args = Namespace(size="cpu", jobs=2, analysis_jobs=2, launcher="local", studies=None, report_only=False, rerun=False,
                     compare=tmp_path / "docs" / "reproduce-cpu")
    assert " ".join(argv_display(args)) == "--size cpu --jobs 2 --analysis-jobs 2 --compare docs/reproduce-cpu"
    assert " ".join(argv_display(Namespace(**{**vars(args), "compare": None, "analysis_jobs": 1}))) == "--size cpu --jobs 2"


def test_analysis_jobs_default_to_jobs(capsys):
    """``--jobs 2`` alone analyses two runs at a time too; ``--analysis-jobs 1`` still says otherwise."""
    from infogap.ablations.runner.reproduce import main

    main(["--size", "smoke", "--jobs", "2", "--dry-run"])
    lines = [l for l in capsys.readouterr().out.splitlines() if "infogap ablate" in l]
    assert lines and all("--analysis-jobs 2" in l for l in lines)
    main(["--size", "smoke", "--jobs", "2", "--analysis-jobs", "1", "--dry-run"])
    lines = [l for l in capsys.readouterr().out.splitlines() if "infogap ablate" in l]
    assert lines and not any("--analysis-jobs" in l for l in lines)
