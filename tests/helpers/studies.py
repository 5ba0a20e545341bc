"""The smoke plan's studies at toy size, and a summary table read back."""
from __future__ import annotations

from pathlib import Path

from tests.helpers import ROOT


# --- the smoke plan's studies (configs/reproduce/smoke.yaml: each at toy size, one seed) ----------
# name -> (number of runs the plan launches for it, axes of summary.csv, claims the plan's restriction
#          leaves without the arms or units they need: "not tested", exit 1)
TINY_RUNS = {
    "imbalance": (2, ["k"], 0),
    "presence": (2, ["always_present"], 2),
    "gap_dims": (1, ["k", "n"], 1),
    "posthoc": (1, ["k", "shift"], 3),  # k = 5 not run: its bound claim and its sanity check; k = 0's bound claim from one seed
    "temperature": (3, ["temperature_mode"], 0),
    "init_gap": (3, ["init"], 0),
    "bias": (2, ["model_size", "cooccurrence_p", "test", "modality"], 6),  # no equivalence or correlation test from one seed, two runs
    "heads": (2, ["k"], 0),  # one seed: the control is not shown, so every other claim is "not testable here" (not "not tested")
    "learn_forget": (2, ["k", "always_present", "method", "task"], 42),  # 2 models: no clustered fit (3 claims a fit; a fit without spread, 1)
    "dense": (2, ["layout_words", "k", "max_steps", "encoder", "task", "fraction", "mode"], 2),  # k = 0 not run: the 2 k claims
}


def smoke_settings(name: str) -> list[str]:
    """The study settings (``NAME.key=value``) that shrink a study's analyses in the smoke plan."""
    import yaml

    plan = yaml.safe_load((ROOT / "configs" / "reproduce" / "smoke.yaml").read_text())
    return [o for s in plan["studies"] if s["name"] == name for o in s.get("overrides", [])]


def read_csv(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))
