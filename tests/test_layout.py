"""The layout's dependency rule, read off the source: studies -> runner -> train -> data -> models. No
study imports another, the runner imports no study, and train/, data/, models/ import neither the
runner nor a study (every import counts, also those inside functions)."""
from __future__ import annotations

import ast

from tests.helpers import ROOT

STUDIES = ("core", "bias", "dense", "learn_forget", "heads")
FOLDERS = {"models": "infogap.models", "data": "infogap.data", "train": "infogap.train", "ablations": "infogap.ablations"}
# what each layer may import of infogap (besides itself)
ALLOWED = {
    "models": set(),
    "data": {"models"},
    "train": {"data", "models"},
    "runner": {"train", "data", "models"},
    "study": {"runner", "train", "data", "models"},
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
    return "runner" if parts[2] == "runner" else f"study:{parts[2]}"


def _imports(path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m == "infogap" or m.startswith("infogap.")}


def test_every_import_points_down_the_layers():
    bad = []
    for layer, name, path in _modules():
        for target in _imports(path):
            if target in ("infogap", "infogap.cli") and layer != "ablations":
                bad.append(f"{name} imports the top-level {target}")
                continue
            if target.startswith("infogap.") and target.split(".")[1] not in ("models", "data", "train", "ablations"):
                continue
            other = _layer(target) if target.count(".") >= 1 else target
            if other == layer or other == "ablations":
                continue
            kind = "study" if layer.startswith("study:") else layer
            other_kind = "study" if other.startswith("study:") else other
            if other_kind == "study" or other_kind not in ALLOWED.get(kind, set()):
                bad.append(f"{name} ({layer}) imports {target} ({other})")
    assert not bad, "\n".join(bad)


def test_every_study_has_its_folder_and_the_runner_names_none():
    folders = {p.name for p in (ROOT / "ablations").iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"runner", *STUDIES}
    runner_source = "\n".join(p.read_text() for p in (ROOT / "ablations" / "runner").rglob("*.py"))
    for study in STUDIES:
        assert f"infogap.ablations.{study}" not in runner_source.replace("infogap.ablations.core.imbalance:Imbalance", "")


def test_the_rule_is_checked_on_a_planted_violation(tmp_path):
    """The scan finds an import inside a function (the check cannot pass by reading only the top)."""
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from infogap.ablations.heads.study import Heads\n    import infogap.ablations.runner.spec\n")
    assert _imports(path) == {"infogap.ablations.heads.study", "infogap.ablations.runner.spec"}
    assert _layer("infogap.ablations.heads.study") == "study:heads" and _layer("infogap.ablations.runner.spec") == "runner"
    assert _layer("infogap.train.metrics") == "train"
