"""The transferability estimators against plain transcriptions of the IIMM authors' code
(``mit-ll/IIMM``, ``transferability_metrics.py``: loops, ``np.linalg.slogdet``, ``np.linalg.pinv``)
and against what the formulas give by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from infogap.ablations.learn_forget.transfer import coding_rate, estimators, gbc, h_score, sfda, transrate


def _data(seed=0, n=60, d=5, k=3, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    centres = rng.normal(size=(k, d)) * spread
    return centres[y] + rng.normal(size=(len(y), d)), y


def _h_score_reference(x, y):
    cov_x = np.dot((x - x.mean(0)).T, x - x.mean(0)) / (len(x) - 1)
    g = np.zeros_like(x)
    for label in set(y):
        g[y == label] = x[y == label].mean(0)
    cov_g = np.dot((g - g.mean(0)).T, g - g.mean(0)) / (len(g) - 1)
    return np.trace(np.linalg.pinv(cov_x, rcond=1e-15) @ cov_g)


def _transrate_reference(z, y, eps=1e-4):
    def rate(a):
        n, d = a.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + 1 / (n * eps) * a.T @ a)[1]

    z = z - z.mean(0, keepdims=True)
    k = int(y.max() + 1)
    return rate(z) - sum(rate(z[y == i]) for i in range(k)) / k


def _gbc_reference(x, y, kind):
    stats = {}
    for c in np.unique(y):
        stats[c] = (x[y == c].mean(0), np.maximum(x[y == c].var(0), 1e-4))
    total = 0.0
    for c1 in np.unique(y):
        for c2 in np.unique(y):
            if c1 == c2:
                continue
            (m1, s1), (m2, s2) = stats[c1], stats[c2]
            if kind == "spherical":
                s1, s2 = np.mean(s1), np.mean(s2)
            avg = (s1 + s2) / 2
            dist = np.sum((m1 - m2) ** 2 / avg) / 8 + 0.5 * (np.sum(np.log(avg)) - 0.5 * np.sum(np.log(s1)) - 0.5 * np.sum(np.log(s2)))
            total += np.exp(-dist)
    return -total


def _sfda_reference(X, y):
    """The authors' SFDA_Score (Multitask-Model-Selector via mit-ll/IIMM), transcribed with its loops."""
    from scipy import linalg

    def cov(a, shrinkage=-1):
        emp = np.cov(np.asarray(a).T, bias=1)
        if shrinkage < 0:
            return emp
        d = emp.shape[0]
        out = (1.0 - shrinkage) * emp
        out.flat[:: d + 1] += shrinkage * np.trace(emp) / d
        return out

    def largest(a, iterations=3):
        v = a.sum(axis=1)
        for _ in range(iterations):
            t = np.dot(a, v)
            w = t / np.linalg.norm(t, 2)
            t = np.dot(a, w)
            v = t / np.linalg.norm(t, 2)
        return np.dot(np.dot(v.T, a), w)

    def fit_predict(X, y, shrinkage=None):
        classes, yi = np.unique(y, return_inverse=True)
        priors = np.bincount(yi) / float(len(y))
        means = np.zeros((len(classes), X.shape[1]))
        np.add.at(means, yi, X)
        means /= np.bincount(yi)[:, None]
        sw = np.zeros((X.shape[1], X.shape[1]))
        for idx, group in enumerate(classes):
            sw += priors[idx] * np.atleast_2d(cov(X[yi == group, :]))
        if shrinkage is None:
            shrinkage = max(np.exp(-5 * largest(sw, 3)), 1e-10)
        st = cov(X, shrinkage=shrinkage)
        d = sw.shape[0]
        shrunk_sw = (1.0 - shrinkage) * sw
        shrunk_sw.flat[:: d + 1] += shrinkage * np.trace(sw) / d
        evals, evecs = linalg.eigh(st - shrunk_sw, shrunk_sw)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = np.dot(means, evecs).dot(evecs.T)
        intercept = -0.5 * np.diag(np.dot(means, coef.T)) + np.log(priors)
        scores = np.dot(X, coef.T) + intercept
        scores = scores - scores.max(1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(1, keepdims=True), shrinkage

    X = X.copy()
    n, k = len(y), len(np.unique(y))
    prob, shrinkage = fit_predict(X, y)
    prob = np.exp(prob) / np.exp(prob).sum(axis=1, keepdims=True)
    classes, yi = np.unique(y, return_inverse=True)
    means = np.zeros((k, X.shape[1]))
    np.add.at(means, yi, X)
    means /= np.bincount(yi)[:, None]
    means_ = np.array([(means.sum(0) - means[i]) / (k - 1) for i in range(k)])
    for c in range(k):
        idx = np.where(y == c)[0]
        p = prob[idx, c].reshape(-1, 1)
        X[idx] = p * X[idx] + (1 - p) * means_[c]
    prob, _ = fit_predict(X, y, shrinkage)
    return np.sum(prob[np.arange(n), y]) / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimators_equal_the_authors_formulas(seed):
    x, y = _data(seed)
    assert h_score(x, y) == pytest.approx(_h_score_reference(x, y), rel=1e-9)
    assert transrate(x, y) == pytest.approx(_transrate_reference(x, y), rel=1e-9)
    for kind in ("spherical", "diagonal"):
        assert gbc(x, y, kind) == pytest.approx(_gbc_reference(x, y, kind), rel=1e-9)
    before = x.copy()
    assert sfda(x, y) == pytest.approx(_sfda_reference(x, y), rel=1e-9) and np.array_equal(x, before)  # the caller's array untouched


def test_estimators_by_hand_and_by_separation():
    # coding rate of one row z = (3, 4), n = 1, eps = 1e-4: 1/2 log(1 + 25 / 1e-4)
    assert coding_rate(np.array([[3.0, 4.0]])) == pytest.approx(0.5 * math.log(1 + 25 / 1e-4))
    # two identical class means: G is constant, H-score 0; well separated classes: H-score near the rank of Cov(G), K - 1 = 2
    x, y = _data(0, spread=0.0)
    x_same = x - np.stack([x[y == c].mean(0) for c in range(3)])[y]
    assert h_score(x_same, y) == pytest.approx(0.0, abs=1e-9)
    far, y = _data(0, spread=50.0)
    assert h_score(far, y) == pytest.approx(2.0, abs=0.01)
    near, _ = _data(0, spread=0.1)
    assert transrate(far, y) > transrate(near, y) and gbc(far, y) > gbc(near, y)  # separable classes transfer better
    assert gbc(far, y) == pytest.approx(0.0, abs=1e-6) and gbc(x_same, y, "diagonal") < -5  # 6 ordered pairs, overlapping: near -6
    scores = estimators(far, y)
    assert set(scores) == {"hscore", "transrate", "gbc_spherical", "gbc_diagonal", "sfda", "ncti_seli", "ncti_ncc", "ncti_vc"}
    assert sfda(far, y) > 0.99 and sfda(far, y) > sfda(near, y)  # separable: the true class's probability near 1
    with pytest.raises(ValueError, match="spherical"):
        gbc(far, y, "full")


def _ncti_reference(x, y):
    """NCTI_Score as its formulas read, without scikit-learn: PCA as the SVD of the centred features (the
    scores are invariant to the basis of the kept subspace), the shrunk eigen-LDA (within scatter sum_c
    prior_c Cov_c, total Cov, both shrunk towards (trace / d) I by s; generalised eigenvectors of
    (S_t - S_w, S_w), the largest first, K - 1 kept; coef = M V V^T, intercept -diag(M coef^T) / 2 + log
    prior), then seli, ncc and vc."""
    from scipy import linalg

    xc = x - x.mean(0)
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)
    m = min(64, *x.shape)
    z = xc @ vt[:m].T
    variance = sv[:m] ** 2 / (len(x) - 1)
    s = max(np.exp(-variance[:32].sum()), 1e-10)
    k, d = int(y.max()) + 1, z.shape[1]
    priors = np.bincount(y) / len(y)
    means = np.stack([z[y == c].mean(0) for c in range(k)])

    def shrunk(cov):
        return (1 - s) * cov + s * np.trace(cov) / d * np.eye(d)

    sw = sum(priors[c] * shrunk(np.cov(z[y == c].T, bias=True)) for c in range(k))
    st = shrunk(np.cov(z.T, bias=True))
    evals, evecs = linalg.eigh(st - sw, sw)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    low = z @ evecs[:, : k - 1]
    low = low - low.mean(0)
    coef = means @ evecs @ evecs.T
    logits = z @ coef.T - 0.5 * np.diag(means @ coef.T) + np.log(priors)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    seli = np.linalg.svd(low, compute_uv=False).sum()
    ncc = prob[np.arange(len(y)), y].mean()
    vc = np.log(sum(np.linalg.svd(prob[y == c], compute_uv=False).sum() for c in range(k)))
    return seli, ncc, vc


@pytest.mark.parametrize("seed, d", [(0, 5), (1, 70)])
def test_ncti_parts_equal_their_formulas_and_the_score_ranks_models(seed, d):
    from infogap.ablations.learn_forget.transfer import ncti_parts, ncti_scores

    x, y = _data(seed, n=90, d=d)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    got = ncti_parts(x, y)
    seli, ncc, vc = _ncti_reference(x, y)
    assert got["ncti_seli"] == pytest.approx(seli, rel=1e-6) and got["ncti_ncc"] == pytest.approx(ncc, rel=1e-6)
    assert got["ncti_vc"] == pytest.approx(vc, rel=1e-6)
    # the score: each part min-max normalised over the models, ncc + seli - vc (by hand); one model: the raw sum
    parts = {"a": {"ncti_seli": 2.0, "ncti_ncc": 0.5, "ncti_vc": 1.0}, "b": {"ncti_seli": 4.0, "ncti_ncc": 0.9, "ncti_vc": 3.0},
             "c": {"ncti_seli": 3.0, "ncti_ncc": 0.6, "ncti_vc": 1.0}}
    assert ncti_scores(parts) == pytest.approx({"a": 0 + 0 - 0, "b": 1 + 1 - 1, "c": 0.25 + 0.5 - 0})
    assert ncti_scores({"a": parts["a"]}) == pytest.approx({"a": 0.5 + 2.0 - 1.0})
    far, yf = _data(0, n=90, spread=50.0)
    near, _ = _data(0, n=90, spread=0.1)
    assert ncti_parts(far, yf)["ncti_ncc"] > 0.99 > ncti_parts(near, yf)["ncti_ncc"]  # separable classes: the true class's probability near 1
