"""Madasu et al., EMNLP 2025, made causal (``infogap ablate heads``, docs/results/heads.md): how caption richness shapes what the attention heads of
a CLIP ViT encode. Per trained run (k = 0..5): TEXTSPAN every head, as published (Algorithm 1, rank
80 capped by the head width), over a balanced synthetic pool (every concept the same number of
caption-like texts, so that every concept can reach CCS = 5); label it by the majority concept of its
5 texts (CCS); check the label against the ground truth the synthetic world knows (the factor whose
labels explain most of the head's contribution variance); and prune heads by CCS and by ground truth,
zero-ablating their output (the CCS study) and mean-ablating their direct contribution (the
decomposition papers) (``infogap.ablations.heads.analysis``).

Deviation forced by the synthetic world: the study labelled heads with an LLM over free text; here the
concept of each text is its factor, exactly, and the pool is made of the captions the models saw."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infogap.ablations.heads.analysis import HIGH, LOW, PRUNE_SIZE, TEXTS_PER_HEAD, synthetic_analysis
from infogap.ablations.kit.claims import BEYOND, CONTROL, cite, compare, paired_claim
from infogap.ablations.kit.results import cached_json, save_figure
from infogap.ablations.kit.study import Study, settings_dict
from infogap.train.embed import load_encoder


@dataclass(frozen=True)
class Settings:
    images: int = 1024  # validation renders decomposed and evaluated per run
    texts_per_head: int = TEXTS_PER_HEAD  # TEXTSPAN texts per head (the published CCS uses 5)
    pool: str = "balanced"  # balanced: every concept texts_per_concept texts; values: each factor value once
    texts_per_concept: int = 10
    textspan: str = "published"  # published (Algorithm 1) or unit (this package's earlier unit-direction variant)
    modes: tuple[str, ...] = ("zero", "mean")  # pruning: zero-ablate the output, mean-ablate the direct contribution
    prune_size: int = PRUNE_SIZE  # heads per pruned set
    confound_pool: str = "values"  # the second pool the labels are read over: attribute words without an object word


def run_heads(run_dir: Path, settings: Settings) -> dict:
    """heads.json of a finished run (computed once from its last checkpoint: the synthetic pool,
    ``settings.images`` validation renders with their factor labels, the pruning table)."""
    def compute() -> dict:
        from infogap.train.checkpoints import last_checkpoint

        enc = load_encoder(checkpoint=str(last_checkpoint(run_dir)), seed=0)
        return synthetic_analysis(enc, settings.images, settings.texts_per_concept, settings.pool, settings.texts_per_head, settings.textspan,
                                  settings.prune_size, settings.confound_pool)

    return cached_json(Path(run_dir) / "heads.json", {**settings_dict(settings), "seed": 0, "sets": 3}, compute)  # sets 3: per concept, normalised CCS


def drops(pruning: list[dict]) -> dict[str, float]:
    """What pruning each kind of head set does, per mode (random draws averaged; NaN for an empty set):

    - ``drop_<c>_<set>_<mode>``: the accuracy on concept c's task lost (none minus pruned) when pruning
      c's own most consistent heads (``set`` = ``high``: ``high_<c>``), its ground-truth heads (``gt``:
      ``truth_<c>``), the low-CCS heads (``low``) or random heads (``random``); ``concept_drop_<set>_<mode>``
      their mean over the concepts, each concept scored on its own task;
    - ``moad_change_<set>_<mode>`` and ``skew_change_<set>_<mode>``: the object bias (MOAD of the image
      embeddings, MaxSkew) after pruning the ``high``, ``low`` or ``random`` set, minus before;
    - the positive control: ``colour_drop_gt_colour_<mode>`` and ``colour_drop_random_colour_<mode>``."""
    from infogap.data.factors import FACTOR_NAMES

    base = next(r for r in pruning if r["pruned"] == "none")

    def rows(mode, name):
        drawn = name in ("random", "random_colour")
        return [r for r in pruning if r["mode"] == mode and r.get("n_heads")
                and (r["pruned"] == name or (drawn and r["pruned"].removeprefix(f"{name}_").isdigit()))]

    def mean_of(sel, fn):
        return float(np.mean([fn(r) for r in sel])) if sel else float("nan")

    out = {}
    for mode in sorted({r["mode"] for r in pruning} - {"none"}):
        for kind in ("high", "gt", "low", "random"):
            per_concept = []
            for c in FACTOR_NAMES:
                name = {"high": f"high_{c}", "gt": f"truth_{c}"}.get(kind, kind)
                out[f"drop_{c}_{kind}_{mode}"] = mean_of(rows(mode, name), lambda r: base[f"zeroshot_{c}_acc"] - r[f"zeroshot_{c}_acc"])
                per_concept.append(out[f"drop_{c}_{kind}_{mode}"])
            out[f"concept_drop_{kind}_{mode}"] = float(np.mean(per_concept)) if not any(np.isnan(per_concept)) else float("nan")
        for kind in ("high", "low", "random"):
            out[f"moad_change_{kind}_{mode}"] = mean_of(rows(mode, kind), lambda r: r["moad_image"] - base["moad_image"])
            out[f"skew_change_{kind}_{mode}"] = mean_of(rows(mode, kind), lambda r: r["max_skew"] - base["max_skew"])
        for kind in ("gt_colour", "random_colour"):
            out[f"colour_drop_{kind}_{mode}"] = mean_of(rows(mode, kind), lambda r: base["zeroshot_colour_acc"] - r["zeroshot_colour_acc"])
    return out


class Heads(Study):
    Settings = Settings
    parallel_rows = True  # rows decomposes, labels and prunes every head of each run

    def rows(self, run, record):
        """One row per run: the CCS distribution, the share of heads labelled with each factor (and the
        pool's share of each concept), how often a head's label agrees with its ground truth, and per
        pruned set and mode the drop in object and mean attribute accuracy (none minus pruned)."""
        from infogap.data.factors import FACTOR_NAMES

        result = run_heads(run.dir, self.settings)
        table = result["heads"]
        row = dict(record["metrics"])
        row["ccs_mean"] = float(np.mean([h["ccs"] for h in table]))
        row["heads_high_ccs"] = sum(h["ccs"] >= HIGH for h in table)
        row["heads_low_ccs"] = sum(h["ccs"] <= LOW for h in table)
        for f in FACTOR_NAMES:
            row[f"heads_{f}_share"] = sum(h["label"] == f for h in table) / len(table)
            row[f"heads_true_{f}_share"] = sum(h["true_label"] == f for h in table) / len(table)
            row[f"pool_{f}_share"] = result["pool"]["shares"].get(f, 0.0)
        row["label_agreement"] = float(np.mean([h["agrees"] for h in table]))
        row["true_r2_mean"] = float(np.mean([h["true_r2"] for h in table]))
        row["ccs_norm_mean"] = float(np.nanmean([h["ccs_norm"] for h in table]))
        row["heads_high_ccs_norm"] = sum(h["ccs_norm"] >= 1 for h in table)
        for f, v in result["reachable"].items():
            row[f"reachable_{f}"] = v
        row["labels_same_without_object_words"] = result["confound"]["same_label"] if "confound" in result else math.nan
        row.update(drops(result["pruning"]))
        return [row]

    def claims(self, rows, design):
        """First the positive control: at the largest k, mean-ablating every head whose ground-truth
        concept is colour costs more colour accuracy than mean-ablating as many random heads (paired by
        seed). The paper's claims, per pruning mode, each unit a seed (its runs averaged over k):
        pruning each concept's most consistent heads costs more of that concept's accuracy (the mean
        over concepts) than pruning as many low-CCS heads, and than as many random heads (the paradox's
        first half); pruning the high-CCS heads lowers the object bias, MOAD and MaxSkew, more than
        pruning as many low-CCS heads (the second). Beyond the paper: the heads the ground truth gives
        each concept against random ones, and whether the heads specialise on the always-present object
        when captions name only it (the share of object-labelled heads at the smallest k minus at the
        largest, > 0, paired by seed; and the same with the ground-truth labels)."""
        lo, hi = min(design["k"]), max(design["k"])
        top = {r["seed"]: r for r in rows if r.get("k") == hi}
        drop = {s: r.get("colour_drop_gt_colour_mean", math.nan) - r.get("colour_drop_random_colour_mean", math.nan) for s, r in top.items()}
        out = cite([paired_claim(f"mean-ablating every head whose ground-truth concept is colour costs more colour accuracy than as many random heads (k={hi})",
                                 drop, "positive", "; ".join(f"seed {s}: colour drop {r.get('colour_drop_gt_colour_mean', math.nan):+.3f} vs random "
                                                             f"{r.get('colour_drop_random_colour_mean', math.nan):+.3f}" for s, r in sorted(top.items())))],
                   "planted by construction: the heads whose contributions colour explains most carry colour", CONTROL)
        shares = [compare(rows, "k", lo, hi, "heads_object_share", "negative"), compare(rows, "k", lo, hi, "heads_true_object_share", "negative")]
        shares[0].claim = f"more heads are labelled object at k={lo} than at k={hi} (the always-present word)"
        shares[1].claim = f"more heads carry the object factor at k={lo} than at k={hi} (ground truth: the factor explaining most of a head's variance)"
        out += cite(shares, "how caption richness shapes the heads' concepts (not a claim of the paper, which studies trained models as they are)", BEYOND)
        n = self.settings.prune_size

        def per_seed(a: str, b: str) -> dict:
            diffs: dict[int, list[float]] = {}
            for r in rows:
                d = r.get(a, math.nan) - r.get(b, math.nan)
                if not math.isnan(d):
                    diffs.setdefault(r["seed"], []).append(d)
            return {s: float(np.mean(v)) for s, v in diffs.items()}

        paradox = "Madasu et al. 2025: removing high-CCS heads costs far more accuracy than removing low-CCS (or random) heads"
        bias = "Madasu et al. 2025: the high-CCS heads carry the bias; pruning them lowers it"
        for mode in self.settings.modes:
            for other, name in (("low", "low-CCS"), ("random", "random")):
                out += cite([paired_claim(f"pruning each concept's {n} most consistent heads costs more of that concept's accuracy than pruning {n} "
                                          f"{name} heads ({mode}-ablation, mean over concepts and k)",
                                          per_seed(f"concept_drop_high_{mode}", f"concept_drop_{other}_{mode}"), "positive")], paradox)
            for metric, what in (("moad", "MOAD"), ("skew", "MaxSkew")):
                out += cite([paired_claim(f"pruning the {n} highest-CCS heads lowers the object bias ({what}) more than pruning the {n} lowest-CCS heads "
                                          f"({mode}-ablation, mean over k)",
                                          per_seed(f"{metric}_change_high_{mode}", f"{metric}_change_low_{mode}"), "negative")], bias)
            out += cite([paired_claim(f"pruning each concept's {n} ground-truth heads costs more of that concept's accuracy than pruning {n} random "
                                      f"heads ({mode}-ablation, mean over concepts and k)",
                                      per_seed(f"concept_drop_gt_{mode}", f"concept_drop_random_{mode}"), "positive")],
                        "ground-truth head labels (beyond the paper, which labels heads with an LLM)", BEYOND)
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
