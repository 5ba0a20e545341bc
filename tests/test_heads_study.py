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
    """A 4-step ``small`` run: the exact pool (every factor value, its factor as concept), 16 heads with
    5 texts each, labels and CCS consistent with the texts, and the pruning table by CCS."""
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
    assert {"high", "low", "random_0", "random_4"} <= {r["pruned"] for r in rows}
    n_high = sum(h["ccs"] == 5 for h in result["heads"])
    assert all(int(r["n_heads"]) == n_high for r in rows if r["pruned"].startswith("random"))
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


def test_heads_claims_hold_only_for_object_heads_at_small_k_and_costly_high_ccs_pruning():
    from infogap.ablations.heads.study import Heads

    heads = Heads()
    modes = heads.settings.modes
    assert set(modes) == {"zero", "mean"}

    def rows(share_drop, high_cost, true_drop=None, mode_cost=None, colour_cost=0.2):
        true_drop = share_drop if true_drop is None else true_drop
        out = []
        for k in (0, 5):
            for s in (0, 1, 2):
                row = {"k": k, "seed": s, "heads_object_share": 0.9 - share_drop * (k == 5) + 0.01 * s,
                       "heads_true_object_share": 0.8 - true_drop * (k == 5) + 0.02 * s,
                       "colour_drop_gt_colour_mean": 0.05 + colour_cost * (k == 5) + 0.01 * s, "colour_drop_random_colour_mean": 0.05 + 0.002 * s}
                for mode in modes:
                    cost = high_cost if mode_cost is None else mode_cost[mode]
                    row.update({f"object_drop_high_{mode}": 0.05 + cost + 0.003 * s, f"object_drop_low_{mode}": 0.05 + 0.001 * s,
                                f"object_drop_random_{mode}": 0.05 - 0.001 * s, f"attr_drop_high_{mode}": 0.02 + cost + 0.002 * s,
                                f"attr_drop_low_{mode}": 0.02, f"attr_drop_random_{mode}": 0.02 + 0.001 * s,
                                f"object_drop_gt_high_{mode}": 0.05 + cost + 0.002 * s, f"attr_drop_gt_high_{mode}": 0.02 + cost + 0.001 * s})
                out.append(row)
        return out

    good = heads.claims(rows(0.3, 0.1), {"k": [0, 5]})
    assert len(good) == 1 + 2 + len(modes) * 3 * 2 and [c.verdict for c in good] == [HOLDS] * len(good), [c.line() for c in good]
    # the control first: the ground-truth colour heads at the largest k; ground-truth claims are beyond the paper
    assert good[0].role == "positive control" and "colour" in good[0].claim and good[0].seeds == 3
    assert [c.role for c in good[1:3]] == ["beyond the paper"] * 2
    assert {c.role for c in good if "most specialised (ground truth)" in c.claim} == {"beyond the paper"}
    assert {c.role for c in good if "high-CCS heads costs" in c.claim} == {"paper"}
    bad = heads.claims(rows(-0.1, -0.02, colour_cost=-0.1), {"k": [0, 5]})
    assert [c.verdict for c in bad] == [CONTRADICTED] * len(bad)
    assert heads.claims(rows(0.3, 0.1, colour_cost=0.0), {"k": [0, 5]})[0].verdict != HOLDS  # nothing planted: the control fails
    # the labels move but the ground truth does not: only the label claim holds
    split = [c.verdict for c in heads.claims(rows(0.3, 0.1, true_drop=-0.1), {"k": [0, 5]})]
    assert split[1:3] == [HOLDS, CONTRADICTED]
    # pruning costs under zero-ablation only (the published mean-ablation finds none): each mode has its own verdicts
    by_mode = _by_claim(heads.claims(rows(0.3, 0.1, mode_cost={"zero": 0.1, "mean": -0.02}), {"k": [0, 5]}))
    assert {v.verdict for c, v in by_mode.items() if "(zero-ablation" in c} == {HOLDS}
    assert {v.verdict for c, v in by_mode.items() if "(mean-ablation" in c and "costs more" in c and "colour" not in c} == {CONTRADICTED}
