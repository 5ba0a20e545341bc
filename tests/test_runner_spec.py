"""Ablation specs: every YAML expands into its runs (--dry-run), axes, --only, --sweep and overrides, names an axis may not take, tables."""
from __future__ import annotations

import re

import pytest
import yaml

from infogap.ablations.core.imbalance import Imbalance
from infogap.ablations.core.presence import Presence
from infogap.ablations.core.temperature import Temperature
from infogap.ablations.runner.aggregate import format_table, run_claims
from infogap.ablations.kit.claims import HOLDS, NOT_TESTED, other_points, per_seed
from infogap.ablations.runner.expand import expand, parse_overrides
from infogap.ablations.runner.spec import add_sweep, available, design, load_ablation, parse_only
from infogap.cli import main as infogap
from tests.helpers import ROOT
from tests.helpers.studies import TINY_RUNS

imbalance, presence, temperature = Imbalance(), Presence(), Temperature()


def test_every_ablation_config_is_covered():
    assert set(available()) == set(TINY_RUNS)


@pytest.mark.parametrize("name", sorted(TINY_RUNS))
def test_dry_run_lists_every_run(name, tmp_path, capsys):
    ablation = load_ablation(name)
    runs = expand(ablation, tmp_path, seeds=[0, 1])
    n_stage_runs = sum(_stage_size(st) for st in ablation.stages)
    assert len(runs) == 2 * n_stage_runs
    if "max_steps" in design(ablation):
        n_stage_runs //= len(design(ablation)["max_steps"])  # one budget, 7 steps
    steps = ["--sweep", "trainer.max_steps=7"] if "max_steps" in design(ablation) else ["trainer.max_steps=7"]  # dense sweeps its budget
    assert infogap(["ablate", name, "--dry-run", "--seeds", "0,1", "--out", str(tmp_path), *steps]) == 0
    out = capsys.readouterr().out
    assert f"{2 * n_stage_runs} runs" in out
    assert out.count("--trainer.max_steps=7") == 2 * n_stage_runs
    assert not (tmp_path / name).exists(), "a dry run launches nothing"


def _stage_size(stage):
    """The points of a stage's axes' product less those its ``exclude`` lists drop (each item: every
    space-separated AXIS=v1,v2 condition holds), counted by listing them."""
    import itertools

    axes = stage.get("axes") or {}
    conditions = [dict((c.split("=")[0], c.split("=")[1].split(",")) for c in item.split()) for item in stage.get("exclude") or []]
    points = [dict(zip(axes, combo)) for combo in itertools.product(*(list(ax["values"]) for ax in axes.values()))]
    return sum(not any(all(str(p[a]) in values for a, values in cond.items()) for cond in conditions) for p in points)


def test_imbalance_expands_k_seeds_and_overrides(tmp_path):
    ablation = load_ablation("imbalance")
    runs = expand(ablation, tmp_path, seeds=[0, 1], only=parse_only(["k=0,5"], ablation), overrides=parse_overrides(["trainer.max_steps=300"]))
    assert [(r.axes["k"], r.seed) for r in runs] == [(0, 0), (5, 0), (0, 1), (5, 1)]
    assert all(r.overrides["trainer.max_steps"] == 300 and r.overrides["data.k"] == r.axes["k"] for r in runs)
    assert all(r.overrides["seed_everything"] == r.seed == r.overrides["data.init_args.seed"] for r in runs)


def test_exclude_drops_the_points_where_every_condition_holds(tmp_path):
    """learn_forget's product of k and the factor always named, less its stage's own exclude: by hand, the object at
    k = 0, 2, 5 and colour, thickness, scaling at k = 1 per seed, in the product's order; --exclude drops more on top:
    a condition on one axis alone its whole slice, two conditions only where both hold."""
    from infogap.ablations.runner.spec import parse_exclude

    ablation = load_ablation("learn_forget")
    points = lambda exclude: [(r.axes["k"], r.axes["always_present"]) for r in expand(ablation, tmp_path, seeds=[0], exclude=exclude)]
    assert points(None) == [(0, "object"), (1, "colour"), (1, "thickness"), (1, "scaling"), (2, "object"), (5, "object")]
    assert points(parse_exclude(["k=2"], ablation)) == [(0, "object"), (1, "colour"), (1, "thickness"), (1, "scaling"), (5, "object")]
    assert points(parse_exclude(["always_present=object,colour k=0,1"], ablation)) == [(1, "thickness"), (1, "scaling"), (2, "object"),
                                                                                     (5, "object")]
    with pytest.raises(ValueError, match="--exclude: always_present has no value"):
        parse_exclude(["always_present=size k=0"], ablation)
    with pytest.raises(ValueError, match="--exclude expects"):
        parse_exclude(["  "], ablation)
    bad = tmp_path / "bad.yaml"
    spec = yaml.safe_load((ROOT / "configs" / "ablations" / "learn_forget.yaml").read_text())
    spec["stages"][0]["exclude"] = ["k=0 model_size=small"]
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="bad.yaml: stage 'train': exclude: ablation 'learn_forget' has no axis 'model_size'"):
        load_ablation(str(bad))


def test_later_stages_point_at_the_same_seeds_checkpoint(tmp_path):
    runs = expand(load_ablation("temperature"), tmp_path, seeds=[3])
    base = next(r for r in runs if r.stage == "base")
    for r in runs:
        if r.stage == "finetune":
            assert r.overrides["model.pretrained"] == f"{base.dir}/checkpoints/last.ckpt"
            assert r.overrides["model.init_temperature"] is None


@pytest.mark.parametrize("bad, message", [
    (["--only", "k=9"], "k has no value(s) 9"),
    (["--only", "temperature=frozen"], "no axis 'temperature'"),
    (["oops"], "not key=value"),
    (["--exclude", "k=9"], "--exclude: k has no value(s) 9"),
    (["--exclude", "k=0", "--launcher", "wandb"], "--exclude drops points of the axes' product, which a W&B grid sweep cannot express"),
])
def test_bad_ablation_arguments_are_named(bad, message, tmp_path, capsys):
    assert infogap(["ablate", "imbalance", "--dry-run", "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


ROWS = [{"k": k, "seed": s, "rmg": r} for (k, s, r) in [(0, 0, 0.42), (0, 1, 0.45), (0, 2, 0.42), (5, 0, 0.07), (5, 1, 0.09), (5, 2, 0.07)]]


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
    claims = run_claims(ablation, [r for r in _steps_rows()])
    own = [c for c in claims if "[max_steps=" in c.claim]
    assert len(own) == 12 and {c.verdict for c in own} == {HOLDS}
    assert [c.claim for c in own if c.claim.endswith("[max_steps=600]")] == [c.claim + " [max_steps=600]"
                                                                             for c in imbalance.claims(_steps_rows()[:1], {"k": [0, 5]})]
    assert [c.role for c in claims[:2]] == ["positive control"] * 2  # the controls of both points first
    recovery = {c.claim: c for c in claims if "training steps" in c.claim}
    assert recovery["object accuracy at k=5 rises from 600 to 9600 training steps"].verdict == HOLDS
    assert recovery["object accuracy at k=5 rises from 600 to 9600 training steps"].mean == pytest.approx(0.32)
    assert recovery["object accuracy at k=0 rises from 600 to 9600 training steps"].verdict == "contradicted"  # -0.01 on every seed
    assert recovery["object accuracy at k=0 rises from 600 to 9600 training steps"].role == "beyond the paper"
    # one training length missing: its claims and the recovery claims are "not tested"
    short_only = [r for r in _steps_rows() if r["max_steps"] == 600]
    verdicts = {c.claim: c.verdict for c in run_claims(ablation, short_only)}
    assert {v for c, v in verdicts.items() if "max_steps=9600" in c or "training steps" in c} == {NOT_TESTED}


@pytest.mark.parametrize("item, message", [
    ("trainer.max_steps", "--sweep expects KEY=v1,v2"),
    ("data.init_args.k=0,5", "already sweeps 'k'"),  # another key for the stage's axis k
    ("model.temperature=learnable,frozen", "axis 'temperature' is also the name of a metric"),
])
def test_bad_sweeps_are_named(item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_ablation("imbalance", [item])


def test_a_sweep_of_the_stages_own_axis_replaces_its_values():
    ablation = load_ablation("dense", ["trainer.max_steps=4,8"])
    assert design(ablation)["max_steps"] == [4, 8] and design(ablation)["k"] == [0, 5]
    assert design(load_ablation("dense"))["max_steps"] == [600, 1800]
    with pytest.raises(ValueError, match="already sweeps 'max_steps'"):
        load_ablation("dense", ["trainer.max_steps=4", "trainer.max_steps=8"])


def test_table_cells_carry_the_t_interval():
    groups = [((0,), [r for r in ROWS if r["k"] == 0]), ((5,), [ROWS[3]])]
    table = format_table(["k"], ["rmg"], groups).splitlines()
    # mean 0.43, sd 0.01732, se 0.01: the table's 95 % t-interval 0.43 +- 4.303 * 0.01 (descriptive; claims print 90 %)
    assert table[2] == "| 0 | 3 | 0.430 [0.387, 0.473] |"
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


def test_a_study_reads_the_run_s_own_config_and_checkpoint(tmp_path):
    """``Run.config`` returns what the run trained with (Lightning's saved ``config.yaml``), never a
    default the study assumes; a missing file or key is a one-line error naming it."""
    from infogap.ablations.kit.study import Run

    run = Run("train", {"k": 5}, 0, {"trainer.max_steps": 600}, tmp_path / "run")
    with pytest.raises(ValueError, match="saved configuration is missing"):
        run.config("trainer.max_steps")
    run.dir.mkdir()
    (run.dir / "config.yaml").write_text("trainer:\n  max_steps: 2400\ndata:\n  class_path: x\n  init_args:\n    batch_size: 96\n")
    assert run.config("trainer.max_steps") == 2400  # the saved value, not the override's 600
    assert run.config("data.init_args.batch_size") == 96
    with pytest.raises(ValueError, match="no 'data.init_args.k'"):
        run.config("data.init_args.k")
    assert run.checkpoint == tmp_path / "run" / "checkpoints" / "last.ckpt"
