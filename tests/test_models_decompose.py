"""The head decomposition of an open_clip ViT: heads plus the rest is the embedding (small and stock ViTs, both poolings), and pruning removes exactly a head's output."""
from __future__ import annotations

import open_clip
import pytest
import torch

from infogap.data.factors import Vocabulary
from infogap.models import build_model
from infogap.models.decompose import head_contributions


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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_mean_ablation_keeps_the_mean_embedding_and_changes_only_the_pruned_direct_terms():
    """Mean-ablating heads replaces each one's direct contribution by its mean over the images: the mean
    embedding (before normalisation) is unchanged, and each image moves by exactly the pruned heads'
    deviations from their means."""
    from infogap.ablations.heads.analysis import mean_ablated

    torch.manual_seed(0)
    heads, rest = torch.randn(50, 3, 4, 16, dtype=torch.float64), torch.randn(50, 16, dtype=torch.float64)
    full = rest + heads.sum((1, 2))
    pruned = [(0, 1), (2, 3)]
    out = mean_ablated(heads, rest, pruned)
    torch.testing.assert_close(out.mean(0), full.mean(0))
    moved = sum(heads[:, layer, head] - heads[:, layer, head].mean(0) for layer, head in pruned)
    torch.testing.assert_close(full - out, moved)
    assert torch.equal(mean_ablated(heads, rest, []), full)
