"""TEXTSPAN (Gandelsman, Efros, Steinhardt, ICLR 2024) and the concept consistency score (Madasu, Lal,
Howard, EMNLP 2025): which texts span what an attention head writes into the image embedding, and
how consistent their concepts are (docs/results/heads.md)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


AUTHORS_RANK = 80  # the rank of the head's output span in the authors' code (``--w_ov_rank``), capped by the head width


@torch.no_grad()
def textspan(contributions: torch.Tensor, texts: torch.Tensor, m: int = 5, rank: Optional[int] = AUTHORS_RANK,
             variant: str = "published") -> tuple[list[int], list[float]]:
    """TEXTSPAN (Gandelsman et al. 2024, Algorithm 1, as the authors' ``replace_with_iterative_removal``)
    for one head: its direct contributions C (N images, d) and a pool of text embeddings T (M, d).

    ``published``: project every text onto the span of the top ``rank`` right singular vectors of the
    **uncentred** C (r_j = V_r V_r^T t_j; ``rank`` at most the head's width, whose output spans no more
    dimensions), centre C, then m times: choose j = argmax_j Var(C r_j) over the projected texts **as
    they are** (not normalised: a text more inside the head's span scores higher), and remove r_j's
    direction from C and from every r (x <- x - (x . r_j / |r_j|^2) r_j); a chosen text is 0 afterwards.
    ``unit``: this package's earlier variant, kept only on request: the projection onto the top
    principal directions of the centred C (all with non-zero variance by default), each text scored by
    the variance along its unit direction.

    Returns the chosen text indices and the share of the head's (centred) variance each removes, of
    the total at the start (they sum to at most 1). Stops early once the head's span is used up (rank
    below m: the authors' loop would go on picking texts by rounding noise)."""
    if variant == "unit":
        return _textspan_unit(contributions, texts, m, None if rank == AUTHORS_RANK else rank)
    if variant != "published":
        raise ValueError(f"TEXTSPAN variant must be 'published' or 'unit', got {variant!r}")
    c = contributions.double()
    t = texts.double()
    n = len(c)
    if n < 2:
        raise ValueError("TEXTSPAN needs the contributions of at least two images")
    _, _, vh = torch.linalg.svd(c, full_matrices=False)
    vh = vh[: rank or vh.shape[0]]
    r = t @ vh.T @ vh  # projected onto the span of the head's output (the authors' vh.T (vh vh.T)^-1 vh, vh orthonormal)
    c = c - c.mean(0, keepdim=True)
    total = float((c * c).sum()) / (n - 1)
    if total <= 0:
        raise ValueError("TEXTSPAN: the head's contributions do not vary over the images")
    chosen, shares = [], []
    for _ in range(min(m, len(r))):
        var = (c @ r.T).var(0)  # Var(C r_j), unbiased as torch's std in the authors' code
        j = int(var.argmax())
        norm2 = float(r[j] @ r[j])
        if norm2 <= 1e-12 or float((c * c).sum()) / (n - 1) <= 1e-12 * total:  # the span is used up: what is left is rounding
            break
        chosen.append(j)
        shares.append(float(var[j]) / norm2 / total)  # the variance along r_j's unit direction
        c = c - (c @ r[j] / norm2)[:, None] * r[j][None, :]
        r = r - (r @ r[j] / norm2)[:, None] * r[j][None, :]
    return chosen, shares


def _textspan_unit(contributions: torch.Tensor, texts: torch.Tensor, m: int = 5, rank: Optional[int] = None) -> tuple[list[int], list[float]]:
    """The unit-direction variant (see ``textspan``): texts projected onto the top ``rank`` principal
    directions of the centred C (default: all with non-zero variance); m times, the text whose unit
    projection u carries the most variance u^T Sigma u is chosen and u removed from Sigma and the texts."""
    c = contributions.double()
    c = c - c.mean(0, keepdim=True)
    sigma = c.T @ c / max(len(c), 1)
    total = float(torch.trace(sigma))
    if total <= 0:
        raise ValueError("TEXTSPAN: the head's contributions do not vary over the images")
    evals, evecs = torch.linalg.eigh(sigma)
    keep = evals > evals.max() * 1e-9
    if rank is not None:
        keep &= torch.arange(len(evals)) >= len(evals) - rank
    basis = evecs[:, keep]
    t = texts.double() @ basis @ basis.T
    chosen, shares = [], []
    for _ in range(min(m, len(t))):
        norms = t.norm(dim=1)
        u_all = t / norms.clamp(min=1e-12)[:, None]
        scores = ((u_all @ sigma) * u_all).sum(1)
        scores[norms < 1e-9] = -1.0
        if chosen:
            scores[chosen] = -1.0
        j = int(scores.argmax())
        if scores[j] <= 0:
            break
        u = u_all[j]
        chosen.append(j)
        shares.append(float(scores[j]) / total)
        proj = torch.eye(len(u), dtype=u.dtype) - torch.outer(u, u)
        sigma = proj @ sigma @ proj
        t = t @ proj
    return chosen, shares


def concept_consistency(concepts: Sequence[str]) -> tuple[str, int]:
    """CCS of a head from the concepts of its TEXTSPAN texts (in the order they were chosen): the label
    is the majority concept, a tie going to the concept chosen first; CCS is how many texts carry it
    (0..len; the published score uses 5 texts: high = 5, low <= 1)."""
    if not concepts:
        raise ValueError("CCS needs the concepts of at least one text")
    counts: dict[str, int] = {}
    for c in concepts:
        counts[c] = counts.get(c, 0) + 1
    best = max(counts.values())
    label = next(c for c in concepts if counts[c] == best)
    return label, best
