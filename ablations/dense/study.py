"""Vasu et al. 2024 made causal (``infogap ablate dense``, docs/results/dense.md): does caption information make dense features? Encoders
trained at k = 0..5 (finished ``imbalance`` runs are reused) and, per seed, encoders of the same size on
the same images without captions: randomly initialised, and an image-only masked autoencoder
(``infogap.ablations.dense.mae``) trained both with the image budget of a CLIP run (``mae``) and to its
own convergence (``mae_converged``, its loss curve in the report). Each is evaluated, as a frozen
linear probe and, as the paper did, fine-tuned with its head (``mode``: linear, finetune), on 1 %, 10 %
and 100 % of the labelled images, for: object and colour segmentation (both a function of one captioned
factor and the mask), an edge map (the stroke's geometry) and depth (a random surface per image that
no caption word determines, shown in the image by shading), with the old scaling-decided depth kept as
``scale_depth``. Beside them the label oracle (``encoder = oracle``): the same probe on the mask and the
image's factor labels only, i.e. how much of each task the caption words give away.

Claims: the metric improves from the smallest to the largest k (linear and fine-tuned, 100 % labels);
the encoder fixed in advance, the largest k, beats the converged MAE (not the best of the six k); and
the largest k fine-tuned on 10 % of the labels beats the smallest k on all of them, with how many times
fewer labels it needs (``label_savings``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infogap.ablations.kit.claims import BEYOND, CONTROL, cite, compare, paired_claim
from infogap.ablations.kit.results import cached_json, read_summary, save_figure
from infogap.ablations.kit.study import Study, settings_dict

METRIC = {"object": "miou", "colour": "miou", "edge": "miou", "depth": "rmse", "scale_depth": "rmse"}
CONTROL_TASK = "scale_depth"  # the positive control: a depth the scaling word decides, so captions that name it must help the probe
SOURCE = {"k": "Vasu et al. 2024: captions that describe the image give the image tower better dense features",
          "mae": "Vasu et al. 2024: CLIP on quality captions beats MAE-style pretraining (+12.1 % mIoU, -11.5 % RMSE at ViT-B/16)",
          "labels": "Vasu et al. 2024: 10x data efficiency when fine-tuning dense heads"}
MODES = ("linear", "finetune", "finetune_conv")  # frozen linear probe; fine-tuned with a linear head; fine-tuned with a conv decoder
FINETUNE_MODE = {"linear": "finetune", "conv": "finetune_conv"}  # the mode of each fine-tuning decoder


@dataclass(frozen=True)
class Settings:
    tasks: tuple[str, ...] = ("object", "colour", "edge", "depth", "scale_depth")  # depth: a random surface no caption word decides; scale_depth: the scaling-decided one
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)  # label fractions of the data-efficiency curve
    n_train: int = 4096  # synthetic training renders (seed 0: the same images for every encoder)
    n_val: int = 1024  # synthetic validation renders
    probe_steps: int = 300  # linear probe training steps (on frozen patch tokens)
    finetune_steps: int = 200  # encoder + head fine-tuned together, as the paper (0: no fine-tuning)
    finetune_decoders: tuple[str, ...] = ("linear", "conv")  # the fine-tuned heads: a 1 x 1 convolution, and a small convolutional decoder
    finetune_lr_encoder: float = 1e-4
    finetune_lr_head: float = 1e-2
    mae_converged_steps: int = 3000  # the masked autoencoder trained to its own convergence (loss curve in mae_loss.png)

    def __post_init__(self):
        unknown = [d for d in self.finetune_decoders if d not in FINETUNE_MODE]
        if unknown:
            raise ValueError(f"dense finetune_decoders: unknown decoder {unknown[0]!r}; choose from {', '.join(FINETUNE_MODE)}")


def probe_rows(checkpoint: Path, seed: int, settings: Settings) -> list[dict]:
    """Evaluate one encoder (a checkpoint ``load_encoder`` reads) on every task and label fraction, probe
    seed ``seed``, as a frozen linear probe and fine-tuned (``mode``): rows of {task, fraction, mode,
    labelled, miou | rmse, rmse_pooled, absrel, r2, baseline_*}."""
    from infogap.ablations.dense.probe import (FeatureCache, baselines, label_subset, patch_features, probe_fractions, seg_classes,
                                               synthetic_targets, task_kind, train_finetune)
    from infogap.train.embed import load_encoder

    enc = load_encoder(checkpoint=str(checkpoint))
    batches = dense_batches(enc, settings)
    images = {s: enc.rendered(b["image"]) for s, b in batches.items()}
    cache = FeatureCache(Path(checkpoint).parent / "features")
    features = {s: cache.get({**FeatureCache.checkpoint_key(checkpoint), "split": s, "n": len(b["image"]), "layers": [-1], "render": "dense-v2"},
                             lambda s=s: patch_features(enc.model, images[s])) for s, b in batches.items()}
    rows = []
    for task in settings.tasks:
        train_y, val_y = (synthetic_targets(batches[s], task) for s in ("train", "val"))
        kind = task_kind(task)
        n_classes = seg_classes(task) if kind == "seg" else None
        base = {f"baseline_{k}": v for k, v in baselines(train_y, val_y, kind, n_classes).items() if k != "majority_class"}
        for r in probe_fractions(features["train"], train_y, features["val"], val_y, kind, n_classes or 1, settings.fractions, [seed],
                                 steps=settings.probe_steps, accelerator="cpu"):
            rows.append({"task": task, "mode": "linear", **{k: v for k, v in r.items() if k != "seed"}, **base})
        for decoder in settings.finetune_decoders if settings.finetune_steps > 0 else ():
            for fraction in settings.fractions:
                index = label_subset(len(train_y), fraction, seed)
                tuned = train_finetune(enc.model, images["train"], train_y, index, kind, n_classes or 1, settings.finetune_steps,
                                       lr_encoder=settings.finetune_lr_encoder, lr_head=settings.finetune_lr_head, seed=seed, accelerator="cpu",
                                       decoder=decoder)
                rows.append({"task": task, "mode": FINETUNE_MODE[decoder], "fraction": fraction, "labelled": len(index),
                             **tuned.evaluate(images["val"], val_y), **base})
    return rows


def dense_batches(enc, settings: Settings) -> dict[str, dict]:
    """The training and validation renders every encoder is probed on (data seed 0), with their dense
    targets."""
    source = dataclasses.replace(enc.source, seed=0, dense=True)
    return {"train": source.train_batch(0, np.arange(settings.n_train)), "val": source.val_batch(np.arange(settings.n_val))}


def oracle_rows(enc, seed: int, settings: Settings) -> list[dict]:
    """The label oracle: a linear probe on ``oracle_features`` (the mask and the factor labels, nothing
    of the image) per task and fraction: what the caption words and the object's place determine."""
    from infogap.ablations.dense.probe import oracle_features, probe_fractions, seg_classes, synthetic_targets, task_kind

    batches = dense_batches(enc, settings)
    features = {s: oracle_features(b) for s, b in batches.items()}
    rows = []
    for task in settings.tasks:
        train_y, val_y = (synthetic_targets(batches[s], task) for s in ("train", "val"))
        kind = task_kind(task)
        n_classes = seg_classes(task) if kind == "seg" else 1
        for r in probe_fractions(features["train"], train_y, features["val"], val_y, kind, n_classes, settings.fractions, [seed],
                                 steps=settings.probe_steps, accelerator="cpu"):
            rows.append({"task": task, "mode": "linear", **{k: v for k, v in r.items() if k != "seed"}})
    return rows


def _key(settings: Settings) -> dict:
    """What a probe result depends on: the settings, how the probe batches are drawn, the dense renders."""
    return {**settings_dict(settings), "batches": "one pass", "render": "dense-v2"}


def extra_rows(settings: Settings, ablation, runs, results: Path) -> list[dict]:
    """Per seed of the finished runs, the encoders of the same model config trained without captions: a
    randomly initialised one, a masked autoencoder with the image budget of a CLIP run (its steps x
    batch: ``mae``) and one trained to its own convergence (``mae_converged``); all kept under
    ``results/baselines/seed<N>/`` and probed like the runs; and the label oracle (``oracle``)."""
    import torch

    from infogap.ablations.dense.mae import MaskedAutoencoder, train_mae
    from infogap.data.synthetic import SyntheticDataModule
    from infogap.models.clip import read_checkpoint
    from infogap.train.embed import load_encoder

    out = []
    for seed in sorted({r.seed for r in runs}):
        run = next(r for r in runs if r.seed == seed)
        hp = read_checkpoint(run.checkpoint)["hyper_parameters"]
        steps, batch = int(run.config("trainer.max_steps")), int(run.config("data.init_args.batch_size"))
        folder = results / "baselines" / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        curves: dict[str, dict] = {}

        def random_encoder() -> Path:
            torch.manual_seed(seed)
            module = MaskedAutoencoder(hp["model"], text_spec=hp.get("text_spec"))  # the same CLIP, never trained
            path = folder / "random.ckpt"
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
            return path

        def mae_encoder(name: str, mae_steps: int) -> Path:
            path = folder / f"{name}.ckpt"
            data = SyntheticDataModule(k=0, seed=seed, batch_size=batch)
            module = train_mae(hp["model"], data, mae_steps, str(path), seed=seed, accelerator="cpu", curve_every=max(1, mae_steps // 100))
            curves[name] = {str(k): v for k, v in module.loss_curve.items()}
            return path

        builds = {"random": (random_encoder, 0), "mae": (lambda: mae_encoder("mae", steps), steps),
                  "mae_converged": (lambda: mae_encoder("mae_converged", settings.mae_converged_steps), settings.mae_converged_steps)}
        for name, (build, encoder_steps) in builds.items():
            key = {**_key(settings), "model": hp["model"], "encoder_steps": encoder_steps, "batch": batch}
            result = cached_json(folder / f"{name}.json", key,
                                 lambda build=build, name=name: {"rows": probe_rows(build(), seed, settings), "loss_curve": curves.get(name)})
            out += [{"encoder": name, "seed": seed, "encoder_steps": encoder_steps, **r} for r in result["rows"]]
        enc = load_encoder(checkpoint=str(run.checkpoint))
        oracle = cached_json(folder / "oracle.json", _key(settings), lambda enc=enc: {"rows": oracle_rows(enc, seed, settings)})
        out += [{"encoder": "oracle", "seed": seed, **r} for r in oracle["rows"]]
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


def label_savings(rows, task: str, lo, hi, fractions, mode: str = "linear") -> dict[int, str]:
    """{seed: how many times fewer labels the k = ``hi`` encoder needs to match the k = ``lo`` encoder
    with all of them} (``labels_to_match`` on the k = hi data-efficiency curve), as text: "12.3x",
    ">= 100x" (already matched at the smallest fraction) or "never" (not matched with all labels)."""
    metric = METRIC[task]
    target = _value(rows, encoder="clip", task=task, fraction=1.0, k=lo, mode=mode)
    curves: dict[int, dict[float, float]] = {}
    for fraction in fractions:
        for s, v in _value(rows, encoder="clip", task=task, fraction=fraction, k=hi, mode=mode).items():
            curves.setdefault(s, {})[fraction] = v
    out = {}
    for s in sorted(set(curves) & set(target)):
        f, exact = labels_to_match(curves[s], target[s], metric == "miou")
        out[s] = "never" if math.isnan(f) else (f"{1 / f:.3g}x" if exact else f">= {1 / f:.3g}x")
    return out


class Dense(Study):
    Settings = Settings
    extra_axes = ("encoder", "task", "fraction", "mode")
    parallel_rows = True  # rows probes and fine-tunes each run

    def rows(self, run, record):
        ckpt = run.checkpoint
        result = cached_json(Path(run.dir) / "dense.json", _key(self.settings), lambda: {"rows": probe_rows(ckpt, run.seed, self.settings)})
        return [{"encoder": "clip", **record["metrics"], **r} for r in result["rows"]]

    def extra_rows(self, ablation, runs, results):
        return extra_rows(self.settings, ablation, runs, results)

    def claims(self, rows, design):
        """Per task and mode (linear probe, fine-tuned): the metric improves (mIoU rises, RMSE falls) from
        the smallest to the largest k at 100 % labels; the largest-k encoder, fixed in advance, beats
        the masked autoencoder at the same images seen (the headline: a matched budget) and the one
        trained to its own convergence; and, fine-tuned, the largest k with 10 % of the
        labels beats the smallest k with all of them (10x label efficiency), with how many times fewer
        labels it needs. Each is paired by seed (the unit). The positive control is ``scale_depth``'s linear
        probe improving with k (the scaling word decides that depth, so captions that name scaling must
        help); the other claims on that target are beyond the paper."""
        lo, hi = min(design["k"]), max(design["k"])
        modes = [m for m in MODES if any(r.get("mode") == m for r in rows)] or ["linear"]
        out = []
        for task in self.settings.tasks:
            metric, better = METRIC[task], "positive" if METRIC[task] == "miou" else "negative"
            sign = 1 if metric == "miou" else -1
            for mode in modes:
                claim = compare(rows, "k", lo, hi, metric, better, where={"encoder": "clip", "task": task, "fraction": 1.0, "mode": mode})
                out += (cite([claim], "planted by construction: the scaling word decides this depth", CONTROL) if task == CONTROL_TASK and mode == "linear"
                        else self._cite([claim], task, "k"))
                top = _value(rows, encoder="clip", task=task, fraction=1.0, k=hi, mode=mode)
                for baseline, budget in (("mae", "at the same images seen (matched budget)"), ("mae_converged", "trained to its own convergence")):
                    mae = _value(rows, encoder=baseline, task=task, fraction=1.0, mode=mode)
                    out += self._cite([paired_claim(f"{task}: the k={hi} encoder beats the masked autoencoder {budget} ({metric}, 100 % labels, {mode})",
                                                    {s: sign * (top[s] - mae[s]) for s in top if s in mae}, "positive",
                                                    "; ".join(f"seed {s}: {top[s]:.3f} vs MAE {mae[s]:.3f}" for s in sorted(set(top) & set(mae))))],
                                      task, "mae")
            mode = "finetune" if "finetune" in modes else "linear"
            few = _value(rows, encoder="clip", task=task, fraction=0.1, k=hi, mode=mode)
            full = _value(rows, encoder="clip", task=task, fraction=1.0, k=lo, mode=mode)
            savings = "; ".join(f"seed {s}: {v}" for s, v in label_savings(rows, task, lo, hi, self.settings.fractions, mode).items())
            out += self._cite([paired_claim(f"{task}: k={hi} with 10 % of the labels beats k={lo} with all of them ({metric}, {mode}; 10x fewer labels)",
                                            {s: sign * (few[s] - full[s]) for s in few if s in full}, "positive",
                                            f"times fewer labels k={hi} needs to match k={lo} at 100 % per seed: {savings or 'none'}")], task, "labels")
        return out

    @staticmethod
    def _cite(claims, task: str, statement: str):
        """The paper's ``statement`` for a target no caption word decides alone; on the control's target
        (decided by the scaling word) the claim is beyond the paper."""
        if task == CONTROL_TASK:
            return cite(claims, f"on the positive control's target (decided by the scaling word); {SOURCE[statement]}", BEYOND)
        return cite(claims, SOURCE[statement])

    def figures(self, ablation, runs, results):
        """Per task: the metric against k for each label fraction (linear probe solid, fine-tuned
        dashed), the MAE, random and label-oracle levels as horizontal lines; the data-efficiency
        curves of the fine-tuned encoders; and the masked autoencoders' loss curves."""
        import json

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        table = read_summary(results, ("encoder", "task", "mode"))
        if not table:
            return []
        tasks = [t for t in self.settings.tasks if any(r["task"] == t for r in table)]
        fig, axs = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.4), squeeze=False)
        ks = sorted({r["k"] for r in table if r.get("k") is not None})

        def mean(**where):
            metric = METRIC[where["task"]]
            vals = [r[metric] for r in table if all(r.get(k) == v for k, v in where.items()) and r.get(metric) is not None]
            return float(np.mean(vals)) if vals else np.nan

        for j, task in enumerate(tasks):
            metric = METRIC[task]
            ax = axs[0][j]
            for i, fraction in enumerate(self.settings.fractions):
                for mode, style in (("linear", "o-"), ("finetune", "s--"), ("finetune_conv", "^:")):
                    pts = [mean(encoder="clip", task=task, fraction=fraction, k=k, mode=mode) for k in ks]
                    if not all(np.isnan(pts)):
                        ax.plot(ks, pts, style, color=f"C{i}", label=f"{fraction:.0%}, {mode}")
            for name, style in (("mae_converged", "--"), ("random", ":"), ("oracle", "-.")):
                level = mean(encoder=name, task=task, fraction=1.0, mode="linear")
                if not np.isnan(level):
                    ax.axhline(level, color="k", ls=style, lw=1, label=f"{name} (linear, 100 %)")
            ax.set_title(f"{task}: {metric} vs k", fontsize=8)
            ax.set_xlabel("k")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=5)
            ax = axs[1][j]
            for name in ["clip", "mae", "mae_converged", "random"]:
                for k in (ks if name == "clip" else [None]):
                    pts = [mean(encoder=name, task=task, fraction=f, mode="finetune", **({"k": k} if k is not None else {}))
                           for f in self.settings.fractions]
                    if not all(np.isnan(pts)):
                        ax.plot(self.settings.fractions, pts, "o-" if name == "clip" else "s--", label=f"k={k:g}" if name == "clip" else name,
                                color=plt.get_cmap("viridis")(ks.index(k) / max(1, len(ks) - 1)) if name == "clip" else None)
            ax.set_xscale("log")
            ax.set_xlabel("label fraction")
            ax.set_title(f"{task}: data efficiency, fine-tuned ({metric})", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=5)
        out = [save_figure(fig, results / "dense_probes.png")]
        curves = {}
        for path in sorted((results / "baselines").glob("seed*/mae*.json")):
            curve = json.loads(path.read_text()).get("loss_curve")
            if curve:
                curves[f"{path.parent.name} {path.stem}"] = curve
        accuracy = clip_accuracy_curves([r for r in runs if r.stage == ablation.report_stage and r.finished])
        if curves or accuracy:
            fig, axs = plt.subplots(1, 2, figsize=(9.5, 3.4))
            for label, curve in curves.items():
                steps = sorted(int(k) for k in curve)
                axs[0].plot(steps, [curve[str(k)] for k in steps], label=label, lw=1)
            axs[0].set_ylabel("MAE loss (hidden patches)")
            axs[0].set_yscale("log")
            for label, curve in accuracy.items():
                steps = sorted(curve)
                axs[1].plot(steps, [curve[t] for t in steps], label=label, lw=1)
            axs[1].set_ylabel("CLIP zero-shot object accuracy")
            for ax in axs:
                ax.set_xlabel("step")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=5)
            out.append(save_figure(fig, results / "mae_loss.png"))
        return out


def clip_accuracy_curves(runs) -> dict[str, dict[int, float]]:
    """{"k=K seed=S": {step: zero-shot object accuracy}} from each finished run's metrics history (its
    ``metrics.json``): whether the CLIP encoders had converged, beside the masked autoencoders' loss."""
    import json

    out = {}
    for r in runs:
        path = Path(r.dir) / "metrics.json"
        if not path.is_file():
            continue
        history = json.loads(path.read_text()).get("history") or {}
        curve = {int(step): m["zeroshot_object_acc"] for step, m in history.items() if "zeroshot_object_acc" in m}
        if curve:
            out[f"k={r.axes.get('k')} seed={r.seed}"] = curve
    return out
