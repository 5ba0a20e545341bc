"""A study that analyses each run in ``rows`` (``parallel_rows``) gets its runs' rows from
``--analysis-jobs`` worker processes, each with its share of the cores, in the runs' order and equal
to the rows of one process; a study that does not is never sent to workers."""
from __future__ import annotations

import json
import os
from pathlib import Path

from infogap.ablations.runner.aggregate import finished_rows
from infogap.ablations.kit.study import Ablation, Run, Study


class AnalysedRuns(Study):
    parallel_rows = True

    def rows(self, run, record):
        import torch

        return [{"value": record["metrics"]["value"] * 10 + i, "pid": os.getpid(), "threads": torch.get_num_threads()} for i in range(2)]


class PlainRuns(AnalysedRuns):
    parallel_rows = False


def _runs(tmp_path: Path) -> list[Run]:
    runs = []
    for i, value in enumerate([3.0, 1.0, None, 2.0]):  # the third run is unfinished
        run = Run("train", {"k": i}, 0, {}, tmp_path / f"run{i}")
        run.dir.mkdir()
        if value is not None:
            (run.dir / "metrics.json").write_text(json.dumps({"metrics": {"value": value}, "history": {}}))
        runs.append(run)
    return runs


def test_analysed_runs_come_from_workers_in_order_and_equal_one_process(tmp_path):
    runs = _runs(tmp_path)
    ablation = Ablation("t", tmp_path / "base.yaml", [], study=AnalysedRuns())
    one = finished_rows(ablation, runs, jobs=1)
    two = finished_rows(ablation, runs, jobs=2)
    strip = [{k: v for k, v in r.items() if k not in ("pid", "threads")} for r in two]
    assert strip == [{k: v for k, v in r.items() if k not in ("pid", "threads")} for r in one]
    assert [r["value"] for r in two] == [30, 31, 10, 11, 20, 21] and [r["k"] for r in two] == [0, 0, 1, 1, 3, 3]
    assert {r["pid"] for r in one} == {os.getpid()} and os.getpid() not in {r["pid"] for r in two}
    assert {r["threads"] for r in two} == {max(1, (os.cpu_count() or 1) // 2)}


def test_a_study_that_does_not_analyse_its_runs_stays_in_this_process(tmp_path):
    rows = finished_rows(Ablation("t", tmp_path / "base.yaml", [], study=PlainRuns()), _runs(tmp_path), jobs=2)
    assert {r["pid"] for r in rows} == {os.getpid()} and len(rows) == 6


def test_analysis_jobs_below_one_is_a_one_line_error():
    import pytest

    from infogap.ablations.runner.cli import main

    with pytest.raises(ValueError, match=r"^--analysis-jobs must be >= 1, got 0$"):
        main(["imbalance", "--analysis-jobs", "0", "--dry-run"])


def test_each_worker_gets_its_share_of_the_cores(monkeypatch):
    from infogap.ablations.kit.parallel import cores_per_worker

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [cores_per_worker(w) for w in (0, 1, 2, 3, 16, 40)] == [16, 16, 8, 5, 1, 1]
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one thread each
    assert cores_per_worker(2) == 1


def _sleep_and_tell(folder, i):
    import pathlib
    import time

    pathlib.Path(folder, f"{i}.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return i


def test_killing_the_parent_stops_its_analysis_workers(tmp_path):
    """parallel_map's workers die with their parent: a killed aggregation leaves nothing computing on."""
    import subprocess
    import sys
    import time

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    code = ("import sys; sys.path.insert(0, '.'); from infogap.ablations.kit.parallel import parallel_map; "
            "from tests.test_runner_parallel_rows import _sleep_and_tell; "
            f"parallel_map(_sleep_and_tell, [0, 1], 2, {str(tmp_path)!r})")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)))
    deadline = time.time() + 90  # a hang guard only
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    parent.kill()
    parent.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"  # a zombie has stopped

    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)
