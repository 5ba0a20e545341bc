"""The synthetic data: factor semantics, caption statistics, co-occurrence, determinism, test set, CLI."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from infogap.data.factors import (
    ATTRIBUTE_FACTORS,
    FACTOR_NAMES,
    FACTORS,
    OBJECT,
    Vocabulary,
)
from infogap.data.render import GlyphSource, render, sample_keys
from infogap.data.synthetic import (
    N_MORPH,
    CaptionSpec,
    SyntheticBatches,
    SyntheticDataModule,
    caption_factors,
    draw_factors,
)
from infogap.train.module import ContrastiveModule
from tests.helpers.processes import cli

N = 256


def _render(thickness=0, swelling=0, fracture=0, scaling=0, colour=0, n=N, seed=0, dense=False):
    """The same objects (digits, glyphs, jitter) rendered with the given factor values."""
    keys = sample_keys(seed, 0, np.arange(n))
    digits = draw_factors(keys)[OBJECT]
    labels = {OBJECT: digits, "thickness": np.full(n, thickness), "swelling": np.full(n, swelling),
              "fracture": np.full(n, fracture), "scaling": np.full(n, scaling), "colour": np.full(n, colour)}
    source = GlyphSource()
    return render(source.glyphs(keys, digits), keys, labels, dense=dense)


def _stroke(img: torch.Tensor) -> torch.Tensor:
    return img.amax(1) > 0.5  # (B, H, W)


def _pixels(img):
    return _stroke(img).flatten(1).sum(1).float()


# --- factor semantics ---------------------------------------------------------------------------
def test_thickening_adds_and_thinning_removes_stroke_pixels():
    base, thick, thin = _pixels(_render()["image"]), _pixels(_render(thickness=1)["image"]), _pixels(_render(thickness=2)["image"])
    assert bool((thick > base).all()) and bool((thin < base).all())
    ratio_thick, ratio_thin = (thick / base).mean().item(), (thin / base).mean().item()
    assert 1.3 < ratio_thick < 2.5 and 0.2 < ratio_thin < 0.75  # the reference's ~+-70 % stroke width
    assert bool((thin > 0).all()), "thinning must not erase a digit"


def test_swelling_warps_locally_and_enlarges_the_stroke_on_average():
    base, swollen = _render()["image"], _render(swelling=1)["image"]
    changed = (swollen - base).abs().flatten(1).amax(1) > 0.1
    assert changed.float().mean() > 0.95
    assert _pixels(swollen).mean() > _pixels(base).mean() * 1.05
    # local: the warp radius is 7 px, so most of the image is untouched
    untouched = ((swollen - base).abs().amax(1) < 1e-6).flatten(1).float().mean(1)
    assert untouched.mean() > 0.6


def test_fracture_breaks_strokes_and_only_removes_pixels():
    base, broken = _render()["image"], _render(fracture=1)["image"]
    assert bool((broken <= base + 1e-6).all()), "a fracture only removes ink"
    removed = _pixels(base) - _pixels(broken)
    assert bool((removed >= 2).float().mean() > 0.95)
    assert removed.mean() < 0.4 * _pixels(base).mean()  # three short breaks, not an erased digit


def _bbox(img):
    m = _stroke(img)
    rows, cols = m.any(2), m.any(1)
    height = (m.shape[1] - 1 - rows.float().flip(1).argmax(1)) - rows.float().argmax(1) + 1
    width = (m.shape[2] - 1 - cols.float().flip(1).argmax(1)) - cols.float().argmax(1) + 1
    return height.float(), width.float()


def test_small_shrinks_the_bounding_box_to_three_quarters():
    (h0, w0), (h1, w1) = _bbox(_render()["image"]), _bbox(_render(scaling=1)["image"])
    assert bool((h1 < h0).all())
    assert (h1 / h0).mean().item() == pytest.approx(0.75, abs=0.08)
    assert (w1 / w0).mean().item() == pytest.approx(0.75, abs=0.1)


# what each colour word means, written out here (not read from the renderer's table)
RGB = {"gray": (1, 1, 1), "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "cyan": (0, 1, 1), "magenta": (1, 0, 1),
       "yellow": (1, 1, 0)}


@pytest.mark.parametrize("name", list(RGB))
def test_colour_only_touches_stroke_pixels(name):
    colour = FACTORS["colour"].index(name)
    gray, coloured = _render()["image"], _render(colour=colour)["image"]
    intensity = gray[:, 0]
    expected = intensity[:, None] * torch.tensor(RGB[name], dtype=torch.float32)[None, :, None, None]
    torch.testing.assert_close(coloured, expected)
    assert bool((coloured[(intensity == 0)[:, None].expand_as(coloured)] == 0).all())


def test_dense_targets_mark_the_object_and_its_depth():
    """The mask is the unshaded stroke; scale_depth is decided by the scaling factor alone; edges are
    stroke pixels with a background neighbour."""
    out = _render(scaling=1, dense=True)
    large = _render(dense=True)
    plain = _render(scaling=1)
    assert out["mask"].shape == (N, 28, 28) and out["mask"].dtype == torch.uint8
    assert torch.equal(out["mask"].bool(), _stroke(plain["image"]))
    assert out["scale_depth"][out["mask"].bool()].unique().tolist() == [pytest.approx(1 / 0.75)]
    assert set(large["scale_depth"][large["mask"].bool()].unique().tolist()) == {1.0}
    assert set(out["scale_depth"][~out["mask"].bool()].unique().tolist()) == {2.0}
    mask = out["mask"].bool()
    inside = mask.clone()
    inside[:, 1:-1, 1:-1] = mask[:, 1:-1, 1:-1] & mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:]
    inside[:, [0, -1], :] = False
    inside[:, :, [0, -1]] = False
    want = torch.where(mask, torch.where(inside, 1, 2), 0)
    assert torch.equal(out["edge"].long(), want)


def test_surface_depth_is_a_function_of_the_sample_key_and_of_no_factor():
    """The depth of the dense-probe study: defined on the object (0 elsewhere), the same for a sample
    whatever batch renders it, the same for every factor value (caption words cannot give it away), and
    shown in the image: the stroke is shaded by 1.5 / depth within [0.3, 1]."""
    from infogap.data.synthetic import SyntheticSource

    source = SyntheticSource(seed=3, dense=True)
    a = source.val_batch(np.arange(0, 16))
    b = source.val_batch(np.array([9, 4, 15]))
    torch.testing.assert_close(b["depth"], a["depth"][[9, 4, 15]], rtol=0, atol=0)
    mask = a["mask"].bool()
    assert bool((a["depth"][mask] > 1.0).all()) and bool((a["depth"][~mask] == 0).all())
    assert a["depth"][mask].std() > 0.2  # per-pixel structure, not a constant per image
    s0, s1 = _render(scaling=0, dense=True), _render(scaling=1, dense=True)  # the same objects, another factor value
    both = s0["mask"].bool() & s1["mask"].bool()
    torch.testing.assert_close(s0["depth"][both], s1["depth"][both], rtol=0, atol=0)
    plain = _render(dense=False)["image"][:, 0]
    shaded = _render(dense=True)
    shade = (1.5 / shaded["depth"]).clamp(0.3, 1.0)
    m = shaded["mask"].bool()
    torch.testing.assert_close(shaded["image"][:, 0][m], (plain * shade)[m])


def test_held_out_glyph_set_draws_other_faces_for_the_same_samples():
    from infogap.data.render import FONT_FILES, HELD_OUT_FONT_FILES

    assert not set(FONT_FILES) & set(HELD_OUT_FONT_FILES)
    own, other = SyntheticDataModule(k=2, seed=0), SyntheticDataModule(k=2, seed=0, glyph_set="held_out")
    a, b = own.source.val_batch(np.arange(32)), other.source.val_batch(np.arange(32))
    assert all(torch.equal(a["labels"][f], b["labels"][f]) for f in FACTOR_NAMES) and torch.equal(a["text"], b["text"])
    assert not torch.equal(a["image"], b["image"])
    with pytest.raises(ValueError, match="data.glyph_set must be one of train, held_out, got 'italic'"):
        SyntheticDataModule(glyph_set="italic")


def test_glyphs_vary_per_sample_for_the_same_digit():
    keys = sample_keys(0, 0, np.arange(64))
    digits = np.full(64, 3)
    labels = {f: np.zeros(64, dtype=np.int64) for f in FACTOR_NAMES}
    labels[OBJECT] = digits
    img = render(GlyphSource().glyphs(keys, digits), keys, labels)["image"]
    distinct = {tuple((img[i, 0] > 0.5).flatten().tolist()) for i in range(64)}
    assert len(distinct) == 64


# --- captions ----------------------------------------------------------------------------------
def _caption_factor_sets(k, always=OBJECT, n=6000, seed=0, epoch=0):
    keys = sample_keys(seed, epoch, np.arange(n))
    return caption_factors(keys, CaptionSpec(k, always))


@pytest.mark.parametrize("k", range(6))
def test_every_caption_has_the_always_present_word_and_exactly_k_attributes(k):
    dm = SyntheticDataModule(k=k, batch_size=512, train_size=1024)
    vocab = Vocabulary()
    batch = dm.source.train_batch(0, np.arange(512))
    tokens = batch["text"]
    words = tokens[:, 1:]
    n_words = ((words != vocab.pad_id) & (words != vocab.eot_id)).sum(1)
    assert bool((n_words == k + 1).all())
    assert bool((tokens[:, 0] == vocab.sot_id).all()) and bool((tokens[:, k + 2] == vocab.eot_id).all())
    obj_tokens = torch.tensor([vocab.token(OBJECT, v) for v in range(10)])
    for i in range(512):
        caption = tokens[i, 1: k + 2]
        factors = [next(f for f in FACTOR_NAMES if vocab.offsets[f] <= t < vocab.offsets[f] + len(FACTORS[f])) for t in caption.tolist()]
        assert factors.count(OBJECT) == 1 and len(set(factors)) == k + 1  # without replacement
        assert int(caption[[f == OBJECT for f in factors]][0]) == int(obj_tokens[batch["labels"][OBJECT][i]])
        for f, t in zip(factors, caption.tolist()):  # each word names the sample's true value
            assert t - vocab.offsets[f] == int(batch["labels"][f][i])


@pytest.mark.parametrize("k", [1, 2, 4])
def test_each_factor_is_mentioned_with_frequency_k_over_5(k):
    chosen = _caption_factor_sets(k)
    n = len(chosen)
    for f in ATTRIBUTE_FACTORS:
        freq = (chosen == FACTOR_NAMES.index(f)).any(1).mean()
        sigma = np.sqrt((k / 5) * (1 - k / 5) / n)
        assert abs(freq - k / 5) < 4 * sigma, (f, freq)


def test_words_are_shuffled_and_resampled_each_epoch():
    a, b = _caption_factor_sets(2, epoch=0), _caption_factor_sets(2, epoch=1)
    position_of_object = (a == FACTOR_NAMES.index(OBJECT)).argmax(1)
    counts = np.bincount(position_of_object, minlength=3) / len(a)
    np.testing.assert_allclose(counts, 1 / 3, atol=0.03)
    assert (np.sort(a, 1) != np.sort(b, 1)).any(1).mean() > 0.3


def test_absent_attributes_are_named():
    dm = SyntheticDataModule(k=5, batch_size=512)
    vocab = Vocabulary()
    tokens = dm.source.train_batch(0, np.arange(512))["text"]
    assert bool((tokens == vocab.token("swelling", 0)).any())  # "no swelling"
    assert vocab.decode([vocab.token("swelling", 0)]) == "no swelling"


def test_always_present_factor_is_configurable():
    chosen = _caption_factor_sets(1, always="colour")
    assert ((chosen == FACTOR_NAMES.index("colour")).sum(1) == 1).all()
    assert (chosen == FACTOR_NAMES.index(OBJECT)).any(1).mean() == pytest.approx(0.2, abs=0.03)


def test_bpe_captions_are_plain_strings_through_open_clip_tokenizer():
    dm = SyntheticDataModule(k=2, batch_size=8, tokenizer="ViT-B-32")
    assert dm.text_spec is None
    batch = dm.source.train_batch(0, np.arange(8))
    assert batch["text"].shape == (8, 77) and batch["text"].dtype == torch.long


# --- co-occurrence -----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.5, 0.9])
def test_cooccurrence_rate_matches_p(p):
    keys = sample_keys(0, 0, np.arange(60_000))
    from infogap.data.factors import parse_cooccurrence

    labels = draw_factors(keys, parse_cooccurrence({"object": "3", "factor": "colour", "value": "red", "p": p}))
    red = FACTORS["colour"].index("red")
    threes = labels[OBJECT] == 3
    rate = (labels["colour"][threes] == red).mean()
    assert abs(rate - p) < 4 * np.sqrt(max(p * (1 - p), 1e-4) / threes.sum()) + 1e-9
    others = (labels["colour"][~threes] == red).mean()
    assert others == pytest.approx(1 / 7, abs=0.01)


def test_cooccurrence_of_concept_sets_and_several_entries():
    """P(colour in {red, yellow} | object in {0, 1, 2}) = p, the value uniform between red and yellow; a
    second entry on the same objects (thickness) draws from slots of its own, so the two do not correlate."""
    from infogap.data.factors import parse_cooccurrence

    keys = sample_keys(0, 0, np.arange(60_000))
    plan = parse_cooccurrence([{"object": [0, 1, 2], "factor": "colour", "value": ["red", "yellow"], "p": 0.8},
                               {"object": [0, 1, 2], "factor": "thickness", "value": "thickening", "p": 0.5}])
    labels = draw_factors(keys, plan)
    mine = np.isin(labels[OBJECT], [0, 1, 2])
    warm = np.isin(labels["colour"], [FACTORS["colour"].index(c) for c in ("red", "yellow")])
    assert abs(warm[mine].mean() - 0.8) < 0.015 and abs(warm[~mine].mean() - 2 / 7) < 0.015
    red = labels["colour"] == FACTORS["colour"].index("red")
    assert abs(red[mine & warm].mean() - 0.5) < 0.02
    thick = labels["thickness"] == 1
    assert abs(thick[mine].mean() - 0.5) < 0.015
    assert abs(np.corrcoef(warm[mine], thick[mine])[0, 1]) < 0.03
    with pytest.raises(ValueError, match="two entries set 'colour' of object 1"):
        parse_cooccurrence([{"object": [0, 1], "factor": "colour", "value": "red", "p": 0.5},
                            {"object": 1, "factor": "colour", "value": "blue", "p": 0.5}])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k=6), "k=6"),
        (dict(k=-1), "k=-1"),
        (dict(always_present="size"), "'size'"),
        (dict(cooccurrence={"object": 3, "factor": "colour", "value": "purple", "p": 0.5}), "'purple'"),
        (dict(cooccurrence={"object": 3, "factor": "texture", "value": "red", "p": 0.5}), "'texture'"),
        (dict(cooccurrence={"object": 3, "factor": "colour", "value": "red", "p": 1.5}), "1.5"),
        (dict(cooccurrence={"object": 11, "factor": "colour", "value": "red", "p": 0.5}), "'11'"),
    ],
)
def test_bad_input_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SyntheticDataModule(**kwargs)


# --- determinism -------------------------------------------------------------------------------
def _epoch_batches(num_workers, epoch=0, rank=0, world=1, batch_size=32, size=256):
    dm = SyntheticDataModule(k=3, batch_size=batch_size, train_size=size, num_workers=num_workers)
    ds = SyntheticBatches(dm.source, "train", size, batch_size, rank, world)
    ds.epoch = epoch
    return list(DataLoader(ds, batch_size=None, num_workers=num_workers))


def test_identical_across_worker_counts():
    a, b = _epoch_batches(0), _epoch_batches(2)
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["text"], y["text"])


def test_ranks_see_disjoint_slices_of_the_same_global_batch():
    single = _epoch_batches(0, batch_size=32)
    r0, r1 = _epoch_batches(0, rank=0, world=2, batch_size=16), _epoch_batches(0, rank=1, world=2, batch_size=16)
    assert len(r0) == len(r1) == len(single)
    for g, a, b in zip(single, r0, r1):
        assert torch.equal(torch.cat([a["image"], b["image"]]), g["image"])
        assert torch.equal(torch.cat([a["text"], b["text"]]), g["text"])


def test_samples_are_pure_functions_of_seed_epoch_index():
    dm = SyntheticDataModule(k=3)
    a = dm.source.train_batch(4, np.array([10, 11, 12, 13]))
    b = dm.source.train_batch(4, np.array([99, 12, 7]))
    assert torch.equal(a["image"][2], b["image"][1]) and torch.equal(a["text"][2], b["text"][1])
    c = dm.source.train_batch(5, np.array([12]))
    assert not torch.equal(a["image"][2], c["image"][0]), "training samples differ per epoch"
    other_seed = SyntheticDataModule(k=3, seed=1).source.train_batch(4, np.array([12]))
    assert not torch.equal(a["image"][2], other_seed["image"][0])


def test_test_set_is_fixed_and_holds_every_morphological_variant():
    dm = SyntheticDataModule(test_base=10)
    assert dm.test_size == 10 * N_MORPH == 240
    a = dm.source.test_batch(np.arange(48))
    b = SyntheticDataModule(test_base=10).source.test_batch(np.arange(48))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["text_full"], b["text_full"])
    for base in range(2):
        rows = slice(base * N_MORPH, (base + 1) * N_MORPH)
        assert len(set(a["labels"][OBJECT][rows].tolist())) == 1  # one object in 24 variants
        combos = {tuple(int(a["labels"][f][i]) for f in ("thickness", "swelling", "fracture", "scaling")) for i in range(base * N_MORPH, (base + 1) * N_MORPH)}
        assert len(combos) == N_MORPH
    other = SyntheticDataModule(test_base=10, seed=7).source.test_batch(np.arange(48))
    assert not torch.equal(a["labels"]["colour"], other["labels"]["colour"]), "colours are fixed by the seed"


def test_loader_batches_hold_every_factor_label():
    dm = SyntheticDataModule(k=2, batch_size=16, train_size=64, val_size=40)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["labels"]) == set(FACTOR_NAMES)
    assert batch["image"].shape == (16, 3, 28, 28)
    val = list(dm.val_dataloader())
    assert [len(b["image"]) for b in val] == [16, 16, 8]
    assert "text_full" in val[0]
    assert len(dm.test_dataloader()) == int(np.ceil(dm.test_size / 16))


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 2])
def test_rendering_on_the_device_gives_the_same_samples(num_workers):
    """render_on_device ships labels, captions and the render plan; the images rendered from them (here
    through the device code path on the CPU) equal those the workers render, for every split, with
    dense targets, co-occurrence and every warp on."""
    kwargs = dict(k=3, batch_size=24, train_size=96, val_size=40, test_base=2, dense_targets=True, num_workers=num_workers,
                  cooccurrence={"object": "7", "factor": "colour", "value": "red", "p": 0.9})
    cpu, device = SyntheticDataModule(**kwargs), SyntheticDataModule(**kwargs, render_on_device=True)
    for force in (None, {"thickness": 1, "swelling": 1, "fracture": 1, "scaling": 1}):
        cpu.source.force = device.source.force = force
        for split in ("train", "val", "test"):
            loader = getattr(device, f"{split}_dataloader")()
            deferred = list(loader)
            assert "image" not in deferred[0] and deferred[0]["render"]["glyphs"].shape == (24, 28, 28)
            expected = list(getattr(cpu, f"{split}_dataloader")())
            got = [device.on_after_batch_transfer(b, 0) for b in deferred]
            assert len(got) == len(expected) > 1
            for a, b in zip(expected, got):
                assert set(a) == set(b), split
                for key in ("image", "mask", "depth", "text"):
                    assert torch.equal(a[key], b[key]), (split, key)
    assert cpu.on_after_batch_transfer(expected[0], 0) is expected[0], "a rendered batch passes unchanged"


def test_training_with_on_device_rendering_equals_training_on_worker_images():
    """Lightning calls the data module's on_after_batch_transfer: the same weights after a few steps."""
    states = []
    for on_device in (False, True):
        pl.seed_everything(0)
        data = SyntheticDataModule(k=2, batch_size=16, train_size=64, val_size=32, render_on_device=on_device)
        module = ContrastiveModule("tiny", text_spec=data.text_spec, warmup_steps=1)
        pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0).fit(module, data)
        states.append(module.model.state_dict())
    for key, value in states[0].items():
        assert torch.equal(states[1][key], value), key


# --- MNIST source ------------------------------------------------------------------------------
def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_real_mnist_idx_files_from_a_local_directory(tmp_path):
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 8:20, 10:18] = 255
    labels = np.arange(20) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, 2051)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels, 2049)
    dm = SyntheticDataModule(k=1, batch_size=8, mnist_dir=str(tmp_path))
    batch = dm.source.train_batch(0, np.arange(8))
    assert batch["image"].shape == (8, 3, 28, 28) and batch["image"].max() > 0.5
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        SyntheticDataModule(mnist_dir=str(tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    _write_idx(tmp_path / "bad" / "train-images-idx3-ubyte.gz", images, 1234)
    _write_idx(tmp_path / "bad" / "train-labels-idx1-ubyte.gz", labels, 2049)
    with pytest.raises(ValueError, match="magic 1234"):
        SyntheticDataModule(mnist_dir=str(tmp_path / "bad"))


# --- command line ------------------------------------------------------------------------------
@pytest.mark.slow
def test_data_cli_preview_bench_export(tmp_path, capsys):
    import webdataset as wds

    from infogap.cli import main as infogap

    grid = tmp_path / "grid.png"
    assert infogap(["data", "preview", "--k", "2", "--n", "8", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 5_000

    capsys.readouterr()
    assert infogap(["data", "bench", "--n", "1024", "--batch-size", "256"]) == 0
    assert json.loads(capsys.readouterr().out)["samples_per_s"] > 0
    assert infogap(["data", "bench", "--n", "512", "--batch-size", "256", "--device", "cpu"]) == 0
    timed = json.loads(capsys.readouterr().out)
    assert timed["device"] == "cpu" and timed["samples"] == 512 and timed["worker_samples_per_s"] > 0 and timed["device_samples_per_s"] > 0

    out = tmp_path / "shards"
    proc = cli("data", "export", "--out", str(out), "--n", "300", "--shard-size", "128", "--k", "2", "--dense")
    assert proc.returncode == 0, proc.stderr
    shards = sorted(out.glob("*.tar"))
    assert len(shards) == 3
    samples = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("pil"))
    assert len(samples) == 300
    s = samples[0]
    assert s["png"].size == (28, 28) and s["mask.png"].size == (28, 28)
    record = s["json"]
    assert set(record["labels"]) == set(FACTOR_NAMES)
    assert len(s["txt"].split(", ")) == 3 and record["values"][OBJECT] in s["txt"].split(", ")
    assert len(record["caption_full"].split(", ")) == 6


# --- concept sets (embedding association tests) ---------------------------------------------------
def test_concept_samples_fix_their_factor_and_balance_the_others():
    from infogap.data.synthetic import SyntheticSource

    source = SyntheticSource(seed=0)
    a = source.concept_samples("object", ["0", "1", "2"], 42)
    b = source.concept_samples("object", ["7", "8", "9"], 42)
    assert a["image"].shape == (42, 3, 28, 28) and a["text_full"].shape[0] == 42
    assert sorted(a["labels"][OBJECT].tolist()) == sorted([0, 1, 2] * 14)
    for f in ("colour", "thickness", "swelling", "fracture", "scaling"):  # 42 = 2 x 3 x 7: every value equally often
        counts = np.bincount(a["labels"][f].numpy(), minlength=len(FACTORS[f]))
        assert (counts == 42 // len(FACTORS[f])).all()
        assert sorted(a["labels"][f].tolist()) == sorted(b["labels"][f].tolist())
    assert not torch.equal(a["labels"]["colour"], b["labels"]["colour"])  # in another order: their own samples
    again = source.concept_samples("object", ["0", "1", "2"], 42)
    assert torch.equal(again["image"], a["image"]) and torch.equal(again["text_full"], a["text_full"])
    words = source.vocab.decode(a["text_full"][0].numpy()).split(", ")
    assert len(words) == 6 and words.count(FACTORS[OBJECT][int(a["labels"][OBJECT][0])]) == 1  # full caption
    with pytest.raises(ValueError, match="'purple'"):
        source.concept_samples("colour", ["purple"], 8)


def test_word_captions_encode_and_decode():
    from infogap.data.factors import Vocabulary

    vocab = Vocabulary()
    tokens = vocab.encode("3, red, no swelling")
    assert vocab.decode(tokens) == "3, red, no swelling" and tokens[0] == vocab.sot_id and tokens[4] == vocab.eot_id
    with pytest.raises(ValueError, match="'purple' is not a word"):
        vocab.encode("3, purple")
    with pytest.raises(ValueError, match="1..6 words, got 0"):
        vocab.encode("")
