"""Attention-head decomposition (seed 004): direct contributions of every head sum with the rest to the
image embedding (small and stock ViTs, both pooling types), TEXTSPAN on planted data, CCS by hand."""
from __future__ import annotations

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
