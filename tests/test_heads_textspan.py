"""TEXTSPAN and the concept consistency score (seed 004)."""
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
