"""Seed 004, causal (``infogap ablate heads``): how caption richness shapes what the attention heads of
a CLIP ViT encode. Per trained run (k = 0..5): TEXTSPAN every head over the exact synthetic pool,
label it by the majority concept of its texts (CCS), and prune heads by CCS
(``infogap.ablations.heads.analysis``)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infogap.ablations.heads.analysis import HIGH, LOW, TEXTS_PER_HEAD, contributions, head_table, pruning_table, synthetic_pool
from infogap.ablations.runner.claims import compare, paired_claim
from infogap.ablations.runner.results import cached_json, save_figure
from infogap.ablations.runner.study import Study, settings_dict
from infogap.train.embed import load_encoder


@dataclass(frozen=True)
class Settings:
    images: int = 1024  # validation renders decomposed and evaluated per run
    texts_per_head: int = TEXTS_PER_HEAD  # TEXTSPAN texts per head (the published CCS uses 5)


def run_heads(run_dir: Path, settings: Settings) -> dict:
    """heads.json of a finished run (computed once from its last checkpoint: the exact synthetic pool,
    ``settings.images`` validation renders, the pruning table)."""
    def compute() -> dict:
        enc = load_encoder(checkpoint=str(Path(run_dir) / "checkpoints" / "last.ckpt"), seed=0)
        texts, concepts, pool = synthetic_pool(enc)
        images = enc.source.val_batch(np.arange(settings.images))["image"]
        table = head_table(contributions(enc, images)[0], pool, texts, concepts, settings.texts_per_head)
        return {"heads": table, "pruning": pruning_table(enc, table, settings.images)}

    return cached_json(Path(run_dir) / "heads.json", {**settings_dict(settings), "seed": 0}, compute)


class Heads(Study):
    Settings = Settings

    def rows(self, run, record):
        """One row per run: the CCS distribution, the share of heads labelled with each factor, and per
        pruned set the drop in object and mean attribute accuracy (none minus pruned)."""
        from infogap.data.factors import ATTRIBUTE_FACTORS, FACTOR_NAMES

        result = run_heads(run.dir, self.settings)
        table = result["heads"]
        row = dict(record["metrics"])
        row["ccs_mean"] = float(np.mean([h["ccs"] for h in table]))
        row["heads_high_ccs"] = sum(h["ccs"] >= HIGH for h in table)
        row["heads_low_ccs"] = sum(h["ccs"] <= LOW for h in table)
        for f in FACTOR_NAMES:
            row[f"heads_{f}_share"] = sum(h["label"] == f for h in table) / len(table)
        pruning = {r["pruned"]: r for r in result["pruning"]}
        base = pruning["none"]

        def attr(r):
            return float(np.mean([r[f"zeroshot_{f}_acc"] for f in ATTRIBUTE_FACTORS]))

        for name in ("high", "low"):
            r = pruning.get(name, {})
            ok = bool(r.get("n_heads"))
            row[f"object_drop_{name}"] = base["zeroshot_object_acc"] - r["zeroshot_object_acc"] if ok else float("nan")
            row[f"attr_drop_{name}"] = attr(base) - attr(r) if ok else float("nan")
        randoms = [r for n, r in pruning.items() if n.startswith("random_") and r.get("n_heads")]
        row["object_drop_random"] = float(np.mean([base["zeroshot_object_acc"] - r["zeroshot_object_acc"] for r in randoms])) if randoms else float("nan")
        row["attr_drop_random"] = float(np.mean([attr(base) - attr(r) for r in randoms])) if randoms else float("nan")
        return [row]


    def claims(self, rows, design):
        """Do the heads specialise on the always-present object when captions name only it (share of
        object-labelled heads at the smallest k minus at the largest, > 0, paired by seed)? Does pruning
        the high-CCS heads cost more accuracy than pruning the low-CCS heads and random heads of the same
        count (per seed, averaged over k; runs without a high-CCS head are left out)?"""
        lo, hi = min(design["k"]), max(design["k"])
        out = [compare(rows, "k", lo, hi, "heads_object_share", "negative")]
        out[0].claim = f"more heads are labelled object at k={lo} than at k={hi} (the always-present word)"
        for metric in ("object", "attr"):
            for other in ("low", "random"):
                per_seed: dict[int, list[float]] = {}
                for r in rows:
                    diff = r[f"{metric}_drop_high"] - r[f"{metric}_drop_{other}"]
                    if not math.isnan(diff):
                        per_seed.setdefault(r["seed"], []).append(diff)
                what = "object" if metric == "object" else "mean attribute"
                out.append(paired_claim(f"pruning the high-CCS heads costs more {what} accuracy than pruning the {other} heads (mean over k)",
                                        {s: float(np.mean(v)) for s, v in per_seed.items()}, "positive"))
        return out


    def figures(self, ablation, runs, results):
        """Share of heads per concept label and the CCS distribution, per k (means over seeds)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from infogap.data.factors import FACTOR_NAMES

        done = [r for r in runs if r.stage == ablation.report_stage and r.finished and (r.dir / "heads.json").is_file()]
        if not done:
            return []
        ks = sorted({r.axes["k"] for r in done})
        fig, axs = plt.subplots(1, 2, figsize=(9, 3.4))
        labels = {k: [] for k in ks}
        ccs = {k: [] for k in ks}
        for r in done:
            table = json.loads((r.dir / "heads.json").read_text())["heads"]
            labels[r.axes["k"]].append([sum(h["label"] == f for h in table) / len(table) for f in FACTOR_NAMES])
            ccs[r.axes["k"]].append(np.bincount([h["ccs"] for h in table], minlength=self.settings.texts_per_head + 1) / len(table))
        bottom = np.zeros(len(ks))
        for i, f in enumerate(FACTOR_NAMES):
            share = np.array([np.mean(labels[k], 0)[i] for k in ks])
            axs[0].bar(ks, share, bottom=bottom, label=f, color=f"C{i}")
            bottom += share
        axs[0].set_title("heads labelled with each factor", fontsize=9)
        bottom = np.zeros(len(ks))
        for c in range(1, self.settings.texts_per_head + 1):
            share = np.array([np.mean(ccs[k], 0)[c] for k in ks])
            axs[1].bar(ks, share, bottom=bottom, label=f"CCS {c}", color=plt.cm.viridis(c / self.settings.texts_per_head))
            bottom += share
        axs[1].set_title("CCS distribution", fontsize=9)
        for ax in axs:
            ax.set_xlabel("k (attributes named in captions)")
            ax.legend(fontsize=6)
        return [save_figure(fig, results / "heads_by_k.png")]
