"""The metrics callback logs curves to W&B (read back from the offline run) and saves embeddings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from infogap.train.evaluation import curve_name
from infogap.train.metrics_cli import load_embeddings
from tests.helpers.processes import cli, in_process, tiny_fit_args
from tests.helpers.wandb_logs import read_wandb_config, read_wandb_history

CURVES = [
    "gap/l2m", "gap/rmg", "gap/l2i", "uniformity/image", "uniformity/text", "uniformity/all", "alignment",
    "entropy/i2t", "entropy/t2i", "bias/moad_image", "bias/moad_text", "bias/moad_image_colour",
    "zeroshot/object_acc", "zeroshot/colour_acc", "retrieval/i2t@1", "retrieval/t2i@10", "temperature",
]


@pytest.mark.slow
def test_curves_logged_to_offline_wandb_at_several_steps(tmp_path, capsys):
    run = tmp_path / "run"
    proc = cli(*tiny_fit_args(run, 12, "--metrics.eval_every_n_steps=4"), env={"WANDB_MODE": None, "WANDB_API_KEY": None, "NETRC": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "logging offline" in proc.stderr
    rows = read_wandb_history(run)
    for key in CURVES:
        steps = sorted({r["trainer/global_step"] for r in rows if key in r})
        assert len(steps) > 1, f"{key} logged at {steps}"
    steps = sorted({r["trainer/global_step"] for r in rows if "gap/rmg" in r})
    assert steps == [0, 4, 8, 12]
    assert any("train/loss" in r for r in rows)
    # the whole config, keyed as on the command line (what a sweep varies), so runs group by it
    config = read_wandb_config(run)
    assert config["data.k"] == 5 and config["seed_everything"] == 0 and config["model.loss"] == "clip"
    assert config["data.class_path"] == "infogap.data.synthetic.SyntheticDataModule" and config["trainer.max_steps"] == 12

    record = json.loads((run / "metrics.json").read_text())
    assert record["step"] == 12 and record["prompt_mode"] == "full"
    emb = load_embeddings(run / "embeddings.npz")
    assert emb["image"].shape == emb["text"].shape == (64, 64)
    assert set(emb["labels"]) == {"object", "thickness", "swelling", "fracture", "scaling", "colour"}
    assert emb["classes"]["colour"].shape == (7, 64)
    np.testing.assert_allclose(np.linalg.norm(emb["image"], axis=1), 1.0, atol=1e-5)
    # the saved embeddings reproduce the logged final numbers offline
    again = in_process(capsys, "metrics", "--embeddings", str(run / "embeddings.npz"))
    offline = json.loads(again.stdout)
    for key in ("rmg", "l2m", "moad_image", "entropy_i2t", "zeroshot_object_acc"):
        assert offline[key] == pytest.approx(record["metrics"][key], abs=1e-6)


@pytest.mark.slow
def test_csv_logger_is_one_line_away(tmp_path):
    run = tmp_path / "run"
    proc = cli(*tiny_fit_args(run, 4, "--log_with=csv", "--metrics.eval_every_n_steps=2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "gap/rmg" in header and "bias/moad_image" in header


def test_curve_names():
    assert curve_name("rmg") == "gap/rmg" and curve_name("moad_text_colour") == "bias/moad_text_colour"
    assert curve_name("recall_i2t@5") == "retrieval/i2t@5" and curve_name("zeroshot_object_acc") == "zeroshot/object_acc"
    assert curve_name("uniformity_all") == "uniformity/all" and curve_name("gap_top5_share") == "gap/top5_share"
