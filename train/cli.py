"""``infogap fit | validate | test``: training through LightningCLI, with the project's defaults
(``infogap fit --config configs/synthetic.yaml [--a.b=value ...]``, the same ``--key=value`` syntax a
W&B sweep passes). The ``infogap`` command itself is ``infogap.cli``."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Optional


class ConfigError(Exception):
    """A configuration problem, reported as one line."""


class Interrupted(Exception):
    """A run stopped by SIGTERM or SIGINT after saving its checkpoint: ``exit_code`` is 128 + the signal."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        self.exit_code = 143 if signal_name == "SIGTERM" else 130
        super().__init__(f"interrupted by {signal_name} at step {step}; checkpoint saved to {checkpoint}; "
                         f"resume with --ckpt_path=last (or `infogap ablate` again)")


class _Parsed(Exception):
    """Raised once the arguments of a run parsed (``check_fit_args``): nothing is built. Carries the
    parser, which parses further command lines in a fraction of the time it takes to build."""

    def __init__(self, parser):
        super().__init__("parsed")
        self.parser = parser


def lightning_main(argv: list[str]) -> int:
    """fit / validate / test through LightningCLI, with the project's defaults. A run stopped by SIGTERM
    or Ctrl-C saves its checkpoint and ends with one line and exit code 143 or 130."""
    from jsonargparse import ArgumentError

    check_yaml_files(argv)
    quiet_lightning()
    # LightningCLI reads its arguments from sys.argv; argv[0] stays the program, which Lightning's DDP
    # launcher re-executes for the other ranks
    sys.argv = [sys.argv[0] if sys.argv and sys.argv[0] else "infogap"] + [_expand_run_dir(a) for a in argv]
    locks: list = []  # the run directory's lock, released when this command ends however it ends (also in-process callers)
    try:
        _lightning_cli_class(locks=locks)(args=None)
    except ArgumentError as exc:
        raise ConfigError(_first_line(str(exc))) from None
    except Interrupted as exc:
        print(f"infogap {argv[0] if argv else 'fit'}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        for lock in locks:
            lock.release()
    return 0


# Lightning's start-up lines that tell a user nothing about the run: advertisements, the srun hint (an
# ablation's runs are launched by infogap, under SLURM by its own array jobs), the seed line (it is in
# config.yaml), and warnings about how our own data module is built (an IterableDataset with a length,
# which is the synthetic world's known size) or about Lightning's own internals
QUIET_LINES = ("💡 Tip:", "Seed set to")
QUIET_WARNINGS = (r"The `srun` command is available on your system but is not used", r"Your `IterableDataset` has `__len__` defined",
                  r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"The number of training batches .* is smaller than the logging interval")


class _QuietLines:
    """A logging filter that drops Lightning's lines starting with one of ``QUIET_LINES``."""

    @staticmethod
    def filter(record) -> bool:
        return not str(record.getMessage()).startswith(QUIET_LINES)


def quiet_lightning() -> None:
    """Drop Lightning's start-up noise (``QUIET_LINES``, ``QUIET_WARNINGS``) from this process's output."""
    import logging
    import warnings

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero", "lightning_fabric.utilities.seed"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietLines) for f in logger.filters):
            logger.addFilter(_QuietLines())
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def check_fit_args(*commands: list[str]) -> None:
    """Parse ``infogap fit`` command lines (their config files, every key and type) without building
    anything; a problem is a ``ConfigError`` of one line. What ``infogap ablate`` checks before it
    launches its runs."""
    import warnings

    from jsonargparse import ArgumentError

    parser = None
    for argv in commands:
        check_yaml_files(argv)
        args = [_expand_run_dir(a) for a in argv]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LightningCLI warns that args and sys.argv both exist
                if parser is None:
                    _lightning_cli_class(parse_only=True)(args=args)
                else:
                    parser.parse_args(args)
        except _Parsed as parsed:
            parser = parsed.parser
        except ArgumentError as exc:
            raise ConfigError(_first_line(str(exc))) from None


def check_yaml_files(argv: list[str]) -> None:
    """Every ``--config FILE`` must exist and be YAML; a syntax error names the file and line."""
    from infogap.data.files import read_yaml

    for i, arg in enumerate(argv):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None
        if path is not None:
            read_yaml(path, "--config")


def _expand_run_dir(arg: str) -> str:
    """``--trainer.default_root_dir=runs/sweeps/x/$WANDB_RUN_ID``: environment variables in the run
    directory are expanded (a W&B agent runs the sweep command without a shell and sets WANDB_RUN_ID)."""
    if arg.startswith("--trainer.default_root_dir=") and "$" in arg:
        key, value = arg.split("=", 1)
        expanded = os.path.expandvars(value)
        if "$" in expanded:
            raise ConfigError(f"trainer.default_root_dir: unset environment variable in {value!r}")
        return f"{key}={expanded}"
    return arg


_BOILERPLATE = ("Does not validate", "Subtypes:", "Errors:", "Problem with given class_path", "Given value", "Parser key")


def _first_line(message: str) -> str:
    """One line from jsonargparse's nested error: the full key path, the first real reason, the value."""
    key = ".".join(re.findall(r'Parser key "([^"]+)"', message))
    message = re.sub(r'Parser key "[^"]+":\s*', "", message)
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    reasons = [r for r in (line.lstrip("- ") for line in lines) if not r.startswith(_BOILERPLATE) and "NoneType" not in r]
    reason = reasons[0] if reasons else (lines[0] if lines else "invalid configuration")
    given = [line for line in lines if line.startswith("Given value:")]
    text = f"{key}: {reason}" if key and not reason.startswith(key) else reason
    shown = given and not any(t in given[-1] for t in ("NestedArg", "Namespace("))
    return text + (f" ({given[-1]})" if shown else "")


def flat_config(config: dict, prefix: str = "") -> dict:
    """{"data": {"class_path": C, "init_args": {"k": 5}}} -> {"data.class_path": C, "data.k": 5}: the keys
    as the command line and a W&B sweep spell them. Lists and other non-scalars become strings."""
    out: dict = {}
    for key, value in config.items():
        if key == "init_args" and isinstance(value, dict):
            out.update(flat_config(value, prefix))
        elif isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
    return out


def _lightning_cli_class(parse_only: bool = False, locks: Optional[list] = None):
    from pytorch_lightning import LightningDataModule
    from pytorch_lightning.callbacks import ProgressBar
    from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    from infogap.train.checkpoints import SaveOnInterrupt, StepCheckpoint, use_atomic_checkpoints
    from infogap.train.evaluation import RepresentationMetrics
    from infogap.train.loggers import ProgressFile, make_logger, step_progress_bar
    from infogap.train.module import ContrastiveModule

    class LoggedConfig(SaveConfigCallback):
        """config.yaml in the run directory (``trainer.default_root_dir``) whatever the logger (Lightning's
        own puts it in the logger's folder: ``csv/`` with ``log_with=csv``), and the whole config logged as
        flat hyper-parameters (``data.k``, ``model.lr``, ``seed_everything``) so W&B groups and filters
        runs by the keys a sweep varies. Runs on rank 0 only (``save_to_log_dir=False``)."""

        def save_config(self, trainer, pl_module, stage) -> None:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(run_dir / self.config_filename), skip_none=False, overwrite=True, multifile=self.multifile)
            if trainer.logger is not None:
                trainer.logger.log_hyperparams(flat_config(self.config.as_dict()))

    class _CLI(LightningCLI):
        def __init__(self, args, run: bool = True):
            # Lightning builds one sub-parser per subcommand (fit, validate, test, predict), each with every
            # Trainer, model, data and callback argument; a command runs one, so only its parser is built
            # (parsing and instantiation 0.50 -> 0.35 s on 2 cores). ``check_fit_args``'s shared parser keeps all.
            given = [a for a in (args if args is not None else sys.argv[1:]) if not str(a).startswith("-")][:1]
            self._only = given[0] if given and given[0] in LightningCLI.subcommands() and not parse_only else None
            super().__init__(
                ContrastiveModule,
                LightningDataModule,
                subclass_mode_data=True,
                args=args,
                run=run,
                parser_kwargs={"exit_on_error": False, "default_env": False},
                save_config_callback=LoggedConfig,
                save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
                seed_everything_default=0,
            )

        def subcommands(self) -> dict[str, set[str]]:
            every = LightningCLI.subcommands()
            return {self._only: every[self._only]} if getattr(self, "_only", None) else every

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--overwrite", type=bool, default=False,
                                help="start afresh in a run directory that holds another run's checkpoints or metrics (they are deleted)")
            parser.add_argument("--log_with", type=str, default="wandb", help="wandb (offline without an API key), csv or none")
            parser.add_argument("--wandb_project", type=str, default="infogap")
            parser.add_lightning_class_args(StepCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "step{step:07d}", "checkpoint.auto_insert_metric_name": False})
            parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=lambda d: str(Path(d or ".") / "checkpoints"))
            parser.add_lightning_class_args(RepresentationMetrics, "metrics")
            parser.add_lightning_class_args(ProgressFile, "progress")
            parser.add_lightning_class_args(SaveOnInterrupt, "interrupt")
            parser.link_arguments("data.text_spec", "model.text_spec", apply_on="instantiate")

        def parse_arguments(self, parser, args) -> None:
            super().parse_arguments(parser, args)
            if parse_only:
                raise _Parsed(parser)
            subcommand = self.config.get("subcommand")
            if subcommand == "fit" and os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("RANK", "0") == "0":
                lock = claim_run_dir(self.config["fit"])  # held until the command ends (``locks``), else until this process exits
                self.run_dir_lock = lock
                if locks is not None:
                    locks.append(lock)
            elif subcommand in ("validate", "test"):
                check_checkpoint_arg(self.config[subcommand].get("ckpt_path"))

        def _run_subcommand(self, subcommand: str) -> None:
            try:
                super()._run_subcommand(subcommand)
            except BaseException:  # noqa: BLE001 - SIGTERMException and sys.exit(1) after Ctrl-C are SystemExits
                saved = next((c for c in self.trainer.callbacks if isinstance(c, SaveOnInterrupt) and c.signal), None)
                if saved is None:
                    raise
                raise Interrupted(saved.signal, saved.step, saved.path) from None

        def instantiate_classes(self) -> None:
            try:
                super().instantiate_classes()
            except (TypeError, ValueError, FileNotFoundError, MisconfigurationException) as exc:
                raise ConfigError(_first_line(str(exc))) from None
            check_strategy(self.trainer)
            use_atomic_checkpoints(self.trainer)

        def _instantiate_trainer(self, config, callbacks):
            cfg = self.config[self.subcommand] if self.subcommand else self.config
            given = [c for c in (config.get("callbacks") or []) if isinstance(c, ProgressBar)]
            if config.get("enable_progress_bar") is not False and not given and _rich_available():
                callbacks = [*callbacks, step_progress_bar()]  # steps of the run, not batches of an epoch
            if config.get("logger") in (None, True):
                run_dir = config.get("default_root_dir") or "runs/default"
                config["logger"] = make_logger(cfg.get("log_with", "wandb"), run_dir, project=cfg.get("wandb_project", "infogap"))
            return super()._instantiate_trainer(config, callbacks)

    return _CLI


def check_checkpoint_arg(ckpt_path) -> None:
    """``infogap validate|test --ckpt_path=X``: X is a checkpoint that loads (one line naming it, not torch's
    traceback, when it is missing, empty or corrupt). Without ``--ckpt_path`` the config's own weights are
    evaluated (``model.pretrained``, or a fresh model)."""
    from infogap.train.checkpoints import checkpoint_problem

    if ckpt_path is None or str(ckpt_path) in ("best", "last", "hpc", "registry"):
        return
    problem = checkpoint_problem(ckpt_path)
    if problem is not None:
        raise ConfigError(f"--ckpt_path {ckpt_path}: {problem}")


def claim_run_dir(cfg):
    """Before anything is built: the run directory belongs to one run, and to one process. It is locked
    for this process (``infogap.train.locks``: a second process into it fails at once, naming this one;
    the lock goes with the process, however it ends) and the lock is returned. ``--ckpt_path``
    resumes from an intact checkpoint (a corrupt one falls back to the newest intact one, with a warning
    naming both; ``last`` with no checkpoint says it starts from scratch); ``--overwrite=true`` deletes
    another run's checkpoints and metrics and starts afresh; otherwise a directory holding them is
    refused with one line, so a new run never mixes with an old one."""
    from infogap.train.locks import hold

    run_dir = Path(cfg.trainer.get("default_root_dir") or os.getcwd())
    ckpt_dir = Path(cfg.checkpoint.get("dirpath") or run_dir / "checkpoints")
    lock = hold(run_dir, "trainer.default_root_dir")
    try:
        _claim(cfg, run_dir, ckpt_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _claim(cfg, run_dir: Path, ckpt_dir: Path) -> None:
    from infogap.train.checkpoints import clear_results, previous_results, resolve_resume

    if cfg.get("ckpt_path") is None and list(run_dir.glob("hpc_ckpt_*.ckpt")):
        cfg.ckpt_path = "hpc"  # a requeued SLURM job: Lightning resumes from its hpc checkpoint (the newest intact one here)
    if cfg.get("ckpt_path") is not None:
        asked = str(cfg.ckpt_path)
        cfg.ckpt_path, messages = resolve_resume(asked, ckpt_dir)
        for message in messages:
            print(f"infogap fit: warning: {message}", file=sys.stderr, flush=True)
        if cfg.ckpt_path is not None:
            return
        if not messages:
            print(f"infogap fit: --ckpt_path={asked}: {ckpt_dir} holds no checkpoint yet; training from scratch", file=sys.stderr, flush=True)
    found = previous_results(run_dir, ckpt_dir)
    if found and not cfg.get("overwrite"):
        raise ConfigError(f"trainer.default_root_dir={run_dir} holds another run ({found[0].name}"
                          f"{f' and {len(found) - 1} more' if len(found) > 1 else ''}): resume it with --ckpt_path=last, "
                          "start afresh with --overwrite=true (deletes them), or choose another directory")
    if found:
        clear_results(run_dir, ckpt_dir)


def check_strategy(trainer) -> None:
    """A strategy the accelerator cannot run is a configuration error before anything starts (Lightning
    itself refuses DeepSpeed without CUDA only once fit has begun, with a traceback)."""
    from pytorch_lightning.accelerators import CUDAAccelerator
    from pytorch_lightning.strategies import DeepSpeedStrategy

    strategy = trainer.strategy
    if isinstance(strategy, DeepSpeedStrategy) and not isinstance(trainer.accelerator, CUDAAccelerator):
        stage = strategy.config.get("zero_optimization", {}).get("stage", "?")
        raise ConfigError(f"trainer.strategy: DeepSpeedStrategy (ZeRO stage {stage}) runs only on CUDA GPUs and this run's accelerator is "
                          f"{type(trainer.accelerator).__name__}; on CPU use trainer.strategy=ddp (configs/strategies/ddp.yaml)")


def _rich_available() -> bool:
    from importlib.util import find_spec

    return find_spec("rich") is not None


def InfogapCLI(args, run: bool = True):  # noqa: N802 - a class built lazily so `infogap --help` stays fast
    """The LightningCLI of ``infogap fit``; ``run=False`` (no subcommand in ``args``) only builds the
    trainer, model and data module from the config, as a test or a notebook wants."""
    return _lightning_cli_class()(args, run)
