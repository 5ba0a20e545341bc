"""Worker processes for analyses: the cores of this machine shared between processes."""
from __future__ import annotations

import itertools
import os
from typing import Callable, Iterable


def cores_per_worker(workers: int) -> int:
    """The torch threads of each of ``workers`` processes sharing this machine's cores (at least 1):
    the training subprocesses of the local launcher and the analysis workers of aggregation."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _worker_threads(threads: int) -> None:
    """A worker's set-up: its share of the cores, and (Linux) a SIGTERM when its parent dies, so a killed
    aggregation leaves no worker computing on (a pool's workers otherwise finish their task first)."""
    import sys

    import torch

    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def parallel_map(fn: Callable, items: Iterable, jobs: int = 1, *fixed) -> list:
    """``[fn(*fixed, item) for item in items]`` in order, from up to ``jobs`` spawned worker processes
    (each with its share of the cores as torch threads) when there are jobs and items for more than
    one; ``fn``, ``fixed`` and the items must pickle. Workers share nothing: an analysis keeps its
    results in its own files."""
    items = list(items)
    workers = min(jobs, len(items))
    if workers <= 1:
        return [fn(*fixed, item) for item in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_threads,
                             initargs=(cores_per_worker(workers),)) as pool:
        return list(pool.map(fn, *(itertools.repeat(f) for f in fixed), items))
