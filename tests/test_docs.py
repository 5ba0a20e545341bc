"""The documentation checks itself: every relative link and image in README.md and docs/ resolves, and
every `infogap ...` command line shown in them parses (its command and subcommand exist, every option
is known and every value has the right type), without running anything."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not inside code blocks
    return [m.group(1) for m in LINK.finditer(text)]


def commands(path: Path) -> list[list[str]]:
    """The `infogap ...` command lines of the shell blocks of a page (continuation lines joined, comments
    dropped, ``.venv/bin/`` removed): each must parse as it stands."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("infogap", ".venv/bin/infogap"):
                out.append(words[1:])
    return out


def named_commands(path: Path) -> list[list[str]]:
    """The commands the prose and tables of a page name inline (`infogap probe`, `infogap analyze eat`,
    alternatives as `a|b`): each command and subcommand must exist (its --help works)."""
    prose = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    out = []
    for inline in re.findall(r"`infogap ([^`]+)`", prose):
        words = inline.replace("\\|", "|").split()
        first = words[0]
        if first.startswith("-") or not first.islower():
            continue  # options of `infogap` itself (--version), placeholders (COMMAND)
        subs = [None]
        if first in ("analyze", "data") and len(words) > 1 and words[1][:1].islower():
            subs = words[1].split("|")
        for sub in subs:
            cmd = [first] + ([sub] if sub else [])
            if cmd not in out:
                out.append(cmd)
    return out


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(path):
    missing = [link for link in _links(path) if not link.startswith(("http://", "https://", "#", "mailto:"))
               and not (path.parent / link.split("#")[0]).exists()]
    assert not missing, f"{path.name}: {missing}"


class Parsed(BaseException):
    """Raised right after a command's arguments parsed: nothing runs."""


@pytest.fixture
def parse_only(monkeypatch):
    """Every argument parser raises ``Parsed`` once it has parsed its arguments (argparse's for the
    commands, jsonargparse's for LightningCLI's fit/validate/test); a bad option exits with code 2."""
    import argparse

    import jsonargparse

    def stop(original):
        def parse(self, *args, **kwargs):
            original(self, *args, **kwargs)
            raise Parsed()

        return parse

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop(argparse.ArgumentParser.parse_args))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_intermixed_args", stop(argparse.ArgumentParser.parse_intermixed_args))
    monkeypatch.setattr(jsonargparse.ArgumentParser, "parse_args", stop(jsonargparse.ArgumentParser.parse_args))


def _check(argv: list[str], monkeypatch) -> None:
    from infogap.cli import main

    monkeypatch.chdir(ROOT)  # the docs' relative config paths are relative to the repository
    monkeypatch.setattr(sys, "argv", ["infogap"])  # LightningCLI reads (and the fit path sets) sys.argv
    if argv in (["--version"], ["--help"]):
        assert main(argv) == 0
        return
    try:
        code = main(argv)
    except Parsed:
        return
    except SystemExit as exc:
        if exc.code in (0, None) and "--help" in argv:
            return
        pytest.fail(f"`infogap {' '.join(argv)}` does not parse (exit {exc.code})")
    if code == 0 and "--help" in argv:
        return
    pytest.fail(f"`infogap {' '.join(argv)}` returned {code} before parsing its arguments")


ALL = [(path, argv) for path in DOCS for argv in commands(path)]
NAMED = sorted({tuple(argv) for path in DOCS for argv in named_commands(path)})


@pytest.mark.slow
@pytest.mark.parametrize("path, argv", ALL, ids=[f"{p.relative_to(ROOT)}:{' '.join(a)[:60]}" for p, a in ALL])
def test_every_documented_command_parses(path, argv, parse_only, monkeypatch):
    _check(argv, monkeypatch)


@pytest.mark.parametrize("argv", NAMED, ids=" ".join)
def test_every_command_named_in_the_text_exists(argv, capsys, monkeypatch):
    from infogap.cli import main

    monkeypatch.setattr(sys, "argv", ["infogap"])
    try:
        code = main([*argv, "--help"])
    except SystemExit as exc:
        code = exc.code
    assert code in (0, None), f"`infogap {' '.join(argv)} --help` exits {code}"
    assert "unknown" not in capsys.readouterr().err


def test_the_check_refuses_a_wrong_option_and_a_wrong_type(parse_only, monkeypatch):
    _check(["ablate", "imbalance", "--seeds", "0", "--dry-run"], monkeypatch)
    _check(["fit", "--config", "configs/synthetic.yaml", "--data.k=0"], monkeypatch)
    for bad in (["ablate", "imbalance", "--no-such-option"], ["fit", "--config", "configs/synthetic.yaml", "--trainer.max_steps=abc"],
                ["probe", "--task", "segmentation"], ["analyze", "eat", "--permutations", "many"]):
        with pytest.raises(pytest.fail.Exception, match="does not parse|returned"):
            _check(bad, monkeypatch)


def test_documented_commands_are_found():
    found = {tuple(a[:1]) for _, a in ALL}
    assert {("fit",), ("ablate",), ("analyze",), ("probe",), ("metrics",), ("data",), ("embed",), ("export-ckpt",)} <= found
    assert len(ALL) >= 30 and ("analyze", "learn-forget") in NAMED and ("data", "enrich") in NAMED


def test_result_tables_are_what_the_committed_report_renders():
    """README's table of studies and the claim tables of docs/results/ are rendered from the committed
    report of the cpu plan (``infogap reproduce --render-docs``): a number edited by hand, or a report
    committed without rendering again, fails here. Every study of the report has its block on the page
    of its folder, and the README has the summary."""
    import json

    from infogap.ablations.runner.report import BLOCK, published_report, stale_blocks

    result = json.loads((published_report(ROOT) / "reproduce.json").read_text())
    assert stale_blocks(ROOT) == []
    assert [m.group(2) for m in BLOCK.finditer((ROOT / "README.md").read_text())] == ["summary"]
    for study in result["studies"]:
        page = ROOT / "docs" / "results" / f"{study['folder']}.md"
        assert study["name"] in [m.group(2) for m in BLOCK.finditer(page.read_text())], f"{page.name} has no block for {study['name']}"


def test_the_committed_report_is_one_invocation_of_the_whole_plan_at_one_clean_commit():
    """The committed cpu report is what one ``infogap reproduce --size cpu`` made: not merged from parts
    (``--merge`` is for users who split a plan), not re-aggregated only, at a commit without uncommitted
    changes, and every study of the plan aggregated with all its runs finished."""
    import json

    from infogap.ablations.runner.report import published_report
    from infogap.ablations.runner.reproduce import load_plan

    result = json.loads((published_report(ROOT) / "reproduce.json").read_text())
    assert "parts" not in result and "--merge" not in result["command"], "the committed report is merged from parts"
    assert result["command"].startswith("infogap reproduce --size cpu") and "--studies" not in result["command"]
    assert result["report_only"] is False
    assert re.fullmatch(r"[0-9a-f]{7,40}", result["environment"]["commit"]), result["environment"]["commit"]
    assert [s["name"] for s in result["studies"]] == [e.name for e in load_plan("cpu").studies]
    for study in result["studies"]:
        assert study["aggregated"] and study["runs"][0] == study["runs"][1] > 0, study["name"]
    assert "merged" not in (published_report(ROOT) / "REPORT.md").read_text().split("## Summary")[0]


# What a user cannot follow: the project's private source notes ("seed 003", "reference 02, section D",
# "01-imbalance.md"). Code, configs, docs and help cite the paper, the study and its docs/results/ page.
PRIVATE_REFERENCE = re.compile(r"\bseeds? 00\d\b|\breference 0\d\b|\b0\d-(imbalance|other-analyses|anchors|style)\.md\b|shared/(reference|seeds)", re.I)


def _private_references(text: str) -> list[str]:
    return [m.group(0) for m in PRIVATE_REFERENCE.finditer(text)]


def test_the_pattern_catches_every_form_of_a_private_reference():
    planted = ("the bias study (seed 001)", "Seed 004, causal", "reference 02, section D", "reference 01-imbalance.md",
               "see ../shared/reference/", "02-other-analyses.md")
    assert all(_private_references(p) for p in planted)
    assert not _private_references("3 seeds, seed 0 and 1,000 steps; Ghate et al., NAACL 2025; docs/results/bias.md")


def test_no_code_config_doc_or_help_cites_what_is_not_in_the_repository(capsys, monkeypatch):
    from infogap.cli import main as infogap

    skip = {".venv", ".git", "runs", "results", "node_modules"}
    found = []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh") or skip & set(path.relative_to(ROOT).parts):
            continue
        if path.name == "test_docs.py":  # this file plants them
            continue
        found += [f"{path.relative_to(ROOT)}: {hit}" for hit in _private_references(path.read_text(errors="replace"))]
    monkeypatch.setattr(sys, "argv", ["infogap"])
    for argv in (["--help"], ["analyze", "--help"], ["ablate", "--help"]):
        capsys.readouterr()
        try:
            infogap(argv)
        except SystemExit:
            pass
        help_text = capsys.readouterr().out
        assert "usage" in help_text.lower(), argv
        found += [f"infogap {' '.join(argv)}: {hit}" for hit in _private_references(help_text)]
    assert not found, found
