"""Claims that can fail: statistics over seeds against hand computations, verdicts for every case
(holds, does not hold, direction only, not tested), and axis names that a metric can never overwrite."""
from __future__ import annotations

import math
import re

import pytest
import yaml

from infogap.ablations import imbalance, presence, temperature
from infogap.ablations.analysis import HOLDS, NOT_TESTED, compare, mean_ci, other_points, paired_claim, per_seed
from infogap.ablations.core import add_sweep, format_table, load_ablation, run_claims
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


def test_the_verdict_threshold_is_a_strict_p_below_0_05():
    """p = 0.077 (one-sided t, df 2, hand-checked with scipy) is no effect at alpha = 0.05; p = 0.05 exactly
    is not below it; a significant p with the wrong sign never holds."""
    from infogap.ablations.analysis import FAILS, effect_verdict

    near = paired_claim("x falls", {0: -0.3, 1: -0.2, 2: -0.03}, "negative")
    assert near.p_value == pytest.approx(0.077122, rel=1e-4) and near.mean < 0 and near.verdict == FAILS
    assert effect_verdict(True, 0.05) == FAILS and effect_verdict(True, 0.0499) == HOLDS
    assert effect_verdict(False, 0.001) == FAILS


def test_identical_differences_against_the_claimed_sign_have_p_one():
    wrong = paired_claim("x falls", {0: 0.1, 1: 0.1, 2: 0.1}, "negative")
    assert wrong.p_value == 1.0 and wrong.verdict == "does NOT hold"


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
    assert tv == [NOT_TESTED, NOT_TESTED, HOLDS, NOT_TESTED]  # learnable temperature moved, entropy x2, gap
    lrow = [{"temperature_mode": "learnable", "seed": s, "temperature_start": 0.04, "temperature": 0.05 + s / 100,
             "temperature_change": (0.05 + s / 100) / 0.04 - 1, "entropy_growth": 0.1 + s / 50, "entropy_i2t_start": 2.0,
             "entropy_i2t": 2.1 + s / 50, "rmg_growth": 0.1 - s / 20} for s in (0, 1, 2)]
    moved = temperature.claims(lrow + trow, {"temperature_mode": ["learnable", "frozen"]})
    assert moved[0].verdict == HOLDS and moved[0].mean == pytest.approx(0.02) and "0.0400 -> 0.0600 (+50%)" in moved[0].detail
    assert moved[3].verdict == HOLDS and moved[3].mean == pytest.approx(0.25)  # frozen 0.3 vs learnable 0.1, 0.05, 0.0


def test_two_rows_of_one_seed_are_an_error_not_a_silent_overwrite():
    rows = [{"k": 0, "max_steps": m, "seed": 0, "rmg": 0.4} for m in (600, 2400)]
    with pytest.raises(ValueError, match="two rows of seed 0 at k=0"):
        per_seed(rows, "k", 0)
    assert per_seed(rows, "k", 0, {"max_steps": 2400}) == {0: rows[1]}
    assert other_points({"k": [0, 5], "max_steps": [600, 2400]}, "k") == [{"max_steps": 600}, {"max_steps": 2400}]
    assert other_points({"k": [0, 5]}, "k") == [{}]


def _steps_rows():
    """Hand-made imbalance rows over k x training length, 3 seeds: the gap falls with k at every length;
    object accuracy at k = 5 rises with training, at k = 0 it does not."""
    acc = {(0, 600): 0.85, (0, 9600): 0.84, (5, 600): 0.48, (5, 9600): 0.80}
    return [{"k": k, "max_steps": m, "seed": s, "rmg": 0.4 - 0.06 * k + 0.01 * s, "l2m": 0.5 - 0.05 * k,
             "moad_image": 0.6 - 0.1 * k, "moad_text": 0.3 - 0.03 * k + 0.001 * s, "attr_acc_mean": 0.4 + 0.06 * k,
             "entropy_i2t": 5 - 0.4 * k + 0.1 * s, "zeroshot_object_acc": acc[k, m] + 0.01 * s * (k == 5) - 0.002 * s}
            for k in (0, 5) for m in (600, 9600) for s in (0, 1, 2)]


def test_a_sweep_axis_gets_every_claim_at_each_of_its_points():
    ablation = add_sweep(load_ablation("imbalance"), ["trainer.max_steps=600,9600"])
    assert ablation.swept == ("max_steps",)
    claims = run_claims(ablation, ablation.hooks(), [r for r in _steps_rows()])
    own = [c for c in claims if "[max_steps=" in c.claim]
    assert len(own) == 12 and {c.verdict for c in own} == {HOLDS}
    assert [c.claim for c in own[:6]] == [c.claim + " [max_steps=600]" for c in imbalance.claims(_steps_rows()[:1], {"k": [0, 5]})]
    recovery = {c.claim: c for c in claims if "training steps" in c.claim}
    assert recovery["object accuracy at k=5 rises from 600 to 9600 training steps"].verdict == HOLDS
    assert recovery["object accuracy at k=5 rises from 600 to 9600 training steps"].mean == pytest.approx(0.32)
    assert recovery["object accuracy at k=0 rises from 600 to 9600 training steps"].verdict == "does NOT hold"
    # one training length missing: its claims and the recovery claims are "not tested"
    short_only = [r for r in _steps_rows() if r["max_steps"] == 600]
    verdicts = {c.claim: c.verdict for c in run_claims(ablation, ablation.hooks(), short_only)}
    assert {v for c, v in verdicts.items() if "max_steps=9600" in c or "training steps" in c} == {NOT_TESTED}


@pytest.mark.parametrize("item, message", [
    ("trainer.max_steps", "--sweep expects KEY=v1,v2"),
    ("data.k=0,5", "already sweeps 'k'"),
    ("model.temperature=learnable,frozen", "axis 'temperature' is also the name of a metric"),
])
def test_bad_sweeps_are_named(item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_ablation("imbalance", [item])


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
    with pytest.raises(ValueError, match="stage 'finetune': axis 'temperature' is also the name of a metric"):
        load_ablation(str(path))
    for name in ("rmg", "zeroshot_object_acc", "logit_scale", "attr_acc_mean", "seed"):
        spec["stages"][1]["axes"] = {name: {"key": "model.temperature", "values": ["learnable"]}}
        path.write_text(yaml.safe_dump(spec))
        with pytest.raises(ValueError, match=f"axis '{name}'"):
            load_ablation(str(path))
    assert "temperature_mode" in load_ablation("temperature").stages[1]["axes"]


# --- each study's claims on fabricated 3-seed tables: the claimed effect holds, its absence does not -----
def _by_claim(claims) -> dict[str, object]:
    return {c.claim: c for c in claims}


def test_posthoc_claims_hold_only_when_the_shift_closes_the_gap_and_leaves_accuracy():
    from infogap.ablations import posthoc

    def rows(text_l2m, gain):
        return [{"k": 0, "shift": shift, "seed": s, "l2m": 0.6 if shift == "none" else text_l2m + 0.01 * s,
                 "zeroshot_object_acc": 0.80 + (gain + 0.002 * s if shift != "none" else 0.0)}
                for shift in ("none", "text", "image") for s in (0, 1, 2)]

    good = _by_claim(posthoc.claims(rows(0.05, 0.0), {"k": [0]}))
    assert good["the text shift closes most of the gap (k=0)"].verdict == HOLDS
    assert good["no shift raises object accuracy by more than 1 point (k=0)"].verdict == HOLDS
    # L2M after the shift above half of L2M before (0.6 -> 0.5): not "most of the gap"; a 5-point gain is a gain
    bad = _by_claim(posthoc.claims(rows(0.5, 0.05), {"k": [0]}))
    assert bad["the text shift closes most of the gap (k=0)"].verdict == "does NOT hold"
    assert bad["no shift raises object accuracy by more than 1 point (k=0)"].verdict == "does NOT hold"


def test_gap_dims_claim_holds_only_when_the_top_ten_dimensions_more_than_halve_l2m():
    from infogap.ablations import gap_dims

    def rows(after):
        return [{"k": 0, "n": n, "seed": s, "l2m": 0.6 + 0.01 * s if n == 0 else after + 0.01 * s} for n in (0, 10) for s in (0, 1, 2)]

    assert gap_dims.claims(rows(0.1), {"k": [0]})[0].verdict == HOLDS
    assert gap_dims.claims(rows(0.45), {"k": [0]})[0].verdict == "does NOT hold"  # 0.6 -> 0.45: a quarter, not half


def test_init_gap_claims_hold_only_for_a_large_start_that_training_closes():
    from infogap.ablations import init_gap

    def rows(start, end):
        return ([{"init": "large_gap", "seed": s, "rmg_start": start + 0.01 * s, "rmg": end + 0.005 * s} for s in (0, 1, 2)]
                + [{"init": "random", "seed": s, "rmg_start": 0.8, "rmg": 0.08 + 0.002 * s} for s in (0, 1, 2)])

    good = [c.verdict for c in init_gap.claims(rows(0.4, 0.08), {"init": ["random", "large_gap"]})]
    assert good == [HOLDS, HOLDS]
    # a start below twice the trained gap is not large; an end above half the start is not closed
    bad = [c.verdict for c in init_gap.claims(rows(0.12, 0.1), {"init": ["random", "large_gap"]})]
    assert bad == ["does NOT hold", "does NOT hold"]


def test_heads_claims_hold_only_for_object_heads_at_small_k_and_costly_high_ccs_pruning():
    from infogap.ablations import heads

    def rows(share_drop, high_cost):
        out = []
        for k in (0, 5):
            for s in (0, 1, 2):
                out.append({"k": k, "seed": s, "heads_object_share": 0.9 - share_drop * (k == 5) + 0.01 * s,
                            "object_drop_high": 0.05 + high_cost + 0.003 * s, "object_drop_low": 0.05 + 0.001 * s,
                            "object_drop_random": 0.05 - 0.001 * s, "attr_drop_high": 0.02 + high_cost + 0.002 * s,
                            "attr_drop_low": 0.02, "attr_drop_random": 0.02 + 0.001 * s})
        return out

    good = heads.claims(rows(0.3, 0.1), {"k": [0, 5]})
    assert [c.verdict for c in good] == [HOLDS] * 5
    bad = heads.claims(rows(-0.1, -0.02), {"k": [0, 5]})
    assert [c.verdict for c in bad] == ["does NOT hold"] * 5


def test_dense_claims_hold_only_when_captions_improve_dense_features():
    from infogap.ablations import dense

    def rows(gain):
        out = []
        for s in (0, 1, 2):
            for k in (0, 5):
                for fraction in dense.FRACTIONS:
                    scale = {0.01: 0.6, 0.1: 0.9, 1.0: 1.0}[fraction]
                    out += [{"encoder": "clip", "k": k, "seed": s, "task": t, "fraction": fraction,
                             "miou": scale * (0.5 + gain * k / 5) + 0.002 * s, "rmse": (0.3 - 0.3 * gain * k / 5) / scale + 0.001 * s}
                            for t in ("object", "colour")]
                    out += [{"encoder": "clip", "k": k, "seed": s, "task": "depth", "fraction": fraction,
                             "rmse": (0.3 - 0.3 * gain * k / 5) / scale + 0.001 * s, "miou": math.nan}]
            for fraction in dense.FRACTIONS:
                out += [{"encoder": "mae", "seed": s, "task": t, "fraction": fraction, "miou": 0.5 + 0.001 * s, "rmse": 0.3 + 0.001 * s}
                        for t in dense.TASKS]
        return out

    good = dense.claims(rows(0.3), {"k": [0, 5]})
    assert [c.verdict for c in good] == [HOLDS] * 9, [c.line() for c in good]
    bad = dense.claims(rows(-0.2), {"k": [0, 5]})
    assert all(c.verdict == "does NOT hold" for c in bad), [c.line() for c in bad]
