"""What can be known before the first step is reported before the first step: one line, exit 2, and
no checkpoint written. A run without evaluation data trains with the metrics callback off, saying so
once before it starts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.data import photo_image, write_photo_shards
from tests.helpers.processes import tiny_fit_args


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Local photo shards, a CSV table of image files, and labelled folders (one good, one with an
    empty class)."""
    d = tmp_path_factory.mktemp("real")
    write_photo_shards(d, n_shards=1, per_shard=6, corrupt=False)
    rows = ["filepath,caption"]
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = d / f"{name}.png"
        photo_image(name, 64).save(path)
        rows.append(f"{path},a photo of a {name}")
    (d / "pairs.csv").write_text("\n".join(rows) + "\n")
    for cls in ("cat", "cup"):
        (d / "folder" / cls).mkdir(parents=True)
        photo_image("chelsea" if cls == "cat" else "coffee", 64).save(d / "folder" / cls / "a.png")
    (d / "gappy" / "cat").mkdir(parents=True)
    photo_image("chelsea", 64).save(d / "gappy" / "cat" / "a.png")
    (d / "gappy" / "dog").mkdir()
    (d / "gappy" / "dog" / "notes.txt").write_text("no image here")
    return d


def _real_args(run: Path, *extra: str) -> list[str]:
    """A 4-step real-data run of tiny-bpe through the user's config path."""
    return ["fit", "--config", str(ROOT / "configs/synthetic.yaml"), "--model.model=tiny-bpe", "--data=infogap.data.webdata.WebDataModule",
            "--data.model=tiny-bpe", "--data.batch_size=2", "--data.num_workers=0", f"--trainer.default_root_dir={run}",
            "--trainer.max_steps=4", "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0", "--log_with=none",
            "--metrics.num_samples=4", *extra]


def _fit(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    from infogap.cli import main as infogap

    monkeypatch.setattr(sys, "argv", ["infogap"])
    code = infogap(args)
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, run: Path, *named: str) -> None:
    assert code == 2 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("infogap fit: error:"), last
    for text in named:
        assert text in last, (text, last)
    assert not list(run.rglob("*.ckpt")), "a refused run must not write a checkpoint"
    assert not (run / "metrics.json").exists()


def test_missing_shard_is_refused_before_step_0(real, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, err = _fit(_real_args(run, f"--data.train_shards={real}/photos-{{000000..000001}}.tar"), capsys, monkeypatch)
    _assert_refused(code, err, run, "data.train_shards", "photos-000001.tar")


@pytest.mark.parametrize("folder, named", [("nowhere", "no such directory"), ("gappy", "class 'dog' has no images")])
def test_bad_zeroshot_folder_is_refused_before_step_0(folder, named, real, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, err = _fit(_real_args(run, f"--data.train_table={real}/pairs.csv", f"--data.val_shards={real}/photos-000000.tar",
                                f"--data.zeroshot_folder={real}/{folder}"), capsys, monkeypatch)
    _assert_refused(code, err, run, "data.zeroshot_folder", named)


def test_word_level_model_on_bpe_data_is_refused(real, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, err = _fit(_real_args(run, f"--data.train_table={real}/pairs.csv", "--model.model=tiny"), capsys, monkeypatch)
    _assert_refused(code, err, run, "'tiny' is a word-level model", "use a BPE model")


def test_bpe_model_on_word_level_data_is_refused(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, err = _fit(tiny_fit_args(run, 4, "--model.model=tiny-bpe", "--log_with=none"), capsys, monkeypatch)
    _assert_refused(code, err, run, "model.model='tiny-bpe' has a BPE text tower", "word-level captions")


def test_image_size_mismatch_is_refused(tmp_path, capsys, monkeypatch):
    """BPE captions on both sides, but 28 px synthetic images for a 64 px vision tower."""
    run = tmp_path / "run"
    code, err = _fit(tiny_fit_args(run, 4, "--model.model=tiny-bpe", "--data.tokenizer=ViT-B-32", "--log_with=none"), capsys, monkeypatch)
    _assert_refused(code, err, run, "takes 64 px images", "28 px")


@pytest.mark.slow
def test_deepspeed_without_cuda_is_refused_naming_the_strategy(tmp_path, capsys, monkeypatch):
    pytest.importorskip("deepspeed")
    run = tmp_path / "run"
    code, err = _fit(tiny_fit_args(run, 4, "--config", str(ROOT / "configs/strategies/deepspeed_zero2.yaml"), "--log_with=none"),
                     capsys, monkeypatch)
    _assert_refused(code, err, run, "DeepSpeedStrategy (ZeRO stage 2)", "only on CUDA", "CPUAccelerator")


def test_no_evaluation_data_turns_the_metrics_off_with_one_warning(real, tmp_path, capsys, monkeypatch):
    """data.train_table and no data.val_shards: trains, saves its checkpoint, exits 0, and says once,
    before the first step, that there are no metrics (the callback's setup runs before training)."""
    from infogap.train.evaluation import RepresentationMetrics

    seen = []  # (step, callback enabled) at every training batch
    monkeypatch.setattr(RepresentationMetrics, "on_train_batch_start",
                        lambda self, trainer, *a: seen.append((trainer.global_step, self.enabled)), raising=False)
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"metrics: off for this run \(data.val_shards is not set\)") as record:
        code, err = _fit(_real_args(run, f"--data.train_table={real}/pairs.csv"), capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert sum("metrics: off for this run" in str(w.message) for w in record) == 1
    assert seen and seen[0] == (0, False)  # decided before step 0
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
