"""Direct contributions of a CLIP ViT's attention heads to its image embedding, and head pruning: the
anatomy of an open_clip ViT that the attention-head study (``infogap.ablations.heads``, Madasu et al.,
EMNLP 2025; docs/results/heads.md) reads.

The residual stream of an open_clip ``VisionTransformer`` at the pooled position is a sum: the patch
and class embeddings (after ``ln_pre``), and per block the attention output (one term per head plus
the output projection's bias) and the MLP output. The final LayerNorm is linear once its mean and
standard deviation are fixed to the image's own (Gandelsman, Efros, Steinhardt, ICLR 2024):

    LN(z) = gamma * (z - mean(z)) / std(z) + beta,   a term c contributes gamma * (c - mean(c)) / std(z)

and the projection is linear, so the embedding is exactly the sum of the terms' images. With average
pooling and the LayerNorm before the pool (open_clip's default), every token has its own mean and std;
with class-token pooling, or the LayerNorm after the pool, the pooled vector has one.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable

import torch
import torch.nn.functional as F


def _check_vit(model) -> torch.nn.Module:
    from open_clip.transformer import LayerScale, ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", model)
    if not isinstance(visual, VisionTransformer):
        raise ValueError(f"head contributions need an open_clip VisionTransformer image tower, got {type(visual).__name__}")
    if visual.attn_pool is not None or visual.pool_type not in ("tok", "avg"):
        raise ValueError(f"head contributions support class-token or average pooling, not pool_type={visual.pool_type!r} / attention pooling")
    for i, blk in enumerate(visual.transformer.resblocks):
        if not isinstance(blk, ResidualAttentionBlock) or not isinstance(blk.attn, torch.nn.MultiheadAttention):
            raise ValueError(f"block {i} is a {type(blk).__name__}: only open_clip's ResidualAttentionBlock (nn.MultiheadAttention) is supported")
        for ls in (blk.ls_1, blk.ls_2):
            if not isinstance(ls, (LayerScale, torch.nn.Identity)):
                raise ValueError(f"block {i}: unsupported layer scale {type(ls).__name__}")
    return visual


def _scale(ls: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """A layer scale (or identity) applied out of place: it is linear."""
    return z * ls.gamma if hasattr(ls, "gamma") else z


@torch.no_grad()
def head_contributions(model, images: torch.Tensor, space: str = "embedding") -> tuple[torch.Tensor, torch.Tensor]:
    """(heads (N, L, H, d), rest (N, d)): the direct contribution of every (layer, head) of the image
    tower to ``encode_image(images, normalize=False)``, and of everything else (embeddings, MLPs,
    attention output biases, the LayerNorm's beta); heads.sum((1, 2)) + rest equals the embedding up
    to float rounding. ``model`` is a CLIP of ``infogap.models.build_model`` (or its ``visual``).

    ``space="residual"``: the same terms in the pooled residual stream before the final LayerNorm
    (width of the transformer; pooled as the model pools, without the LayerNorm): their sum is the
    LayerNorm's pooled input."""
    if space not in ("embedding", "residual"):
        raise ValueError(f"space must be 'embedding' or 'residual', got {space!r}")
    visual = _check_vit(model)
    if visual.training:
        raise ValueError("head contributions need the model in eval mode (model.eval())")
    blocks = visual.transformer.resblocks
    x = visual._embeds(images.to(next(visual.parameters()).dtype))  # (N, T, W), after ln_pre
    n, t, w = x.shape
    pool_weights = torch.zeros(t, dtype=x.dtype, device=x.device)
    if visual.pool_type == "tok":
        pool_weights[0] = 1.0
    else:
        pool_weights[1:] = 1.0 / (t - 1)
    parts_rest = [x]  # per-token residual terms that are not heads (N, T, W)
    head_outputs = []  # per block: (N, H, T, dh) attention-weighted values, before the output projection
    for blk in blocks:
        attn = blk.attn
        heads, dh = attn.num_heads, w // attn.num_heads
        h = blk.ln_1(x)
        q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).split(w, dim=-1)
        q, k, v = (z.reshape(n, t, heads, dh).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, dh)
        head_outputs.append(o)
        out = o.transpose(1, 2).reshape(n, t, w) @ attn.out_proj.weight.T + attn.out_proj.bias
        parts_rest.append(_scale(blk.ls_1, attn.out_proj.bias.expand(n, t, w)))
        x = x + _scale(blk.ls_1, out)
        m = _scale(blk.ls_2, blk.mlp(blk.ln_2(x)))
        parts_rest.append(m)
        x = x + m
    # the LayerNorm's per-token (or per-pooled-vector) 1/std, folded into the pooling weights
    ln = visual.ln_post
    if space == "residual":
        weights = pool_weights[None, :].expand(n, t)
    elif visual.final_ln_after_pool or visual.pool_type == "tok":
        pooled = torch.einsum("t,ntw->nw", pool_weights, x)
        inv_std = 1.0 / torch.sqrt(pooled.var(-1, unbiased=False) + ln.eps)  # (N,)
        weights = pool_weights[None, :] * inv_std[:, None]  # (N, T)
    else:
        inv_std = 1.0 / torch.sqrt(x.var(-1, unbiased=False) + ln.eps)  # (N, T)
        weights = pool_weights[None, :] * inv_std

    def finish(z: torch.Tensor) -> torch.Tensor:  # (..., W) pooled and scaled -> centred, gamma, projection
        if space == "residual":
            return z
        z = (z - z.mean(-1, keepdim=True)) * ln.weight
        return z @ visual.proj if visual.proj is not None else z

    out_heads = []
    for blk, o in zip(blocks, head_outputs):
        attn = blk.attn
        heads, dh = attn.num_heads, w // attn.num_heads
        pooled_o = torch.einsum("nt,nhtd->nhd", weights, o)  # (N, H, dh)
        wo = attn.out_proj.weight.reshape(w, heads, dh)  # column block h belongs to head h
        c = torch.einsum("nhd,whd->nhw", pooled_o, wo)
        out_heads.append(finish(_scale(blk.ls_1, c)))
    rest = sum(finish(torch.einsum("nt,ntw->nw", weights, r)) for r in parts_rest)
    if space == "residual":
        return torch.stack(out_heads, 1), rest
    beta = ln.bias @ visual.proj if visual.proj is not None else ln.bias
    return torch.stack(out_heads, 1), rest + beta


@contextmanager
def pruned_heads(model, heads: Iterable[tuple[int, int]]):
    """Zero-ablate attention heads, given as (layer, head): inside the ``with`` block their column block
    of the attention output projection is 0, so they add nothing to the residual stream (the
    architecture is unchanged); the weights are restored on exit."""
    visual = _check_vit(model)
    blocks = visual.transformer.resblocks
    saved = []
    try:
        for layer, head in sorted(set(heads)):
            if not (0 <= layer < len(blocks)) or not (0 <= head < blocks[layer].attn.num_heads):
                raise ValueError(f"no head ({layer}, {head}): the model has {len(blocks)} layers of {blocks[0].attn.num_heads} heads")
            attn = blocks[layer].attn
            dh = attn.embed_dim // attn.num_heads
            cols = attn.out_proj.weight[:, head * dh: (head + 1) * dh]
            saved.append((cols, cols.detach().clone()))
            with torch.no_grad():
                cols.zero_()
        yield model
    finally:
        with torch.no_grad():
            for cols, value in saved:
                cols.copy_(value)
