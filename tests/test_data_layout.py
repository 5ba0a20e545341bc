"""The layout world: objects placed in a 64-px scene by three coarse layout words (position cell, size
class, depth plane), captions with or without those words, dense targets finer than the words."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from infogap.data.factors import FACTOR_NAMES, FACTORS, LAYOUT_FACTORS, LAYOUT_NAMES, Vocabulary
from infogap.data.render import PLANE_DISTANCE, SCENE_CENTRE, SCENE_SCALE, SCENE_SIZE, place, scene_layout
from infogap.data.synthetic import SyntheticDataModule, SyntheticSource


def test_place_puts_object_pixel_r_c_at_centre_plus_scale_times_offset():
    """Hand table: a single bright 2 x 2 block at object pixels (9..10, 17..18) (block centre (9.5, 17.5),
    i.e. (-4, +4) from the object's centre 13.5) lands at centre + scale x (-4, +4)."""
    x = torch.zeros(3, 1, 28, 28)
    x[:, 0, 9:11, 17:19] = 1.0
    centre = torch.tensor([[30.5, 30.5], [20.5, 40.5], [31.5, 31.5]])
    scale = torch.tensor([1.0, 1.0, 2.0])
    out = place(x, centre, scale, 64)[:, 0]
    for i, (r, c) in enumerate([(26.5, 34.5), (16.5, 44.5), (23.5, 39.5)]):
        ys, xs = torch.nonzero(out[i] > 0, as_tuple=True)
        w = out[i][ys, xs]
        assert float((ys * w).sum() / w.sum()) == pytest.approx(r, abs=1e-4)
        assert float((xs * w).sum() / w.sum()) == pytest.approx(c, abs=1e-4)
    assert float(out[2].sum()) == pytest.approx(4 * float(out[0].sum()), rel=1e-4)  # twice the scale: four times the area


def test_scene_layout_stays_inside_the_named_cell_size_class_and_plane():
    n = 9 * 3 * 2
    grid = np.array(np.meshgrid(np.arange(9), np.arange(3), np.arange(2), indexing="ij")).reshape(3, -1)
    layout = {f: torch.from_numpy(grid[i]) for i, f in enumerate(LAYOUT_NAMES)}
    for u in (torch.zeros(n, 3), torch.full((n, 3), 0.999), torch.rand(n, 3, generator=torch.Generator().manual_seed(0))):
        ud = u[:, 0]
        centre, scale, distance = scene_layout(layout, u, ud)
        lo, hi = SCENE_CENTRE
        cell = (hi - lo) / 3
        row, col = grid[0] // 3, grid[0] % 3  # "top left" = 0, "top" = 1, ..., "bottom right" = 8
        assert np.all(centre[:, 0].numpy() >= lo + row * cell - 1e-5) and np.all(centre[:, 0].numpy() <= lo + (row + 1) * cell + 1e-5)
        assert np.all(centre[:, 1].numpy() >= lo + col * cell - 1e-5) and np.all(centre[:, 1].numpy() <= lo + (col + 1) * cell + 1e-5)
        s_lo, s_hi = np.array(SCENE_SCALE)[grid[1]].T
        assert np.all(scale.numpy() >= s_lo - 1e-6) and np.all(scale.numpy() <= s_hi + 1e-6)
        d_lo, d_hi = np.array(PLANE_DISTANCE)[grid[2]].T
        assert np.all(distance.numpy() >= d_lo - 1e-6) and np.all(distance.numpy() <= d_hi + 1e-6)
    assert LAYOUT_FACTORS["position"][0] == "top left" and LAYOUT_FACTORS["position"][5] == "right"


def test_the_mask_lies_in_the_named_cell_and_grows_with_the_size_class():
    source = SyntheticSource(seed=3, layout=True, dense=True)
    batch = source.train_batch(0, np.arange(512))
    mask = batch["mask"].float()
    area = mask.sum((1, 2))
    ys, xs = torch.meshgrid(torch.arange(SCENE_SIZE).float(), torch.arange(SCENE_SIZE).float(), indexing="ij")
    cy, cx = (mask * ys).sum((1, 2)) / area, (mask * xs).sum((1, 2)) / area
    pos = batch["layout"]["position"]
    lo, hi = SCENE_CENTRE
    cell = (hi - lo) / 3
    for name, centroid, index in (("row", cy, pos // 3), ("column", cx, pos % 3)):
        inside = (centroid >= lo + index * cell - 5) & (centroid <= lo + (index + 1) * cell + 5)  # the glyph's mass is near its centre
        assert float(inside.float().mean()) > 0.95, name
    size = batch["layout"]["size"]
    means = [float(area[size == s].mean()) for s in range(3)]
    assert means[0] < means[1] < means[2]


def test_layout_captions_name_the_three_layout_words_and_nothing_else_changes():
    vocab = Vocabulary(layout=True)
    with_words = SyntheticSource(seed=1, layout=True, caption=SyntheticSource().caption.__class__(2))
    without = SyntheticSource(seed=1, layout=True, layout_words=False, caption=with_words.caption)
    a, b = with_words.train_batch(0, np.arange(64)), without.train_batch(0, np.arange(64))
    assert torch.equal(a["image"], b["image"])  # the axis changes captions only
    for f in FACTOR_NAMES:
        assert torch.equal(a["labels"][f], b["labels"][f])
    for i in range(64):
        words_a = vocab.decode(a["text"][i].tolist()).split(", ")
        words_b = vocab.decode(b["text"][i].tolist()).split(", ")
        assert len(words_a) == 2 + 1 + 3 and len(words_b) == 2 + 1
        named = {f: LAYOUT_FACTORS[f][int(a["layout"][f][i])] for f in LAYOUT_NAMES}
        assert set(named.values()) <= set(words_a)
        assert not set(w for v in LAYOUT_FACTORS.values() for w in v) & set(words_b)
        assert sorted(set(words_a) - set(named.values())) == sorted(words_b)
    orders = {tuple(vocab.decode(t.tolist()).split(", ")).index(LAYOUT_FACTORS["plane"][int(p)]) for t, p in zip(a["text"], a["layout"]["plane"])}
    assert len(orders) > 3  # the layout words are shuffled among the others


def test_the_layout_vocabulary_keeps_every_factor_word_id_and_round_trips():
    plain, layout = Vocabulary(), Vocabulary(layout=True)
    for f in FACTOR_NAMES:
        assert plain.offsets[f] == layout.offsets[f]
    assert layout.context_length == plain.context_length + 3
    assert layout.size == plain.size + sum(len(v) for v in LAYOUT_FACTORS.values())
    text = "3, red, top left, big, near"
    assert layout.decode(layout.encode(text).tolist()) == text
    with pytest.raises(ValueError, match="top left"):
        plain.encode(text)


def test_no_dense_target_is_decided_by_the_caption_words_except_the_control():
    """The label oracle's premise, checked directly: scenes with every caption word fixed (all six factors
    and the three layout words) still differ in every dense target (masks, edges, depth, class maps), so
    no target is a function of the words; only ``plane``, the positive control, is one word's function."""
    force = {f: 1 for f in FACTOR_NAMES} | {"position": 4, "size": 1, "plane": 1}
    source = SyntheticSource(seed=0, layout=True, dense=True, force=force)
    batch = source.train_batch(0, np.arange(16))
    for f in FACTOR_NAMES:
        assert len(set(batch["labels"][f].tolist())) == 1
    for name in ("mask", "edge", "depth"):
        t = batch[name].float()
        assert float((t[1:] - t[:1]).abs().amax((1, 2)).min()) > 0, name  # every scene differs from the first
    on = batch["mask"].bool()
    assert torch.all(batch["plane"][on] == 2.0) and torch.all(batch["plane"][~on] == 0.0)  # defined (and decided by the word) on the object
    other = SyntheticSource(seed=0, layout=True, dense=True, force={**force, "plane": 0}).train_batch(0, np.arange(16))
    assert torch.all(other["plane"][other["mask"].bool()] == 1.0)


def test_force_names_an_unknown_factor_and_layout_words_need_the_layout_world():
    with pytest.raises(ValueError, match="'plane' is not a factor .layout words need layout=True"):
        SyntheticSource(force={"plane": 0})
    with pytest.raises(ValueError, match="'shade' is not a factor"):
        SyntheticSource(layout=True, force={"shade": 0})


def test_the_layout_data_module_trains_the_64_px_model_and_refuses_the_28_px_one():
    from infogap.train.module import ContrastiveModule

    data = SyntheticDataModule(k=1, batch_size=8, train_size=16, val_size=8, test_base=1, seed=0, layout=True)
    assert data.image_size == SCENE_SIZE
    module = ContrastiveModule(model="tiny-64p8", text_spec=data.text_spec)
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (8, 3, SCENE_SIZE, SCENE_SIZE)
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    assert data.text_spec["context_length"] == len(FACTORS) + len(LAYOUT_FACTORS) + 2
    with pytest.raises(ValueError, match="takes 28 px images but SyntheticDataModule gives 64 px images"):
        ContrastiveModule(model="tiny", text_spec=data.text_spec).check_data(data)


def test_every_layout_image_is_shaded_by_its_depth_and_near_objects_are_brighter():
    """The plane word must name something visible: the training image (no dense targets) is the dense
    render's image, shaded, and the brightest stroke pixel of a near object outshines a far one's."""
    plain = SyntheticSource(seed=4, layout=True).train_batch(0, np.arange(256))
    dense = SyntheticSource(seed=4, layout=True, dense=True).train_batch(0, np.arange(256))
    assert torch.equal(plain["image"], dense["image"])
    peak = plain["image"].amax((1, 2, 3))
    near, far = peak[plain["layout"]["plane"] == 0], peak[plain["layout"]["plane"] == 1]
    assert float(near.mean()) > float(far.mean()) + 0.3
    assert float(near.min()) >= 0.2 - 1e-6  # LAYOUT_SHADE_MIN (the surface's tilt lets single pixels cross the planes' boundary)


def test_data_commands_take_the_layout_world(tmp_path, capsys):
    import webdataset as wds

    from infogap.cli import main as infogap

    assert infogap(["data", "preview", "--layout", "--k", "1", "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert infogap(["data", "preview", "--no-layout-words", "--n", "4", "--out", str(tmp_path / "x.png")]) == 2
    assert "--no-layout-words needs --layout" in capsys.readouterr().err
    assert infogap(["data", "export", "--layout", "--k", "1", "--out", str(tmp_path / "shards"), "--n", "8"]) == 0
    samples = list(wds.WebDataset([str(p) for p in sorted((tmp_path / "shards").glob("*.tar"))], shardshuffle=False).decode("pil"))
    record = samples[0]["json"]
    assert samples[0]["png"].size == (SCENE_SIZE, SCENE_SIZE)
    assert set(LAYOUT_NAMES) <= set(record["labels"]) and set(record["values"][f] for f in LAYOUT_NAMES) <= set(samples[0]["txt"].split(", "))


def test_deferred_rendering_of_layout_scenes_gives_the_same_batch():
    """data.render_on_device: the loader ships labels, layout words and the render plan; the device renders
    the same scenes and dense targets."""
    from infogap.data.synthetic import finish_render

    source = SyntheticSource(seed=5, layout=True, dense=True)
    now, later = source.train_batch(1, np.arange(24)), finish_render(source.train_batch(1, np.arange(24), defer=True))
    for key in ("image", "mask", "depth", "edge", "plane", "text"):
        assert torch.equal(now[key], later[key]), key
