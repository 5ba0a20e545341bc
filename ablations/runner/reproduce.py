"""``infogap reproduce``: every study of a plan (``configs/reproduce/{smoke,cpu,gpu}.yaml``) in one command
and one report.

A plan lists ablations, each with its seeds, ``--only`` restrictions, ``--sweep`` axes, overrides and
study settings, plus what the paper published (``published``: one line per finding). Every study runs
under one ``--out``. With the local launcher every run of the chosen studies trains first, in one pool
(``train_pool``: ``--jobs`` at a time, the costliest first, so no slot idles while one study's last run
trains), a run of one training identity once (a run of one study that another trains or already
finished is copied, not trained again); then each study aggregates through ``infogap ablate
--aggregate-only``. A restart after a kill at any point does only what is missing (finished runs are
kept, the aggregation is redone). With SLURM each study is submitted through ``infogap ablate``.

The report, under ``--out``: ``REPORT.md`` and a self-contained ``report.html`` (figures embedded as
data URIs): the environment (packages, commit, machine, wall time per study and where it went: training, per-run analyses, baselines, claims), a summary table (per
study, the claims that hold / do NOT hold / are inconclusive / not tested, and its sanity checks), then
per study the published findings, every claim with its estimate, interval, p, units and verdict, and
the study's own tables and figures. ``reproduce.json`` holds the same as data; ``--compare OLD_DIR``
lists the verdicts and estimates that changed against an earlier ``reproduce.json``. A study aggregated
before all its runs finished is marked incomplete (runs finished / planned). ``--render-docs
REPORT_DIR`` publishes a report under ``docs/`` and renders the result tables of the docs from it
(``infogap.ablations.runner.report``). ``--merge DIR DIR ...`` joins reports of one plan whose studies
were run in parts (``--studies`` on different machines or days) into one: each study comes from the
last part that aggregated it, with that part's commit, date and machine beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from infogap.ablations.kit.study import ROOT
from infogap.ablations.runner.aggregate import TIMINGS
from infogap.ablations.runner.report import COLUMNS, anchor, compare, counts, render_html, render_markdown

PLANS = ROOT / "configs" / "reproduce"
PACKAGES = ("torch", "torchvision", "open_clip_torch", "pytorch-lightning", "webdataset", "numpy", "scipy", "statsmodels", "wandb")


@dataclass
class Entry:
    """One study of a plan: the arguments of its ``infogap ablate`` line and the published findings."""

    name: str
    seeds: list[int]
    only: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    sweep: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # key=value and NAME.key=value (study settings)
    published: list[str] = field(default_factory=list)

    def argv(self, out: Path, jobs: int, launcher: str, common: list[str], analysis_jobs: int = 1) -> list[str]:
        args = [self.name, *common, *self.overrides, "--seeds", ",".join(map(str, self.seeds)), "--out", str(out), "--launcher", launcher]
        args += ["--jobs", str(jobs)] if launcher == "local" else []
        args += ["--analysis-jobs", str(analysis_jobs)] if analysis_jobs > 1 else []
        for o in self.only:
            args += ["--only", o]
        for x in self.exclude:
            args += ["--exclude", x]
        for s in self.sweep:
            args += ["--sweep", s]
        return args


@dataclass
class Plan:
    size: str
    description: str
    overrides: list[str]
    studies: list[Entry]


def load_plan(size_or_path: str) -> Plan:
    """A plan by size (``smoke``, ``cpu``, ``gpu``) or path; a bad field is a one-line error naming it."""
    from infogap.ablations.runner.expand import check_seeds

    path = Path(size_or_path) if size_or_path.endswith((".yaml", ".yml")) else PLANS / f"{size_or_path}.yaml"
    if not path.is_file():
        sizes = sorted(p.stem for p in PLANS.glob("*.yaml"))
        raise ValueError(f"no reproduction plan {size_or_path!r}: choose a size from {', '.join(sizes)} or give a plan YAML")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - {"size", "description", "overrides", "studies"})
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}")
    studies = []
    for i, item in enumerate(raw.get("studies") or []):
        if not isinstance(item, dict) or "name" not in item or "seeds" not in item:
            raise ValueError(f"{path}: studies[{i}] needs a name and seeds")
        bad = sorted(set(item) - {f for f in Entry.__dataclass_fields__})
        if bad:
            raise ValueError(f"{path}: studies[{i}] ({item['name']}): unknown field(s) {', '.join(bad)}")
        if not isinstance(item["seeds"], list) or not item["seeds"] or not all(isinstance(s, int) for s in item["seeds"]):
            raise ValueError(f"{path}: studies[{i}] ({item['name']}): seeds must be a non-empty list of integers, got {item['seeds']!r}")
        check_seeds(item["seeds"], f"{path}: studies[{i}] ({item['name']})")
        studies.append(Entry(**{**item, **{k: [str(v) for v in item.get(k) or []] for k in ("only", "exclude", "sweep", "overrides", "published")}}))
    names = [s.name for s in studies]
    if not studies or len(set(names)) != len(names):
        raise ValueError(f"{path}: studies must list each ablation once, got {names}")
    return Plan(str(raw.get("size", path.stem)), str(raw.get("description", "")), [str(o) for o in raw.get("overrides") or []], studies)


def plan_runs(plan: Plan, out: Path, check: bool = False, rerun: bool = False) -> dict[str, tuple[int, int]]:
    """Per study: (runs finished, runs in all) as ``infogap ablate`` would expand them now; with
    ``check``, each stage's ``infogap fit`` command is parsed too (a bad key is one line, before any run),
    and unless ``rerun``, a run directory holding a run trained with other settings is refused
    (``check_identities``)."""
    from infogap.ablations.runner.identity import check_identities
    from infogap.ablations.runner.expand import check_runs, resolve

    counts = {}
    for e in plan.studies:
        r = resolve(e.name, [*plan.overrides, *e.overrides], e.sweep, e.seeds, e.only, out, e.exclude)
        if check:
            check_runs(r.ablation, r.runs, r.overrides)
            if not rerun:
                check_identities(r.ablation, r.runs)
        counts[e.name] = (sum(run.finished for run in r.runs), len(r.runs))
    return counts


def environment() -> dict:
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "commit": (commit.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
            "packages": {p: version(p) for p in PACKAGES}}


def load_study(out: Path, e: Entry, wall: float, code: Optional[int], runs: tuple[int, int] = (0, 0), aggregated: bool = True) -> dict:
    """A study's part of the report; ``folder`` is its code's folder under ablations/ (and its page
    under docs/results/), ``runs`` its (finished, planned) runs when it was aggregated. A study left out
    by ``--studies`` (``aggregated=False``) has no claims, whatever an earlier aggregation left on disk."""
    from infogap.ablations.runner.spec import load_ablation

    folder = out / e.name
    claims_path = folder / "claims.json"
    claims = json.loads(claims_path.read_text()) if aggregated and claims_path.is_file() else []
    timings_path = folder / TIMINGS
    timings = json.loads(timings_path.read_text()) if aggregated and timings_path.is_file() else None
    ablation = load_ablation(e.name, tuple(e.sweep))
    package = type(ablation.study).__module__.split(".")
    return {"name": e.name, "title": ablation.title, "published": e.published, "wall_s": round(wall, 1), "exit_code": code,
            "folder": package[2] if package[:2] == ["infogap", "ablations"] and len(package) > 3 else e.name, "runs": list(runs),
            "aggregated": aggregated, "timings": timings,
            "claims": claims, "counts": counts(claims), "report": f"{e.name}/report.md" if aggregated and (folder / "report.md").is_file() else None}


REPORT_FIELDS = ("size", "finished", "wall_s", "environment", "studies")
STUDY_FIELDS = ("name", "claims", "counts")


def read_report(report_dir: Path, option: str) -> dict:
    """``REPORT_DIR/reproduce.json`` as a report of ``infogap reproduce``, checked: a missing file, a file
    that is not JSON, or one without a report's fields is one line naming ``option``, the file and the field."""
    path = Path(report_dir) / "reproduce.json"
    if not path.is_file():
        raise ValueError(f"{option}: {path} does not exist (run infogap reproduce first)")
    try:
        result = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{option}: {path} is not JSON ({exc})") from None
    if not isinstance(result, dict):
        raise ValueError(f"{option}: {path} is not a report of infogap reproduce (a {type(result).__name__}, not an object)")
    missing = [f for f in REPORT_FIELDS if f not in result]
    if missing or not isinstance(result["studies"], list):
        raise ValueError(f"{option}: {path} is not a report of infogap reproduce (no field {(missing or ['studies'])[0]!r})")
    for i, study in enumerate(result["studies"]):
        bad = [f for f in STUDY_FIELDS if not isinstance(study, dict) or f not in study]
        if bad:
            raise ValueError(f"{option}: {path}: studies[{i}] lacks the field {bad[0]!r}")
        claims = [c for c in study["claims"] if not isinstance(c, dict) or "claim" not in c or "verdict" not in c]
        if claims or not isinstance(study["claims"], list):
            raise ValueError(f"{option}: {path}: study {study['name']!r} has a claim without 'claim' and 'verdict'")
    return result


def changes_against(result: dict, compare_dir: Path | None, old: dict | None = None) -> list[str] | None:
    """What changed in ``result`` against the report in ``compare_dir`` (``old``: that report, already
    read), recorded in ``result["compared_with"]``; None without ``compare_dir``."""
    if compare_dir is None:
        return None
    old = old or read_report(compare_dir, "--compare")
    if old["size"] != result["size"]:
        raise ValueError(f"--compare: {compare_dir / 'reproduce.json'} is a report of the {old['size']!r} plan, this one of "
                         f"{result['size']!r}: their claims do not compare")
    result["compared_with"] = str(compare_dir)
    return compare(result, old)


def write_report(out: Path, result: dict, compare_dir: Path | None) -> list[str] | None:
    changes = changes_against(result, compare_dir)
    text = render_markdown(result, changes, out)
    (out / "REPORT.md").write_text(text)
    (out / "report.html").write_text(render_html(text, out))
    (out / "reproduce.json").write_text(json.dumps(result, indent=1) + "\n")
    return changes


def _section(report: str, name: str) -> str:
    """A study's section of a REPORT.md: from its anchor line (``report.anchor``) to the next study's
    anchor or the end."""
    m = re.search(rf"^{re.escape(anchor(name))}\n.*?(?=^<a id=\"|\Z)", report, flags=re.S | re.M)
    if m is None:
        raise ValueError(f"--merge: the report has no section for {name!r}")
    return m.group(0)


def merge(dirs: list[Path], out: Path, compare_dir: Path | None = None) -> dict:
    """One report from reports of the same plan run in parts: each study from the last of ``dirs`` that
    aggregated it (its claims, runs, section of REPORT.md and figures, copied under ``out``), each part's
    command, date and environment kept; with ``compare_dir``, what changed against that report. A study
    no part aggregated stays "not aggregated"; reports of different plans or study lists are one-line errors."""
    results = [read_report(d, "--merge") for d in dirs]
    old = read_report(compare_dir, "--compare") if compare_dir is not None else None
    sizes = {r["size"] for r in results}
    if len(sizes) != 1:
        raise ValueError(f"--merge: the reports are of different plans ({', '.join(sorted(sizes))})")
    names = [s["name"] for s in results[0]["studies"]]
    for d, r in zip(dirs, results):
        if [s["name"] for s in r["studies"]] != names:
            raise ValueError(f"--merge: {d / 'reproduce.json'} lists other studies than {dirs[0] / 'reproduce.json'}")
    out.mkdir(parents=True, exist_ok=True)
    parts, offset = [], []  # every input's own parts (a merged report brings its parts), in order
    for r in results:
        offset.append(len(parts))
        parts += r.get("parts") or [{"command": r.get("command", ""), "finished": r["finished"], "environment": r["environment"],
                                     "report_only": bool(r.get("report_only"))}]
    studies, sections, used = [], {}, set()
    for name in names:
        chosen = max((i for i, r in enumerate(results) if _study(r, name).get("aggregated", True)), default=0)
        study = {**_study(results[chosen], name)}
        study["part"] = offset[chosen] + study.get("part", 0)
        section = _section((dirs[chosen] / "REPORT.md").read_text(), name)
        if not study.get("aggregated", True):
            section = section.replace("**Not aggregated** by this invocation (`--studies`)", "**Not aggregated** by any part")
        for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section):
            if (dirs[chosen] / figure).is_file() and (dirs[chosen] / figure).resolve() != (out / figure).resolve():
                (out / figure).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dirs[chosen] / figure, out / figure)
        studies.append(study)
        sections[name] = section
        used.add(study["part"])
    kept = sorted(used)  # parts no study comes from are dropped
    for study in studies:
        study["part"] = kept.index(study["part"])
    parts = [parts[i] for i in kept]
    result = {"size": results[0]["size"], "description": results[0]["description"],
              "command": "infogap reproduce --merge " + " ".join(_shown(d) for d in dirs) + f" --out {_shown(out)}",
              "finished": max(p["finished"] for p in parts), "wall_s": sum(r["wall_s"] for r in results),
              "environment": parts[-1]["environment"], "parts": parts, "studies": studies, "report_only": True}
    changes = changes_against(result, compare_dir, old)
    text = render_markdown(result, changes, sections=sections)
    (out / "REPORT.md").write_text(text)
    (out / "report.html").write_text(render_html(text, out))
    (out / "reproduce.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _shown(path: Path) -> str:
    """A folder as a report shows it: relative to the working directory when under it (no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name


def _study(result: dict, name: str) -> dict:
    return next(s for s in result["studies"] if s["name"] == name)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="infogap reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--size", default="smoke", help="the plan: smoke, cpu, gpu (configs/reproduce/SIZE.yaml) or a plan YAML")
    p.add_argument("--out", default=None, help="results directory (default: results/reproduce-SIZE)")
    p.add_argument("--launcher", choices=["local", "slurm"], default="local")
    p.add_argument("--jobs", type=int, default=1, help="local: runs at a time")
    p.add_argument("--analysis-jobs", type=int, default=None,
                   help="worker processes for each study's analyses when it aggregates (infogap ablate --analysis-jobs; "
                        "default: --jobs, so the cores that trained two runs at a time analyse two at a time)")
    p.add_argument("--compare", type=Path, default=None, metavar="OLD_DIR", help="list what changed against an earlier report")
    p.add_argument("--report-only", action="store_true", help="aggregate what is finished and write the report; launch nothing")
    p.add_argument("--dry-run", action="store_true", help="print the plan's ablate lines and run counts; launch nothing")
    p.add_argument("--rerun", action="store_true",
                   help="train again every run trained with other settings than the plan's (moved to superseded/); "
                        "without it such a plan is refused")
    p.add_argument("--studies", default=None, metavar="NAME,NAME",
                   help="run (or with --report-only aggregate) only these studies of the plan; the report lists the others as not aggregated")
    p.add_argument("--render-docs", type=Path, default=None, metavar="REPORT_DIR",
                   help="copy a finished report to docs/reproduce-SIZE/ and regenerate the result tables of README.md and docs/results/ "
                        "from it (run in the repository's root); launch nothing")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="REPORT_DIR",
                   help="join reports of one plan run in parts (--studies) into one under --out: each study from the last "
                        "report that aggregated it (with --compare: what changed against an earlier report); launch nothing")
    args = p.parse_args(argv)
    if args.merge is not None:
        if args.out is None:
            raise ValueError("--merge: give --out, the folder for the merged report")
        result = merge(args.merge, Path(args.out), args.compare)
        print(f"merged {len(args.merge)} reports into {Path(args.out) / 'REPORT.md'}"
              + (f", compared with {args.compare}" if args.compare is not None else ""))
        for s in result["studies"]:  # a study's part indexes the merged parts (a merged input brings several)
            part = result["parts"][s["part"]]
            print(f"  {s['name']:<13} from part {s['part'] + 1} (commit {part['environment'].get('commit', '?')}, finished {part['finished']})"
                  + ("" if s.get("aggregated", True) else " (not aggregated in any)"))
        return 0
    if args.render_docs is not None:
        from infogap.ablations.runner.report import render_docs

        root = Path.cwd()
        read_report(args.render_docs, "--render-docs")
        if not ((root / "README.md").is_file() and (root / "docs" / "results").is_dir()):
            raise ValueError(f"--render-docs: run it in the repository's root (no README.md and docs/results/ in {root})")
        changed = render_docs(args.render_docs, root)
        print(f"rendered {len(changed)} page(s) from {args.render_docs}" + "".join(f"\n  {p.relative_to(root)}" for p in changed))
        return 0
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    if args.analysis_jobs is None:
        args.analysis_jobs = args.jobs
    if args.analysis_jobs < 1:
        raise ValueError(f"--analysis-jobs must be >= 1, got {args.analysis_jobs}")
    if args.launcher != "local" and args.jobs != 1:
        raise ValueError(f"--jobs {args.jobs} is for the local launcher; with --launcher {args.launcher} the scheduler runs the runs "
                         "side by side (leave --jobs out)")
    conflicting = [f for f, on in (("--dry-run", args.dry_run), ("--report-only", args.report_only), ("--rerun", args.rerun)) if on]
    if len(conflicting) > 1:
        raise ValueError(f"{' and '.join(conflicting)} contradict each other; give one")
    plan = load_plan(args.size)
    chosen = [n.strip() for n in args.studies.split(",") if n.strip()] if args.studies else [e.name for e in plan.studies]
    unknown = [n for n in chosen if n not in {e.name for e in plan.studies}]
    if unknown or not chosen:
        raise ValueError(f"--studies: {', '.join(unknown) or 'none given'} not in the plan {plan.size!r} "
                         f"({', '.join(e.name for e in plan.studies)})")
    out = Path(args.out or f"results/reproduce-{plan.size}").resolve()
    if args.compare is not None:
        old = read_report(args.compare, "--compare")  # before any run: a foreign file would list every claim as new
        if old["size"] != plan.size:
            raise ValueError(f"--compare: {args.compare / 'reproduce.json'} is a report of the {old['size']!r} plan, this is "
                             f"{plan.size!r}: their claims do not compare")
    counts_now = plan_runs(plan, out, check=True, rerun=args.rerun)
    total = sum(n for _, n in counts_now.values())
    done_before = sum(d for d, _ in counts_now.values())
    print(f"reproduce {plan.size}: {len(plan.studies)} studies, {total} runs ({done_before} finished, the rest to run) under {out}", flush=True)
    if args.dry_run:
        for e in plan.studies:
            d, n = counts_now[e.name]
            print(f"  infogap ablate {shlex.join(e.argv(out, args.jobs, args.launcher, plan.overrides, args.analysis_jobs))}    # {d}/{n} runs finished")
        return 0
    from infogap.train.locks import held

    with held(out, "--out"):  # one reproduce in a results folder at a time
        return _reproduce(args, plan, chosen, out, counts_now, total, done_before)


def _reproduce(args, plan: Plan, chosen: list[str], out: Path, counts_now: dict, total: int, done_before: int) -> int:
    """Run and aggregate the plan's studies in order, then write the report (``main`` checked everything)."""
    from infogap.ablations.runner.cli import main as ablate

    start = time.perf_counter()
    studies = []
    before = {name: d for name, (d, _) in counts_now.items()}  # runs finished before this invocation: reused, not trained here
    pooled = args.launcher == "local" and not args.report_only
    if pooled:  # every chosen study's runs in one pool, the costliest first; then each study aggregates what they left
        from infogap.ablations.runner.local import Interrupted

        runs_chosen = [counts_now[name] for name in chosen]
        print(f"\n=== reproduce {plan.size}: training every run of {', '.join(chosen)} ({sum(n - d for d, n in runs_chosen)} of "
              f"{sum(n for _, n in runs_chosen)} to finish), {args.jobs} at a time", flush=True)
        try:
            trained = train_pool(plan, chosen, out, args.jobs, args.rerun)
        except Interrupted as exc:
            print(f"reproduce {plan.size}: {exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        pool_s = time.perf_counter() - start
        counts_now = plan_runs(plan, out)
    for i, e in enumerate(plan.studies, 1):
        d_all = sum(d for d, _ in counts_now.values())  # every study's runs as the previous study left them
        done_here, elapsed = d_all - done_before, time.perf_counter() - start
        eta = f", ETA {(total - d_all) * elapsed / done_here / 60:.0f} min" if done_here > 0 and not pooled else ""
        print(f"\n=== reproduce {plan.size} [{i}/{len(plan.studies)}] {e.name}: plan {d_all}/{total} runs finished{eta}", flush=True)
        if e.name not in chosen:
            studies.append(load_study(out, e, 0.0, None, counts_now[e.name], aggregated=False))
            print(f"{e.name}: not in --studies, not aggregated", flush=True)
            continue
        argv = e.argv(out, args.jobs, args.launcher, plan.overrides, args.analysis_jobs) \
            + (["--aggregate-only"] if args.report_only or pooled else []) + (["--rerun"] if args.rerun and not pooled else [])
        t0 = time.perf_counter()
        code = ablate(argv)
        if code in (130, 143):  # Ctrl-C or SIGTERM: its runs are stopped and saved; the same command resumes the plan
            print(f"reproduce {plan.size}: interrupted in {e.name}; the same command resumes the plan", file=sys.stderr)
            return code
        counts_now = plan_runs(plan, out)  # once per study: its own runs now, and the next study's progress line
        study = {**load_study(out, e, time.perf_counter() - t0, code, counts_now[e.name]), "reused": before[e.name]}
        if pooled and study["timings"] is not None:
            study["timings"].update(trained.get(e.name, {"pool_runs": 0, "pool_run_s": 0.0}))
        if pooled:
            study["wall_s"] = round(study["wall_s"] + trained.get(e.name, {}).get("pool_run_s", 0.0) / max(1, args.jobs), 1)
        studies.append(study)
    if args.launcher == "slurm" and not args.report_only:
        print(f"\nsubmitted; once the jobs have finished: infogap reproduce --size {args.size} --out {out} --report-only")
        return 0
    result = {"size": plan.size, "description": plan.description, "command": "infogap reproduce " + " ".join(argv_display(args)),
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall_s": round(time.perf_counter() - start, 1),
              "environment": environment(), "studies": studies, "report_only": args.report_only,
              **({"pool_s": round(pool_s, 1), "jobs": args.jobs} if pooled else {})}
    changes = write_report(out, result, args.compare)
    print(f"\nreport: {out / 'REPORT.md'}\nhtml:   {out / 'report.html'}")
    for s in studies:
        c = s["counts"]
        print(f"  {s['name']:<13} " + ", ".join(f"{c[k]} {k}" for k in COLUMNS if c[k]))
    if changes is not None:
        print(f"{len(changes)} change(s) against {args.compare}:" + "".join(f"\n  {line}" for line in changes))
    return 0 if all(s["exit_code"] in (0, 1, None) for s in studies) else 1


def train_pool(plan: Plan, chosen: list[str], out: Path, jobs: int, rerun: bool) -> dict[str, dict]:
    """Train every unfinished run of the ``chosen`` studies in one pool (``launch_pool``: ``jobs`` at a time,
    the costliest first, a run of one training identity once), after reusing the finished runs of any study
    under ``out``; with ``rerun`` the runs trained otherwise are moved aside first. Returns per study the runs
    it trained and their wall seconds: {"pool_runs", "pool_run_s"}."""
    from infogap.ablations.runner.expand import resolve
    from infogap.ablations.runner.identity import check_identities, reuse_finished
    from infogap.ablations.runner.local import launch_pool

    items = []
    for e in plan.studies:
        if e.name in chosen:
            r = resolve(e.name, [*plan.overrides, *e.overrides], e.sweep, e.seeds, e.only, out, e.exclude)
            check_identities(r.ablation, r.runs, rerun=rerun)
            reuse_finished(r.ablation, r.runs, out)
            items += [(r.ablation, run) for run in r.runs]
    pool = launch_pool(items, jobs, name=f"reproduce {plan.size}")
    for run, why in pool.failed:
        print(f"{run.label()} ({run.dir}): {why}", file=sys.stderr, flush=True)
    trained: dict[str, dict] = {}
    for ablation, run in items:
        if str(run.dir) in pool.seconds:
            t = trained.setdefault(ablation.name, {"pool_runs": 0, "pool_run_s": 0.0})
            t["pool_runs"] += 1
            t["pool_run_s"] = round(t["pool_run_s"] + pool.seconds[str(run.dir)], 1)
    return trained


def argv_display(args) -> list[str]:
    out = ["--size", str(args.size), "--jobs", str(args.jobs)] + (["--analysis-jobs", str(args.analysis_jobs)] if args.analysis_jobs > 1 else [])
    if args.launcher != "local":
        out += ["--launcher", args.launcher]
    return out + (["--studies", args.studies] if args.studies else []) + (["--report-only"] if args.report_only else []) \
        + (["--rerun"] if args.rerun else []) + (["--compare", _shown(args.compare)] if args.compare is not None else [])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
