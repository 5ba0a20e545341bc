"""Real-data path on small local shards: shard lists, corrupt members, workers, training, errors."""
from __future__ import annotations

import csv
import io

import pytest
import pytorch_lightning as pl
import torch
import webdataset as wds
from PIL import Image

from infogap.data.cli import export
from infogap.data.webdata import WebDataModule, expand_shards, read_pairs
from infogap.train.module import ContrastiveModule
from tests.helpers.data import photo_image, write_photo_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of 40 synthetic samples (via `infogap data export`), one with 6 good and 2 corrupt
    members, and one of scikit-image photographs (6 good, one undecodable, one without caption)."""
    d = tmp_path_factory.mktemp("shards")
    export(["--out", str(d), "--n", "80", "--shard-size", "40", "--k", "5"])
    with wds.TarWriter(str(d / "broken-000000.tar")) as sink:
        for i in range(6):
            buf = io.BytesIO()
            Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(buf, format="JPEG")
            sink.write({"__key__": f"good{i}", "jpg": buf.getvalue(), "txt": f"a blue block number {i}. It is small."})
        sink.write({"__key__": "corrupt", "jpg": b"this is not a jpeg", "txt": "garbage"})
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format="JPEG")
        sink.write({"__key__": "nocaption", "jpg": buf.getvalue()})
    write_photo_shards(d, n_shards=1, per_shard=6, corrupt=True)
    return d


def _module(shards, **kw):
    args = dict(train_shards=f"{shards}/synthetic-train-{{000000..000001}}.tar::{shards}/broken-000000.tar::{shards}/photos-000000.tar",
                val_shards=f"{shards}/synthetic-train-{{000000..000001}}.tar", model="tiny-bpe", batch_size=8,
                num_workers=2, samples_per_epoch=64, shuffle_buffer=16)
    args.update(kw)
    return WebDataModule(**args)


def test_brace_notation_and_missing_shards_fail_early(shards):
    assert len(expand_shards(f"{shards}/synthetic-train-{{000000..000001}}.tar")) == 2
    with pytest.raises(FileNotFoundError, match=r"synthetic-train-\{000000..000005\}.tar.*shard not found"):
        expand_shards(f"{shards}/synthetic-train-{{000000..000005}}.tar")
    with pytest.raises(ValueError, match="data.train_shards is empty"):
        expand_shards("", "data.train_shards")
    assert expand_shards("pipe:cat a.tar") == ["pipe:cat a.tar"]  # remote/pipe URLs are not checked locally


def test_validation_reads_every_good_sample_once_across_workers(shards):
    dm = _module(shards)
    batches = list(dm.val_dataloader())
    assert sum(len(b["image"]) for b in batches) == 80
    assert batches[0]["image"].shape[1:] == (3, 64, 64) and batches[0]["text"].shape[1] == 77


def test_corrupt_members_are_skipped_counted_and_warned_once_per_shard(shards, caplog):
    dm = _module(shards, num_workers=0, val_shards=f"{shards}/broken-000000.tar", batch_size=4)
    with caplog.at_level("WARNING"):
        batches = list(dm.val_dataloader())  # ordered: every member exactly once
    assert [len(b["image"]) for b in batches] == [4, 2]
    assert batches[-1]["skipped"].tolist() == [0, 2]  # the corrupt jpeg and the sample without caption
    warnings = [r.getMessage() for r in caplog.records if "skipping sample" in r.getMessage()]
    assert len(warnings) == 1 and "broken-000000.tar" in warnings[0], "one warning per shard, naming it"


def _as_table(shards, tmp_path):
    """The synthetic shards' samples as PNG files and a TSV, read with webdataset's own reader."""
    rows = ["filepath\tcaption"]
    urls = expand_shards(f"{shards}/synthetic-train-{{000000..000001}}.tar")
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()):
        (tmp_path / f"{sample['__key__']}.png").write_bytes(sample["png"])
        rows.append(f"{tmp_path / sample['__key__']}.png\t{sample['txt'].decode()}")
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path / "pairs.tsv"


def test_shards_and_the_caption_table_give_the_same_pairs(shards, tmp_path):
    """The same 80 samples as shards and as a CSV of files: in order on the ordered (validation) path,
    and every pair of a resampled training epoch is one of the table's (same image transform, so the
    pairs compare as tensors)."""
    from infogap.data.webdata import PairTable

    dm = _module(shards, num_workers=0, samples_per_epoch=80)
    table = PairTable(read_pairs(_as_table(shards, tmp_path)), dm.preprocess_val, dm.tokenizer, None, seed=0)
    rows = [table[i] for i in range(len(table))]
    ordered = list(dm._stream(dm.val_urls, train=False))
    images, texts = torch.cat([b["image"] for b in ordered]), torch.cat([b["text"] for b in ordered])
    assert len(images) == len(rows) == 80
    assert torch.equal(images, torch.stack([r[0] for r in rows])) and torch.equal(texts, dm.tokenizer([r[1] for r in rows]))
    stream = dm._stream(dm.train_urls, train=True)
    stream.urls, stream.preprocess = dm.val_urls, dm.preprocess_val  # the synthetic shards, the deterministic transform
    known = {(img.numpy().tobytes(), tuple(txt.tolist())) for img, txt in zip(images, texts)}
    epoch = [(img.numpy().tobytes(), tuple(txt.tolist())) for b in stream for img, txt in zip(b["image"], b["text"])]
    assert len(epoch) == 80 and set(epoch) <= known and len(set(epoch)) > 40  # drawn with replacement from the 80


def test_the_shard_reader_keeps_the_sample_order_of_webdatasets_own(shards, monkeypatch):
    """Reading the tars with infogap's reader instead of webdataset's tarfile_to_samples changes no
    sample and no order: the same seeded training epoch, batch for batch."""
    from infogap.data import tarstream

    def epoch():
        dm = _module(shards, num_workers=0, samples_per_epoch=96)
        return list(dm.train_dataloader())

    torch.manual_seed(0)
    ours = epoch()
    monkeypatch.setattr(tarstream, "tarfile_to_samples", wds.tarfile_to_samples)
    torch.manual_seed(0)
    theirs = epoch()
    assert len(ours) == len(theirs) == 12
    for a, b in zip(ours, theirs):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["text"], b["text"]) and torch.equal(a["skipped"], b["skipped"])


def test_training_stream_is_resampled_in_epochs_of_fixed_length(shards):
    dm = _module(shards, num_workers=0, train_shards=f"{shards}/broken-000000.tar", batch_size=2, samples_per_epoch=6)
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(len(b["image"]) == 2 for b in batches)
    assert batches[-1]["skipped"].tolist()[1] >= 1


def test_caption_from_a_json_field_and_transform_is_train_only(shards):
    dm = _module(shards, num_workers=0, caption_field="caption_full",
                 caption_transform={"kind": "keep_fraction", "fraction": 0.5})
    stream = dm.train_dataloader().dataset
    assert stream.decode_args["caption_field"] == "caption_full"
    val = dm._stream(dm.val_urls, train=False)
    assert val.decode_args["transform"] is None


@pytest.mark.slow
def test_a_few_training_steps_with_two_workers_log_skipped_samples(shards, tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    from infogap.train.evaluation import RepresentationMetrics

    pl.seed_everything(0)
    folder = tmp_path / "labelled"
    for cls, names in {"tabby_cat": ["chelsea", "cat"], "rocket": ["rocket"], "coffee_cup": ["coffee"]}.items():
        (folder / cls).mkdir(parents=True)
        for name in names:
            photo_image(name).save(folder / cls / f"{name}.jpg")
    dm = _module(shards, train_shards=f"{shards}/photos-000000.tar::{shards}/broken-000000.tar", samples_per_epoch=16,
                 zeroshot_folder=str(folder), zeroshot_templates="a photo of a {}.|a picture of a {}.")
    model = ContrastiveModule("tiny-bpe", warmup_steps=1)
    metrics = RepresentationMetrics(eval_every_n_steps=2, num_samples=50)
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=CSVLogger(tmp_path, name="", version=""), log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=2,
                         default_root_dir=str(tmp_path), callbacks=[metrics])
    trainer.fit(model, dm)
    assert trainer.global_step == 4
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    skipped = [float(r["data/skipped"]) for r in rows if r.get("data/skipped") not in (None, "")]
    assert skipped and max(skipped) >= 2  # the photo shard's and the broken shard's bad members, counted
    # the metrics callback on the validation shards (full captions, no labels): gap, entropy, retrieval
    assert sorted(metrics.history) == [0, 2, 4]
    assert {"rmg", "l2m", "entropy_i2t", "recall_i2t@1"} <= set(metrics.last) and not any(k.startswith("moad") for k in metrics.last)
    assert (tmp_path / "embeddings.npz").is_file()
    # zero-shot on the labelled folder, logged as zeroshot/labelled_acc: recomputed by hand
    zs = dm.zeroshot_sets()["labelled"]
    assert zs["classes"] == ["coffee cup", "rocket", "tabby cat"] and zs["prompts"].shape[:2] == (3, 2)
    model.eval()
    x = model.embed_images(zs["image"])
    t = model.embed_texts(zs["prompts"].reshape(6, -1)).reshape(3, 2, -1).mean(1)
    t = t / t.norm(dim=1, keepdim=True)
    expected = float(((x @ t.T).argmax(1) == zs["labels"]).float().mean())
    assert metrics.last["zeroshot_labelled_acc"] == pytest.approx(expected)
    assert any(r.get("zeroshot/labelled_acc") not in (None, "") for r in rows)
    few = _module(shards, zeroshot_folder=str(folder), zeroshot_max_images=2).zeroshot_sets()["labelled"]
    assert len(few["image"]) == len(few["labels"]) == 2  # a fixed random subset


def test_caption_table_source(tmp_path):
    for i in range(4):
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(tmp_path / f"im{i}.png")
    table = tmp_path / "pairs.tsv"
    table.write_text("filepath\tcaption\n" + "".join(f"im{i}.png\ta red square {i}\n" for i in range(4)) + "missing.png\tnothing\n")
    assert len(read_pairs(table)) == 5
    dm = WebDataModule(train_table=str(table), model="tiny-bpe", batch_size=5, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["image"]) == 4 and batch["skipped"].tolist()[1] == 1  # the missing file is skipped and counted
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\na.png,x\n")
    with pytest.raises(ValueError, match="needs a 'filepath' column"):
        read_pairs(bad)


def test_configuration_errors_are_named(shards):
    with pytest.raises(ValueError, match="set data.train_shards"):
        WebDataModule()
    with pytest.raises(ValueError, match="needs data.enriched_field"):
        _module(shards, caption_transform={"kind": "choose_enriched"})
    with pytest.raises(ValueError, match="unknown model 'ViT-Z'"):
        _module(shards, model="ViT-Z")
    with pytest.raises(FileNotFoundError, match="data.zeroshot_folder: no such directory: /nonexistent/folder"):
        _module(shards, zeroshot_folder="/nonexistent/folder")
    with pytest.raises(ValueError, match="zeroshot_templates needs"):
        _module(shards, zeroshot_templates="a photo")
