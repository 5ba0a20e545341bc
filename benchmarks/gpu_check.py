"""The prepared GPU check (one run on a lent GPU machine): ``python benchmarks/gpu_check.py --out DIR``.

Parts, in order, each written to ``DIR/<part>.json`` the moment it finishes (so a time-out still returns
what finished), with one line per step in ``DIR/log.txt``:

  time_to_target  the default recipe's time to target on this device, first (the figure users ask for
               first): ``benchmarks/run.py``'s time_to_target at k = 5 (stopped once zero-shot object and
               mean attribute accuracy reach 0.80, evaluated every 50 steps), ``tiny`` then ``small``,
               seeds 0-2 while its share of the budget (35 %) lasts
  strategies   ``small`` for ``--steps`` steps (bf16) under DDP (1 GPU) and DeepSpeed ZeRO 1/2/3: steady
               samples/s; ZeRO-2 and ZeRO-3 are SIGKILLed once their mid-run checkpoint exists, resumed
               from it (``--ckpt_path=last``), exported with ``infogap export-ckpt`` and evaluated by the
               metrics callback (``metrics.json``)
  vs_open_clip ``benchmarks/run.py``'s comparison with open_clip_train on this device
  speed_paths  ``small`` samples/s with infogap's CUDA speed paths turned on one at a time (bf16,
               channels_last, torch.compile; fused AdamW and pinned memory are on by default on CUDA)
  metrics      the O(N d) metrics at N = 1,000,000 and the full suite at N = 100,000, on the device
  loaders      samples/s per GPU of ``tiny`` and ``small``: CPU loader workers vs on-device rendering
  imbalance    the imbalance sweep of ``small`` at GPU scale (k = 0..5, ``--sweep-steps`` steps,
               on-device rendering), seeds in order, as long as the budget lasts; each finished run's
               metrics in ``DIR/imbalance/k{k}_seed{s}.json`` at once

``--dry-run`` runs every part on the CPU at a few steps with ``tiny`` (the test suite does, so the script
cannot rot): the DeepSpeed parts are skipped with a line saying so (Lightning refuses DeepSpeed without
CUDA) and DDP goes through the kill, resume and export instead; one speed-path variant (bf16 with
channels_last); no loader comparison (the imbalance run renders on the device, the others on the
CPU); one imbalance run (k = 5, seed 0). ``--budget-s`` (default 540) is the wall time of the whole
check: no part starts once it is spent (each says so in the log), and the imbalance sweep starts a run
only while about 1.3 runs' time is left. ``benchmarks/gpu_report.py DIR`` turns the directory into the
BENCHMARKS.md rows and the README's GPU table.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["time_to_target", "strategies", "vs_open_clip", "speed_paths", "metrics", "loaders", "imbalance"]
TTT_EVERY = 50  # steps between the time-to-target evaluations on the device (the CPU benchmark's 100 would overshoot)
TTT_SHARE = 0.35  # of --budget-s: the time-to-target part's most (a seed starts only while 1.3 runs' time of it is left)
STRATEGIES = {"ddp": None, "zero1": "deepspeed_zero1", "zero2": "deepspeed_zero2", "zero3": "deepspeed_zero3"}
RESUMED = ("zero2", "zero3")


class Check:
    def __init__(self, out: Path, dry_run: bool, budget_s: float, steps: int, sweep_steps: int):
        self.out, self.dry_run, self.steps, self.sweep_steps = out, dry_run, steps, sweep_steps
        self.deadline, self.budget_s = time.monotonic() + budget_s, budget_s
        self.model = "tiny" if dry_run else "small"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def room(self, part: str, what: str, per_run: float | None, until: float | None = None) -> bool:
        """Whether ``part`` may start ``what``: time is left of the check (and before ``until`` where given) and,
        after a first run, at least 1.3 times the last run's time; logs why not."""
        left = self.left() if until is None else min(self.left(), until - time.monotonic())
        if left > 0 and (per_run is None or left >= 1.3 * per_run):
            return True
        self.log(f"{part}: stopped before {what} ({left:.0f} s left" + (f", a run takes {per_run:.0f} s)" if per_run is not None else ")"))
        return False

    def log(self, line: str) -> None:
        print(line, flush=True)
        with open(self.out / "log.txt", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def write(self, part: str, result: dict) -> None:
        (self.out / f"{part}.json").write_text(json.dumps(result, indent=2) + "\n")
        self.log(f"{part}: written")

    def fit_args(self, run: Path, steps: int, *extra: str) -> list[str]:
        args = [sys.executable, "-m", "infogap", "fit", "--config", str(ROOT / "configs" / "synthetic.yaml"),
                f"--model.model={self.model}", f"--trainer.max_steps={steps}", f"--trainer.default_root_dir={run}", "--log_with=none",
                "--trainer.enable_progress_bar=false", "--trainer.callbacks+=benchmarks.clock.StepClock", "--metrics.num_samples=256"]
        if self.dry_run:
            args += ["--data.init_args.batch_size=16", "--metrics.eval_every_n_steps=1000"]
        return args + list(extra)

    def fit(self, run: Path, steps: int, *extra: str, timeout: float | None = None) -> dict:
        """One ``infogap fit``: steady samples/s (after the first fifth of the steps) and wall time."""
        start = time.perf_counter()
        proc = subprocess.run(self.fit_args(run, steps, *extra), cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout or max(30.0, self.left()))
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"fit {run.name} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
        return {"wall_s": round(wall, 2), **steady(run, self.batch_size())}

    def batch_size(self) -> int:
        return 16 if self.dry_run else 128  # configs/synthetic.yaml

    # parts ---------------------------------------------------------------------------------------------

    def time_to_target(self) -> dict:
        """Per model, ``benchmarks/run.py``'s time-to-target summary of the default recipe (configs/synthetic.yaml
        as it stands) at k = 5, each seed alone on the device; a seed starts only while 1.3 of the last run's
        time is left of the check and of this part's share (``TTT_SHARE`` of the budget, so the parts after it
        still run). A dry run: ``tiny``, seed 0, 4 steps."""
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from run import TTT_TARGET, _time_to_target_run, time_to_target_summary

        every = 2 if self.dry_run else TTT_EVERY
        result = {"target": TTT_TARGET, "every": every, "recipe": "default"}
        part_end = time.monotonic() + TTT_SHARE * self.budget_s
        for model in ("tiny",) if self.dry_run else ("tiny", "small"):
            rows, per_run = {}, None
            for seed in (0,) if self.dry_run else (0, 1, 2):
                if not self.room("time_to_target", f"{model} seed={seed}", per_run, until=part_end):
                    break
                start = time.perf_counter()
                rows[seed] = _time_to_target_run(self.out / "runs" / f"ttt_{model}_seed{seed}", [f"--model.model={model}"], 5, seed, every,
                                                 self.dry_run)
                per_run = time.perf_counter() - start
                self.log(f"time_to_target: {model} seed={seed} done in {per_run:.0f} s")
            if rows:
                result[model] = {**time_to_target_summary(rows, TTT_TARGET), "wall_s_last_run": round(per_run, 1)}
        return result

    def strategies(self) -> dict:
        import torch

        result: dict = {"model": self.model, "steps": self.steps, "precision": "bf16-mixed" if torch.cuda.is_available() else "32-true"}
        precision = [f"--trainer.precision={result['precision']}"]
        for name, config in STRATEGIES.items():
            run = self.out / "runs" / f"strategy_{name}"
            if config and not torch.cuda.is_available():
                result[name] = {"skipped": "no CUDA: Lightning refuses DeepSpeed without it"}
                self.log(f"strategies: {name} skipped (no CUDA: Lightning refuses DeepSpeed without it)")
                continue
            extra = [*precision, *(["--config", str(ROOT / "configs" / "strategies" / f"{config}.yaml"), "--trainer.devices=1"] if config else [])]
            if name not in RESUMED and not (self.dry_run and name == "ddp"):  # a dry run kills and resumes DDP instead
                result[name] = self.fit(run, self.steps, *extra)
            else:
                result[name] = self.kill_resume_export(run, extra)
            self.log(f"strategies: {name} {result[name]}")
        return result

    def kill_resume_export(self, run: Path, extra: list[str]) -> dict:
        """Train with a checkpoint at half the steps, killed (SIGKILL, ``benchmarks.clock.KillAtStep``) one
        step after it, resumed from ``last``, exported to one state dict; the metrics callback's final
        evaluation and its history (which must hold the evaluations from before the kill)."""
        half = max(1, self.steps // 2)
        every = [f"--checkpoint.every_n_train_steps={half}"]
        kill = "--trainer.callbacks+=" + json.dumps({"class_path": "benchmarks.clock.KillAtStep", "init_args": {"step": half + 1}})
        killed = subprocess.run(self.fit_args(run, self.steps, *extra, *every, kill), cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=max(30.0, self.left()))
        if killed.returncode != -signal.SIGKILL:
            raise RuntimeError(f"the run to be killed exited {killed.returncode}: {killed.stderr.strip().splitlines()[-1:]}")
        out = {"killed_at_step": half + 1, "resumed_from": f"step{half:07d}.ckpt"}
        out["resumed"] = self.fit(run, self.steps, *extra, *every, "--ckpt_path=last")
        exported = run / "model.pt"
        from infogap.train.checkpoints import last_checkpoint

        exp = subprocess.run([sys.executable, "-m", "infogap", "export-ckpt", str(last_checkpoint(run)), "--out", str(exported)],
                             cwd=ROOT, env=self.env, capture_output=True, text=True)
        if exp.returncode != 0:
            raise RuntimeError(f"export-ckpt exited {exp.returncode}: {exp.stderr.strip().splitlines()[-1:]}")
        out["exported_mib"] = round(exported.stat().st_size / 2**20, 1)
        metrics = json.loads((run / "metrics.json").read_text())
        out["final_step"] = metrics["step"]
        out["metrics"] = {k: metrics["metrics"][k] for k in ("rmg", "l2m", "zeroshot_object_acc") if k in metrics["metrics"]}
        out["history_steps"] = sorted(int(s) for s in metrics["history"])
        return out

    def vs_open_clip(self) -> dict:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from run import bench_vs_open_clip

        return bench_vs_open_clip(smoke=self.dry_run)

    def speed_paths(self) -> dict:
        import torch

        cuda = torch.cuda.is_available()
        variants = {"fp32": [], "bf16": ["--trainer.precision=bf16-mixed"],
                    "bf16_channels_last": ["--trainer.precision=bf16-mixed", "--model.channels_last=true"],
                    "bf16_compile": ["--trainer.precision=bf16-mixed", "--model.compile=true"]}
        result: dict = {"model": self.model, "steps": self.steps, "fused_adamw": cuda, "pin_memory": cuda}
        for name, extra in variants.items():
            if self.dry_run and name != "bf16_channels_last":
                result[name] = {"skipped": "dry run: one variant (the others differ only in flags)"}
                continue
            result[name] = self.fit(self.out / "runs" / f"speed_{name}", self.steps, *extra)
            self.log(f"speed_paths: {name} {result[name]}")
        return result

    def metrics(self) -> dict:
        import torch

        from benchmarks.run import embeddings
        from infogap.train.metrics import compute_metrics

        device = "cuda" if torch.cuda.is_available() else "cpu"
        result: dict = {"device": device}
        for n, keys in ((1_000 if self.dry_run else 1_000_000, ["l2m", "l2i", "rmg", "alignment", "gap", "moad"]),
                        (500 if self.dry_run else 100_000, None)):
            x, y, labels = embeddings(n, 512)  # the CPU benchmark's inputs (BENCHMARKS.md, metrics), moved to the device
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            labels = {f: torch.from_numpy(v).to(device) for f, v in labels.items()}
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = compute_metrics(x, y, labels, metrics=keys, logit_scale=100.0)
            if device == "cuda":
                torch.cuda.synchronize()
            result[f"n{n}"] = {"metrics": len(out), "seconds": round(time.perf_counter() - start, 3), "suite": "O(N d)" if keys else "full"}
            self.log(f"metrics: n={n} {result[f'n{n}']}")
        return result

    def loaders(self) -> dict:
        import torch

        if self.dry_run:
            self.log("loaders: skipped in a dry run (the imbalance part renders on the device, the others render on the CPU)")
            return {"workers": 0, "skipped": "dry run: the imbalance part renders on the device, the others render on the CPU"}
        models = ["tiny", "small"]
        workers = 4
        precision = "--trainer.precision=bf16-mixed" if torch.cuda.is_available() else "--trainer.precision=32-true"
        result: dict = {"workers": workers}
        for model in models:
            for name, extra in (("cpu_workers", []), ("on_device", ["--data.init_args.render_on_device=true"])):
                run = self.out / "runs" / f"loader_{model}_{name}"
                args = [f"--model.model={model}", f"--data.init_args.num_workers={workers}", precision, *extra]
                result[f"{model}_{name}"] = self.fit(run, self.steps, *args)
                self.log(f"loaders: {model} {name} {result[f'{model}_{name}']}")
        return result

    def imbalance(self) -> dict:
        import torch

        (self.out / "imbalance").mkdir(exist_ok=True)
        done, per_run = [], None
        precision = "--trainer.precision=bf16-mixed" if torch.cuda.is_available() else "--trainer.precision=32-true"
        for seed in range(1 if self.dry_run else 3):
            for k in ((5,) if self.dry_run else range(6)):
                if not self.room("imbalance", f"k={k} seed={seed}", per_run):
                    return {"model": self.model, "steps": self.sweep_steps, "runs": done, "complete": False}
                run = self.out / "runs" / f"imbalance_k{k}_seed{seed}"
                start = time.perf_counter()
                self.fit(run, self.sweep_steps, f"--data.k={k}", f"--seed_everything={seed}", "--data.init_args.render_on_device=true",
                         precision, "--metrics.num_samples=1024")
                per_run = time.perf_counter() - start
                metrics = json.loads((run / "metrics.json").read_text())
                (self.out / "imbalance" / f"k{k}_seed{seed}.json").write_text(json.dumps({"k": k, "seed": seed, "seconds": round(per_run, 1),
                                                                                          "metrics": metrics["metrics"]}, indent=2))
                done.append(f"k{k}_seed{seed}")
                self.log(f"imbalance: k={k} seed={seed} done in {per_run:.0f} s")
        return {"model": self.model, "steps": self.sweep_steps, "runs": done, "complete": True}


def steady(run: Path, batch: int) -> dict:
    from benchmarks.clock import steady_rate

    times = json.loads((run / "step_times.json").read_text())
    warm = max(1, len(times) // 5)
    if len(times) <= warm:
        return {"steps_timed": len(times)}
    return {"steps_timed": len(times), "steady_samples_per_s": round(steady_rate(times, batch, warm), 1)}


def machine() -> dict:
    """The reproduction report's environment (commit, Python, platform, CPUs, package versions), the
    date, torch's version and the GPU."""
    import torch

    from infogap.ablations.runner.reproduce import environment

    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **environment(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dry-run", action="store_true", help="CPU, a few steps, tiny; DeepSpeed skipped")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall time of the whole check")
    parser.add_argument("--steps", type=int, default=None, help="steps of the strategy, speed and loader runs (200; dry run 6)")
    parser.add_argument("--sweep-steps", type=int, default=None, help="steps per imbalance run (6000; dry run 4)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    check = Check(args.out, args.dry_run, args.budget_s, args.steps or (6 if args.dry_run else 200),
                  args.sweep_steps or (4 if args.dry_run else 6000))
    (args.out / "machine.json").write_text(json.dumps({**machine(), "dry_run": args.dry_run, "budget_s": args.budget_s}, indent=2) + "\n")
    failed = []
    for part in parts:
        if check.left() <= 0:
            check.log(f"{part}: skipped (budget spent)")
            continue
        check.log(f"{part}: started ({check.left():.0f} s left)")
        try:
            check.write(part, getattr(check, part)())
        except Exception as exc:  # one part failing must not lose the others' results
            failed.append(part)
            check.log(f"{part}: FAILED {type(exc).__name__}: {exc}")
            (args.out / f"{part}.error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # benchmarks.clock, as benchmarks/run.py does
    sys.exit(main())
