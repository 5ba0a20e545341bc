"""Transferability estimators, the predictors Niss et al. (2024) compare IIMM against, as the authors'
code computes them (``mit-ll/IIMM``: ``transferability_metrics.py``, called by
``get_transfer_scores.py`` on the L2-normalised image embeddings of the task's training images and
their labels 0..K-1):

- **H-score** (Bao et al. 2019): tr(pinv(Cov(X)) Cov(G)), G each sample's class mean, covariances
  with ddof 1 (``np.linalg.pinv`` at rcond 1e-15, the authors').
- **TransRate** (Huang et al. 2022): R(Z) - (1/K) sum_c R(Z_c) on the centred features, with the coding
  rate R(Z) = 1/2 logdet(I + Z^T Z / (n eps)), n the rows of that Z, eps = 1e-4.
- **SFDA** (Shao et al. 2022, the authors' ``SFDA_Score``): a regularised Fisher discriminant (within
  scatter shrunk by s = max(exp(-5 lambda_max), 1e-10), lambda_max from 3 power iterations, as their
  ``iterative_A``), its class probabilities softened by a second softmax; each sample is then moved
  towards the mean of the *other* classes by one minus its probability of its own class (ConfMix),
  the discriminant refitted at the same s, and the score is the mean probability of the true class.
- **GBC** (Pandy et al. 2022): -sum over ordered class pairs c1 != c2 of exp(-D_B(c1, c2)), the
  Bhattacharyya distance of per-class Gaussians with diagonal variances (floored at 1e-4) or, for
  ``spherical``, each class's variances averaged to one:
  D_B = sum((mu1 - mu2)^2 / s) / 8 + (sum log s - (sum log s1 + sum log s2) / 2) / 2, s = (s1 + s2) / 2.

- **NCTI** (Wang et al. 2023, the authors' ``NCTI_Score`` and ``get_transfer_scores.py``): PCA to 64
  components (capped by the features' width and count), then scikit-learn's LDA (eigen solver, shrinkage
  s = max(exp(-(sum of the top 32 explained variances)), 1e-10); the SVD solver when s hits the floor):
  seli = the nuclear norm of the centred LDA projection, ncc = the mean probability of the true class,
  vc = log of the sum over classes of the nuclear norms of their probability rows. The three parts are
  per (model, task); the score is a ranking of models on one task: each part min-max normalised over the
  models, ncc + seli - vc (``ncti_scores``).

Not computed (named in the report): EMMS, which embeds the class names with foreign language models
(GPT-2, BERT, a CLIP text tower) that are not available offline.
"""
from __future__ import annotations

import numpy as np

ESTIMATORS = ("hscore", "transrate", "gbc_spherical", "gbc_diagonal", "sfda", "ncti")
NCTI_PARTS = ("ncti_seli", "ncti_ncc", "ncti_vc")


def _labels(y) -> np.ndarray:
    y = np.asarray(y).astype(int).ravel()
    if y.min() < 0:
        raise ValueError(f"labels must be 0..K-1, got {y.min()}")
    return y


def h_score(x, y) -> float:
    """H-score of features ``x`` (N, d) for labels ``y`` (N,): tr(pinv(Cov(x)) Cov(g)), g_i the mean of
    x_i's class, covariances over samples with ddof 1."""
    x, y = np.asarray(x, dtype=np.float64), _labels(y)
    counts = np.bincount(y)
    means = np.zeros((len(counts), x.shape[1]))
    np.add.at(means, y, x)
    present = counts > 0
    means[present] /= counts[present, None]
    g = means[y]
    cov_x, cov_g = np.cov(x, rowvar=False, ddof=1), np.cov(g, rowvar=False, ddof=1)
    return float(np.trace(np.linalg.pinv(np.atleast_2d(cov_x), rcond=1e-15) @ np.atleast_2d(cov_g)))


def coding_rate(z, eps: float = 1e-4) -> float:
    """1/2 logdet(I + z^T z / (n eps)) for z (n, d), through the eigenvalues of the Gram matrix (the
    smaller of z^T z and z z^T: they share their non-zero eigenvalues)."""
    z = np.asarray(z, dtype=np.float64)
    n = len(z)
    gram = z.T @ z if z.shape[1] <= n else z @ z.T
    evals = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    return float(0.5 * np.log1p(evals / (n * eps)).sum())


def transrate(x, y, eps: float = 1e-4) -> float:
    """TransRate: R(Z) - (1/K) sum_c R(Z_c), Z the centred features, K = max label + 1 (a class without
    samples counts with rate 0, as the authors' loop over range(K))."""
    z, y = np.asarray(x, dtype=np.float64), _labels(y)
    z = z - z.mean(0, keepdims=True)
    k = int(y.max()) + 1
    return coding_rate(z, eps) - sum(coding_rate(z[y == c], eps) for c in range(k) if np.any(y == c)) / k


def gbc(x, y, gaussian: str = "spherical") -> float:
    """GBC: minus the sum over ordered pairs of distinct classes of exp(-Bhattacharyya distance) between
    their Gaussians (``diagonal`` variances floored at 1e-4, or ``spherical``: each class's floored
    variances averaged). Closer to 0: better separated classes. Vectorised over the K x K pairs."""
    if gaussian not in ("spherical", "diagonal"):
        raise ValueError(f"GBC gaussian must be 'spherical' or 'diagonal', got {gaussian!r}")
    x, y = np.asarray(x, dtype=np.float64), _labels(y)
    classes = np.unique(y)
    mu = np.stack([x[y == c].mean(0) for c in classes])
    var = np.stack([np.maximum(x[y == c].var(0), 1e-4) for c in classes])  # ddof 0, as np.var in the reference
    if gaussian == "spherical":
        var = var.mean(1, keepdims=True)  # one variance per class: the reference's log terms are then of that scalar, once
    s = (var[:, None, :] + var[None, :, :]) / 2  # (K, K, d) or (K, K, 1)
    first = ((mu[:, None, :] - mu[None, :, :]) ** 2 / s).sum(-1) / 8
    log_var = np.log(var).sum(-1)
    second = np.log(s).sum(-1) - 0.5 * (log_var[:, None] + log_var[None, :])
    distance = first + 0.5 * second
    off = ~np.eye(len(classes), dtype=bool)
    return float(-np.exp(-distance[off]).sum())


def _largest_eigenvalue(a: np.ndarray, iterations: int = 3) -> float:
    """The authors' ``iterative_A``: ``iterations`` rounds of two power steps from the row sums, then
    x^T A y (an estimate of the largest eigenvalue of a symmetric A)."""
    x = a.sum(1)
    for _ in range(iterations):
        t = a @ x
        y = t / np.linalg.norm(t)
        t = a @ y
        x = t / np.linalg.norm(t)
    return float(x @ a @ y)


def _discriminant(x: np.ndarray, y: np.ndarray, shrinkage=None) -> tuple[np.ndarray, float]:
    """The authors' ``SFDA.fit(x, y).predict_proba(x)``: (N, K) class probabilities and the shrinkage
    used. Within scatter S_w = sum_c prior_c Cov_c (ddof 0); s = max(exp(-5 lambda_max(S_w)), 1e-10)
    unless given; S_t the total covariance and S_w each shrunk towards (trace / d) I by s; the
    generalised eigenvectors of (S_t - S_w', S_w') (``scipy.linalg.eigh``), coef = M V V^T,
    intercept = -diag(M coef^T) / 2 + log prior; probabilities the softmax of x coef^T + intercept."""
    from scipy import linalg

    classes, y = np.unique(y, return_inverse=True)
    counts = np.bincount(y)
    priors = counts / len(y)
    means = np.zeros((len(classes), x.shape[1]))
    np.add.at(means, y, x)
    means /= counts[:, None]
    d = x.shape[1]
    sw = sum(priors[c] * np.atleast_2d(np.cov(x[y == c].T, bias=True)) for c in range(len(classes)))
    if shrinkage is None:
        shrinkage = max(np.exp(-5 * _largest_eigenvalue(sw)), 1e-10)

    def shrunk(cov):
        out = (1.0 - shrinkage) * cov
        out.flat[:: d + 1] += shrinkage * np.trace(cov) / d
        return out

    sw_shrunk = shrunk(sw)
    evals, evecs = linalg.eigh(shrunk(np.atleast_2d(np.cov(x.T, bias=True))) - sw_shrunk, sw_shrunk)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    scores = x @ coef.T + (-0.5 * np.diag(means @ coef.T) + np.log(priors))
    scores -= scores.max(1, keepdims=True)
    prob = np.exp(scores)
    return prob / prob.sum(1, keepdims=True), shrinkage


def sfda(x, y) -> float:
    """SFDA score of features ``x`` for labels ``y`` (0..K-1): see the module docstring; ``x`` is not
    changed (the reference moves its caller's array in place)."""
    x, y = np.array(x, dtype=np.float64), _labels(y)
    _, y = np.unique(y, return_inverse=True)  # the probability columns follow the classes present
    prob, shrinkage = _discriminant(x, y)
    prob = np.exp(prob) / np.exp(prob).sum(1, keepdims=True)  # the reference's second softmax ("soften")
    k = int(y.max()) + 1
    means = np.stack([x[y == c].mean(0) for c in range(k)])
    others = (means.sum(0, keepdims=True) - means) / (k - 1)  # per class: the mean of the other classes' means
    own = prob[np.arange(len(y)), y][:, None]
    x = own * x + (1 - own) * others[y]
    prob, _ = _discriminant(x, y, shrinkage)
    return float(prob[np.arange(len(y)), y].mean())


def ncti_parts(x, y) -> dict[str, float]:
    """The authors' ``NCTI_Score`` of features ``x`` for labels ``y``: {ncti_seli, ncti_ncc, ncti_vc} (see
    the module docstring; scikit-learn's PCA and LDA, as theirs)."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, y = np.asarray(x, dtype=np.float64), _labels(y)
    _, y = np.unique(y, return_inverse=True)
    pca = PCA(n_components=min(64, *x.shape))
    z = pca.fit_transform(x, y)
    temp = max(np.exp(-pca.explained_variance_[:32].sum()), 1e-10)
    clf = LinearDiscriminantAnalysis(solver="svd") if temp == 1e-10 else LinearDiscriminantAnalysis(solver="eigen", shrinkage=float(temp))
    low = clf.fit_transform(z, y)
    low = low - low.mean(0, keepdims=True)
    prob = clf.predict_proba(z)
    vc = np.log(sum(np.linalg.norm(prob[y == c], ord="nuc") for c in range(int(y.max()) + 1)))
    return {"ncti_seli": float(np.linalg.norm(low, ord="nuc")), "ncti_ncc": float(prob[np.arange(len(y)), y].mean()), "ncti_vc": float(vc)}


def ncti_scores(parts: dict) -> dict:
    """NCTI of each model on one task from its ``ncti_parts`` ({model: parts}): each part min-max normalised
    over the models (a part with no spread counts 0), ncc + seli - vc; one model: the raw sum, as the
    authors' ``get_transfer_scores.py``."""
    if len(parts) == 1:
        (model, p), = parts.items()
        return {model: p["ncti_ncc"] + p["ncti_seli"] - p["ncti_vc"]}

    def scaled(key):
        values = {m: p[key] for m, p in parts.items()}
        lo, hi = min(values.values()), max(values.values())
        return {m: (v - lo) / (hi - lo) if hi > lo else 0.0 for m, v in values.items()}

    seli, ncc, vc = scaled("ncti_seli"), scaled("ncti_ncc"), scaled("ncti_vc")
    return {m: ncc[m] + seli[m] - vc[m] for m in parts}


def estimators(x, y) -> dict[str, float]:
    """Every per-(model, task) estimator on L2-normalised features ``x`` (normalised here, as the authors'
    ``get_transfer_scores.py`` does before scoring) with labels ``y``: those of ``ESTIMATORS`` and NCTI's
    parts (its score needs every model: ``ncti_scores``)."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    return {"hscore": h_score(x, y), "transrate": transrate(x, y), "gbc_spherical": gbc(x, y, "spherical"),
            "gbc_diagonal": gbc(x, y, "diagonal"), "sfda": sfda(x, y), **ncti_parts(x, y)}
