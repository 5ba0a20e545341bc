"""Every metric against a brute-force O(N^2) float64 reference, including degenerate inputs."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from infogap.train import metrics as M
from tests.helpers.processes import cli, in_process

TOL = 1e-6


def _unit(rng, n, d, shift=0.0):
    z = rng.standard_normal((n, d)) + shift
    return z / np.linalg.norm(z, axis=1, keepdims=True)


@pytest.fixture(params=[0, 1])
def data(request):
    """Random normalised pairs with a gap (text shifted), labels for 3 factors, one singleton class."""
    rng = np.random.default_rng(request.param)
    n, d = 97, 12
    x = _unit(rng, n, d)
    y = _unit(rng, n, d, shift=0.7) * 0.5 + x * 0.5
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    labels = {"object": rng.integers(0, 4, n), "colour": rng.integers(0, 3, n), "size": rng.integers(0, 2, n)}
    labels["object"][0] = 4  # a class with a single sample
    return x, y, labels


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Force several chunks so the streaming code paths are the ones tested."""
    monkeypatch.setattr(M, "ROW_CHUNK", 10)
    monkeypatch.setattr(M, "PAIR_TILE", 10)


# --- brute-force references -------------------------------------------------------------------
def ref_rmg(x, y):
    n = len(x)
    d = lambda u, v: (1 - u @ v) / 2  # noqa: E731
    a = np.mean([d(x[i], y[i]) for i in range(n)])
    off = [(i, j) for i in range(n) for j in range(n) if i != j]
    bi = np.mean([d(x[i], x[j]) for i, j in off])
    bt = np.mean([d(y[i], y[j]) for i, j in off])
    return a / (a + (bi + bt) / 2)


def ref_uniformity(z, t=2.0):
    n = len(z)
    vals = [math.exp(-t * np.sum((z[i] - z[j]) ** 2)) for i in range(n) for j in range(n) if i != j]
    return math.log(np.mean(vals))


def ref_entropy(q, k, s):
    logits = s * q @ k.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return float(np.mean(-(p * np.log(p)).sum(1)))


def ref_moad(z, labels, obj="object"):
    n = len(z)
    sim = z @ z.T

    def term(lab):
        same = [sim[i, j] for i in range(n) for j in range(n) if i != j and lab[i] == lab[j]]
        diff = [sim[i, j] for i in range(n) for j in range(n) if i != j and lab[i] != lab[j]]
        return np.mean(same) - np.mean(diff)

    out = {f: term(labels[obj]) - term(lab) for f, lab in labels.items() if f != obj}
    out["mean"] = np.mean(list(out.values()))
    return out


def ref_recall(q, k, ks=(1, 5, 10)):
    sim = q @ k.T
    ranks = np.array([np.sum(np.delete(sim[i], i) >= sim[i, i]) for i in range(len(q))])
    return {kk: np.mean(ranks < kk) for kk in ks}


# --- tests ------------------------------------------------------------------------------------
def test_l2m_l2i_alignment_match_their_definitions(data):
    x, y, _ = data
    assert M.l2m(x, y) == pytest.approx(np.linalg.norm(x.mean(0) - y.mean(0)), abs=TOL)
    assert M.l2i(x, y) == pytest.approx(np.mean(np.linalg.norm(x - y, axis=1)), abs=TOL)
    assert M.alignment(x, y) == pytest.approx(np.mean(np.sum((x - y) ** 2, 1)), abs=TOL)


def test_relative_modality_gap_matches_pairwise_reference(data):
    x, y, _ = data
    assert M.relative_modality_gap(x, y) == pytest.approx(ref_rmg(x, y), abs=TOL)


def test_uniformity_matches_pairwise_reference(data):
    x, y, _ = data
    assert M.uniformity(x) == pytest.approx(ref_uniformity(x), abs=TOL)
    assert M.uniformity(y) == pytest.approx(ref_uniformity(y), abs=TOL)
    assert M.uniformity_union(x, y) == pytest.approx(ref_uniformity(np.concatenate([x, y])), abs=TOL)


@pytest.mark.parametrize("scale", [1.0, 14.3, 100.0])
def test_logit_entropy_both_directions(data, scale):
    x, y, _ = data
    i2t, t2i = M.logit_entropy(x, y, scale)
    assert i2t == pytest.approx(ref_entropy(x, y, scale), abs=TOL)
    assert t2i == pytest.approx(ref_entropy(y, x, scale), abs=TOL)


def test_moad_per_factor_and_mean_on_all_cross_pairs(data):
    x, y, labels = data
    for z in (x, y):
        got, want = M.moad(z, labels), ref_moad(z, labels)
        assert set(got) == set(want) == {"colour", "size", "mean"}
        for f in want:
            assert got[f] == pytest.approx(want[f], abs=TOL), f


def test_moad_image_and_text_each_read_their_own_modality(data):
    """The suite's ``moad_image`` is MOAD of the image embeddings and ``moad_text`` of the text embeddings
    (x and y differ here, so taking the other modality, or one modality for both, is caught)."""
    x, y, labels = data
    out = M.compute_metrics(x, y, labels, metrics=["moad"])
    for name, z in (("image", x), ("text", y)):
        want = ref_moad(z, labels)
        assert out[f"moad_{name}"] == pytest.approx(want["mean"], abs=TOL)
        for f in ("colour", "size"):
            assert out[f"moad_{name}_{f}"] == pytest.approx(want[f], abs=TOL), (name, f)
    assert abs(ref_moad(x, labels)["mean"] - ref_moad(y, labels)["mean"]) > 100 * TOL  # the two modalities really differ here


def test_retrieval_recall_both_directions(data):
    x, y, _ = data
    got = M.retrieval_recall(x, y)
    for k, v in ref_recall(x, y).items():
        assert got[f"recall_i2t@{k}"] == pytest.approx(v, abs=TOL)
    for k, v in ref_recall(y, x).items():
        assert got[f"recall_t2i@{k}"] == pytest.approx(v, abs=TOL)


def test_gap_dimensions_top_share_and_removal(data):
    x, y, _ = data
    delta = np.abs(x.mean(0) - y.mean(0))
    np.testing.assert_allclose(M.gap_dimensions(x, y).numpy(), delta, atol=TOL)
    share = M.gap_top_share(x, y, ns=(1, 2, 5, 10))
    order = np.sort(delta**2)[::-1]
    for n in (1, 2, 5, 10):
        assert share[n] == pytest.approx(order[:n].sum() / order.sum(), abs=TOL)
    xr, yr = M.remove_gap_dims(x, y, 3)
    top = np.argsort(-delta)[:3]
    assert np.allclose(xr.numpy()[:, top], 0) and np.allclose(yr.numpy()[:, top], 0)
    np.testing.assert_allclose(np.linalg.norm(xr.numpy(), axis=1), 1.0, atol=1e-12)
    keep = np.setdiff1d(np.arange(x.shape[1]), top)
    ref = x[:, keep] / np.linalg.norm(x[:, keep], axis=1, keepdims=True)
    np.testing.assert_allclose(xr.numpy()[:, keep], ref, atol=TOL)
    assert M.l2m(xr, yr) < M.l2m(x, y)


def test_zero_shot_accuracy(data):
    x, y, labels = data
    rng = np.random.default_rng(5)
    classes = _unit(rng, 5, x.shape[1])
    lab = labels["object"]
    assert M.zero_shot_accuracy(x, classes, lab) == pytest.approx(np.mean((x @ classes.T).argmax(1) == lab), abs=TOL)


def test_neighbourhood_kendall_distance():
    rng = np.random.default_rng(3)
    means = _unit(rng, 6, 8)
    assert M.neighbourhood_kendall_distance(means, means) == 0.0
    prompts = _unit(rng, 6, 8)
    sa, sb = means @ means.T, prompts @ prompts.T
    ref = []
    for c in range(6):
        o = [j for j in range(6) if j != c]
        pairs = [(a, b) for i, a in enumerate(o) for b in o[i + 1:]]
        ref.append(np.mean([(sa[c, a] - sa[c, b]) * (sb[c, a] - sb[c, b]) < 0 for a, b in pairs]))
    assert M.neighbourhood_kendall_distance(means, prompts) == pytest.approx(np.mean(ref), abs=TOL)


def test_degenerate_identical_embeddings():
    x = np.tile(_unit(np.random.default_rng(0), 1, 8), (20, 1))
    y = x.copy()
    assert M.relative_modality_gap(x, y) == 0.0
    assert M.l2m(x, y) == pytest.approx(0.0, abs=1e-12)
    assert M.uniformity(x) == pytest.approx(0.0, abs=1e-12)
    assert M.logit_entropy(x, y, 100.0)[0] == pytest.approx(math.log(20), abs=TOL)
    rec = M.retrieval_recall(x, y)
    assert rec["recall_i2t@1"] == 0.0 and rec["recall_t2i@10"] == 0.0  # 19 ties each: ties count against
    y2 = np.tile(_unit(np.random.default_rng(1), 1, 8), (20, 1))
    assert M.relative_modality_gap(x, y2) == pytest.approx(1.0)  # no spread within a modality: all gap


def test_moad_undefined_without_pairs_is_nan():
    x = _unit(np.random.default_rng(0), 6, 4)
    out = M.moad(x, {"object": np.arange(6), "colour": np.zeros(6, int)})
    assert math.isnan(out["colour"])


def test_suite_keys_and_selection(data):
    x, y, labels = data
    out = M.compute_metrics(x, y, labels, logit_scale=50.0)
    assert set(out) == set(M.metric_keys(list(labels)))
    assert {"l2m", "rmg", "moad_image_colour", "moad_text", "recall_t2i@10", "gap_top5_share", "uniformity_all"} <= set(out)
    assert out["rmg"] == pytest.approx(ref_rmg(x, y), abs=TOL)
    assert list(M.compute_metrics(x, y, labels, metrics=["l2m", "moad_image"])) == ["l2m", "moad_image"]
    assert all(k.startswith("recall") for k in M.compute_metrics(x, y, metrics=["recall"]))
    with pytest.raises(ValueError, match="unknown metric 'gapp'"):
        M.compute_metrics(x, y, metrics=["gapp"])


def test_suite_neighbourhood_agreement_uses_image_class_means(data):
    x, y, labels = data
    rng = np.random.default_rng(9)
    prompts = _unit(rng, 5, x.shape[1])
    out = M.compute_metrics(x, y, labels, class_embeddings={"object": prompts})
    means = np.stack([x[labels["object"] == c].mean(0) for c in range(5)])
    assert out["neighbourhood_object"] == pytest.approx(M.neighbourhood_kendall_distance(means, prompts), abs=TOL)
    assert out["zeroshot_object_acc"] == pytest.approx(M.zero_shot_accuracy(x, prompts, labels["object"]), abs=TOL)
    two = M.compute_metrics(x, y, labels, class_embeddings={"size": _unit(rng, 2, x.shape[1])})
    assert "zeroshot_size_acc" in two and "neighbourhood_size" not in two  # no ranking with two classes


def test_float32_inputs_agree_with_float64(data):
    x, y, labels = data
    a = M.compute_metrics(x.astype(np.float32), y.astype(np.float32), labels)
    b = M.compute_metrics(x, y, labels)
    for k in b:
        assert a[k] == pytest.approx(b[k], abs=2e-4), k


# --- the command line -------------------------------------------------------------------------
def test_metrics_cli_prints_one_json_object(tmp_path, data, capsys):
    """``infogap metrics`` as a process (what a script pipes), and a selection in this process."""
    x, y, labels = data
    path = tmp_path / "emb.npz"
    np.savez(path, image=x * 3.0, text=y, logit_scale=20.0, **{f"labels_{f}": v for f, v in labels.items()})
    proc = cli("metrics", "--embeddings", str(path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "not unit-norm" in proc.stderr  # the image rows were scaled by 3 and get normalised
    assert out["rmg"] == pytest.approx(ref_rmg(x, y), abs=TOL)
    assert out["entropy_i2t"] == pytest.approx(ref_entropy(x, y, 20.0), abs=TOL)
    for key in ("l2m", "l2i", "alignment", "uniformity_image", "uniformity_text", "uniformity_all", "entropy_t2i",
                "moad_image", "moad_text", "moad_image_colour", "moad_text_size", "recall_i2t@1", "recall_t2i@10",
                "gap_top1_share", "gap_top10_share"):
        assert key in out
    sub = in_process(capsys, "metrics", "--embeddings", str(path), "--metrics", "l2m,rmg")
    assert list(json.loads(sub.stdout)) == ["l2m", "rmg"]


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(image=np.ones((5, 3)), text=np.ones((5, 4))), "same shape"),
        (dict(image=np.full((5, 3), np.nan), text=np.ones((5, 3))), "NaN"),
        (dict(image=np.eye(5, 3) + 0.1, text=np.eye(5, 3) + 0.1, labels_object=np.zeros(4, int)), "'labels_object' has 4 entries, expected 5"),
        (dict(text=np.ones((5, 3))), "missing array 'image'"),
    ],
)
def test_metrics_cli_rejects_bad_input(tmp_path, arrays, message, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    proc = in_process(capsys, "metrics", "--embeddings", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and str(path) in proc.stderr


def test_torch_and_numpy_inputs_agree(data):
    x, y, _ = data
    assert M.relative_modality_gap(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(M.relative_modality_gap(x, y), abs=1e-12)
