"""Dense probes (seed 002): targets, patch features, the feature cache, label subsets, the probe's
metrics against hand computations, and what a probe can and cannot learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infogap.data.synthetic import SyntheticDataModule
from infogap.models import build_model
from infogap.train.dense import (
    DenseProbe,
    FeatureCache,
    baselines,
    label_subset,
    patch_features,
    synthetic_targets,
    train_probe,
)


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
    depth_pred = torch.rand(3, 1, 4, 4) + 1
    depth = torch.rand(3, 4, 4) + 1
    got = probe.evaluate(depth_pred, depth)
    assert got["rmse"] == pytest.approx(float(((depth_pred[:, 0] - depth) ** 2).mean().sqrt()), rel=1e-5)
    assert got["absrel"] == pytest.approx(float(((depth_pred[:, 0] - depth).abs() / depth).mean()), rel=1e-5)


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
    per_image = depth[test].flatten(1)
    assert flat["rmse"] == pytest.approx(float(((per_image - per_image.mean(1, keepdim=True)) ** 2).mean().sqrt()), rel=1e-5)
    probe = train_probe(constant, depth, train, "depth", steps=150, lr=0.1, accelerator="cpu")
    assert probe.evaluate(constant[test], depth[test])["rmse"] >= flat["rmse"] - 1e-6, "a constant feature cannot beat the per-image oracle"
