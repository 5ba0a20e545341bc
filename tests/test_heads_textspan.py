"""TEXTSPAN and the concept consistency score (Madasu et al. 2025)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infogap.ablations.heads.textspan import concept_consistency, textspan


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


def algorithm_1(data: np.ndarray, texts: np.ndarray, m: int, rank: int) -> list[int]:
    """TEXTSPAN written out plainly from Gandelsman et al. (2024), Algorithm 1 / the authors'
    replace_with_iterative_removal: project the texts onto the span of the top ``rank`` right singular
    vectors of the uncentred contributions, centre the contributions, then m times take the text whose
    projection has the largest variance over the images and remove its direction from both."""
    u, s, vh = np.linalg.svd(data, full_matrices=False)
    vh = vh[:rank]
    texts = (vh.T @ np.linalg.inv(vh @ vh.T) @ vh @ texts.T).T
    data = data - data.mean(0, keepdims=True)
    chosen = []
    for _ in range(m):
        projection = data @ texts.T
        top = int(np.argmax(projection.std(axis=0, ddof=1)))
        chosen.append(top)
        r = texts[top]
        norm = r @ r
        data = data - np.outer(data @ r / norm, r)
        texts = texts - np.outer(texts @ r / norm, r)
    return chosen


def test_textspan_selects_what_algorithm_1_selects_on_random_heads():
    """120 random heads (low-rank contributions as a head writes them, with a mean offset; a random pool):
    the same 5 texts in the same order as the plain implementation, for ranks up to the head width; with
    a rank below 5 the span is used up after `rank` texts, which both choose alike."""
    rng = np.random.default_rng(11)
    for i in range(120):
        d, width, n, pool = 32, int(rng.integers(5, 17)), int(rng.integers(40, 200)), int(rng.integers(12, 40))
        heads = rng.normal(size=(n, width)) @ rng.normal(size=(width, d)) + rng.normal(size=d) * rng.uniform(0, 2)
        texts = rng.normal(size=(pool, d))
        texts /= np.linalg.norm(texts, axis=1, keepdims=True)
        rank = int(rng.integers(5, width + 1))
        got, _ = textspan(torch.from_numpy(heads), torch.from_numpy(texts), m=5, rank=rank)
        assert got == algorithm_1(heads, texts, 5, rank), i
        short, _ = textspan(torch.from_numpy(heads), torch.from_numpy(texts), m=5, rank=3)
        assert short == algorithm_1(heads, texts, 3, 3), i


def test_the_earlier_unit_variant_is_an_explicit_option_and_differs():
    rng = np.random.default_rng(2)
    differ = 0
    for _ in range(20):
        heads = rng.normal(size=(80, 6)) @ rng.normal(size=(6, 24))
        texts = rng.normal(size=(30, 24))
        texts /= np.linalg.norm(texts, axis=1, keepdims=True)
        a, _ = textspan(torch.from_numpy(heads), torch.from_numpy(texts), m=5, rank=6)
        b, _ = textspan(torch.from_numpy(heads), torch.from_numpy(texts), m=5, rank=6, variant="unit")
        differ += a != b
    assert differ >= 10  # the published algorithm scores un-normalised projections: another choice on most heads
    with pytest.raises(ValueError, match="variant"):
        textspan(torch.from_numpy(heads), torch.from_numpy(texts), variant="other")


def test_balanced_pool_and_a_planted_head_labelled_by_textspan_and_by_the_ground_truth(encoder):
    """Every concept has 10 caption-like texts; a head whose contributions are, for each image, the pool's
    text of that image's colour gets colour as its TEXTSPAN label (the majority of its 5 texts) and as its
    ground truth (R² near 1)."""
    from infogap.ablations.heads.analysis import factor_r2, head_table, pool_shares, synthetic_pool
    from infogap.data.factors import FACTOR_NAMES, FACTORS

    enc = encoder()
    texts, concepts, pool = synthetic_pool(enc)
    assert pool_shares(concepts) == {f: pytest.approx(1 / 6) for f in FACTOR_NAMES} and len(set(texts)) == 60
    for text, concept in zip(texts, concepts):  # each text names its concept's value; attributes beside an object word
        words = [w.strip() for w in text.split(",")]
        assert words[-1] in FACTORS[concept] and (concept == "object" or words[0] in FACTORS["object"])
    rng = np.random.default_rng(0)
    n = 400
    labels = {f: torch.from_numpy(rng.integers(0, len(v), n)) for f, v in FACTORS.items()}
    first = [next(i for i, (t, c) in enumerate(zip(texts, concepts)) if c == "colour" and t.endswith(", " + v)) for v in FACTORS["colour"]]
    colour_emb = pool[first].double()  # one pool text per colour value
    planted = colour_emb[labels["colour"]] + 0.01 * torch.from_numpy(rng.normal(size=(n, colour_emb.shape[1])))
    heads = planted[:, None, None, :]
    row = head_table(heads, pool, texts, concepts, labels=labels, head_width=8)[0]
    assert row["label"] == "colour" and row["ccs"] >= 3
    assert row["true_label"] == "colour" and row["true_r2"] > 0.95 and row["agrees"]
    r2 = factor_r2(planted, labels)
    assert all(r2[f] < 0.05 for f in FACTOR_NAMES if f != "colour")


def test_factor_r2_against_a_one_hot_regression():
    from infogap.ablations.heads.analysis import factor_r2

    rng = np.random.default_rng(4)
    c = rng.normal(size=(90, 5))
    lab = rng.integers(0, 4, 90)
    onehot = np.eye(4)[lab]
    fitted = onehot @ np.linalg.lstsq(onehot, c, rcond=None)[0]
    want = 1 - ((c - fitted) ** 2).sum() / ((c - c.mean(0)) ** 2).sum()
    assert factor_r2(torch.from_numpy(c), {"f": torch.from_numpy(lab)})["f"] == pytest.approx(want, abs=1e-12)


def test_reachable_ccs_of_pure_heads_on_orthonormal_texts_by_hand():
    """Texts whose embeddings are orthonormal, one per value of each factor: a pure head of a factor with V
    values varies along the differences of its V texts; TEXTSPAN picks one of them, removes its direction
    (the head then varies along the rest: for V = 2, (a - b) minus its a-part is -b), and so on until
    none is left: V texts, so CCS = min(5, V) by hand (object 10 -> 5, colour 7 -> 5, thickness 3 -> 3,
    the binary factors 2). When a factor's texts all embed alike, no head of it varies: 0."""
    from infogap.ablations.heads.analysis import reachable_ccs
    from infogap.data.factors import FACTORS

    texts = [v for values in FACTORS.values() for v in values]
    concepts = [f for f, values in FACTORS.items() for _ in values]
    pool = torch.eye(len(texts), dtype=torch.float64)
    got = reachable_ccs(pool, texts, concepts, noise=0.0, repeats=2, images=200)
    assert got == {"object": 5.0, "colour": 5.0, "thickness": 3.0, "swelling": 2.0, "fracture": 2.0, "scaling": 2.0}
    i, j = [k for k, c in enumerate(concepts) if c == "swelling"]
    pool[j] = pool[i]  # both swelling texts on one direction: a head of swelling has nothing to vary along
    assert reachable_ccs(pool, texts, concepts, noise=0.0, repeats=2, images=200)["swelling"] == 0.0
    assert reachable_ccs(pool, texts, concepts, noise=0.0, repeats=2, images=200, m=3)["object"] == 3.0  # capped by m
