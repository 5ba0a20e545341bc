"""Behaviour pinned by golden files: the full metric dict of a fixed embeddings file and, for every
study, its rows of a fixed tiny finished run and its claims over a fixed design (``tests/golden_cases``).
A refactoring must leave them equal; a change of the science rewrites them on purpose."""
from __future__ import annotations

import json

from tests.golden_cases import EXPECTED, assert_same, compute


def test_metrics_rows_and_claims_equal_the_golden_file(tmp_path):
    want = json.loads(EXPECTED.read_text())
    got = compute(tmp_path)
    assert_same(got["metrics"], want["metrics"], "metrics")
    assert set(got["studies"]) == set(want["studies"])
    for name in want["studies"]:
        assert_same(got["studies"][name], want["studies"][name], name)
