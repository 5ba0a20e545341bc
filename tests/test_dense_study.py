"""The dense-probe ablation (seed 002): the data-efficiency interpolation, the claims on fabricated tables, and the ablation end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest

from infogap.ablations.runner.claims import HOLDS
from tests.helpers import tiny_end_to_end


def test_labels_to_match_interpolates_the_data_efficiency_curve_in_log_fraction():
    from infogap.ablations.dense.study import label_savings, labels_to_match

    curve = {0.01: 0.2, 0.1: 0.4, 1.0: 0.6}
    f, exact = labels_to_match(curve, 0.5)  # halfway from 0.4 to 0.6: halfway from log 0.1 to log 1
    assert exact and f == pytest.approx(10 ** -0.5)
    assert labels_to_match(curve, 0.1) == (0.01, False)  # reached at the smallest fraction: an upper bound
    assert np.isnan(labels_to_match(curve, 0.7)[0])  # never reached
    assert labels_to_match({0.01: 3.0, 0.1: 2.0, 1.0: 1.0}, 2.0, higher_better=False) == (pytest.approx(0.1), True)
    assert labels_to_match({0.01: 3.0, 0.1: 2.5, 1.0: 1.0}, 1.75, higher_better=False)[0] == pytest.approx(10 ** -0.5)

    rows = [{"encoder": "clip", "task": "object", "k": 0, "fraction": 1.0, "seed": s, "miou": 0.5} for s in (0, 1, 2)]
    rows += [{"encoder": "clip", "task": "object", "k": 5, "fraction": f, "seed": 0, "miou": m} for f, m in curve.items()]
    rows += [{"encoder": "clip", "task": "object", "k": 5, "fraction": f, "seed": 1, "miou": m + 0.4} for f, m in curve.items()]
    rows += [{"encoder": "clip", "task": "object", "k": 5, "fraction": f, "seed": 2, "miou": m - 0.2} for f, m in curve.items()]
    assert label_savings(rows, "object", 0, 5, (0.01, 0.1, 1.0)) == {0: "3.16x", 1: ">= 100x", 2: "never"}


def test_dense_claims_hold_only_when_captions_improve_dense_features():
    from infogap.ablations.dense.study import Dense

    dense = Dense()

    def rows(gain):
        out = []
        for s in (0, 1, 2):
            for k in (0, 5):
                for fraction in dense.settings.fractions:
                    scale = {0.01: 0.6, 0.1: 0.9, 1.0: 1.0}[fraction]
                    out += [{"encoder": "clip", "k": k, "seed": s, "task": t, "fraction": fraction,
                             "miou": scale * (0.5 + gain * k / 5) + 0.002 * s, "rmse": (0.3 - 0.3 * gain * k / 5) / scale + 0.001 * s}
                            for t in ("object", "colour")]
                    out += [{"encoder": "clip", "k": k, "seed": s, "task": "depth", "fraction": fraction,
                             "rmse": (0.3 - 0.3 * gain * k / 5) / scale + 0.001 * s, "miou": math.nan}]
            for fraction in dense.settings.fractions:
                out += [{"encoder": "mae", "seed": s, "task": t, "fraction": fraction, "miou": 0.5 + 0.001 * s, "rmse": 0.3 + 0.001 * s}
                        for t in dense.settings.tasks]
        return out

    good = dense.claims(rows(0.3), {"k": [0, 5]})
    assert [c.verdict for c in good] == [HOLDS] * 9, [c.line() for c in good]
    bad = dense.claims(rows(-0.2), {"k": [0, 5]})
    assert all(c.verdict == "does NOT hold" for c in bad), [c.line() for c in bad]


@pytest.mark.slow
def test_dense_tiny_end_to_end(tmp_path, capsys):
    """3 tasks x 3 label fractions per encoder: 2 trained runs, then the random and MAE encoders of seed 0."""
    _, rows, results = tiny_end_to_end("dense", tmp_path, capsys)
    report = (results / "report.md").read_text()
    assert len(rows) == 4 * 9 and {r["encoder"] for r in rows} == {"clip", "random", "mae"}
    assert "runs finished: 2 of 2 " in report  # runs, not rows (36 of them here)
    assert all(r["k"] == "" for r in rows if r["encoder"] != "clip") and all(r["k"] != "" for r in rows if r["encoder"] == "clip")
    assert all(0 <= float(r["miou"]) <= 1 for r in rows if r["task"] != "depth") and all(float(r["rmse"]) > 0 for r in rows if r["task"] == "depth")
    assert (results / "baselines" / "seed0" / "mae.ckpt").is_file() and (results / "dense_probes.png").is_file()
