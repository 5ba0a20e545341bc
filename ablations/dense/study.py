"""Vasu et al. 2024 made causal (``infogap ablate dense``, docs/results/dense.md): do captions that
describe the scene give the image tower better dense features?

The world is the layout world (``infogap.data.render``): each object placed in a 64-px scene by three
coarse layout words (a position cell, a size class, a depth plane) that its captions name
(``layout_words`` on) or do not (off: the same scenes, captions about the object only), the paper's
descriptive captions against alt-text. The appearance attributes' k (0 and 5) is a second axis, the
image budget (``max_steps``: images seen = steps x batch) a third. Beside the CLIPs, per seed,
encoders of the same size trained without captions on the same scenes: randomly initialised, and an
image-only masked autoencoder (``infogap.ablations.dense.mae``) at each CLIP budget (images seen
matched). Each encoder is evaluated as a frozen linear probe and, as the paper did, fine-tuned with a
head (``mode``: linear; finetune, a 1 x 1 head; finetune_conv, a small convolutional decoder), on 1 %,
10 % and 100 % of the labelled images, for: object segmentation (the pixel-exact mask times the
class) and the depth of a random surface within the depth plane, both finer than any word; and
``plane``, the positive control: 1 + the depth plane's index on the object, the one target a caption word decides
(colour segmentation and an edge map are available as ``tasks``, not default: a random encoder nearly
reaches their ceiling at this token grid). Two references: the word oracle (``encoder = oracle``: the probe on what the full caption's
words give, ``word_oracle_features``) and the ceiling (``encoder = ceiling``: the probe on the scene's
exact maps pooled to the encoder's token grid, ``ceiling_features``).

Claims (each paired by seed): the paper's, per target, budget and mode (linear probe and fine-tuned
with the convolutional decoder), at the largest k: captions with layout words beat captions without;
the layout-caption CLIP beats the masked autoencoder at the same images seen (the headline); and,
fine-tuned at the largest budget, layout captions with 10 % of the labels beat captions without with
all of them, with how many times fewer labels they need (``label_savings``). Beyond the paper: the
metric improves from the smallest to the largest k (appearance words, not layout). The positive
control: the plane's linear probe improves with layout words.

Deviations from the paper, forced by the synthetic world and the CPU: 64-px scenes and 8 x 8 tokens,
encoders of two blocks, a linear or small convolutional head instead of UperNet/DPT decoders, and
captions of words rather than sentences.
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

METRIC = {"object": "miou", "colour": "miou", "edge": "miou", "depth": "rmse", "scale_depth": "rmse", "plane": "rmse"}
CONTROL_TASK = "plane"  # the positive control: the depth plane, decided by the plane word, so captions that name it must help the probe
SOURCE = {"layout": "Vasu et al. 2024: captions that describe the image give the image tower better dense features",
          "mae": "Vasu et al. 2024: CLIP on quality captions beats MAE-style pretraining (+12.1 % mIoU, -11.5 % RMSE at ViT-B/16)",
          "labels": "Vasu et al. 2024: 10x data efficiency when fine-tuning dense heads",
          "k": "beyond Vasu et al. 2024: more appearance words (not layout) and dense features"}
MODES = ("linear", "finetune", "finetune_conv")  # frozen linear probe; fine-tuned with a linear head; fine-tuned with a conv decoder
CLAIM_MODES = ("linear", "finetune_conv")  # the probe and the fine-tuned decoder the claims read (the paper fine-tunes a decoder)
FINETUNE_MODE = {"linear": "finetune", "conv": "finetune_conv"}  # the mode of each fine-tuning decoder
RENDER = "dense-v3"  # what the cached probe results of a render depend on (the layout world's scenes)


@dataclass(frozen=True)
class Settings:
    # object segmentation and depth, the paper's two kinds, and plane, the positive control. colour and edge stay available
    # (dense.tasks=[...]) but are not default: at 8 x 8 tokens a random encoder's probe already comes near the ceiling on them
    # (docs/results/dense.md), so they cannot tell encoders apart; scale_depth is the 28-px world's control
    tasks: tuple[str, ...] = ("object", "depth", "plane")
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)  # label fractions of the linear probes' data-efficiency curve
    finetune_fractions: tuple[float, ...] = (0.1, 1.0)  # label fractions of the fine-tunes (the label-efficiency claim reads 10 % and 100 %)
    n_train: int = 4096  # synthetic training renders (seed 0: the same images for every encoder)
    n_val: int = 1024  # synthetic validation renders
    probe_steps: int = 300  # linear probe training steps (on frozen patch tokens)
    finetune_steps: int = 200  # encoder + head fine-tuned together, as the paper (0: no fine-tuning)
    finetune_decoders: tuple[str, ...] = ("conv",)  # the fine-tuned heads: "conv", a small convolutional decoder; "linear", a 1 x 1 convolution
    finetune_lr_encoder: float = 1e-4
    finetune_lr_head: float = 1e-2
    finetune_clip: float = 1.0  # the fine-tunes' gradient norm clipped at this (unclipped, the conv decoder diverged on some encoders)
    oracle_size: int = 16  # resolution of the word oracle's maps (the words have none; the position prior is smooth)

    @property
    def label_fractions(self) -> list[float]:
        """Every label fraction a probe or a fine-tune uses, ascending."""
        return sorted({*self.fractions, *self.finetune_fractions})

    def __post_init__(self):
        bad = [f for f in (*self.fractions, *self.finetune_fractions) if not 0 < f <= 1]
        if bad:
            raise ValueError(f"dense fractions: {bad[0]} is not a label fraction in (0, 1]")
        unknown = [d for d in self.finetune_decoders if d not in FINETUNE_MODE]
        if unknown:
            raise ValueError(f"dense finetune_decoders: unknown decoder {unknown[0]!r}; choose from {', '.join(FINETUNE_MODE)}")


def probe_rows(checkpoint: Path, seed: int, settings: Settings, label_curve: bool = True) -> list[dict]:
    """Evaluate one encoder (a checkpoint ``load_encoder`` reads) on every task and label fraction, probe
    seed ``seed``, as a frozen linear probe and fine-tuned (``mode``): rows of {task, fraction, mode,
    labelled, miou | rmse, rmse_pooled, absrel, r2, baseline_*}. Fine-tuned only where a claim reads it:
    not on the positive control (its claim is the linear probe's), and at every ``finetune_fractions``
    only with ``label_curve`` (the CLIPs, whose label-efficiency claim reads 10 %), else at the largest
    (the baselines, compared at 100 % of the labels)."""
    from infogap.ablations.dense.probe import (FeatureCache, baselines, label_subset, patch_features, probe_fractions, seg_classes,
                                               synthetic_targets, task_kind, train_finetune)
    from infogap.train.embed import load_encoder

    enc = load_encoder(checkpoint=str(checkpoint))
    batches = dense_batches(enc, settings)
    images = {s: enc.rendered(b["image"]) for s, b in batches.items()}
    cache = FeatureCache(Path(checkpoint).parent / "features")
    features = {s: cache.get({**FeatureCache.checkpoint_key(checkpoint), "split": s, "n": len(b["image"]), "layers": [-1], "render": RENDER},
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
        for decoder in settings.finetune_decoders if settings.finetune_steps > 0 and task != CONTROL_TASK else ():
            for fraction in settings.finetune_fractions if label_curve else [max(settings.finetune_fractions)]:
                index = label_subset(len(train_y), fraction, seed)
                tuned = train_finetune(enc.model, images["train"], train_y, index, kind, n_classes or 1, settings.finetune_steps,
                                       lr_encoder=settings.finetune_lr_encoder, lr_head=settings.finetune_lr_head, seed=seed, accelerator="cpu",
                                       decoder=decoder, clip=settings.finetune_clip)
                rows.append({"task": task, "mode": FINETUNE_MODE[decoder], "fraction": fraction, "labelled": len(index),
                             **tuned.evaluate(images["val"], val_y), **base})
    return rows


def layout_accuracy(enc, n: int = 512) -> dict[str, float]:
    """Whether a layout-world CLIP learnt the layout words: per layout factor, the share of ``n``
    validation scenes whose image is closest to its own full caption (every word named) with that
    factor's word right, among the captions that differ from it in that word only
    (``zeroshot_<factor>_acc``); {} for an encoder of the 28-px world."""
    import torch

    from infogap.data.factors import LAYOUT_FACTORS
    from infogap.data.render import sample_keys
    from infogap.data.synthetic import VAL_EPOCH, CaptionSpec, caption_with_k_attributes

    source = dataclasses.replace(enc.source, dense=False)
    if not source.layout:
        return {}
    batch = source.val_batch(np.arange(n))
    image = torch.from_numpy(enc.images(batch["image"]))
    keys = sample_keys(source.seed, VAL_EPOCH, np.arange(n))
    labels = {f: t.numpy() for f, t in batch["labels"].items()}
    out = {}
    for factor, words in LAYOUT_FACTORS.items():
        scores = []
        for value in range(len(words)):
            layout = {f: (np.full(n, value) if f == factor else t.numpy()) for f, t in batch["layout"].items()}
            tokens = caption_with_k_attributes(keys, labels, CaptionSpec(len(source.caption.others)), source.vocab, layout)
            scores.append((image * torch.from_numpy(enc.texts(torch.from_numpy(tokens)))).sum(1))
        out[f"zeroshot_{factor}_acc"] = float((torch.stack(scores, 1).argmax(1) == batch["layout"][factor]).float().mean())
    return out


def dense_batches(enc, settings: Settings) -> dict[str, dict]:
    """The training and validation renders every encoder is probed on (data seed 0; the encoder's world),
    with their dense targets."""
    source = dataclasses.replace(enc.source, seed=0, dense=True)
    return {"train": source.train_batch(0, np.arange(settings.n_train)), "val": source.val_batch(np.arange(settings.n_val))}


def reference_rows(enc, seed: int, settings: Settings) -> list[dict]:
    """The two references, as linear probes per task and fraction (the ``encoder`` column): the word
    oracle (``oracle``: ``word_oracle_features``, with the position prior of the training renders) and
    the ceiling (``ceiling``: ``ceiling_features`` on the encoder's token grid)."""
    from infogap.ablations.dense.probe import (ceiling_features, layout_prior, probe_fractions, seg_classes, synthetic_targets, task_kind,
                                               word_oracle_features)

    batches = dense_batches(enc, settings)
    visual = enc.model.visual
    grid = int(visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size) // int(visual.patch_size[0])
    prior = layout_prior(batches["train"], settings.oracle_size)
    references = {"oracle": {s: word_oracle_features(b, prior) for s, b in batches.items()},
                  "ceiling": {s: ceiling_features(b, grid) for s, b in batches.items()}}
    rows = []
    for encoder, features in references.items():
        for task in settings.tasks:
            train_y, val_y = (synthetic_targets(batches[s], task) for s in ("train", "val"))
            kind = task_kind(task)
            n_classes = seg_classes(task) if kind == "seg" else 1
            for r in probe_fractions(features["train"], train_y, features["val"], val_y, kind, n_classes, settings.fractions, [seed],
                                     steps=settings.probe_steps, accelerator="cpu"):
                rows.append({"encoder": encoder, "task": task, "mode": "linear", **{k: v for k, v in r.items() if k != "seed"}})
    return rows


def _key(settings: Settings) -> dict:
    """What a probe result depends on: the settings, how the probe batches are drawn, the dense renders."""
    return {**settings_dict(settings), "batches": "one pass", "render": RENDER, "finetuned": "where a claim reads it"}


def budgets(runs) -> list[int]:
    """The image budgets (training steps) of the finished runs, ascending."""
    return sorted({int(r.config("trainer.max_steps")) for r in runs})


def extra_rows(settings: Settings, ablation, runs, results: Path, jobs: int = 1) -> list[dict]:
    """Per seed of the finished runs, the encoders of the same model config trained without captions on
    the same world and the two references (``baseline_rows``): one work item per seed and encoder,
    ``jobs`` at once (``parallel_map``), the longest first (the masked autoencoders, the largest budget
    first), so that no worker waits idle on another seed's baselines; rows in seed order."""
    from infogap.ablations.kit.parallel import parallel_map

    work = []
    for seed in sorted({r.seed for r in runs}):
        run = next(r for r in runs if r.seed == seed)
        common = (seed, run.checkpoint, int(run.config("data.init_args.batch_size")))
        work += [(*common, "random", 0)] + [(*common, "mae", b) for b in budgets([r for r in runs if r.seed == seed])] + [(*common, "references", 0)]
    order = sorted(range(len(work)), key=lambda i: (work[i][3] != "mae", -work[i][4], i))
    done = dict(zip(order, parallel_map(baseline_rows, [work[i] for i in order], jobs, settings, Path(results))))
    return [row for i in range(len(work)) for row in done[i]]


def baseline_rows(settings: Settings, results: Path, work: tuple) -> list[dict]:
    """The rows of one of a seed's baselines, kept under ``results/baselines/seed<N>/``: a randomly
    initialised encoder (``random``), a masked autoencoder trained for ``steps`` steps (``mae``: steps x
    batch images, the matched comparison, ``max_steps`` set like the runs'), each of the model of
    ``checkpoint`` on its world and probed like the runs; or the two references (``references``:
    ``reference_rows``). ``work``: (seed, a run's checkpoint, its batch size, kind, steps)."""
    import torch

    from infogap.ablations.dense.mae import MaskedAutoencoder, train_mae
    from infogap.data.synthetic import SyntheticDataModule
    from infogap.models.clip import read_checkpoint
    from infogap.train.embed import load_encoder

    seed, checkpoint, batch, kind, steps = work
    hp = read_checkpoint(checkpoint)["hyper_parameters"]
    enc = load_encoder(checkpoint=str(checkpoint))
    layout = enc.source.layout  # the run's world, from its vocabulary (runs from before the layout world have none)
    folder = results / "baselines" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "references":
        refs = cached_json(folder / "references.json", {**_key(settings), "model": hp["model"], "layout": layout},
                           lambda: {"rows": reference_rows(enc, seed, settings)})
        return [{"seed": seed, **r} for r in refs["rows"]]

    def build() -> tuple[Path, dict | None]:
        if kind == "random":
            torch.manual_seed(seed)
            module = MaskedAutoencoder(hp["model"], text_spec=hp.get("text_spec"))  # the same CLIP, never trained
            path = folder / "random.ckpt"
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
            return path, None
        path = folder / f"mae{steps}.ckpt"
        data = SyntheticDataModule(k=0, seed=seed, batch_size=batch, layout=layout)
        module = train_mae(hp["model"], data, steps, str(path), seed=seed, accelerator="cpu", curve_every=max(1, steps // 100))
        return path, {str(k): v for k, v in module.loss_curve.items()}

    def compute():
        path, curve = build()
        return {"rows": probe_rows(path, seed, settings, label_curve=False), "loss_curve": curve}

    key = {**_key(settings), "model": hp["model"], "encoder_steps": steps, "batch": batch, "layout": layout, "label_curve": False}
    result = cached_json(folder / f"{kind if kind == 'random' else f'mae{steps}'}.json", key, compute)
    budget = {"max_steps": steps} if kind == "mae" else {}
    return [{"encoder": kind, "seed": seed, "encoder_steps": steps, **budget, **r} for r in result["rows"]]


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


def label_savings(rows, task: str, reference: dict, better: dict, fractions, mode: str = "linear") -> dict[int, str]:
    """{seed: how many times fewer labels the ``better`` encoder (a ``where`` of its rows, e.g. layout
    words on) needs to match the ``reference`` encoder (e.g. layout words off) with all of them}
    (``labels_to_match`` on the better encoder's data-efficiency curve), as text: "12.3x", ">= 100x"
    (already matched at the smallest fraction) or "never" (not matched with all labels)."""
    metric = METRIC[task]
    target = _value(rows, encoder="clip", task=task, fraction=1.0, mode=mode, **reference)
    curves: dict[int, dict[float, float]] = {}
    for fraction in fractions:
        for s, v in _value(rows, encoder="clip", task=task, fraction=fraction, mode=mode, **better).items():
            curves.setdefault(s, {})[fraction] = v
    out = {}
    for s in sorted(set(curves) & set(target)):
        f, exact = labels_to_match(curves[s], target[s], metric == "miou")
        out[s] = "never" if math.isnan(f) else (f"{1 / f:.3g}x" if exact else f">= {1 / f:.3g}x")
    return out


def _where(**items) -> dict:
    """A row filter without the axes the design does not have (None)."""
    return {k: v for k, v in items.items() if v is not None}


class Dense(Study):
    Settings = Settings
    extra_axes = ("encoder", "task", "fraction", "mode")
    parallel_rows = True  # rows probes and fine-tunes each run

    def rows(self, run, record):
        """The run's probe rows, each with its metrics and, in the layout world, its zero-shot accuracy on
        the layout words (``layout_accuracy``: whether it learnt what the study asks its captions to teach)."""
        from infogap.train.embed import load_encoder

        ckpt = run.checkpoint
        result = cached_json(Path(run.dir) / "dense.json", _key(self.settings),
                             lambda: {"rows": probe_rows(ckpt, run.seed, self.settings), "layout": layout_accuracy(load_encoder(checkpoint=str(ckpt)))})
        return [{"encoder": "clip", **record["metrics"], **result.get("layout", {}), **r} for r in result["rows"]]

    def extra_rows(self, ablation, runs, results, jobs=1):
        return extra_rows(self.settings, ablation, runs, results, jobs)

    def claims(self, rows, design):
        """Paired by seed. The paper's, per target (not the control), budget and claimed mode, at the
        largest k: the metric (mIoU up, RMSE down; 100 % labels) with layout words beats without; the
        layout-caption CLIP beats the masked autoencoder of its budget (images seen matched: the
        headline); per target, fine-tuned at the largest budget, layout words with 10 % of the labels beat
        no layout words with all of them (10x label efficiency), with the times fewer labels needed.
        Beyond the paper: the metric improves from the smallest to the largest k (layout words on, the
        largest budget, linear probe). The positive control: the plane's linear probe with layout words
        beats without (largest budget and k). A design without the ``layout_words`` axis (a 28-px world)
        has the k and MAE claims only."""
        lo, hi = min(design["k"]), max(design["k"])
        steps = design.get("max_steps") or [None]
        top_budget = max(steps) if steps != [None] else None
        words = "layout_words" in design
        modes = [m for m in CLAIM_MODES if any(r.get("mode") == m for r in rows)] or ["linear"]
        tuned = "finetune_conv" if "finetune_conv" in modes else ("finetune" if any(r.get("mode") == "finetune" for r in rows) else "linear")
        with_words = {"layout_words": True} if words else {}
        out = []
        for task in self.settings.tasks:
            metric, better = METRIC[task], "positive" if METRIC[task] == "miou" else "negative"
            sign = 1 if metric == "miou" else -1
            if task == CONTROL_TASK:
                if words:
                    claim = compare(rows, "layout_words", False, True, metric, better,
                                    where=_where(encoder="clip", task=task, fraction=1.0, mode="linear", k=hi, max_steps=top_budget))
                    out += cite([claim], "planted by construction: the plane word decides this target", CONTROL)
                continue
            for budget in steps:
                for mode in modes:
                    where = _where(encoder="clip", task=task, fraction=1.0, mode=mode, k=hi, max_steps=budget)
                    if words:
                        out += cite([compare(rows, "layout_words", False, True, metric, better, where=where)], SOURCE["layout"])
                    top = _value(rows, **where, **with_words)
                    mae = _value(rows, **_where(encoder="mae", task=task, fraction=1.0, mode=mode, max_steps=budget))
                    label = f"{budget} steps" if budget is not None else "the runs' budget"
                    out += cite([paired_claim(f"{task}: the {'layout-caption ' if words else ''}k={hi} CLIP beats the masked autoencoder at the same "
                                              f"images seen ({label}; {metric}, 100 % labels, {mode})",
                                              {s: sign * (top[s] - mae[s]) for s in top if s in mae}, "positive",
                                              "; ".join(f"seed {s}: {top[s]:.3f} vs MAE {mae[s]:.3f}" for s in sorted(set(top) & set(mae))))],
                                SOURCE["mae"])
            at = _where(k=hi, max_steps=top_budget)
            if words:
                few = _value(rows, encoder="clip", task=task, fraction=0.1, mode=tuned, layout_words=True, **at)
                full = _value(rows, encoder="clip", task=task, fraction=1.0, mode=tuned, layout_words=False, **at)
                savings = label_savings(rows, task, {"layout_words": False, **at}, {"layout_words": True, **at}, self.settings.label_fractions, tuned)
                name = f"{task}: layout captions with 10 % of the labels beat captions without layout words with all of them"
            else:
                few = _value(rows, encoder="clip", task=task, fraction=0.1, mode=tuned, **_where(k=hi, max_steps=top_budget))
                full = _value(rows, encoder="clip", task=task, fraction=1.0, mode=tuned, **_where(k=lo, max_steps=top_budget))
                savings = label_savings(rows, task, _where(k=lo, max_steps=top_budget), _where(k=hi, max_steps=top_budget), self.settings.label_fractions, tuned)
                name = f"{task}: k={hi} with 10 % of the labels beats k={lo} with all of them"
            text = "; ".join(f"seed {s}: {v}" for s, v in savings.items())
            out += cite([paired_claim(f"{name} ({metric}, {tuned}; 10x fewer labels)", {s: sign * (few[s] - full[s]) for s in few if s in full},
                                      "positive", f"times fewer labels needed to match at 100 % per seed: {text or 'none'}")], SOURCE["labels"])
            if len(design["k"]) > 1:
                claim = compare(rows, "k", lo, hi, metric, better,
                                where=_where(encoder="clip", task=task, fraction=1.0, mode="linear", max_steps=top_budget, **with_words))
                out += cite([claim], SOURCE["k"], BEYOND)
        return out

    def figures(self, ablation, runs, results):
        """Per task: the metric at 100 % labels against the image budget, for the CLIPs with and without
        layout words at the largest k and the masked autoencoders (linear probe solid, fine-tuned with the
        decoder dashed), the random encoder, the word oracle and the ceiling as horizontal lines; the
        data-efficiency curves at the largest budget; and both pretrainings' curves (the masked
        autoencoders' loss, the CLIPs' zero-shot accuracy): whether each had converged."""
        import json

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        table = read_summary(results, ("encoder", "task", "mode", "layout_words"))
        if not table:
            return []
        tasks = [t for t in self.settings.tasks if any(r["task"] == t for r in table)]
        ks = sorted({r["k"] for r in table if r.get("k") is not None})
        steps = sorted({int(r["max_steps"]) for r in table if r.get("max_steps") is not None})
        top_k = ks[-1] if ks else None
        tuned = "finetune_conv" if any(r["mode"] == "finetune_conv" for r in table) else "finetune"

        def mean(task, **where):
            metric = METRIC[task]
            vals = [r[metric] for r in table if r["task"] == task and all(r.get(k) == v for k, v in where.items()) and r.get(metric) is not None]
            return float(np.mean(vals)) if vals else np.nan

        fig, axs = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 6.4), squeeze=False)
        for j, task in enumerate(tasks):
            ax = axs[0][j]
            for mode, style in (("linear", "-"), (tuned, "--")):
                for name, where, colour in (("layout words", {"encoder": "clip", "layout_words": "True", "k": top_k}, "C0"),
                                            ("no layout words", {"encoder": "clip", "layout_words": "False", "k": top_k}, "C1"),
                                            ("MAE", {"encoder": "mae"}, "C2")):
                    pts = [mean(task, fraction=1.0, mode=mode, max_steps=b, **where) for b in steps]
                    if not all(np.isnan(pts)):
                        ax.plot(steps, pts, "o" + style, color=colour, label=f"{name}, {mode}")
            for name, style in (("random", ":"), ("oracle", "-."), ("ceiling", "-")):
                level = mean(task, encoder=name, fraction=1.0, mode="linear")
                if not np.isnan(level):
                    ax.axhline(level, color="k", ls=style, lw=1, label=f"{name} (linear)")
            ax.set_title(f"{task}: {METRIC[task]} vs image budget (k={top_k}, 100 % labels)", fontsize=8)
            ax.set_xlabel("training steps (x batch = images seen)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=5)
            ax = axs[1][j]
            for name, where, colour in (("layout words", {"encoder": "clip", "layout_words": "True", "k": top_k}, "C0"),
                                        ("no layout words", {"encoder": "clip", "layout_words": "False", "k": top_k}, "C1"),
                                        ("MAE", {"encoder": "mae"}, "C2"), ("random", {"encoder": "random"}, "C7")):
                budget = {"max_steps": steps[-1]} if steps and name != "random" else {}
                fractions = [f for f in self.settings.label_fractions if not np.isnan(mean(task, fraction=f, mode=tuned, **where, **budget))]
                if fractions:
                    ax.plot(fractions, [mean(task, fraction=f, mode=tuned, **where, **budget) for f in fractions], "o-", color=colour, label=name)
            ax.set_xscale("log")
            ax.set_xlabel("label fraction")
            ax.set_title(f"{task}: data efficiency, {tuned} ({METRIC[task]})", fontsize=8)
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
                points = sorted(int(k) for k in curve)
                axs[0].plot(points, [curve[str(k)] for k in points], label=label, lw=1)
            axs[0].set_ylabel("MAE loss (hidden patches)")
            axs[0].set_yscale("log")
            for label, curve in accuracy.items():
                points = sorted(curve)
                axs[1].plot(points, [curve[t] for t in points], label=label, lw=1)
            axs[1].set_ylabel("CLIP zero-shot object accuracy")
            for ax in axs:
                ax.set_xlabel("step")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=4)
            out.append(save_figure(fig, results / "mae_loss.png"))
        return out


def clip_accuracy_curves(runs) -> dict[str, dict[int, float]]:
    """{"AXIS=V ... seed=S": {step: zero-shot object accuracy}} from each finished run's metrics history
    (its ``metrics.json``): whether the CLIP encoders had converged, beside the masked autoencoders' loss."""
    import json

    out = {}
    for r in runs:
        path = Path(r.dir) / "metrics.json"
        if not path.is_file():
            continue
        history = json.loads(path.read_text()).get("history") or {}
        curve = {int(step): m["zeroshot_object_acc"] for step, m in history.items() if "zeroshot_object_acc" in m}
        if curve:
            out[" ".join(f"{a}={v}" for a, v in r.axes.items()) + f" seed={r.seed}"] = curve
    return out
