"""Files in and out with one-line errors: a YAML file whose problems name the file (and the line, for a
syntax error), and an output directory that can be one."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The parsed content of ``path``; a missing file is a ``FileNotFoundError`` and a syntax error a
    ``ValueError``, each one line starting with the file's name."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: YAML syntax error: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a YAML file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def check_output_dir(out: str | Path, option: str) -> None:
    """``out`` can be (or become) a directory: not a file, and no file among its parents."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is a file, not a directory")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{option} {out}: {blocker} is a file, not a directory")
