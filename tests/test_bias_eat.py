"""Embedding association tests (Ghate et al. 2025): the effect size and the permutation p-value against brute force, the sampled test against the exact one, planted and absent associations, edge cases, and `infogap analyze eat`."""
from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from infogap.ablations.bias.eat import eat_association, eat_effect_size, eat_test


def _unit(rng, n, d=16, shift=None):
    z = rng.normal(size=(n, d)) + (0 if shift is None else shift)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _brute(x, y, a, b):
    """s by explicit cosines, d by its formula, the exact p by listing every equal-size re-partition."""
    def cos(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    def s(w):
        return np.mean([cos(w, t) for t in a]) - np.mean([cos(w, t) for t in b])

    sx, sy = [s(w) for w in x], [s(w) for w in y]
    both = sx + sy
    d = (np.mean(sx) - np.mean(sy)) / np.std(both, ddof=1)
    observed = sum(sx)
    parts = list(itertools.combinations(range(len(both)), len(x)))
    p = sum(sum(both[i] for i in part) >= observed - 1e-12 for part in parts) / len(parts)
    return np.array(both), d, p, len(parts)


@pytest.mark.parametrize("nx, ny", [(4, 4), (3, 5)])
def test_effect_size_and_exact_p_against_brute_force(nx, ny):
    rng = np.random.default_rng(1)
    x, y, a, b = _unit(rng, nx), _unit(rng, ny), _unit(rng, 5), _unit(rng, 6)
    s, d, p, n_parts = _brute(x, y, a, b)
    np.testing.assert_allclose(np.concatenate([eat_association(x, a, b), eat_association(y, a, b)]), s, atol=1e-12)
    got = eat_test(x, y, a, b)
    assert got.exact and got.permutations == n_parts == math.comb(nx + ny, nx)  # 70 for 4 + 4
    assert got.effect_size == pytest.approx(d, abs=1e-10) == eat_effect_size(x, y, a, b)
    assert got.p_value == pytest.approx(p, abs=1e-12)


def test_exact_p_agrees_with_scipy_and_ties_count_as_greater_or_equal():
    from scipy import stats

    rng = np.random.default_rng(2)
    x, y, a, b = _unit(rng, 5), _unit(rng, 5), _unit(rng, 4), _unit(rng, 4)
    s = np.concatenate([eat_association(x, a, b), eat_association(y, a, b)])
    ref = stats.permutation_test((s[:5], s[5:]), lambda u, v, axis: u.sum(axis=axis), permutation_type="independent",
                                 vectorized=True, n_resamples=10**6, alternative="greater")
    assert eat_test(x, y, a, b).p_value == pytest.approx(ref.pvalue, abs=1e-12)
    # every target is a copy of one of two vectors: many partitions tie with the observed one
    u, v = _unit(rng, 2)
    x2, y2 = np.stack([u, u, v]), np.stack([u, v, v])
    _, _, p, _ = _brute(x2, y2, a, b)
    assert eat_test(x2, y2, a, b).p_value == pytest.approx(p) and p > 0.1


def test_sampled_p_is_reproducible_and_close_to_the_exact_one():
    rng = np.random.default_rng(3)
    x, y, a, b = _unit(rng, 8, shift=0.15), _unit(rng, 8), _unit(rng, 8, shift=0.15), _unit(rng, 8)
    exact = eat_test(x, y, a, b)
    assert exact.exact and exact.permutations == 12_870
    sampled = eat_test(x, y, a, b, permutations=1_000_000, seed=7, exact_limit=0)
    assert not sampled.exact and sampled.permutations == 1_000_000
    se = math.sqrt(exact.p_value * (1 - exact.p_value) / 1_000_000)  # binomial standard error of a sampled p
    assert abs(sampled.p_value - exact.p_value) < 4 * se and 0.05 < exact.p_value < 0.95
    assert eat_test(x, y, a, b, permutations=50_000, seed=7, exact_limit=0).p_value == \
        eat_test(x, y, a, b, permutations=50_000, seed=7, exact_limit=0).p_value
    assert sampled.effect_size == exact.effect_size


def _axis_sets(s_values, nx):
    """Unit targets whose association s(w, A, B) = cos(w, e0) - cos(w, e1) is exactly each of ``s_values``
    (A = {e0}, B = {e1}), split into X (the first ``nx``) and Y."""
    rows = []
    for v in s_values:
        # w = (u, u - v) normalised gives s = (u - (u - v)) / |w| = v / |w|: pick u so that |w| = 1
        u = (v + math.sqrt(2 - v * v)) / 2
        w = np.array([u, u - v, 0.0])
        rows.append(w / np.linalg.norm(w))
    w = np.array(rows)
    return w[:nx], w[nx:], np.eye(3)[:1], np.eye(3)[1:2]


def test_sampled_p_counts_ties_draws_whole_subsets_and_is_never_zero():
    """The sampled p counts partitions whose statistic ties the observed one (>=), over |X|-subsets of
    the right size, as (1 + count) / (1 + draws): on s = (1, 1, -1, -1) with X the first two, exactly
    one of the six partitions reaches S(X) = 2, so p = 1/6; a strict > (or subsets one element short)
    would find none. A statistic that no random partition reaches gives 1 / (1 + draws), never 0."""
    x, y, a, b = _axis_sets([1.0, 1.0, -1.0, -1.0], 2)
    np.testing.assert_allclose(np.concatenate([eat_association(x, a, b), eat_association(y, a, b)]), [1, 1, -1, -1], atol=1e-12)
    exact = eat_test(x, y, a, b)
    assert exact.exact and exact.p_value == pytest.approx(1 / 6)
    n = 200_000
    sampled = eat_test(x, y, a, b, permutations=n, seed=1, exact_limit=0)
    assert abs(sampled.p_value - 1 / 6) < 4 * math.sqrt((1 / 6) * (5 / 6) / n)
    # 20 distinct values, X = the 10 largest: 1 of C(20, 10) = 184,756 partitions reaches S(X)
    values = np.linspace(0.95, -0.95, 20)
    x, y, a, b = _axis_sets(values, 10)
    assert eat_test(x, y, a, b).p_value == pytest.approx(1 / math.comb(20, 10))
    few = eat_test(x, y, a, b, permutations=1000, seed=0, exact_limit=0)
    assert few.p_value == pytest.approx(1 / 1001)


def test_a_planted_association_is_found_and_none_is_not():
    rng = np.random.default_rng(4)
    direction = np.zeros(32)
    direction[0] = 1.5
    x, y = _unit(rng, 20, 32, shift=direction), _unit(rng, 20, 32, shift=-direction)
    a, b = _unit(rng, 10, 32, shift=direction), _unit(rng, 10, 32, shift=-direction)
    planted = eat_test(x, y, a, b, permutations=100_000)
    assert planted.effect_size > 1 and planted.p_value < 0.01 and not planted.exact
    rngs = [np.random.default_rng(100 + s) for s in range(20)]
    ds = [eat_effect_size(*(_unit(r, n, 32) for n in (20, 20, 10, 10))) for r in rngs]
    assert abs(np.mean(ds)) < 0.5
    assert max(abs(d) for d in ds) <= 2.0  # d is bounded by 2 in absolute value for two equal groups


def test_edge_cases_are_documented_results_or_clear_errors():
    rng = np.random.default_rng(5)
    a, b = _unit(rng, 3), _unit(rng, 3)
    same = np.repeat(_unit(rng, 1), 4, axis=0)
    flat = eat_test(same[:2], same[2:], a, b)  # s does not vary: d = 0/0, every partition ties
    assert math.isnan(flat.effect_size) and flat.p_value == 1.0
    with pytest.raises(ValueError, match="the set Y is empty"):
        eat_test(_unit(rng, 3), np.zeros((0, 16)), a, b)
    with pytest.raises(ValueError, match="the set A is empty"):
        eat_effect_size(_unit(rng, 3), _unit(rng, 3), np.zeros((0, 16)), b)
    with pytest.raises(ValueError, match="at least 3 targets"):
        eat_test(_unit(rng, 1), _unit(rng, 1), a, b)


# --- infogap analyze eat ------------------------------------------------------------------------
def test_analyze_eat_on_an_npz_prints_one_json_object(tmp_path, capsys):
    from infogap.cli import main as infogap

    rng = np.random.default_rng(6)
    x, y, a, b = _unit(rng, 4, shift=0.3), _unit(rng, 4), _unit(rng, 3, shift=0.3), _unit(rng, 3)
    path = tmp_path / "sets.npz"
    np.savez(path, X=3 * x, Y=y, A=a, B=b)  # rows need not be unit length: they are normalised
    capsys.readouterr()
    assert infogap(["analyze", "eat", "--embeddings", str(path)]) == 0
    got = json.loads(capsys.readouterr().out)
    ref = eat_test(x, y, a, b)
    assert set(got) == {"effect_size", "p_value", "permutations", "exact"}
    assert got["effect_size"] == pytest.approx(ref.effect_size) and got["p_value"] == pytest.approx(ref.p_value)
    assert got["exact"] and got["permutations"] == 70
    assert infogap(["analyze", "eat", "--embeddings", str(path), "--permutations", "50", "--seed", "3"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert not sampled["exact"] and sampled["permutations"] == 50
    np.savez(path, X=x, Y=y, A=a)
    assert infogap(["analyze", "eat", "--embeddings", str(path)]) == 2
    err = capsys.readouterr().err
    assert "needs arrays X, Y, A, B" in err and "missing B" in err


def _folder(path: Path, n: int, colour) -> Path:
    from PIL import Image

    path.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 32), colour).save(path / f"{i}.png")
    return path


def test_analyze_eat_tests_on_a_random_local_checkpoint(tmp_path, capsys):
    """``--model NAME --pretrained PATH``: texts, image folders and synthetic concepts, each scored in
    the modality combinations the sets allow; CSV and JSON out; bad sets named in one line."""
    import torch

    from infogap.cli import main as infogap
    from infogap.models import build_model

    torch.manual_seed(0)
    ckpt = tmp_path / "random.pt"
    torch.save(build_model("tiny-bpe").state_dict(), ckpt)
    red, blue = _folder(tmp_path / "red", 8, (200, 30, 30)), _folder(tmp_path / "blue", 8, (30, 30, 200))
    tests = {"tests": [
        {"name": "words", "X": {"texts": ["a rose", "a tulip", "a daisy"]}, "Y": {"texts": ["a wasp", "a moth", "a bee"]},
         "A": {"texts": ["lovely", "pleasant"]}, "B": {"texts": ["ugly", "unpleasant"]}},
        {"name": "mixed", "X": {"factor": "object", "values": [0, 1], "n": 8}, "Y": {"factor": "object", "values": [8, 9], "n": 8},
         "A": {"images": "red", "texts": ["red", "crimson"]}, "B": {"images": str(blue)}},
    ]}
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    out = tmp_path / "out"
    capsys.readouterr()
    assert infogap(["analyze", "eat", "--tests", str(path), "--model", "tiny-bpe", "--pretrained", str(ckpt),
                    "--out", str(out), "--permutations", "2000"]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "eat.csv").open()))
    combos = {(r["test"], r["modality"]) for r in rows}
    # texts only: text-text; concepts have both modalities, B only images: the image-attribute combinations
    assert combos == {("words", "text-text"), ("mixed", "image-image"), ("mixed", "text-image")}
    mixed = next(r for r in rows if r["modality"] == "image-image")
    assert (mixed["n_X"], mixed["n_Y"], mixed["n_A"], mixed["n_B"]) == ("8", "8", "8", "8")
    assert all(-2 <= float(r["effect_size"]) <= 2 and 0 < float(r["p_value"]) <= 1 for r in rows)
    saved = json.loads((out / "eat.json").read_text())
    assert saved["model"] == "tiny-bpe" and len(saved["results"]) == 3
    # the same model scores the same: the checkpoint was loaded, the sets are deterministic
    assert infogap(["analyze", "eat", "--tests", str(path), "--model", "tiny-bpe", "--pretrained", str(ckpt),
                    "--out", str(tmp_path / "again"), "--permutations", "2000"]) == 0
    assert list(csv.DictReader((tmp_path / "again" / "eat.csv").open())) == rows

    def fails(test: dict) -> str:
        path.write_text(yaml.safe_dump({"tests": [test]}))
        capsys.readouterr()
        assert infogap(["analyze", "eat", "--tests", str(path), "--model", "tiny-bpe", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        return err

    base = tests["tests"][0]
    assert "test 'words', set B: no such image folder" in fails({**base, "B": {"images": "nowhere"}})
    assert "test 'words', set A: texts is empty" in fails({**base, "A": {"texts": []}})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "0.png").write_bytes(b"not a png")
    assert "test 'words', set Y: cannot read image" in fails({**base, "Y": {"images": "broken"}})
    (tmp_path / "empty").mkdir()
    assert "test 'words', set X: the folder" in fails({**base, "X": {"images": "empty"}})
    assert "set A: unknown value 'purple'" in fails({**base, "A": {"factor": "colour", "values": ["purple"]}})
