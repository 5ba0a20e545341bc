"""One process per directory: a run directory (``infogap fit``), an ablation's results (``infogap
ablate``) or a reproduction (``infogap reproduce``) is held by one process at a time, so two processes
never mix their files (one's ``config.yaml`` beside the other's ``metrics.json`` and ``last.ckpt``).

The lock is ``filelock``'s OS-level file lock on ``DIR/.infogap.lock``: the operating system releases it
when the holder exits, however it exits (SIGKILL, a crash, a node that reboots its job), so a killed
holder never leaves a lock behind. ``DIR/.infogap.holder`` says who holds it (pid, host, command, since
when), for the one-line refusal a second process gets at once.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

LOCK = ".infogap.lock"
HOLDER = ".infogap.holder"


class DirectoryInUse(Exception):
    """Another process holds the directory: one line naming it and the holder."""


def hold(directory: str | Path, what: str):
    """Take ``directory`` for this process (creating it) and return the lock, held until ``release()``
    or this process's exit; ``DirectoryInUse`` at once when another process holds it. ``what`` names the
    directory in the message (``trainer.default_root_dir``, ``--out``)."""
    from filelock import FileLock, Timeout

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"{what}={directory}: cannot be a directory (it, or a folder above it, is a file)") from None
    lock = FileLock(str(directory / LOCK), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DirectoryInUse(f"{what}={directory} is in use by {holder(directory)}; wait for it to end, or choose another "
                             "directory") from None
    command = " ".join(["infogap", *sys.argv[1:]]) if sys.argv else "infogap"
    text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} ({command[:200]})"
    try:
        (directory / HOLDER).write_text(text + "\n")
    except OSError:
        pass  # who holds it is only shown to another process; a full disk must not stop the holder here
    return lock


def holder(directory: str | Path) -> str:
    """Who holds ``directory``, as its holder wrote it (``another process`` when it wrote nothing yet)."""
    try:
        return (Path(directory) / HOLDER).read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def held(directory: str | Path, what: str):
    """``hold`` for the duration of a ``with`` block."""
    lock = hold(directory, what)
    try:
        yield lock
    finally:
        lock.release()
