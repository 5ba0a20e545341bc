"""The layout's dependency rule, read off the source: studies -> kit <- runner, both -> train -> data ->
models. A study imports the kit (the Study contract, claims, results), never the runner (what drives
studies) and never another study; the runner imports the kit and no study; the kit imports neither;
train/, data/, models/ import none of them (every import counts, also those inside functions)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

STUDIES = ("core", "bias", "dense", "learn_forget", "heads")
FOLDERS = {"models": "infogap.models", "data": "infogap.data", "train": "infogap.train", "ablations": "infogap.ablations"}
# what each layer may import of infogap (besides itself)
ALLOWED = {
    "models": set(),
    "data": {"models"},
    "train": {"data", "models"},
    "kit": {"train", "data", "models"},
    "runner": {"kit", "train", "data", "models"},
    "study": {"kit", "train", "data", "models"},
}


def _modules():
    """(layer, module name, file) for every source file of the four code folders."""
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            yield _layer(name), name, path


def _layer(name: str) -> str:
    parts = name.split(".")
    if parts[1] != "ablations":
        return parts[1]
    if len(parts) == 2:
        return "ablations"
    return parts[2] if parts[2] in ("runner", "kit") else f"study:{parts[2]}"


def _imports(path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m == "infogap" or m.startswith("infogap.")}


def _violations(layer: str, targets: set[str]) -> list[str]:
    """The imports among ``targets`` that a module of ``layer`` may not make."""
    bad = []
    for target in sorted(targets):
        if target in ("infogap", "infogap.cli") and layer != "ablations":
            bad.append(f"the top-level {target}")
            continue
        if target.startswith("infogap.") and target.split(".")[1] not in ("models", "data", "train", "ablations"):
            continue
        other = _layer(target) if target.count(".") >= 1 else target
        if other == layer or other == "ablations":
            continue
        kind = "study" if layer.startswith("study:") else layer
        other_kind = "study" if other.startswith("study:") else other
        if other_kind == "study" or other_kind not in ALLOWED.get(kind, set()):
            bad.append(f"{target} ({other})")
    return bad


def test_every_import_points_down_the_layers():
    bad = [f"{name} ({layer}) imports {v}" for layer, name, path in _modules() for v in _violations(layer, _imports(path))]
    assert not bad, "\n".join(bad)


def test_every_study_has_its_folder_and_the_runner_names_none():
    folders = {p.name for p in (ROOT / "ablations").iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"kit", "runner", *STUDIES}
    runner_source = "\n".join(p.read_text() for folder in ("runner", "kit") for p in (ROOT / "ablations" / folder).rglob("*.py"))
    for study in STUDIES:
        assert f"infogap.ablations.{study}" not in runner_source.replace("infogap.ablations.core.imbalance:Imbalance", "")


def test_the_rule_is_checked_on_a_planted_violation(tmp_path):
    """The scan finds an import inside a function (the check cannot pass by reading only the top)."""
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from infogap.ablations.heads.study import Heads\n    import infogap.ablations.runner.spec\n")
    assert _imports(path) == {"infogap.ablations.heads.study", "infogap.ablations.runner.spec"}
    assert _layer("infogap.ablations.heads.study") == "study:heads" and _layer("infogap.ablations.runner.spec") == "runner"
    assert _layer("infogap.ablations.kit.claims") == "kit" and _layer("infogap.train.metrics") == "train"


def test_a_study_that_imports_the_runner_and_a_kit_that_imports_the_runner_are_both_refused():
    """The rule itself: study -> kit is allowed, study -> runner and kit -> runner are not."""
    assert _violations("study:dense", {"infogap.ablations.kit.claims"}) == []
    assert _violations("study:dense", {"infogap.ablations.runner.spec"}) != []
    assert _violations("kit", {"infogap.ablations.runner.spec"}) != []
    assert _violations("runner", {"infogap.ablations.kit.study"}) == []
    assert _violations("runner", {"infogap.ablations.heads.study"}) != []


def test_no_module_cycle_between_the_runner_s_modules_or_the_kit_s():
    """Within the runner and within the kit, imports (also those inside functions) form no circle."""
    graph = {}
    for layer, name, path in _modules():
        if layer in ("runner", "kit"):
            graph[name] = {t for t in _imports(path) if _layer(t) in ("runner", "kit") and t != name}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])
    assert "infogap.ablations.runner.reproduce" in graph and "infogap.ablations.kit.study" in graph


FIT_PROBE = """
import sys
import jsonargparse, open_clip, pytorch_lightning, webdataset  # the floor: what any Lightning + open_clip trainer imports
before = set(sys.modules)
from infogap.cli import main
code = main(["fit", "--config", sys.argv[1], "--trainer.max_steps=1", "--log_with=none", "--trainer.enable_progress_bar=false",
             "--data.batch_size=8", "--data.val_size=16", "--metrics.num_samples=16", "--trainer.limit_val_batches=0",
             "--trainer.default_root_dir=" + sys.argv[2]])
print(code)
print(" ".join(sorted(set(sys.modules) - before)))
"""


@pytest.mark.slow
def test_a_fit_imports_nothing_beyond_lightning_open_clip_and_its_own_training_code(tmp_path):
    """Start-up (issue 29): ``infogap fit`` adds to the imports of Lightning, open_clip and jsonargparse
    only infogap's data, model and training modules and jsonargparse's signature helpers; nothing that
    only ``ablate``, ``analyze``, ``reproduce`` or the statistics need."""
    proc = subprocess.run([sys.executable, "-c", FIT_PROBE, str(ROOT / "configs" / "synthetic.yaml"), str(tmp_path / "run")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, modules = proc.stdout.strip().splitlines()[-2:]
    assert code == "0"
    modules = modules.split()
    ours = [m for m in modules if m.split(".")[0] == "infogap"]
    assert "infogap.train.module" in ours and "infogap.data.synthetic" in ours  # the probe saw the fit's own imports
    assert [m for m in ours if not m.startswith(("infogap.cli", "infogap.data", "infogap.models", "infogap.train"))
            and m != "infogap"] == []
    assert not [m for m in ours if m in ("infogap.train.metrics_cli", "infogap.train.embed", "infogap.models.export", "infogap.data.enrich")]
    others = {m.split(".")[0] for m in modules} - {"infogap"}
    assert others <= {"attr", "attrs", "docstring_parser", "typeshed_client", "importlib", "torch", "fsspec", "pytorch_lightning", "jsonargparse",
                      "yaml", "lightning_fabric", "lightning_utilities"}, sorted(others)
    assert not others & {"statsmodels", "sklearn", "pandas", "peft", "deepspeed", "skimage"}
