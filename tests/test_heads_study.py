"""The attention-head study (Madasu et al. 2025): MaxSkew by hand, `infogap analyze heads` on a trained synthetic run and on a local checkpoint with a text pool, the claims on fabricated tables, and the ablation end to end."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from infogap.ablations.kit.claims import CONTRADICTED, HOLDS
from infogap.models import build_model


def test_max_skew_against_a_hand_count():
    from infogap.ablations.heads.analysis import max_skew

    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)  # shares 0.6, 0.3, 0.1
    images = np.eye(10)[:, :10] + 0.0
    query = np.zeros((1, 10))
    query[0, [6, 7, 9]] = [1.0, 0.9, 0.8]  # top 3: images 6, 7 (value 1) and 9 (value 2)
    # p = (0, 2/3, 1/3); skews: -inf, log((2/3)/0.3), log((1/3)/0.1) -> the largest: log(10/3)
    assert max_skew(images, query, labels, k=3) == pytest.approx(np.log(10 / 3))
    balanced = max_skew(images, np.ones((1, 10)), labels, k=10)  # everything retrieved: no skew
    assert balanced == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="k=11"):
        max_skew(images, query, labels, k=11)


# --- infogap analyze heads ------------------------------------------------------------------------
@pytest.mark.slow
def test_analyze_heads_on_a_trained_synthetic_run(tmp_path, capsys):
    """A 4-step ``small`` run: the balanced pool (10 texts per factor, its factor as concept), 16 heads with
    5 texts each, labels and CCS consistent with the texts, the reachable CCS and normalised CCS, the
    labels over the pool without object words, and the pruning table of sets of 8 heads."""
    import json

    from infogap.cli import main as infogap
    from tests.helpers.processes import tiny_fit_args

    run = tmp_path / "run"
    assert infogap(tiny_fit_args(run, 4, "--model.model=small", "--log_with=none")) == 0
    out = tmp_path / "heads"
    capsys.readouterr()
    assert infogap(["analyze", "heads", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--n", "128", "--out", str(out)]) == 0
    result = json.loads((out / "heads.json").read_text())
    assert len(result["heads"]) == 16 and result["images"] == 128 and result["texts"] == 6 * 10
    for h in result["heads"]:
        assert len(h["texts"]) == 5 and h["ccs"] == h["concepts"].count(h["label"]) and 1 <= h["ccs"] <= 5
        assert all(0 <= v <= 1 for v in h["variance_explained"]) and sum(h["variance_explained"]) <= 1 + 1e-9
    rows = list(csv.DictReader((out / "pruning.csv").open()))
    assert rows[0]["pruned"] == "none"
    # the unpruned object accuracy, by a plain nearest-class-prompt count on the same 128 renders
    from infogap.train.embed import load_encoder

    enc = load_encoder(checkpoint=str(run / "checkpoints" / "last.ckpt"))
    batch = enc.source.val_batch(np.arange(128))
    x = enc.images(enc.rendered(batch["image"]))
    prompts = enc.source.class_prompts("object", 8, "full")
    classes = enc.texts(prompts.reshape(-1, prompts.shape[-1])).reshape(10, 8, -1).mean(1)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    want = float(np.mean((x @ classes.T).argmax(1) == batch["labels"]["object"].numpy()))
    assert float(rows[0]["zeroshot_object_acc"]) == pytest.approx(want, abs=1e-9)
    names = {r["pruned"] for r in rows}
    assert {"high", "low", "random_0", "random_4", "high_object", "high_scaling", "truth_object", "gt_colour", "random_colour_0"} <= names
    assert all(int(r["n_heads"]) == 8 for r in rows if r["pruned"] in ("high", "low", "random_0", "high_colour", "truth_object"))  # 8 of 16 heads
    assert set(result["reachable"]) == {"object", "colour", "thickness", "swelling", "fracture", "scaling"}
    assert all(h["ccs_norm"] == pytest.approx(min(1.0, h["ccs"] / result["reachable"][h["label"]])) for h in result["heads"])
    assert result["confound"]["pool"] == "values" and len(result["confound"]["labels"]) == 16 and 0 <= result["confound"]["same_label"] <= 1
    assert (out / "ccs.png").stat().st_size > 5_000


def test_analyze_heads_on_a_random_local_checkpoint_with_a_text_pool(tmp_path, capsys):
    from PIL import Image

    from infogap.cli import main as infogap

    torch.manual_seed(0)
    ckpt = tmp_path / "random.pt"
    torch.save(build_model("tiny-bpe").state_dict(), ckpt)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(images / f"{i}.png")
    texts = ["a red thing", "a blue thing", "a green thing", "a dog", "a cat", "a bird", "a large thing", "a small thing"]
    concepts = ["colour"] * 3 + ["animal"] * 3 + ["size"] * 2
    (tmp_path / "pool.txt").write_text("\n".join(texts) + "\n")
    (tmp_path / "concepts.tsv").write_text("".join(f"{t}\t{c}\n" for t, c in zip(texts, concepts)))
    args = ["analyze", "heads", "--model", "tiny-bpe", "--pretrained", str(ckpt), "--images", str(images),
            "--texts", str(tmp_path / "pool.txt"), "--concepts", str(tmp_path / "concepts.tsv"), "--m", "3", "--out", str(tmp_path / "out")]
    assert infogap(args) == 0, capsys.readouterr().err
    import json

    result = json.loads((tmp_path / "out" / "heads.json").read_text())
    assert len(result["heads"]) == 2 * 2 and all(len(h["texts"]) == 3 for h in result["heads"]) and "pruning" not in result
    (tmp_path / "pool.txt").write_text("a red thing\n\na dog\n")
    capsys.readouterr()
    assert infogap(args) == 2 and "pool.txt, line 2: blank line" in capsys.readouterr().err
    (tmp_path / "pool.txt").write_text("a red thing\na unicorn\n")
    assert infogap(args) == 2 and "no concept for the text 'a unicorn'" in capsys.readouterr().err


# --- each study's claims on fabricated 3-seed tables: the claimed effect holds, its absence does not -----
def _by_claim(claims) -> dict[str, object]:
    return {c.claim: c for c in claims}


def test_normalised_ccs_and_the_pruned_sets_by_hand():
    """CCS over what a pure head of the concept reaches (at most 1); sets of ``size`` heads: the highest
    and lowest normalised CCS, each concept's most consistent heads, its ground-truth heads, random
    heads, and the colour control."""
    from infogap.ablations.heads.analysis import RANDOM_DRAWS, consistency_toward, normalised_ccs, prune_sets

    reachable = {"colour": 5.0, "swelling": 2.5}

    def head(layer, concepts, r2_colour, share=0.1):
        label = max(dict.fromkeys(concepts), key=concepts.count)  # the majority; a tie: the first chosen
        return {"layer": layer, "head": 0, "concepts": concepts, "label": label, "ccs": concepts.count(label), "variance_explained": [share] * 5,
                "r2": {"colour": r2_colour, "swelling": 1 - r2_colour}, "true_r2": max(r2_colour, 1 - r2_colour),
                "true_label": "colour" if r2_colour > 0.5 else "swelling"}

    c, w = "colour", "swelling"
    table = [head(0, [c] * 5, 0.9), head(1, [w, w, w, c, c], 0.2), head(2, [c, c, c, w, w], 0.6), head(3, [c, w, c, w, "object"], 0.45),
             head(4, [w, w, c, c, "object"], 0.3, share=0.15), head(5, [w, w, c, c, "object"], 0.1)]
    # by hand: head 0 colour 5/5 = 1; head 1 swelling 3/2.5 -> 1; head 2 colour 3/5 = 0.6; head 3 colour 2/5 = 0.4 (a tie: first chosen);
    # heads 4 and 5 swelling 2/2.5 = 0.8
    assert [normalised_ccs(r, reachable) for r in table] == pytest.approx([1.0, 1.0, 0.6, 0.4, 0.8, 0.8])
    assert consistency_toward(table[1], c, reachable) == pytest.approx(0.4) and consistency_toward(table[2], w, reachable) == pytest.approx(0.8)
    assert normalised_ccs({**table[0], "label": "", "ccs": 0}, reachable) == 0.0
    sets = prune_sets(table, reachable, size=2, seed=1)
    key = lambda i: (i, 0)  # noqa: E731
    # high: heads 0 and 1 (1.0; ties by the variance their texts explain: equal, then layer); low: 0.4 then 0.6
    assert sets["high"] == [key(0), key(1)] and sets["low"] == [key(3), key(2)]
    assert sets["high_colour"] == [key(0), key(2)]  # 1.0, then 3/5 = 0.6 (heads 3, 4, 5: 2/5)
    # swelling: head 1 (1.0), then 0.8 for heads 2, 4, 5: the variance its swelling texts explain, 2 x 0.15 for head 4
    assert sets["high_swelling"] == [key(1), key(4)]
    assert sets["truth_colour"] == [key(0), key(2)] and sets["truth_swelling"] == [key(5), key(1)]
    assert all(len(sets[f"random_{i}"]) == 2 and len(set(sets[f"random_{i}"])) == 2 for i in range(RANDOM_DRAWS))
    assert f"random_{RANDOM_DRAWS}" not in sets
    assert sets["gt_colour"] == [key(0), key(2)]  # the control: every head whose ground truth is colour (R² 0.9, 0.6)
    assert all(len(sets[f"random_colour_{i}"]) == 2 for i in range(RANDOM_DRAWS))  # as many random heads
    assert prune_sets(table, reachable, size=8)["high"] == [key(0), key(1), key(4)], "at most half the heads"


def test_the_drops_of_each_set_by_hand():
    from infogap.ablations.heads.study import drops
    from infogap.data.factors import FACTOR_NAMES

    def row(pruned, mode, acc, moad=0.3, skew=0.5, n=2):
        return {"pruned": pruned, "mode": mode, "n_heads": n, **{f"zeroshot_{f}_acc": acc.get(f, 0.8) for f in FACTOR_NAMES},
                "moad_image": moad, "max_skew": skew}

    pruning = [row("none", "none", {}, n=0), row("high", "mean", {"object": 0.5}, moad=0.1, skew=0.2), row("low", "mean", {}, moad=0.28),
               row("random_0", "mean", {"colour": 0.6}), row("random_1", "mean", {"colour": 0.7}, moad=0.2),
               *[row(f"high_{f}", "mean", {f: 0.2}) for f in FACTOR_NAMES], *[row(f"truth_{f}", "mean", {f: 0.5}) for f in FACTOR_NAMES],
               row("gt_colour", "mean", {"colour": 0.1}), row("random_colour_0", "mean", {"colour": 0.7})]
    out = drops(pruning)
    assert out["drop_colour_high_mean"] == pytest.approx(0.6) and out["drop_object_high_mean"] == pytest.approx(0.6)  # its own set, its own task
    assert out["concept_drop_high_mean"] == pytest.approx(0.6) and out["concept_drop_gt_mean"] == pytest.approx(0.3)
    assert out["drop_colour_random_mean"] == pytest.approx((0.2 + 0.1) / 2) and out["drop_object_random_mean"] == pytest.approx(0.0)
    assert out["concept_drop_random_mean"] == pytest.approx(0.15 / 6) and out["concept_drop_low_mean"] == pytest.approx(0.0)
    assert out["moad_change_high_mean"] == pytest.approx(-0.2) and out["moad_change_low_mean"] == pytest.approx(-0.02)
    assert out["moad_change_random_mean"] == pytest.approx(-0.05) and out["skew_change_high_mean"] == pytest.approx(-0.3)
    assert out["colour_drop_gt_colour_mean"] == pytest.approx(0.7) and out["colour_drop_random_colour_mean"] == pytest.approx(0.1)


def test_heads_claims_hold_when_consistent_heads_cost_their_concept_and_carry_the_bias():
    from infogap.ablations.heads.study import Heads

    heads = Heads()
    modes = heads.settings.modes
    assert set(modes) == {"zero", "mean"} and heads.settings.prune_size == 8

    def rows(share_drop, high_cost, true_drop=None, mode_cost=None, colour_cost=0.2, bias=0.05):
        true_drop = share_drop if true_drop is None else true_drop
        out = []
        for k in (0, 5):
            for s in range(5):
                row = {"k": k, "seed": s, "heads_object_share": 0.9 - share_drop * (k == 5) + 0.01 * s,
                       "heads_true_object_share": 0.8 - true_drop * (k == 5) + 0.02 * s,
                       "colour_drop_gt_colour_mean": 0.05 + colour_cost * (k == 5) + 0.01 * (s - 2), "colour_drop_random_colour_mean": 0.05 + 0.002 * s}
                for mode in modes:
                    cost = high_cost if mode_cost is None else mode_cost[mode]
                    row.update({f"concept_drop_high_{mode}": 0.05 + cost + 0.003 * s, f"concept_drop_low_{mode}": 0.05 + 0.001 * s,
                                f"concept_drop_random_{mode}": 0.05 - 0.001 * s, f"concept_drop_gt_{mode}": 0.05 + cost + 0.002 * s,
                                f"moad_change_high_{mode}": -bias + 0.004 * (s - 2), f"moad_change_low_{mode}": 0.001 * s,
                                f"skew_change_high_{mode}": -bias + 0.005 * (s - 2), f"skew_change_low_{mode}": 0.001 * s})
                out.append(row)
        return out

    good = heads.claims(rows(0.3, 0.1), {"k": [0, 5]})
    assert len(good) == 1 + 2 + len(modes) * 5 and [c.verdict for c in good] == [HOLDS] * len(good), [c.line() for c in good]
    # the control first: the ground-truth colour heads at the largest k; ground-truth claims are beyond the paper
    assert good[0].role == "positive control" and "colour" in good[0].claim and good[0].seeds == 5
    assert [c.role for c in good[1:3]] == ["beyond the paper"] * 2
    assert {c.role for c in good if "ground-truth heads" in c.claim} == {"beyond the paper"}
    paper = [c for c in good if c.role == "paper"]
    assert len(paper) == 4 * len(modes) and sum("MOAD" in c.claim for c in paper) == len(modes) and sum("MaxSkew" in c.claim for c in paper) == len(modes)
    assert all(" 8 " in c.claim for c in paper)
    bad = heads.claims(rows(-0.1, -0.02, colour_cost=-0.1, bias=-0.05), {"k": [0, 5]})
    assert [c.verdict for c in bad] == [CONTRADICTED] * len(bad), [c.line() for c in bad]
    assert heads.claims(rows(0.3, 0.1, colour_cost=0.0), {"k": [0, 5]})[0].verdict != HOLDS  # nothing planted: the control fails
    # the labels move but the ground truth does not: only the label claim holds
    split = [c.verdict for c in heads.claims(rows(0.3, 0.1, true_drop=-0.1), {"k": [0, 5]})]
    assert split[1:3] == [HOLDS, CONTRADICTED]
    # pruning costs under zero-ablation only: each mode has its own verdicts
    by_mode = _by_claim(heads.claims(rows(0.3, 0.1, mode_cost={"zero": 0.1, "mean": -0.02}), {"k": [0, 5]}))
    assert {v.verdict for c, v in by_mode.items() if "(zero-ablation" in c and "accuracy" in c} == {HOLDS}
    assert {v.verdict for c, v in by_mode.items() if "(mean-ablation" in c and "accuracy" in c} == {CONTRADICTED}
    # no bias change planted (only the seeds' spread): the bias claims do not hold
    flat = _by_claim(heads.claims(rows(0.3, 0.1, bias=0.0), {"k": [0, 5]}))
    assert HOLDS not in {v.verdict for c, v in flat.items() if "object bias" in c}
