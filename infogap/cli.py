"""The ``infogap`` command: one dispatcher for every subcommand, each a ``main(argv)`` in the package
that owns it, imported only when it runs (``infogap --help`` imports nothing heavy). Adding a command
is one line in ``SUBCOMMANDS`` (or ``ANALYSES``).

Errors a user can make (a missing file, a bad value, a bad config) end the command with one line on
stderr and exit code 2; ``INFOGAP_TRACEBACK=1`` shows the traceback instead.
"""
from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Callable, Optional

# name -> ("module:function", one-line help). The function takes the arguments after the name.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("infogap.train.cli:lightning_main", "train a model from a YAML config (LightningCLI; --help for every key)"),
    "validate": ("infogap.train.cli:lightning_main", "validation loss and metric suite of a checkpoint (validate_metrics.json)"),
    "test": ("infogap.train.cli:lightning_main", "test loss and metric suite of a checkpoint on the test split (test_metrics.json)"),
    "data": ("infogap.data.cli:main", "synthetic data: preview grid, throughput benchmark, webdataset export, caption enrichment"),
    "metrics": ("infogap.train.metrics_cli:main", "metric suite of an embeddings .npz as one JSON object"),
    "embed": ("infogap.train.embed:main", "embeddings .npz of a local open_clip checkpoint on local shards"),
    "export-ckpt": ("infogap.models.export:main", "one plain state dict from a Lightning or DeepSpeed checkpoint"),
    "ablate": ("infogap.ablations.runner.cli:main", "expand, launch and aggregate an ablation from configs/ablations/"),
    "analyze": ("infogap.cli:analyze", "analyses of finished or local models: gap-performance, eat, heads, learn-forget"),
    "reproduce": ("infogap.ablations.runner.reproduce:main", "every study of a plan (smoke, cpu, gpu) in one command and one report"),
    "probe": ("infogap.ablations.dense.cli:main", "dense probes (segmentation, depth) on a frozen image tower, with label fractions"),
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")

# infogap analyze NAME: each analysis lives in the folder of its study
ANALYSES: dict[str, tuple[str, str]] = {
    "gap-performance": ("infogap.ablations.core.gap_performance:main",
                        "Kendall tau between gap and performance across models (core study, its Tables 1 and 3)"),
    "eat": ("infogap.ablations.bias.analyze:main", "embedding association tests: effect size and permutation p (Ghate et al. 2025)"),
    "heads": ("infogap.ablations.heads.cli:main", "TEXTSPAN, concept consistency and pruning of attention heads (Madasu et al. 2025)"),
    "learn-forget": ("infogap.ablations.learn_forget.cli:main", "IIMM vs fine-tuning gain and forgetting (Niss et al. 2024)"),
}


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: infogap <command> [options]", "       infogap --version", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `infogap <command> --help` for the options of a command."]
    return "\n".join(lines)


def _resolve(target: str) -> Callable:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def version() -> str:
    import infogap

    return f"infogap {infogap.__version__}"


def analyze(argv: list[str]) -> int:
    """``infogap analyze NAME ...``: the analysis NAME with the rest of the arguments."""
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, ANALYSES))
        print("usage: infogap analyze {" + ",".join(ANALYSES) + "} ...\n\nanalyses:\n"
              + "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in ANALYSES.items())
              + "\n\nRun `infogap analyze NAME --help` for the options of one.")
        return 0
    if argv[0] not in ANALYSES:
        raise ValueError(f"unknown analysis {argv[0]!r}; choose from {', '.join(ANALYSES)}")
    return _resolve(ANALYSES[argv[0]][0])(argv[1:])


def main(argv: Optional[list[str]] = None) -> int:
    from infogap.train.cli import ConfigError
    from infogap.train.locks import DirectoryInUse

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        print(version())
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(f"infogap: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    fn = _resolve(SUBCOMMANDS[name][0])
    try:
        result = fn(argv if name in LIGHTNING_SUBCOMMANDS else argv[1:])
    except (ConfigError, DirectoryInUse, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        return _one_line(name, str(exc))
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        return _one_line(name, f"{os.strerror(exc.errno).lower()}{where}; nothing half-written was left under a result's name; free space "
                               "and run it again (an ablation resumes its runs; `infogap fit` resumes with --ckpt_path=last)")
    return int(result or 0)


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # a full disk, a quota, a read-only file system


def _one_line(name: str, message: str) -> int:
    """A user's error as one line on stderr, exit code 2 (``INFOGAP_TRACEBACK=1``: the traceback)."""
    if os.environ.get("INFOGAP_TRACEBACK"):
        raise
    print(f"infogap {name}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def run() -> int:
    """The process entry point (the ``infogap`` script and ``python -m infogap``): ``main``, then
    ``gc.freeze()`` so that the interpreter's exit skips its final garbage collection. That collection
    walks every object torch, Lightning, torchmetrics and open_clip created at import and took about
    1.4 s on 2 cores, longer than any command's own clean-up (BENCHMARKS.md, start-up). atexit handlers
    (W&B's among them) still run; every file infogap writes is closed where it is written; the memory
    of the frozen objects goes back with the process. Not for in-process callers: they call ``main``."""
    import gc

    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
