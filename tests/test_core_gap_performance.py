"""Gap vs performance across models: Kendall τ_b and its permutation p-value against brute-force
enumeration, the analysis over run directories (all models and within data groups), and
``infogap embed`` on randomly initialised local checkpoints feeding ``infogap metrics`` and the analysis."""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from infogap.ablations.core.gap_performance import kendall_tau_b, kendall_test
from infogap.cli import main as infogap
from tests.helpers.data import write_photo_shards


def _brute_force(x, y) -> tuple[float, float]:
    """τ_b of scipy and the two-sided p over every reordering of y (as scipy.stats.permutation_test
    counts it: twice the smaller tail, at most 1)."""
    observed = stats.kendalltau(x, y).statistic
    null = np.array([stats.kendalltau(x, np.array(p)).statistic for p in itertools.permutations(y)])
    eps = 1e-12
    less, greater = np.mean(null <= observed + eps), np.mean(null >= observed - eps)
    return observed, min(1.0, 2 * min(less, greater))


@pytest.mark.parametrize("x, y", [
    ([0.42, 0.23, 0.20, 0.19, 0.18, 0.08], [0.85, 0.87, 0.80, 0.73, 0.55, 0.49]),
    ([1, 2, 3, 4, 5, 6, 7], [2, 1, 4, 3, 6, 5, 7]),
    ([1, 1, 2, 3, 5, 8, 13, 21], [3, 3, 1, 4, 1, 5, 9, 2]),  # ties on both sides, n = 8
])
@pytest.mark.slow
def test_kendall_tau_and_p_against_brute_force(x, y):
    tau, p, exact = kendall_test(x, y)
    ref_tau, ref_p = _brute_force(np.array(x, float), np.array(y, float))
    assert exact and tau == pytest.approx(ref_tau, abs=1e-12) and p == pytest.approx(ref_p, abs=1e-9)


def test_tau_vectorised_and_degenerate():
    x = np.array([3.0, 1.0, 2.0, 5.0])
    ys = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    assert kendall_tau_b(x, ys) == pytest.approx([stats.kendalltau(x, y).statistic for y in ys])
    assert np.isnan(kendall_tau_b(x, np.ones(4)))
    x8, y8 = [1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4, 3, 6, 5, 8, 7]
    tau, p_exact, exact = kendall_test(x8, y8)
    tau_s, p_sampled, exact_s = kendall_test(x8, y8, n_resamples=20_000, seed=1)  # 8! = 40320 > 20000: sampled
    assert exact and not exact_s and tau_s == tau and abs(p_sampled - p_exact) < 0.01
    assert kendall_test(x8, y8, n_resamples=20_000, seed=1)[1] == p_sampled  # reproducible for a seed
    tau, p, exact = kendall_test([1, 2], [2, 1])  # two models: no p-value
    assert tau == -1.0 and np.isnan(p) and not exact


def _fake_run(root: Path, name: str, k: int, seed: int, rmg: float, acc: float) -> Path:
    run = root / name
    run.mkdir(parents=True)
    metrics = {"rmg": rmg, "l2m": 2 * rmg, "l2i": 1 - rmg, "recall_i2t@1": acc / 2, "recall_t2i@1": acc / 3,
               "zeroshot_object_acc": acc, "zeroshot_colour_acc": 1 - acc}
    (run / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    config = {"seed_everything": seed, "data": {"class_path": "infogap.data.synthetic.SyntheticDataModule",
                                                "init_args": {"k": k, "always_present": "object", "seed": seed, "batch_size": 128}}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_analysis_over_runs_all_and_within_data_groups(tmp_path, capsys):
    values = {(0, 0): (0.40, 0.60), (0, 1): (0.45, 0.55), (0, 2): (0.42, 0.70),
              (5, 0): (0.08, 0.50), (5, 1): (0.07, 0.45), (5, 2): (0.09, 0.40)}
    runs = [_fake_run(tmp_path / "runs", f"k{k}_s{s}", k, s, *v) for (k, s), v in values.items()]
    out = tmp_path / "gp"
    assert infogap(["analyze", "gap-performance", *map(str, runs), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "gap_performance.csv").open()))
    assert {r["scope"] for r in rows} == {"all", "group: k=0 always_present=object", "group: k=5 always_present=object"}
    perf = ["recall_i2t@1", "recall_t2i@1", "zeroshot_colour_acc", "zeroshot_object_acc"]
    assert len(rows) == 3 * 3 * len(perf)  # 3 scopes x 3 gap measures
    row = next(r for r in rows if r["scope"] == "all" and r["gap"] == "rmg" and r["performance"] == "zeroshot_object_acc")
    rmg, acc = zip(*values.values())
    assert float(row["tau"]) == pytest.approx(stats.kendalltau(rmg, acc).statistic) and row["n"] == "6" and row["exact"] == "True"
    within = next(r for r in rows if r["scope"].startswith("group: k=5") and r["gap"] == "rmg" and r["performance"] == "zeroshot_object_acc")
    assert float(within["tau"]) == pytest.approx(stats.kendalltau([0.08, 0.07, 0.09], [0.50, 0.45, 0.40]).statistic)
    assert len(list(out.glob("scatter_*.png"))) == 3 * len(perf)
    assert "| all | rmg | zeroshot_object_acc | 6 |" in capsys.readouterr().out
    assert infogap(["analyze", "gap-performance", *map(str, runs[:2]), "--out", str(out)]) == 2  # too few models
    assert "at least 3" in capsys.readouterr().err


def test_embed_random_local_checkpoints_then_metrics_and_analysis(tmp_path, capsys):
    from infogap.models import build_model

    shards = tmp_path / "shards"
    shards.mkdir()
    write_photo_shards(shards, n_shards=2, per_shard=6, corrupt=True)
    files = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        ckpt = tmp_path / f"random{seed}.pt"
        torch.save(build_model("tiny-bpe").state_dict(), ckpt)
        out = tmp_path / "emb" / f"random{seed}.npz"
        assert infogap(["embed", "--model", "tiny-bpe", "--pretrained", str(ckpt), "--shards", f"{shards}/photos-{{000000..000001}}.tar",
                        "--out", str(out), "--n", "100", "--batch-size", "5", "--group", "random-init"]) == 0, capsys.readouterr().err
        files.append(out)
    emb = np.load(files[0])
    assert emb["image"].shape == emb["text"].shape == (12, 64)  # 12 good photos; the corrupt one and the captionless one skipped
    assert np.allclose(np.linalg.norm(emb["image"], axis=1), 1, atol=1e-5) and str(emb["group"]) == "random-init"
    assert not np.allclose(np.load(files[0])["image"], np.load(files[1])["image"])  # the checkpoints were loaded
    capsys.readouterr()
    assert infogap(["metrics", "--embeddings", str(files[0])]) == 0
    metrics = json.loads(capsys.readouterr().out)
    x, y = emb["image"].astype(np.float64), emb["text"].astype(np.float64)
    d = lambda u, v: (1 - u @ v.T) / 2  # noqa: E731 - RMG by its definition, over every pair
    n = len(x)
    a, off = np.mean(np.diag(d(x, y))), ~np.eye(n, dtype=bool)
    assert metrics["rmg"] == pytest.approx(a / (a + (d(x, x)[off].mean() + d(y, y)[off].mean()) / 2), abs=1e-5)
    assert metrics["recall_i2t@1"] == pytest.approx(np.mean([np.sum(x[i] @ y.T >= x[i] @ y[i]) == 1 for i in range(n)]), abs=1e-9)
    out = tmp_path / "gp"
    assert infogap(["analyze", "gap-performance", *map(str, files), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "gap_performance.csv").open()))
    assert {r["scope"] for r in rows} == {"all", "group: random-init"} and {r["performance"] for r in rows} == {"recall_i2t@1", "recall_t2i@1"}
    assert infogap(["embed", "--model", "tiny-bpe", "--shards", f"{shards}/photos-{{000000..000001}}.tar", "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
