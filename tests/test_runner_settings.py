"""Study settings: a dataclass per study, filled from the YAML's ``settings:`` block and from
``NAME.key=value`` on the command line; shown in each run's identity, never part of what decides reuse;
bad names and kinds are one-line errors that list the valid settings."""
from __future__ import annotations

import json

import pytest
import yaml

from infogap.ablations.runner.identity import TRAINING, run_identity
from infogap.ablations.runner.expand import expand
from infogap.ablations.runner.spec import load_ablation, make_settings
from infogap.cli import main as infogap
from tests.helpers import ROOT


def test_yaml_settings_then_command_line_settings():
    ablation = load_ablation("learn_forget")
    from infogap.ablations.learn_forget.study import LR

    assert ablation.study.settings.epochs == 10 and ablation.study.settings.lr == LR
    changed = load_ablation("learn_forget", settings={"epochs": 7, "lr": {"full": "1e-3"}, "finetune_seeds": [4]})
    s = changed.study.settings
    assert s.epochs == 7 and s.finetune_seeds == (4,) and s.lr == {**LR, "full": 1e-3} and s.lr["full"] != LR["full"]


def test_a_yaml_setting_is_what_the_study_uses(tmp_path):
    spec = yaml.safe_load((ROOT / "configs/ablations/gap_dims.yaml").read_text())
    spec["settings"] = {"max_removed": 3, "claim_top": 2}
    path = tmp_path / "gd.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = load_ablation(str(path)).study
    assert (study.settings.max_removed, study.settings.claim_top) == (3, 2)
    rows = [{"k": 0, "n": n, "seed": s, "l2m": 0.6 if n == 0 else 0.1} for n in (0, 2) for s in (0, 1)]
    assert study.claims(rows, {"k": [0]})[0].claim.startswith("removing the top 2 of the embedding dimensions")


def test_dry_run_shows_the_setting_in_each_runs_identity(tmp_path, capsys):
    assert infogap(["ablate", "learn_forget", "--dry-run", "--seeds", "0", "--only", "k=0", "--out", str(tmp_path), "learn_forget.epochs=7"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("identity:"))
    identity = json.loads(line.split("identity:", 1)[1])
    assert identity["analysis"]["settings"]["epochs"] == 7
    assert identity["analysis"]["study"] == "infogap.ablations.learn_forget.study:LearnForget"
    assert ["learn_forget.epochs", "7"] not in identity["overrides"], "a study setting is not passed to the training runs"


def test_settings_do_not_change_which_trained_run_is_reused(tmp_path):
    """Reuse across ablations matches the training part of the identity: a learn_forget run with other
    fine-tuning settings still reuses the imbalance run of the same k and seed (the factor it always
    names spelt out, object, is the base config's)."""
    from infogap.ablations.runner.identity import training_identity

    learn_forget = load_ablation("learn_forget", settings={"epochs": 7})
    a = next(r for r in expand(learn_forget, tmp_path, [0]) if r.axes == {"k": 0, "always_present": "object"})
    b = next(r for r in expand(load_ablation("imbalance"), tmp_path, [0]) if r.axes == {"k": 0})
    ia, ib = run_identity(learn_forget, a), run_identity(load_ablation("imbalance"), b)
    assert training_identity(ia, learn_forget.base_config) == training_identity(ib, learn_forget.base_config)
    assert {k: ia[k] for k in TRAINING} != {k: ib[k] for k in TRAINING}, "as recorded, the override is spelt out"
    assert ia["analysis"] != ib["analysis"]


@pytest.mark.parametrize("override, message", [
    ("learn_forget.stepz=7", "unknown setting 'stepz'; valid settings: batch_size, control_fractions, control_k, control_method, control_task, epochs, finetune_seeds, lr, methods, n_eval, n_train, ood, optimizer, prompts, settled_margin, task_images, templates, val_fraction, weight_decay"),
    ("learn_forget.epochs=abc", "setting 'epochs' must be an integer, got 'abc'"),
    ("learn_forget.methods=[full,lora]", "unknown method lora"),
    ("learn_forget.lr={ful: 1e-3}", "setting 'lr' has no key 'ful'; keys: full, flyp, linear, bitfit"),
])
def test_bad_settings_are_one_line_errors(override, message, tmp_path, capsys):
    assert infogap(["ablate", "learn_forget", "--dry-run", "--out", str(tmp_path), override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_study_without_settings_refuses_one(tmp_path, capsys):
    assert infogap(["ablate", "imbalance", "--dry-run", "--out", str(tmp_path), "imbalance.k=3"]) == 2
    assert "unknown setting 'k'; valid settings: none" in capsys.readouterr().err


def test_kinds_of_values_by_hand():
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class S:
        n: int = 1
        x: float = 0.5
        flag: bool = False
        names: tuple[str, ...] = ("a",)
        rates: dict = field(default_factory=lambda: {"a": 1.0})

    s = make_settings(S, {"n": 3, "x": 2, "flag": True, "names": ["b", "c"], "rates": {"a": "2e-3"}}, "here")
    assert (s.n, s.x, s.flag, s.names, s.rates) == (3, 2.0, True, ("b", "c"), {"a": 2e-3})
    for bad in ({"n": 1.5}, {"n": True}, {"flag": "yes"}, {"x": "fast"}, {"rates": [1]}):
        with pytest.raises(ValueError, match="here: setting"):
            make_settings(S, bad, "here")


def _redundant(cls, values: dict, where: str) -> list[str]:
    """The settings among ``values`` that equal the study's dataclass default (after the same coercion
    the loader applies); an unknown name raises in ``make_settings``."""
    filled, default = make_settings(cls.Settings, values, where), cls.Settings()
    return [f"{where}: {k}" for k in values if getattr(filled, k) == getattr(default, k)]


def test_no_ablation_yaml_or_plan_repeats_a_study_default():
    """The settings dataclass is the only default: an ablation's ``settings:`` block and a plan's
    ``NAME.key=value`` list only what they change, and every name they give exists."""
    from infogap.ablations.runner.expand import parse_overrides, split_settings
    from infogap.ablations.runner.spec import study_class

    bad, seen = [], 0
    for path in sorted((ROOT / "configs" / "ablations").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        cls = study_class(spec["study"], str(path))
        bad += _redundant(cls, spec.get("settings") or {}, path.name)
    for path in sorted((ROOT / "configs" / "reproduce").glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text())["studies"]:
            _, settings = split_settings(entry["name"], parse_overrides(entry.get("overrides", [])))
            spec = yaml.safe_load((ROOT / "configs" / "ablations" / f"{entry['name']}.yaml").read_text())
            bad += _redundant(study_class(spec["study"], str(path)), settings, f"{path.name} {entry['name']}")
            seen += len(settings)
    assert seen >= 10  # the smoke plan shrinks the studies through settings: the scan read them
    assert not bad, "settings that repeat their default: " + ", ".join(bad)


def test_the_redundancy_check_finds_a_repeated_default_and_refuses_an_unknown_name():
    from infogap.ablations.runner.spec import study_class

    cls = study_class("infogap.ablations.core.gap_dims:GapDims", "test")
    assert _redundant(cls, {"max_removed": 20, "claim_top": 3}, "x") == ["x: max_removed"]
    posthoc = study_class("infogap.ablations.core.posthoc:Posthoc", "test")
    assert _redundant(posthoc, {"gain_margin": "1e-2"}, "y") == ["y: gain_margin"]  # YAML's 1e-2 is a string: coerced, then compared
    assert _redundant(posthoc, {"gain_margin": 0.02}, "y") == []
    with pytest.raises(ValueError, match="unknown setting 'max_remove'"):
        _redundant(cls, {"max_remove": 3}, "x")
