"""The benchmark script runs (a smoke mode of a few steps), so it cannot rot; the numbers live in
BENCHMARKS.md, never in assertions."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_vs_open_clip_smoke():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--smoke", "vs_open_clip"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, _, payload = proc.stdout.strip().splitlines()[-1].partition(" ")
    result = json.loads(payload)
    assert name == "vs_open_clip" and result["steps"] == 6
    for tool in ("open_clip_train", "infogap_table", "infogap_shards"):
        assert len(result["runs"][tool]) == 1 and result[tool]["wall_s"] > 0 and result[tool]["steady_samples_per_s"] > 0
    for tool in ("infogap_table", "infogap_shards"):
        assert set(result[f"{tool}_over_open_clip"]) == {"steady_ratio", "wall_ratio"}


def test_open_clip_steady_state_reads_the_log_windows():
    """The windows that start after the warm-up steps; each holds (samples since the last line) / batch
    steps at its mean batch time."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.run import _open_clip_steady

    log = "\n".join(f"2026 | INFO | Train Epoch: 0 [{done:>5}/12800 (x%)] Data (t): 0.01 Batch (t): {t:.3f}, 1/s LR: 0"
                    for done, t in ((128, 3.0), (2688, 0.5), (5248, 0.25), (12800, 0.25)))
    # lines at steps 1, 21, 41, 100: after step 21, 20 steps then 59 steps at 0.25 s
    assert _open_clip_steady(log, 128, warm=21) == pytest.approx(128 / 0.25)
    assert _open_clip_steady(log, 128, warm=1) == pytest.approx(128 * 99 / (20 * 0.5 + 20 * 0.25 + 59 * 0.25))
    assert _open_clip_steady(log, 128, warm=20) == pytest.approx(128 * 79 / (20 * 0.25 + 59 * 0.25))
    with pytest.raises(RuntimeError, match="no open_clip_train log line"):
        _open_clip_steady(log, 128, warm=100)
