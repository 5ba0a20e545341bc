"""Fixtures shared across the test files (each file stays on one pytest-xdist worker, so a module-scoped
fixture is built once per file that uses it):

- ``random_checkpoint(model)``: a randomly initialised infogap checkpoint of a small model (``tiny``,
  ``small``, ``small-h8``, ``tiny-bpe``), as a finished run's ``last.ckpt`` would hold it;
- ``encoder``: a loader of the random ``tiny`` checkpoint through ``load_encoder``, as the analyses load;
- ``golden_run``: a copy of the fixed tiny finished run of ``tests/golden/run`` (30 steps at k = 2: its
  metrics with history, embeddings, checkpoint), for any analysis of a finished run;
- ``image_folder(root, {class: n})``: an ImageFolder-layout folder of random 28 px images.

The files run most-slow-tests first (``pytest_collection_modifyitems``).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (``make test``: 2 workers on 2 cores) each worker, and every process a test
    starts from it, gets its share of the cores as torch / OpenMP threads (``OMP_NUM_THREADS``, unless
    the environment sets it). Without it two workers run 2 threads each on 2 cores, and oversubscribed
    OpenMP waits: an in-process learn/forget analysis took 42 s beside the other worker, 11 s alone."""
    import signal

    # a shell that starts the suite in the background (nohup CMD &) leaves SIGINT ignored, and an ignored
    # signal stays ignored in every process started from here: the Ctrl-C tests would see no Ctrl-C.
    # A handler of our own is reset to the default at exec, so the runs the tests start get Ctrl-C again.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """The test files in the order of their number of slow tests, most first (stable: the order within a
    file is kept). pytest-xdist (``--dist loadfile --no-loadscope-reorder``, the Makefile's) hands the
    files out in this order, so the long files start first and the short ones fill in at the end,
    instead of a long file starting last on one worker while the other has nothing left."""
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    made: dict[str, Path] = {}

    def make(model: str = "tiny", seed: int = 0) -> Path:
        from infogap.data.synthetic import SyntheticSource
        from infogap.models import is_word_level
        from infogap.train.module import ContrastiveModule

        key = f"{model}-{seed}"
        if key not in made:
            torch.manual_seed(seed)
            spec = SyntheticSource().vocab.text_spec() if is_word_level(model) else None
            module = ContrastiveModule(model, text_spec=spec)
            path = tmp_path_factory.mktemp("ckpt") / f"{key}.ckpt"
            torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="module")
def encoder(random_checkpoint):
    from infogap.train.embed import load_encoder

    ckpt = random_checkpoint("tiny")
    return lambda: load_encoder(checkpoint=str(ckpt))


@pytest.fixture
def golden_run(tmp_path):
    from tests.golden_cases import golden_run as copy

    return copy(tmp_path)


@pytest.fixture
def image_folder():
    from PIL import Image

    def make(root: Path, counts: dict[str, int]) -> Path:
        rng = np.random.default_rng(0)
        for cls, n in counts.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
        return root

    return make
