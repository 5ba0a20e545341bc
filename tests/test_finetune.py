"""Learning and forgetting (seed 003): tasks, zero-shot measures, the three fine-tuning methods and the
gain/forgetting bookkeeping."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from infogap.data.synthetic import SyntheticSource
from infogap.train.embed import load_encoder
from infogap.train.finetune import FineTune, Task, accuracies, finetune, folder_task, learn_forget, synthetic_tasks, zero_shot
from infogap.train.module import ContrastiveModule


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A randomly initialised tiny model, saved as an infogap checkpoint and loaded as the analyses do."""
    torch.manual_seed(0)
    module = ContrastiveModule("tiny", text_spec=SyntheticSource().vocab.text_spec())
    ckpt = tmp_path_factory.mktemp("ckpt") / "random.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    return lambda: load_encoder(checkpoint=str(ckpt))


@pytest.fixture(scope="module")
def tasks(encoder):
    return synthetic_tasks(encoder(), ["object", "colour"], n_train=256, n_eval=128, prompts_per_value=2)


def test_learn_forget_bookkeeping_by_hand():
    before, after = {"a": 0.6, "b": 0.8}, {"a": 0.9, "b": 0.7}
    out = learn_forget(before, after, "a")
    assert out["gain"] == pytest.approx(0.3) and out["relative_gain"] == pytest.approx(0.75)
    assert out["off_task_change"] == pytest.approx(-0.1) and out["forgetting"] == pytest.approx(0.1)
    three = learn_forget({"a": 0.5, "b": 0.8, "c": 0.4}, {"a": 0.75, "b": 0.6, "c": 0.5}, "a")
    assert three["off_task_change"] == pytest.approx((-0.2 + 0.1) / 2) and three["relative_gain"] == pytest.approx(0.5)
    assert np.isnan(learn_forget({"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 0.5}, "a")["relative_gain"])
    with pytest.raises(ValueError, match="same tasks"):
        learn_forget({"a": 0.5}, {"a": 0.6, "b": 0.1}, "a")


def test_zero_shot_measures_against_a_hand_computation(encoder, tasks):
    enc = encoder()
    task = tasks[1]
    got = zero_shot(enc.model, task)
    x = torch.from_numpy(enc.images(task.eval_images)).double()
    emb = torch.from_numpy(enc.texts(task.prompts.flatten(0, 1))).double().view(len(task.classes), task.prompts.shape[1], -1).mean(1)
    classes = emb / emb.norm(dim=1, keepdim=True)
    lab = task.eval_labels
    sims = x @ classes.T
    assert got["acc"] == pytest.approx(float((sims.argmax(1) == lab).double().mean()))
    wrong = torch.ones_like(sims, dtype=torch.bool)
    wrong[torch.arange(len(x)), lab] = False
    inter = float((sims * wrong).sum(1).div(len(task.classes) - 1).mean())
    n = len(x)
    intra = float(((x @ x.T).sum() - (x * x).sum()) / (n * (n - 1)))
    assert got["s_inter"] == pytest.approx(inter, abs=1e-5) and got["s_intra"] == pytest.approx(intra, abs=1e-5)
    assert got["iimm"] == pytest.approx((inter + intra) / 2, abs=1e-5)
    gap = x.mean(0) - classes[lab].mean(0)
    assert got["l2m"] == pytest.approx(float(gap.norm()), abs=1e-5)


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_linear_probe_leaves_the_model_bit_identical_and_starts_at_zero_shot(encoder, tasks):
    enc = encoder()
    task = tasks[1]
    before = _params(enc.model)
    probe = FineTune(enc.model, task.prompts, "linear", task.name)
    assert probe.accuracy(task) == pytest.approx(zero_shot(enc.model, task)["acc"]), "the head starts as the zero-shot classifier"
    module = finetune(enc.model, task, "linear", steps=8, batch_size=64, lr=1e-2, accelerator="cpu")
    after = _params(module.model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert not any(p.requires_grad for p in module.model.parameters()) and module.head.requires_grad
    assert not torch.allclose(module.head, probe.head), "the head trained"


def test_bitfit_trains_only_biases_and_full_fine_tuning_trains_both_towers(encoder, tasks):
    task = tasks[1]
    for method in ("bitfit", "full"):
        enc = encoder()
        before = _params(enc.model)
        module = finetune(enc.model, task, method, steps=4, batch_size=64, lr=1e-3, accelerator="cpu")
        after = _params(module.model)
        changed = {n for n in before if not torch.equal(before[n], after[n])}
        if method == "bitfit":
            assert changed and all(n.endswith("bias") for n in changed)
            assert any(n.startswith("visual.") for n in changed) and any(not n.startswith("visual.") for n in changed)
        else:
            assert "visual.conv1.weight" in changed and "token_embedding.weight" in changed and "logit_scale" in changed


@pytest.mark.parametrize("method", ["full", "linear"])
def test_fine_tuning_on_a_task_raises_its_accuracy(encoder, tasks, method):
    """A random model is at chance on colour; a short fine-tune (either method) learns it."""
    enc = encoder()
    task = tasks[1]
    zs = zero_shot(enc.model, task)["acc"]
    module = finetune(enc.model, task, method, steps=40, batch_size=64, lr=3e-3 if method == "full" else 3e-2, accelerator="cpu")
    acc = module.accuracy(task)
    assert acc > zs + 0.2 and acc > 0.5, (zs, acc)
    assert accuracies(module, tasks) == pytest.approx({t.name: module.accuracy(t) for t in tasks}), "one image embedding, the same numbers"


def _image_folder(root, counts: dict[str, int]):
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_folder_task_splits_every_class_and_names_bad_folders(tmp_path):
    enc = load_encoder(model="tiny-bpe")  # class prompts are sentences: a BPE model
    root = _image_folder(tmp_path / "shapes", {"red_square": 4, "circle": 3})
    task = folder_task(enc, str(root), templates=["a {}.", "a photo of a {}."], eval_fraction=0.5, seed=1)
    assert task.name == "shapes" and task.classes == ["circle", "red square"]
    assert task.prompts.shape[:2] == (2, 2) and task.eval_images.shape[1:] == (3, 64, 64)
    assert sorted(task.eval_labels.tolist()) == [0, 0, 1, 1] and sorted(task.train_labels.tolist()) == [0, 1, 1]
    again = folder_task(enc, str(root), templates=["a {}.", "a photo of a {}."], eval_fraction=0.5, seed=1)
    assert torch.equal(again.eval_images, task.eval_images), "the split is fixed by the seed"
    with pytest.raises(FileNotFoundError, match="missing"):
        folder_task(enc, str(tmp_path / "missing"))
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="class 'empty' has no images"):
        folder_task(enc, str(root))
    (root / "empty").rmdir()
    _image_folder(root, {"single": 1})
    with pytest.raises(ValueError, match="class 'single' has 1 image"):
        folder_task(enc, str(root))
    with pytest.raises(ValueError, match="templates need"):
        folder_task(enc, str(root), templates=["a photo"])


def test_a_task_needs_two_classes_and_matching_labels():
    images = torch.zeros(4, 3, 28, 28)
    with pytest.raises(ValueError, match="at least two classes"):
        Task("t", ["a"], torch.zeros(1, 1, 8, dtype=torch.long), images, torch.zeros(4), images, torch.zeros(4))
    with pytest.raises(ValueError, match="3 train images with 4 labels"):
        Task("t", ["a", "b"], torch.zeros(2, 1, 8, dtype=torch.long), images[:3], torch.zeros(4), images, torch.zeros(4))


def test_ols_fit_against_polyfit_and_a_hand_r2():
    from infogap.ablations.learn_forget import ols_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    y = 0.7 * x + 0.2 + rng.normal(scale=0.3, size=20)
    fit = ols_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - np.sum((y - (slope * x + intercept)) ** 2) / np.sum((y - y.mean()) ** 2)
    assert fit["slope"] == pytest.approx(slope) and fit["intercept"] == pytest.approx(intercept) and fit["r2"] == pytest.approx(r2)
    assert fit["ci"][0] < slope < fit["ci"][1] and fit["p_value"] < 1e-4 and fit["n"] == 20
    x[3] = np.nan  # a missing point is dropped
    assert ols_fit(x, y)["n"] == 19
    assert np.isnan(ols_fit(np.ones(5), np.arange(5.0))["slope"]) and np.isnan(ols_fit([1.0, 2.0], [1.0, 3.0])["r2"])




def test_within_model_fit_recovers_the_slope_inside_models_that_pooled_ols_reverses():
    from infogap.ablations.learn_forget import ols_fit, within_model_fit

    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(8), 6)
    centre = np.linspace(0, 1, 8)[groups]  # models further right sit lower: the pooled trend is negative
    x = centre + rng.uniform(-0.1, 0.1, size=48)
    y = 2.0 * (x - centre) - 3.0 * centre + rng.normal(scale=0.02, size=48)
    assert ols_fit(x, y)["slope"] < 0
    fit = within_model_fit(x, y, groups)
    assert fit["within_slope"] == pytest.approx(2.0, abs=0.2) and fit["within_ci"][0] < 2.0 < fit["within_ci"][1]
    assert fit["within_p"] < 1e-6 and fit["models"] == 8
    # the within estimator by hand: the slope of the per-model demeaned points
    xd = x - np.array([x[groups == g].mean() for g in groups])
    yd = y - np.array([y[groups == g].mean() for g in groups])
    assert fit["within_slope"] == pytest.approx(np.sum(xd * yd) / np.sum(xd * xd), rel=1e-9)
    assert np.isnan(within_model_fit(x, y, np.zeros(48))["within_slope"])  # one model: nothing to separate
    assert np.isnan(within_model_fit(centre, y, groups)["within_slope"])  # x constant inside every model

def test_claims_need_a_rising_fit_and_iimm_to_fit_at_all_before_it_predicts_better():
    from infogap.ablations.learn_forget import claims

    rng = np.random.default_rng(1)
    iimm, acc = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    other = rng.uniform(0, 1, 40)
    rows = [{"method": "full", "zs_iimm": a, "zs_acc": b, "zs_rmg": c, "zs_l2m": c, "gain": 1.0 * a + 2.0 * b + 0.05 * e,
             "forgetting": -0.3 * a + 0.01 * e} for a, b, c, e in zip(iimm, acc, other, rng.normal(size=40))]
    verdict = {c.claim.split(" (")[0]: c.verdict for c in claims(rows, {}) if "(full;" in c.claim}
    assert verdict["gain rises with zero-shot IIMM"] == "holds"
    assert verdict["IIMM predicts gain better than zero-shot accuracy, RMG and L2M"] == "does NOT hold"  # the accuracy explains more
    assert verdict["forgetting rises with zero-shot IIMM"] == "does NOT hold"  # it falls
    assert verdict["IIMM predicts forgetting better than zero-shot accuracy, RMG and L2M"] == "holds"  # R² says nothing of the sign
    # IIMM has the highest R² of noise: residuals of random numbers on IIMM and the accuracy, plus a trace of IIMM
    alt = 0.3 + 1e-3 * (np.arange(40) % 2)
    design = np.column_stack([np.ones(40), iimm, alt])
    e = rng.normal(size=40)
    forgetting = e - design @ np.linalg.lstsq(design, e, rcond=None)[0] + 0.02 * (iimm - iimm.mean())
    noise = [{**r, "zs_rmg": 0.3, "zs_l2m": 0.3, "zs_acc": a, "forgetting": f} for r, a, f in zip(rows, alt, forgetting)]
    assert np.corrcoef(iimm, forgetting)[0, 1] ** 2 > np.corrcoef(alt, forgetting)[0, 1] ** 2
    c = next(c for c in claims(noise, {}) if c.claim.startswith("IIMM predicts forgetting") and "(full;" in c.claim)
    assert c.verdict == "does NOT hold" and "explains nothing" in c.detail

@pytest.mark.slow
def test_analyze_learn_forget_on_local_checkpoints_and_a_folder(tmp_path, capsys, encoder):
    from infogap.models import build_model
    from infogap.train.cli import main as infogap

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"bpe{seed}.pt")
        torch.save(build_model("tiny-bpe").state_dict(), paths[-1])
    folder = _image_folder(tmp_path / "shapes", {"circle": 4, "square": 4, "star": 4})
    out = tmp_path / "out"
    args = ["analyze", "learn-forget", "--model", f"tiny-bpe={paths[0]}", "--model", f"tiny-bpe={paths[1]}", "--folder", str(folder),
            "--templates", "a {}.|a photo of a {}.", "--steps", "2", "--seeds", "0", "--n-train", "64", "--n-eval", "64", "--out", str(out)]
    assert infogap(args) == 0
    printed = capsys.readouterr().out
    assert "rises with zero-shot IIMM" in printed
    import csv

    with open(out / "points.csv") as f:
        points = list(csv.DictReader(f))
    assert len(points) == 2 * 3 * 7  # models x methods x (6 factors + the folder)
    assert {p["task"] for p in points} == {"object", "colour", "thickness", "swelling", "fracture", "scaling", "shapes"}
    assert all(float(p["forgetting"]) == 0 for p in points if p["method"] == "linear")
    with open(out / "fits.csv") as f:
        assert len(list(csv.DictReader(f))) == 4 * 2 * 4
    assert (out / "learn_forget_vs_iimm.png").stat().st_size > 10_000
    saved = json.loads((out / "learn_forget.json").read_text())
    assert len(saved) == 2 and all(len(m["finetunes"]) == 3 * 7 for m in saved.values())
    word = tmp_path / "word.ckpt"
    module = ContrastiveModule("tiny", text_spec=SyntheticSource().vocab.text_spec())
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, word)
    for bad, message in ((["--checkpoint", str(word), "--folder", str(folder)], "word-level synthetic model cannot read"),
                         (["--model", "tiny-bpe"], "give NAME=PATH"), (["--model", f"tiny-bpe={paths[0]}", "--no-synthetic"], "leaves no task"),
                         (["--model", f"tiny-bpe={paths[0]}", "--methods", "lora"], "unknown method lora")):
        assert infogap(["analyze", "learn-forget", *bad, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
