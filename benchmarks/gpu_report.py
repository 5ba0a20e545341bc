"""Reads the output directory of ``benchmarks/gpu_check.py`` and prints the BENCHMARKS.md section and
the README's GPU table as Markdown: ``python benchmarks/gpu_report.py DIR [--readme]``. Nothing is
copied by hand: a part that did not finish is listed as missing, with its error when there is one."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import PARTS  # noqa: E402  (the check's parts, in its order: one list)

TABLE = ["rmg", "l2m", "moad_image", "zeroshot_object_acc", "attr_acc_mean"]


def load(out: Path) -> dict:
    """Every part's JSON (``None`` where missing), its error text, the machine and the imbalance runs."""
    machine = out / "machine.json"
    if not machine.is_file():
        raise SystemExit(f"{out}: no machine.json; not a gpu_check output directory")
    data = {"machine": json.loads(machine.read_text()), "parts": {}, "errors": {}, "imbalance_runs": []}
    for part in PARTS:
        path = out / f"{part}.json"
        data["parts"][part] = json.loads(path.read_text()) if path.is_file() else None
        err = out / f"{part}.error.txt"
        if err.is_file():
            data["errors"][part] = err.read_text().strip()
    for path in sorted((out / "imbalance").glob("k*_seed*.json")):
        data["imbalance_runs"].append(json.loads(path.read_text()))
    return data


def _rate(entry: dict | None) -> str:
    if not entry:
        return "missing"
    if "skipped" in entry:
        return f"skipped ({entry['skipped']})"
    return f"{entry['steady_samples_per_s']:,.0f}" if "steady_samples_per_s" in entry else "too few steps timed"


def _or_not_reached(value) -> str:
    return "not reached by the median seed" if value is None else f"{value:g}"


def benchmarks_md(data: dict) -> str:
    m, parts = data["machine"], data["parts"]
    lines = [f"Machine: {m.get('gpu', 'no GPU')} ({m.get('gpu_memory_gib', '?')} GiB), {m['cpus']} CPUs, torch {m['torch']}, "
             f"commit {m.get('commit', '?')}, {m['date']}{' (DRY RUN, CPU)' if m.get('dry_run') else ''}. "
             "Command: `python benchmarks/gpu_check.py --out DIR`.", ""]
    for part in PARTS:
        if parts[part] is None:
            lines.append(f"- {part}: missing" + (f" ({data['errors'][part]})" if part in data["errors"] else " (not reached)"))
    t = parts["time_to_target"]
    if t:
        lines += ["", f"| time to target ({t['recipe']} recipe, k = 5: object and attribute mean ≥ {t['target']}, evaluated every "
                      f"{t['every']} steps) | seeds at target | median steps | median training s |", "|---|---|---|---|"]
        for model in ("tiny", "small"):
            if model in t:
                e = t[model]
                lines.append(f"| {model} | {e['reached']} | {_or_not_reached(e['median_steps'])} | {_or_not_reached(e['median_train_seconds'])} |")
    s = parts["strategies"]
    if s:
        lines += ["", f"| strategy ({s['model']}, {s['steps']} steps, {s['precision']}) | samples/s | kill, resume, export |", "|---|---|---|"]
        for name in ("ddp", "zero1", "zero2", "zero3"):
            e = s.get(name)
            if e and "resumed" in e:
                lines.append(f"| {name} | {_rate(e['resumed'])} | killed at step {e['killed_at_step']}, resumed from {e['resumed_from']} "
                             f"to step {e['final_step']}, exported ({e['exported_mib']} MiB); evaluations at steps {e['history_steps']} |")
            else:
                lines.append(f"| {name} | {_rate(e)} | |")
    v = parts["vs_open_clip"]
    if v:
        lines += ["", "| vs open_clip_train | steady samples/s | whole process s | steady speed ratio | whole-process speed ratio |", "|---|---|---|---|---|"]
        for tool in ("open_clip_train", "infogap_table", "infogap_shards"):
            r = v.get(f"{tool}_over_open_clip", {"steady_ratio": 1.0, "speed_ratio": 1.0})  # the benchmark's medians of per-pair ratios
            lines.append(f"| {tool} | {v[tool]['steady_samples_per_s']:,.0f} | {v[tool]['wall_s']} | {r['steady_ratio']} | {r['speed_ratio']} |")
    p = parts["speed_paths"]
    if p:
        lines += ["", f"| speed path ({p['model']}, fused AdamW {p['fused_adamw']}, pinned memory {p['pin_memory']}) | samples/s |", "|---|---|"]
        lines += [f"| {name} | {_rate(p.get(name))} |" for name in ("fp32", "bf16", "bf16_channels_last", "bf16_compile")]
    mt = parts["metrics"]
    if mt:
        lines += ["", f"| metrics on {mt['device']} | metrics | seconds |", "|---|---|---|"]
        lines += [f"| N = {k[1:]} ({e['suite']}) | {e['metrics']} | {e['seconds']} |" for k, e in mt.items() if k.startswith("n")]
    lo = parts["loaders"]
    if lo and "skipped" in lo:
        lines += ["", f"- loaders: skipped ({lo['skipped']})"]
    elif lo:
        lines += ["", f"| model | CPU workers ({lo['workers']}) samples/s | on-device rendering samples/s |", "|---|---|---|"]
        for model in ("tiny", "small"):
            if f"{model}_cpu_workers" in lo:
                lines.append(f"| {model} | {_rate(lo[f'{model}_cpu_workers'])} | {_rate(lo.get(f'{model}_on_device'))} |")
    return "\n".join(lines) + "\n"


def readme_table(data: dict) -> str:
    """The imbalance runs at GPU scale: one row per finished (k, seed), as measured."""
    runs = data["imbalance_runs"]
    im = data["parts"]["imbalance"]
    steps = im["steps"] if im else "?"
    if not runs:
        return "No imbalance run at GPU scale has finished.\n"
    lines = [f"`small`, {steps} steps, on-device rendering ({data['machine'].get('gpu', 'no GPU')}, {data['machine']['date']}):", "",
             "| k | seed | " + " | ".join(TABLE) + " | seconds |", "|" + "---|" * (len(TABLE) + 3)]
    for r in sorted(runs, key=lambda r: (r["k"], r["seed"])):
        lines.append(f"| {r['k']} | {r['seed']} | " + " | ".join(f"{r['metrics'][c]:.3f}" if c in r["metrics"] else "–" for c in TABLE)
                     + f" | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--readme", action="store_true", help="the README's GPU table instead of the BENCHMARKS.md section")
    args = parser.parse_args(argv)
    data = load(args.out)
    sys.stdout.write(readme_table(data) if args.readme else benchmarks_md(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
