"""Seed 002, causal (``infogap ablate dense``): does caption information make dense features? Encoders
trained at k = 0..5 (finished ``imbalance`` runs are reused) and, per seed, two encoders of the same
size on the same images: randomly initialised, and an image-only masked autoencoder trained for the
same steps (``infogap.ablations.dense.mae``). Each is probed (``infogap.ablations.dense.probe``) for
object segmentation, colour segmentation and depth on 1 %, 10 % and 100 % of the labelled images.
Claims: mIoU rises and RMSE falls with k; the best caption-trained encoder beats the MAE encoder;
the k = max encoder at 10 % of the labels beats the k = min encoder at 100 %, with how many times
fewer labels it needs to match it (``label_savings``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infogap.ablations.runner.claims import compare, paired_claim
from infogap.ablations.runner.results import cached_json, read_summary, save_figure
from infogap.ablations.runner.spec import planned_steps
from infogap.ablations.runner.study import Study, settings_dict

METRIC = {"object": "miou", "colour": "miou", "depth": "rmse"}


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = ("object", "colour", "depth")  # segmentation by object class, by colour class; depth
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)  # label fractions of the data-efficiency curve
    n_train: int = 4096  # synthetic training renders (seed 0: the same images for every encoder)
    n_val: int = 1024  # synthetic validation renders
    probe_steps: int = 300  # probe training steps


def probe_rows(checkpoint: Path, seed: int, settings: Settings) -> list[dict]:
    """Probe one encoder (a checkpoint ``load_encoder`` reads) on every task and label fraction, probe
    seed ``seed``: rows of {task, fraction, labelled, miou | rmse and absrel, baseline_*}."""
    from infogap.ablations.dense.probe import FeatureCache, baselines, patch_features, probe_fractions, seg_classes, synthetic_targets
    from infogap.train.embed import load_encoder

    enc = load_encoder(checkpoint=str(checkpoint))
    source = dataclasses.replace(enc.source, seed=0, dense=True)
    batches = {"train": source.train_batch(0, np.arange(settings.n_train)), "val": source.val_batch(np.arange(settings.n_val))}
    cache = FeatureCache(Path(checkpoint).parent / "features")
    features = {s: cache.get({**FeatureCache.checkpoint_key(checkpoint), "split": s, "n": len(b["image"]), "layers": [-1]},
                             lambda b=b: patch_features(enc.model, enc.rendered(b["image"]))) for s, b in batches.items()}
    rows = []
    for task in settings.tasks:
        train_y, val_y = (synthetic_targets(batches[s], task) for s in ("train", "val"))
        kind = "depth" if task == "depth" else "seg"
        n_classes = seg_classes(task) if kind == "seg" else None
        base = {f"baseline_{k}": v for k, v in baselines(train_y, val_y, kind, n_classes).items() if k != "majority_class"}
        for r in probe_fractions(features["train"], train_y, features["val"], val_y, kind, n_classes or 1, settings.fractions, [seed],
                                 steps=settings.probe_steps, accelerator="cpu"):
            rows.append({"task": task, **{k: v for k, v in r.items() if k != "seed"}, **base})
    return rows


def _key(settings: Settings) -> dict:
    """What a probe result depends on: the settings, and how the probe batches are drawn."""
    return {**settings_dict(settings), "batches": "one pass"}


def extra_rows(settings: Settings, ablation, runs, results: Path) -> list[dict]:
    """Per seed of the finished runs, the two baselines of the same model config: a randomly
    initialised encoder and a masked autoencoder trained for the runs' steps on the same images (kept
    under ``results/baselines/seed<N>/``), probed like the runs."""
    import torch

    from infogap.ablations.dense.mae import MaskedAutoencoder, train_mae
    from infogap.data.synthetic import SyntheticDataModule
    from infogap.models.clip import read_checkpoint

    out = []
    steps_of = planned_steps(ablation)
    for seed in sorted({r.seed for r in runs}):
        run = next(r for r in runs if r.seed == seed)
        hp = read_checkpoint(run.dir / "checkpoints" / "last.ckpt")["hyper_parameters"]
        steps = steps_of(run) or 600
        folder = results / "baselines" / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)

        def random_encoder() -> Path:
            torch.manual_seed(seed)
            module = MaskedAutoencoder(hp["model"], text_spec=hp.get("text_spec"))  # the same CLIP, never trained
            path = folder / "random.ckpt"
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
            return path

        def mae_encoder() -> Path:
            path = folder / "mae.ckpt"
            data = SyntheticDataModule(k=0, seed=seed, batch_size=int(run.overrides.get("data.init_args.batch_size", 128)))
            train_mae(hp["model"], data, steps, str(path), seed=seed, accelerator="cpu")
            return path

        for name, build in (("random", random_encoder), ("mae", mae_encoder)):
            key = {**_key(settings), "model": hp["model"], "encoder_steps": steps if name == "mae" else 0}
            result = cached_json(folder / f"{name}.json", key, lambda build=build: {"rows": probe_rows(build(), seed, settings)})
            out += [{"encoder": name, "seed": seed, **r} for r in result["rows"]]
    return out


def _value(rows, **where) -> dict[int, float]:
    """{seed: the metric of the row matching ``where``} (the task's metric)."""
    metric = METRIC[where["task"]]
    return {r["seed"]: r[metric] for r in rows if all(r.get(k) == v for k, v in where.items()) and not math.isnan(r.get(metric, math.nan))}


def labels_to_match(curve: dict[float, float], target: float, higher_better: bool = True) -> tuple[float, bool]:
    """The label fraction at which a data-efficiency curve ({fraction: metric}) first reaches ``target``,
    linearly interpolated in log fraction between the measured fractions: (fraction, exact). exact is
    False when the curve already reaches the target at its smallest fraction (the fraction is then an
    upper bound); the fraction is NaN when the curve never reaches it."""
    fs = sorted(f for f in curve if not math.isnan(curve[f]))
    gap = [(curve[f] - target) * (1 if higher_better else -1) for f in fs]  # >= 0: reached
    if not fs:
        return math.nan, True
    if gap[0] >= 0:
        return fs[0], False
    for (f0, g0), (f1, g1) in zip(zip(fs, gap), zip(fs[1:], gap[1:])):
        if g1 >= 0:
            t = g0 / (g0 - g1)  # g0 < 0 <= g1
            return float(math.exp(math.log(f0) + t * (math.log(f1) - math.log(f0)))), True
    return math.nan, True


def label_savings(rows, task: str, lo, hi, fractions) -> dict[int, str]:
    """{seed: how many times fewer labels the k = ``hi`` encoder needs to match the k = ``lo`` encoder
    with all of them} (``labels_to_match`` on the k = hi data-efficiency curve), as text: "12.3x",
    ">= 100x" (already matched at the smallest fraction) or "never" (not matched with all labels)."""
    metric = METRIC[task]
    target = _value(rows, encoder="clip", task=task, fraction=1.0, k=lo)
    curves: dict[int, dict[float, float]] = {}
    for fraction in fractions:
        for s, v in _value(rows, encoder="clip", task=task, fraction=fraction, k=hi).items():
            curves.setdefault(s, {})[fraction] = v
    out = {}
    for s in sorted(set(curves) & set(target)):
        f, exact = labels_to_match(curves[s], target[s], metric == "miou")
        out[s] = "never" if math.isnan(f) else (f"{1 / f:.3g}x" if exact else f">= {1 / f:.3g}x")
    return out


class Dense(Study):
    Settings = Settings
    extra_axes = ("encoder", "task", "fraction")

    def rows(self, run, record):
        ckpt = Path(run.dir) / "checkpoints" / "last.ckpt"
        result = cached_json(Path(run.dir) / "dense.json", _key(self.settings), lambda: {"rows": probe_rows(ckpt, run.seed, self.settings)})
        return [{"encoder": "clip", **record["metrics"], **r} for r in result["rows"]]

    def extra_rows(self, ablation, runs, results):
        return extra_rows(self.settings, ablation, runs, results)

    def claims(self, rows, design):
        """mIoU rises (RMSE falls) from the smallest to the largest k at 100 % labels, per task; the best
        caption-trained encoder (over k) beats the MAE encoder, per task; and the largest-k encoder at 10 %
        of the labels beats the smallest-k encoder at 100 % (10x label efficiency; a one-sided paired test
        of the difference, not an equivalence test)."""
        lo, hi = min(design["k"]), max(design["k"])
        out = []
        for task in self.settings.tasks:
            metric, better = METRIC[task], "positive" if METRIC[task] == "miou" else "negative"
            out.append(compare(rows, "k", lo, hi, metric, better, where={"encoder": "clip", "task": task, "fraction": 1.0}))
            sign = 1 if metric == "miou" else -1
            per_k = [_value(rows, encoder="clip", task=task, fraction=1.0, k=k) for k in design["k"]]
            mae = _value(rows, encoder="mae", task=task, fraction=1.0)
            best = {s: (max if sign > 0 else min)(v[s] for v in per_k if s in v) for s in mae if any(s in v for v in per_k)}
            out.append(paired_claim(f"{task}: the best caption-trained encoder beats the masked autoencoder ({metric}, 100 % labels)",
                                    {s: sign * (best[s] - mae[s]) for s in best}, "positive"))
            few, full = _value(rows, encoder="clip", task=task, fraction=0.1, k=hi), _value(rows, encoder="clip", task=task, fraction=1.0, k=lo)
            savings = "; ".join(f"seed {s}: {v}" for s, v in label_savings(rows, task, lo, hi, self.settings.fractions).items())
            out.append(paired_claim(f"{task}: k={hi} with 10 % of the labels beats k={lo} with all of them ({metric}; 10x fewer labels)",
                                    {s: sign * (few[s] - full[s]) for s in few if s in full}, "positive",
                                    f"times fewer labels k={hi} needs to match k={lo} at 100 % per seed: {savings or 'none'}"))
        return out


    def figures(self, ablation, runs, results):
        """Per task: the metric against k, one line per label fraction, the baselines as dashed lines; and
        the data-efficiency curves (metric against the label fraction, one line per encoder)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        table = read_summary(results, ("encoder", "task"))
        if not table:
            return []
        fig, axs = plt.subplots(2, len(self.settings.tasks), figsize=(4.2 * len(self.settings.tasks), 6.4), squeeze=False)
        ks = sorted({r["k"] for r in table if r.get("k") is not None})
        for j, task in enumerate(self.settings.tasks):
            metric = METRIC[task]
            ax = axs[0][j]
            for i, fraction in enumerate(self.settings.fractions):
                means = [np.mean([r[metric] for r in table if r["encoder"] == "clip" and r["task"] == task and r["fraction"] == fraction
                                  and r["k"] == k] or [np.nan]) for k in ks]
                ax.plot(ks, means, "o-", color=f"C{i}", label=f"{fraction:.0%} labels")
                for name, style in (("mae", "--"), ("random", ":")):
                    vals = [r[metric] for r in table if r["encoder"] == name and r["task"] == task and r["fraction"] == fraction]
                    if vals:
                        ax.axhline(np.mean(vals), color=f"C{i}", ls=style, lw=1)
            ax.set_title(f"{task}: {metric} vs k (dashed: MAE, dotted: random)", fontsize=8)
            ax.set_xlabel("k")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
            ax = axs[1][j]
            encoders = [("clip", k) for k in ks] + [("mae", None), ("random", None)]
            for name, k in encoders:
                pts = [np.mean([r[metric] for r in table if r["encoder"] == name and r["task"] == task and r["fraction"] == fraction
                                and (k is None or r["k"] == k)] or [np.nan]) for fraction in self.settings.fractions]
                ax.plot(self.settings.fractions, pts, "o-" if name == "clip" else "s--", label=f"k={k:g}" if name == "clip" else name,
                        color=plt.get_cmap("viridis")(ks.index(k) / max(1, len(ks) - 1)) if name == "clip" else ("C3" if name == "mae" else "0.5"))
            ax.set_xscale("log")
            ax.set_xlabel("label fraction")
            ax.set_title(f"{task}: data efficiency ({metric})", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        return [save_figure(fig, results / "dense_probes.png")]
