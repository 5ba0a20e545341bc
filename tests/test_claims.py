"""Claims that can fail: statistics over seeds against hand computations, verdicts for every case
(holds, does not hold, direction only, not tested), and axis names that a metric can never overwrite."""
from __future__ import annotations

import math

import pytest
import yaml

from infogap.ablations import imbalance, presence, temperature
from infogap.ablations.analysis import HOLDS, NOT_TESTED, compare, mean_ci, paired_claim
from infogap.ablations.core import format_table, load_ablation
from tests.helpers import ROOT


def test_mean_and_t_interval_by_hand():
    m, (lo, hi) = mean_ci([1.0, 2.0, 3.0])
    # sd = 1, se = 1/sqrt(3), t_{0.975, 2} = 4.302653
    assert m == 2.0 and hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and m - lo == pytest.approx(hi - m)
    one = mean_ci([0.5])
    assert one[0] == 0.5 and math.isnan(one[1][0]) and math.isnan(one[1][1])  # one seed: no interval
    assert math.isnan(mean_ci([])[0]) and mean_ci([1.0, float("nan"), 3.0])[0] == 2.0


def test_paired_claim_statistics_by_hand():
    c = paired_claim("x falls", {0: -0.30, 1: -0.40, 2: -0.35}, "negative")
    # mean -0.35, sd 0.05, se 0.05/sqrt(3); t = -12.124, df 2; one-sided p = P(T_2 < t) = 0.003367
    assert c.verdict == HOLDS and c.seeds == 3
    assert c.mean == pytest.approx(-0.35)
    assert c.p_value == pytest.approx(0.0033670, rel=1e-3)
    assert c.effect_size == pytest.approx(-7.0)
    assert c.ci[0] == pytest.approx(-0.35 - 4.302653 * 0.05 / math.sqrt(3), rel=1e-6)
    assert "3 seeds" in c.detail and "p = 0.00337" in c.detail


def test_paired_claim_verdicts():
    mixed = paired_claim("x falls", {0: -0.2, 1: 0.1, 2: -0.05}, "negative")
    assert mixed.verdict == "does NOT hold" and mixed.p_value > 0.05
    wrong = paired_claim("x rises", {0: -0.2, 1: -0.3}, "positive")
    assert wrong.verdict == "does NOT hold" and wrong.p_value > 0.5
    assert paired_claim("x falls", {0: -0.2}, "negative").verdict == "direction only (right)"
    assert paired_claim("x falls", {0: 0.2}, "negative").verdict == "direction only (wrong)"
    assert paired_claim("x falls", {}, "negative").verdict == NOT_TESTED
    same = paired_claim("x falls", {0: -0.1, 1: -0.1}, "negative")  # zero variance: documented p
    assert same.verdict == HOLDS and same.p_value == 0.0
    with pytest.raises(ValueError, match="expect"):
        paired_claim("x", {0: 1.0}, "down")


ROWS = [{"k": k, "seed": s, "rmg": r} for (k, s, r) in [(0, 0, 0.42), (0, 1, 0.45), (0, 2, 0.42), (5, 0, 0.07), (5, 1, 0.09), (5, 2, 0.07)]]


def test_compare_pairs_by_seed_and_a_missing_arm_is_not_tested():
    c = compare(ROWS, "k", 0, 5, "rmg", "negative")
    assert c.verdict == HOLDS and c.mean == pytest.approx(-(0.35 + 0.36 + 0.35) / 3)
    assert "seed 1: 0.450 -> 0.090" in c.detail
    only_k0 = [r for r in ROWS if r["k"] == 0]
    assert compare(only_k0, "k", 0, 5, "rmg", "negative").verdict == NOT_TESTED
    # seeds without both arms are left out, not paired across seeds
    assert compare([ROWS[0], ROWS[4]], "k", 0, 5, "rmg", "negative").verdict == NOT_TESTED


def test_ablation_claims_on_tiny_tables():
    rows = [{"k": k, "seed": s, "rmg": 0.4 - 0.06 * k + 0.01 * s, "l2m": 0.5 - 0.05 * k, "moad_image": 0.6 - 0.1 * k + 0.02 * s,
             "moad_text": 0.3 - 0.03 * k, "attr_acc_mean": 0.4 + 0.06 * k - 0.01 * s, "entropy_i2t": 5 - 0.4 * k + 0.1 * s}
            for k in (0, 5) for s in (0, 1, 2)]
    verdicts = [c.verdict for c in imbalance.claims(rows, {"k": [0, 1, 2, 3, 4, 5]})]
    assert verdicts == [HOLDS] * 6
    one_seed = [r for r in rows if r["seed"] == 0]
    assert {c.verdict for c in imbalance.claims(one_seed, {"k": [0, 5]})} == {"direction only (right)"}
    # k = 5 runs missing: every claim is "not tested", never "holds"
    assert {c.verdict for c in imbalance.claims([r for r in rows if r["k"] == 0], {"k": [0, 5]})} == {NOT_TESTED}
    # presence: the colour arm is missing, the thickness arm is there
    prow = [{"always_present": a, "seed": 0, "moad_image_colour": 0.3, "moad_image_thickness": v}
            for a, v in (("object", 0.5), ("thickness", -0.2))]
    got = {c.claim.split()[0]: c.verdict for c in presence.claims(prow, {"always_present": ["object", "colour", "thickness"]})}
    assert got == {"moad_image_colour": NOT_TESTED, "moad_image_thickness": "direction only (right)"}
    # temperature: a frozen arm alone tests its own entropy claim; the comparison is not tested
    trow = [{"temperature_mode": "frozen", "seed": s, "entropy_growth": 0.5 + s / 10, "entropy_i2t_start": 2.0, "entropy_i2t": 2.5,
             "rmg_growth": 0.3} for s in (0, 1, 2)]
    tv = [c.verdict for c in temperature.claims(trow, {"temperature_mode": ["learnable", "frozen"]})]
    assert tv == [NOT_TESTED, HOLDS, NOT_TESTED]


def test_table_cells_carry_the_t_interval():
    groups = [((0,), [r for r in ROWS if r["k"] == 0]), ((5,), [ROWS[3]])]
    table = format_table(["k"], ["rmg"], groups).splitlines()
    m, (lo, hi) = mean_ci([0.42, 0.45, 0.42])
    assert table[2] == f"| 0 | 3 | {m:.3f} [{lo:.3f}, {hi:.3f}] |"
    assert table[3] == "| 5 | 1 | 0.070 |"


def test_an_axis_named_like_a_metric_is_refused_at_load(tmp_path):
    spec = yaml.safe_load((ROOT / "configs/ablations/temperature.yaml").read_text())
    spec["stages"][1]["axes"] = {"temperature": spec["stages"][1]["axes"]["temperature_mode"]}
    path = tmp_path / "clash.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="axis 'temperature' of stage 'finetune' is also the name of a metric"):
        load_ablation(str(path))
    for name in ("rmg", "zeroshot_object_acc", "logit_scale", "attr_acc_mean", "seed"):
        spec["stages"][1]["axes"] = {name: {"key": "model.temperature", "values": ["learnable"]}}
        path.write_text(yaml.safe_dump(spec))
        with pytest.raises(ValueError, match=f"axis '{name}'"):
            load_ablation(str(path))
    assert "temperature_mode" in load_ablation("temperature").stages[1]["axes"]
