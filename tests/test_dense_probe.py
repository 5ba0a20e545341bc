"""Dense probes (Vasu et al. 2024): synthetic targets, patch features, the feature cache, label subsets, probe metrics by hand, learning and baselines, local layouts, curves in W&B, `infogap probe`."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infogap.ablations.dense.probe import (
    DenseProbe,
    FeatureCache,
    baselines,
    label_subset,
    patch_features,
    synthetic_targets,
    train_probe,
)
from infogap.data.synthetic import SyntheticDataModule
from infogap.data.factors import Vocabulary
from infogap.models import build_model


@pytest.fixture(scope="module")
def batch():
    dm = SyntheticDataModule(k=5, dense_targets=True)
    return dm.source.val_batch(np.arange(256))


def test_synthetic_targets_mark_the_object_with_its_class(batch):
    seg = synthetic_targets(batch, "object")
    assert seg.dtype == torch.long and seg.shape == (256, 28, 28)
    on = batch["mask"].bool()
    assert (seg[~on] == 0).all()
    for i in range(4):
        assert set(seg[i][on[i]].tolist()) == {int(batch["labels"]["object"][i]) + 1}
    colour = synthetic_targets(batch, "colour")
    assert int(colour.max()) <= 7 and torch.equal(colour > 0, on)
    assert torch.equal(synthetic_targets(batch, "depth"), batch["depth"])
    with pytest.raises(ValueError, match="choose one of object, colour"):
        synthetic_targets(batch, "swelling")


def test_patch_features_of_chosen_layers_leave_the_encoder_unchanged(batch):
    torch.manual_seed(0)
    model = build_model("tiny", vocab_size=64, context_length=8, eos_id=63)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    last = patch_features(model, batch["image"][:8])
    both = patch_features(model, batch["image"][:8], layers=(0, -1), normalize=False)
    assert last.shape == (8, 64, 7, 7) and both.shape == (8, 128, 7, 7)
    raw_last = patch_features(model, batch["image"][:8], normalize=False)
    assert torch.allclose(both[:, 64:], raw_last) and not torch.allclose(last, raw_last)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    with pytest.raises(ValueError, match="blocks 0..1"):
        patch_features(model, batch["image"][:2], layers=(5,))


def test_feature_cache_computes_once_per_key(tmp_path):
    cache, calls = FeatureCache(tmp_path), []

    def compute():
        calls.append(1)
        return torch.arange(24, dtype=torch.float32).view(2, 3, 2, 2)

    key = {"checkpoint": "a", "data": "val:0-2", "layers": [-1]}
    first, again = cache.get(key, compute), cache.get(key, compute)
    assert len(calls) == 1 and isinstance(again, np.memmap) and np.array_equal(first, again)
    cache.get({**key, "layers": [0]}, compute)
    assert len(calls) == 2 and len(list(tmp_path.glob("features-*.npy"))) == 2


def test_label_subsets_are_fixed_per_seed_and_nested():
    subsets = {f: label_subset(5000, f, seed=3) for f in (0.01, 0.1, 1.0)}
    assert [len(s) for s in subsets.values()] == [50, 500, 5000]
    assert set(subsets[0.01]) <= set(subsets[0.1]) <= set(subsets[1.0])
    assert np.array_equal(subsets[0.1], label_subset(5000, 0.1, seed=3))
    assert not np.array_equal(subsets[0.1], label_subset(5000, 0.1, seed=4))
    with pytest.raises(ValueError, match="label fraction"):
        label_subset(10, 0.0, 0)


def _fixed_seg_probe(num_classes: int) -> DenseProbe:
    """A probe whose logits are 10 x its one-hot features: its predictions are the features' classes."""
    probe = DenseProbe(num_classes, "seg", num_classes, size=4)
    with torch.no_grad():
        probe.head.weight.copy_(10 * torch.eye(num_classes)[:, :, None, None])
        probe.head.bias.zero_()
    return probe


def test_probe_miou_and_rmse_equal_a_hand_computation():
    pred = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, 2], [0, 0, 0, 0], [1, 1, 1, 1]]])
    target = torch.tensor([[[0, 0, 1, 2], [0, 2, 2, 1], [0, 0, 0, 0], [1, 1, 0, 1]]])
    features = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    got = _fixed_seg_probe(3).evaluate(features, target)["miou"]
    ious = []
    for c in range(3):
        tp = ((pred == c) & (target == c)).sum().item()
        fp = ((pred == c) & (target != c)).sum().item()
        fn = ((pred != c) & (target == c)).sum().item()
        ious.append(tp / (tp + fp + fn))
    assert got == pytest.approx(np.mean(ious))

    probe = DenseProbe(1, "depth", size=4)
    with torch.no_grad():
        probe.head.weight.fill_(1.0)
        probe.head.bias.zero_()
    gen = torch.Generator().manual_seed(0)
    depth_pred = torch.rand(3, 1, 4, 4, generator=gen) + 1
    depth = torch.rand(3, 4, 4, generator=gen) + 1
    depth[0, :2] = 0  # no depth there (the background of a synthetic image): counted nowhere
    depth[2] = 0  # an image without any depth: not in the per-image mean
    got = probe.evaluate(depth_pred, depth)
    err, valid = depth_pred[:, 0] - depth, depth > 0
    per_image = [float((err[i][valid[i]] ** 2).mean().sqrt()) for i in range(2)]  # images 0 and 1
    assert got["rmse"] == pytest.approx(np.mean(per_image), rel=1e-5)
    assert got["rmse_pooled"] == pytest.approx(float((err[valid] ** 2).mean().sqrt()), rel=1e-5)
    assert got["rmse"] != pytest.approx(got["rmse_pooled"], rel=1e-3)  # image 0 has half the pixels: the two means differ
    assert got["absrel"] == pytest.approx(float((err[valid].abs() / depth[valid]).mean()), rel=1e-5)
    e, d = err[valid].double(), depth[valid].double()  # the metric sums in float32: R² of 16 pixels to 1e-4
    assert got["r2"] == pytest.approx(1 - float((e ** 2).sum()) / float(((d - d.mean()) ** 2).sum()), rel=1e-4)


@pytest.mark.slow
def test_an_informative_feature_is_learned_and_a_constant_one_gives_the_majority_baseline(batch):
    target = synthetic_targets(batch, "object")
    train, test = np.arange(192), slice(192, 256)
    informative = torch.nn.functional.one_hot(target, 11).permute(0, 3, 1, 2).float()
    probe = train_probe(informative, target, train, "seg", 11, steps=150, lr=0.1, accelerator="cpu")
    assert probe.evaluate(informative[test], target[test])["miou"] > 0.95
    constant = torch.ones(256, 4, 7, 7)
    probe = train_probe(constant, target, train, "seg", 11, steps=150, lr=0.1, accelerator="cpu")
    base = baselines(target[train], target[test], "seg", 11)
    assert base["majority_class"] == 0  # background
    assert probe.evaluate(constant[test], target[test])["miou"] == pytest.approx(base["miou"])
    depth = synthetic_targets(batch, "depth")
    flat = baselines(depth[train], depth[test], "depth")
    per_image = [d[d > 0] for d in depth[test]]  # the object's pixels: the background has no depth
    assert flat["rmse"] == pytest.approx(float(np.mean([((d - d.mean()) ** 2).mean().sqrt() for d in per_image])), rel=1e-5)
    probe = train_probe(constant, depth, train, "depth", steps=150, lr=0.1, accelerator="cpu")
    assert probe.evaluate(constant[test], depth[test])["rmse"] >= flat["rmse"] - 1e-6, "a constant feature cannot beat the per-image oracle"


def test_layout_prior_is_the_mean_training_mask_per_position_and_size_word():
    from infogap.ablations.dense.probe import layout_prior

    mask = torch.zeros(4, 8, 8, dtype=torch.uint8)
    mask[0, :4, :4] = 1  # cell (position 0, size 0)
    mask[1, :4, 4:] = 1  # the same cell: its mean is half of each quadrant
    mask[2, 4:, 4:] = 1  # cell (position 8, size 2)
    layout = {"position": torch.tensor([0, 0, 8, 8]), "size": torch.tensor([0, 0, 2, 2]), "plane": torch.tensor([0, 1, 0, 1])}
    prior = layout_prior({"mask": mask, "layout": layout}, size=2)
    assert prior.shape == (27, 2, 2)
    assert torch.equal(prior[0], torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    assert torch.equal(prior[8 * 3 + 2], torch.tensor([[0.0, 0.0], [0.0, 0.5]]))
    assert torch.equal(prior[5], torch.tensor([[0.25, 0.25], [0.0, 0.25]]))  # an absent pair: the overall mean (a quarter per filled quadrant)


def test_ceiling_features_are_the_scene_maps_averaged_over_each_token():
    """Brute force: every 8 x 8 block of a 64-px scene, averaged by hand (the depth channel: the mean
    depth of the block's object pixels, 0 without any)."""
    from infogap.ablations.dense.probe import ceiling_features
    from infogap.data.factors import FACTORS, LAYOUT_FACTORS
    from infogap.data.synthetic import SyntheticSource

    b = SyntheticSource(seed=2, layout=True, dense=True).val_batch(np.arange(3))
    f = ceiling_features(b, 8).numpy()
    n_words = sum(len(v) for v in {**FACTORS, **LAYOUT_FACTORS}.values())
    assert f.shape == (3, 2 + n_words + 2 + 1 + 1, 8, 8)
    mask, edge, depth = b["mask"].numpy().astype(float), b["edge"].numpy(), b["depth"].numpy().astype(float)
    colour = 1 + len(FACTORS["object"]) + sum(len(FACTORS[x]) for x in ("thickness", "swelling", "fracture", "scaling"))  # first colour channel - 1
    for i in range(3):
        for r in range(8):
            for c in range(8):
                block = (slice(8 * r, 8 * r + 8), slice(8 * c, 8 * c + 8))
                share = mask[i][block].mean()
                assert f[i, 0, r, c] == 1 and f[i, 1, r, c] == pytest.approx(share, abs=1e-6)
                value = int(b["labels"]["colour"][i])
                assert f[i, 1 + colour + value, r, c] == pytest.approx(share, abs=1e-6)
                assert f[i, 2 + n_words, r, c] == pytest.approx((edge[i][block] == 1).mean(), abs=1e-6)
                assert f[i, 3 + n_words, r, c] == pytest.approx((edge[i][block] == 2).mean(), abs=1e-6)
                on = mask[i][block] > 0
                assert f[i, 4 + n_words, r, c] == pytest.approx(depth[i][block][on].mean() if on.any() else 0.0, abs=1e-4)
                assert f[i, 5 + n_words, r, c] == pytest.approx(1 + int(b["layout"]["plane"][i]) if on.any() else 0.0, abs=1e-5)


def test_word_oracle_features_hold_the_words_and_where_they_put_the_object():
    from infogap.ablations.dense.probe import layout_prior, word_oracle_features
    from infogap.data.factors import FACTORS, LAYOUT_FACTORS
    from infogap.data.synthetic import SyntheticSource

    source = SyntheticSource(seed=1, layout=True, dense=True)
    train, val = source.train_batch(0, np.arange(256)), source.val_batch(np.arange(4))
    prior = layout_prior(train, 16)
    f = word_oracle_features(val, prior)
    n_words = sum(len(v) for v in {**FACTORS, **LAYOUT_FACTORS}.values())
    assert f.shape == (4, 2 + 2 * n_words, 16, 16)
    offsets = np.cumsum([0] + [len(v) for v in {**FACTORS, **LAYOUT_FACTORS}.values()])
    for i in range(4):
        p = prior[int(val["layout"]["position"][i]) * 3 + int(val["layout"]["size"][i])]
        assert torch.equal(f[i, 1], p)
        named = [offsets[j] + int((val["labels"] | val["layout"])[name][i]) for j, name in enumerate({**FACTORS, **LAYOUT_FACTORS})]
        onehot = torch.zeros(n_words)
        onehot[named] = 1
        assert torch.equal(f[i, 2: 2 + n_words], onehot[:, None, None] * p)
        assert torch.equal(f[i, 2 + n_words:], onehot[:, None, None].expand(n_words, 16, 16))
    assert not torch.equal(f[0, 1], f[1, 1]) or int(val["layout"]["position"][0]) == int(val["layout"]["position"][1])


@pytest.mark.slow
def test_the_word_oracle_falls_short_of_the_ceiling_which_clears_a_random_encoder():
    """The layout world's references on real renders: the ceiling (exact maps on the 8 x 8 token grid) beats
    a random encoder's tokens on every target by a clear margin, and the word oracle (the words alone)
    falls well short of the ceiling on every target but the control, which the plane word decides."""
    from infogap.ablations.dense.probe import ceiling_features, layout_prior, patch_features, seg_classes, word_oracle_features
    from infogap.data.synthetic import SyntheticSource

    source = SyntheticSource(seed=0, layout=True, dense=True)
    train, val = source.train_batch(0, np.arange(512)), source.val_batch(np.arange(256))
    prior = layout_prior(train, 16)
    torch.manual_seed(0)
    model = build_model("tiny-64p8", **Vocabulary(layout=True).text_spec()).eval()
    features = {"oracle": [word_oracle_features(b, prior) for b in (train, val)], "ceiling": [ceiling_features(b, 8) for b in (train, val)],
                "random": [patch_features(model, b["image"]) for b in (train, val)]}
    got = {}
    for task in ("object", "depth", "plane"):
        kind = "depth" if task in ("depth", "plane") else "seg"
        y = [synthetic_targets(b, task) for b in (train, val)]
        for name, (ftr, fva) in features.items():
            probe = train_probe(ftr, y[0], np.arange(len(y[0])), kind, seg_classes(task) if kind == "seg" else 1, steps=300, lr=0.05,
                                accelerator="cpu")
            got[task, name] = probe.evaluate(fva, y[1])["miou" if kind == "seg" else "rmse"]
    assert got["object", "ceiling"] > got["object", "random"] + 0.3 and got["object", "ceiling"] > got["object", "oracle"] + 0.1, got
    assert got["depth", "ceiling"] < 0.6 * got["depth", "random"] and got["depth", "ceiling"] < 0.9 * got["depth", "oracle"], got
    assert got["plane", "oracle"] < 0.05 and got["plane", "oracle"] < got["plane", "random"], got  # the control: the word decides it


# --- real-data layouts and the command ------------------------------------------------------------
def _layout(root, task: str, n: int = 6, size=(40, 32)):
    """A tiny dataset in the layout of infogap.data.dense: coloured rectangles on noise; labels 0..2
    (and 255 on their border) or a depth map in millimetres (16-bit PNG) / metres (.npy)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    if task == "seg":
        (root / "classes.txt").write_text("background\nred\nblue\n")
    for split in ("train", "val"):
        for sub in ("images", "labels" if task == "seg" else "depth"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = size
            image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            cls = 1 + i % 2
            image[8:24, 10:30, cls - 1 if cls == 1 else 2] = 230
            Image.fromarray(image).save(root / split / "images" / f"im{i}.jpg")
            if task == "seg":
                label = np.zeros((h, w), np.uint8)
                label[8:24, 10:30] = cls
                label[7, 10:30] = 255
                Image.fromarray(label).save(root / split / "labels" / f"im{i}.png")
            else:
                depth = np.full((h, w), 3000, np.uint16)
                depth[8:24, 10:30] = 1000 + 500 * i
                depth[0, 0] = 0  # missing
                if i % 2:
                    np.save(root / split / "depth" / f"im{i}.npy", depth.astype(np.float32) / 1000)
                else:
                    Image.fromarray(depth).save(root / split / "depth" / f"im{i}.png")
    return root


def test_dense_layouts_read_images_and_targets_with_one_geometry(tmp_path):
    from infogap.ablations.dense.datasets import read_classes, read_dense_split
    from infogap.train.embed import load_encoder

    enc = load_encoder(model="tiny-bpe")
    seg = _layout(tmp_path / "seg", "seg")
    images, labels = read_dense_split(seg / "train", "seg", enc.preprocess, 64, len(read_classes(seg)))
    assert images.shape == (6, 3, 64, 64) and labels.shape == (6, 64, 64) and labels.dtype == torch.long
    assert set(labels.unique().tolist()) == {0, 1, 2, 255}
    depth = _layout(tmp_path / "depth", "depth")
    _, d = read_dense_split(depth / "val", "depth", enc.preprocess, 64)
    assert d.dtype == torch.float32 and float(d.max()) == pytest.approx(3.5), "millimetres of the 16-bit PNG in metres"
    assert d[1].unique().tolist() == pytest.approx([1.5, 3.0]), "the .npy map in metres, resized by nearest neighbour"


def test_dense_layout_errors_name_the_file(tmp_path):
    from PIL import Image

    from infogap.ablations.dense.datasets import read_classes, read_dense_split
    from infogap.train.embed import load_encoder

    enc = load_encoder(model="tiny-bpe")
    root = _layout(tmp_path / "seg", "seg")
    (root / "train" / "labels" / "im0.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels/im0.png: missing \(the label mask of .*images/im0.jpg\)"):
        read_dense_split(root / "train", "seg", enc.preprocess, 64, 3)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "train" / "labels" / "im0.png")
    with pytest.raises(ValueError, match=r"im0.png: 10x10 target for the 40x32 image"):
        read_dense_split(root / "train", "seg", enc.preprocess, 64, 3)
    Image.fromarray(np.full((32, 40), 7, np.uint8)).save(root / "train" / "labels" / "im0.png")
    with pytest.raises(ValueError, match=r"im0.png: label value 7 is not a class \(classes.txt has 0..2"):
        read_dense_split(root / "train", "seg", enc.preprocess, 64, len(read_classes(root)))
    (root / "classes.txt").write_text("a\n\nb\n")
    with pytest.raises(ValueError, match="classes.txt: one class name per line"):
        read_classes(root)


def _probe(tmp_path, capsys, *args) -> dict:
    import json

    from infogap.cli import main as infogap

    out = tmp_path / "out"
    assert infogap(["probe", *args, "--fractions", "0.5,1.0", "--seeds", "0,1", "--steps", "10", "--cache", str(tmp_path / "cache"),
                    "--out", str(out), "--log_with", "none"]) == 0
    return json.loads((out / "probe.json").read_text())


@pytest.mark.slow
def test_probe_curves_go_to_wandb_per_label_fraction_and_seed(tmp_path):
    import json

    from infogap.data.synthetic import SyntheticSource
    from infogap.train.module import ContrastiveModule
    from tests.helpers.processes import cli
    from tests.helpers.wandb_logs import read_wandb_history

    module = ContrastiveModule("tiny", text_spec=SyntheticSource().vocab.text_spec())
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    out = tmp_path / "out"
    # in a subprocess, as users run it: a W&B run in the test process would leave its service to later tests
    proc = cli("probe", "--checkpoint", str(ckpt), "--task", "depth", "--n-train", "32", "--n-val", "16", "--fractions", "0.5,1.0",
               "--seeds", "0", "--steps", "10", "--val_every", "5", "--cache", str(tmp_path / "cache"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = read_wandb_history(out)  # the offline W&B run under --out
    for name in ("f0.5_s0", "f1_s0"):
        loss = [r[f"probe/{name}/train_loss"] for r in history if f"probe/{name}/train_loss" in r]
        rmse = [(r["trainer/global_step"], r[f"probe/{name}/rmse"]) for r in history if f"probe/{name}/rmse" in r]
        assert len(loss) == 10 and all(np.isfinite(loss)), "a training-loss point every step"
        assert [step for step, _ in rmse] == [4, 9] and all(v > 0 for _, v in rmse), "validated every 5 steps"
        assert any(f"probe/{name}/absrel" in r for r in history)
    final = {r["fraction"]: r["rmse"] for r in json.loads((out / "probe.json").read_text())["probes"]}
    last = [r["probe/f1_s0/rmse"] for r in history if "probe/f1_s0/rmse" in r][-1]
    assert last == pytest.approx(final[1.0], rel=1e-5), "the last validation is the probe's reported metric (10 steps, validated at 10)"


@pytest.mark.slow
def test_probe_command_on_synthetic_renders_and_on_both_layouts(tmp_path, capsys):
    from infogap.data.synthetic import SyntheticSource
    from infogap.train.module import ContrastiveModule

    module = ContrastiveModule("tiny", text_spec=SyntheticSource().vocab.text_spec())
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, ckpt)
    result = _probe(tmp_path, capsys, "--checkpoint", str(ckpt), "--task", "seg", "--n-train", "64", "--n-val", "32")
    assert result["features"] == [64, 7, 7] and len(result["probes"]) == 4 and result["baseline"]["majority_class"] == 0
    assert {r["labelled"] for r in result["probes"]} == {32, 64} and all(0 <= r["miou"] <= 1 for r in result["probes"])
    cached = sorted((tmp_path / "cache").glob("features-*.npy"))
    assert len(cached) == 2  # train and val, computed once
    _probe(tmp_path, capsys, "--checkpoint", str(ckpt), "--task", "depth", "--n-train", "64", "--n-val", "32")
    assert sorted((tmp_path / "cache").glob("features-*.npy")) == cached, "the same model and images: the cached features"

    from infogap.models import build_model

    weights = tmp_path / "bpe.pt"
    torch.save(build_model("tiny-bpe").state_dict(), weights)
    for task in ("seg", "depth"):
        data = _layout(tmp_path / task, task)
        result = _probe(tmp_path, capsys, "--model", "tiny-bpe", "--pretrained", str(weights), "--task", task, "--data", str(data))
        assert result["train_images"] == result["val_images"] == 6 and len(result["probes"]) == 4
        metric = "miou" if task == "seg" else "rmse"
        assert all(np.isfinite(r[metric]) for r in result["probes"]) and np.isfinite(result["baseline"][metric])


def test_a_fine_tune_with_the_conv_decoder_trains_the_tower_and_a_3x3_head(batch):
    from infogap.ablations.dense.probe import train_finetune

    model = build_model("tiny", vocab_size=60, context_length=10, eos_id=2)
    before = {n: p.detach().clone() for n, p in model.visual.named_parameters()}
    images = batch["image"][:32]
    target = synthetic_targets(batch, "object")[:32]
    tuned = train_finetune(model, images, target, np.arange(32), "seg", 11, steps=2, batch_size=16, accelerator="cpu", decoder="conv")
    head = tuned.probe.head
    assert isinstance(head, torch.nn.Sequential) and head[0].kernel_size == (3, 3) and head[2].kernel_size == (1, 1)
    assert tuned(images[:4]).shape == (4, 11, 28, 28)
    assert any(not torch.equal(before[n], p) for n, p in tuned.visual.named_parameters()), "the tower is fine-tuned too"
    assert all(torch.equal(before[n], p) for n, p in model.visual.named_parameters()), "the caller's model is left as it was"
    linear = train_finetune(model, images, target, np.arange(32), "seg", 11, steps=1, batch_size=16, accelerator="cpu")
    assert isinstance(linear.probe.head, torch.nn.Conv2d) and linear.probe.head.kernel_size == (1, 1)
    from infogap.ablations.dense.study import Settings

    with pytest.raises(ValueError, match="unknown decoder 'unet'"):
        Settings(finetune_decoders=("linear", "unet"))


def test_fine_tunes_clip_the_gradient_norm_unless_told_not_to(batch, monkeypatch):
    """Unclipped, the conv decoder's fine-tune diverged on some layout-world encoders; the clip must reach
    the trainer (and None must turn it off)."""
    import infogap.ablations.dense.probe as probe

    seen = []
    real = probe.quiet_trainer
    monkeypatch.setattr(probe, "quiet_trainer", lambda *a, **k: seen.append(k.get("gradient_clip_val")) or real(*a, **k))
    model = build_model("tiny", **Vocabulary().text_spec())
    y = synthetic_targets(batch, "depth")
    for clip in (1.0, None):
        probe.train_finetune(model, batch["image"][:8], y[:8], np.arange(8), "depth", 1, steps=1, batch_size=4, accelerator="cpu", clip=clip)
    probe.train_finetune(model, batch["image"][:8], y[:8], np.arange(8), "depth", 1, steps=1, batch_size=4, accelerator="cpu")
    assert seen == [1.0, None, 1.0]
