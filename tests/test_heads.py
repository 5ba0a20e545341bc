"""Attention-head decomposition (seed 004): direct contributions of every head sum with the rest to the
image embedding (small and stock ViTs, both pooling types), TEXTSPAN on planted data, CCS by hand."""
from __future__ import annotations

import csv

import numpy as np
import open_clip
import pytest
import torch

from infogap.data.factors import Vocabulary
from infogap.models import build_model
from infogap.models.decompose import concept_consistency, head_contributions, textspan


def _check_sum(model, images, atol=1e-4):
    heads, rest = head_contributions(model, images)
    embedding = model.encode_image(images, normalize=False)
    torch.testing.assert_close(heads.sum((1, 2)) + rest, embedding, atol=atol, rtol=0)
    return heads, rest, embedding


def test_heads_plus_rest_is_the_embedding_of_a_small_vit():
    torch.manual_seed(0)
    model = build_model("small", **Vocabulary().text_spec()).eval()
    heads, rest, emb = _check_sum(model, torch.rand(6, 3, 28, 28))
    assert heads.shape == (6, 4, 4, 128) and rest.shape == (6, 128)
    assert heads.sum((1, 2)).norm(dim=1).min() > 0.05 * emb.norm(dim=1).max()  # the heads carry part of it


@pytest.mark.parametrize("pool, ln_after_pool", [("tok", False), ("avg", False), ("avg", True)])
def test_heads_plus_rest_is_the_embedding_of_a_stock_vit_b32(pool, ln_after_pool):
    """A randomly initialised ViT-B-32 at 64 px: class-token and average pooling, LayerNorm before or
    after the pool (each token's own statistics in the first average case)."""
    torch.manual_seed(1)
    model = open_clip.create_model("ViT-B-32", force_image_size=64, output_dict=True).eval()
    model.visual.pool_type, model.visual.final_ln_after_pool = pool, ln_after_pool
    heads, _, _ = _check_sum(model, torch.randn(3, 3, 64, 64))
    assert heads.shape == (3, 12, 12, 512)


def test_a_head_whose_output_projection_is_zero_contributes_nothing():
    torch.manual_seed(2)
    model = build_model("small", **Vocabulary().text_spec()).eval()
    attn = model.visual.transformer.resblocks[-1].attn
    dh = attn.embed_dim // attn.num_heads
    with torch.no_grad():
        attn.out_proj.weight[:, 2 * dh: 3 * dh] = 0  # head 2 of the last layer, pruned
    heads, _, _ = _check_sum(model, torch.rand(4, 3, 28, 28))
    assert heads[:, -1, 2].abs().max() == 0 and heads[:, -1, 1].abs().max() > 0
    with pytest.raises(ValueError, match="eval mode"):
        head_contributions(model.train(), torch.rand(1, 3, 28, 28))


def test_textspan_finds_planted_text_directions_in_order_of_variance():
    rng = np.random.default_rng(0)
    d, n = 32, 2000
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    planted = basis[:, :3].T  # three orthonormal directions with variances 9, 4, 1
    contributions = (rng.normal(size=(n, 3)) * [3.0, 2.0, 1.0]) @ planted + 0.05 * rng.normal(size=(n, d))
    pool = rng.normal(size=(40, d))
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    pool[[7, 21, 33]] = planted[[1, 0, 2]]  # text 21 carries the most variance, then 7, then 33
    chosen, shares = textspan(torch.from_numpy(contributions), torch.from_numpy(pool), m=3)
    assert chosen == [21, 7, 33]
    total = 9 + 4 + 1 + 0.05**2 * d
    np.testing.assert_allclose(shares, [9 / total, 4 / total, 1 / total], rtol=0.1)
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 1


def test_concept_consistency_by_hand():
    assert concept_consistency(["colour"] * 5) == ("colour", 5)
    assert concept_consistency(["object", "colour", "colour", "scaling", "colour"]) == ("colour", 3)
    assert concept_consistency(["object", "colour", "scaling", "thickness", "swelling"]) == ("object", 1)  # tie: first chosen
    assert concept_consistency(["scaling", "object", "object", "scaling", "colour"]) == ("scaling", 2)
    with pytest.raises(ValueError):
        concept_consistency([])


@pytest.mark.parametrize("pool, ln_after_pool", [("tok", False), ("avg", False)])
def test_pruning_a_last_layer_head_removes_exactly_its_output_from_the_residual_stream(pool, ln_after_pool):
    """With the last block's MLP silenced (it would rewrite the change), zeroing head (11, 5) changes the
    pooled input of the final LayerNorm by exactly minus that head's residual-stream contribution."""
    from infogap.models.decompose import pruned_heads

    torch.manual_seed(3)
    model = open_clip.create_model("ViT-B-32", force_image_size=64, output_dict=True).eval()
    model.visual.pool_type, model.visual.final_ln_after_pool = pool, ln_after_pool
    last = model.visual.transformer.resblocks[-1]
    with torch.no_grad():  # the last block's MLP reads the head's output too: silence it to isolate the head
        last.mlp.c_proj.weight.zero_()
        last.mlp.c_proj.bias.zero_()
    captured = []
    hook = model.visual.ln_post.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    images = torch.randn(3, 3, 64, 64)

    def pooled_ln_input():
        captured.clear()
        model.encode_image(images)
        z = captured[-1]
        return z if z.dim() == 2 else (z[:, 0] if pool == "tok" else z[:, 1:].mean(1))

    before = pooled_ln_input()
    heads, rest = head_contributions(model, images, space="residual")
    torch.testing.assert_close(heads.sum((1, 2)) + rest, before, atol=1e-4, rtol=0)
    original = model.visual.transformer.resblocks[-1].attn.out_proj.weight.clone()
    with pruned_heads(model, [(11, 5)]):
        after = pooled_ln_input()
    hook.remove()
    torch.testing.assert_close(after - before, -heads[:, 11, 5], atol=1e-5, rtol=0)
    assert torch.equal(model.visual.transformer.resblocks[-1].attn.out_proj.weight, original)  # restored
    embedding, _ = head_contributions(model, images)
    share = (embedding.sum((1, 2)) * model.encode_image(images)).sum(1) / model.encode_image(images).norm(dim=1) ** 2
    assert 0.05 < float(share.mean()) < 1.5  # the heads' share of the embedding (0.35 class token, 0.62 average here)
    with pytest.raises(ValueError, match="no head"):
        with pruned_heads(model, [(12, 0)]):
            pass


def test_max_skew_against_a_hand_count():
    from infogap.train.metrics import max_skew

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
def test_analyze_heads_on_a_trained_synthetic_run(tmp_path, capsys):
    """A 4-step ``small`` run: the exact pool (every factor value, its factor as concept), 16 heads with
    5 texts each, labels and CCS consistent with the texts, and the pruning table by CCS."""
    import json

    from infogap.train.cli import main as infogap
    from tests.helpers import tiny_fit_args

    run = tmp_path / "run"
    assert infogap(tiny_fit_args(run, 4, "--model.model=small", "--log_with=none")) == 0
    out = tmp_path / "heads"
    capsys.readouterr()
    assert infogap(["analyze", "heads", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--n", "128", "--out", str(out)]) == 0
    result = json.loads((out / "heads.json").read_text())
    assert len(result["heads"]) == 16 and result["images"] == 128 and result["texts"] == 26
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

    from infogap.train.cli import main as infogap

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
