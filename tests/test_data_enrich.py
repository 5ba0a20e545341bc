"""`infogap data enrich`: annotations joined by key, a local captioning model, resumption after a
kill, never overwriting the input, failed shards reported and retried alone."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import webdataset as wds

from tests.helpers.data import make_tiny_captioner, write_photo_shards
from tests.helpers.processes import in_process


def _samples(path: Path) -> list[dict]:
    return list(wds.WebDataset(str(path), shardshuffle=False, empty_check=False))


def _digest(paths) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    return d, write_photo_shards(d, n_shards=2, per_shard=6, corrupt=True)


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    return make_tiny_captioner(tmp_path_factory.mktemp("captioner"))


def _enrich_in_process(capsys, *args) -> tuple[int, str, str]:
    from infogap.cli import main as infogap

    code = infogap(["data", "enrich", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_annotations_joined_by_key(photos, tmp_path, capsys):
    d, shards = photos
    before = _digest(shards)
    keys = [s["__key__"] for p in shards for s in _samples(p)]
    notes = tmp_path / "dci.jsonl"
    with notes.open("w") as f:
        for k in keys[1:]:  # the first sample has no annotation
            f.write(json.dumps({"key": k, "short_caption": f"short {k}.", "extra_captions": [f"extra one of {k}.", "extra two."]}) + "\n")
    out = tmp_path / "out"
    proc = in_process(capsys, "data", "enrich", "--in", f"{d}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations", str(notes))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["shards_done"] == 2 and summary["samples"] == len(keys) and summary["no_annotation"] == 1
    assert summary["enriched"] == len(keys) - 1
    got = {s["__key__"]: s for p in sorted(out.glob("photos-*.tar")) for s in _samples(p)}
    assert list(got) == keys  # every sample once, in order, all members kept
    k = keys[3]
    record = json.loads(got[k]["json"])
    assert record["enriched"] == f"short {k}. extra one of {k}. extra two."
    assert record["label"]  # the original json fields are kept
    assert "enriched" not in json.loads(got[keys[0]]["json"])
    src = {s["__key__"]: s for p in shards for s in _samples(p)}
    assert got[k]["jpg"] == src[k]["jpg"] and got[k]["txt"] == src[k]["txt"]
    assert _digest(shards) == before  # the input is untouched

    capsys.readouterr()
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations", str(notes))
    assert code == 0 and "2 already done, 0 to do" in err
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-000000.tar", "--out", str(d), "--annotations", str(notes))
    assert code == 2 and "would overwrite the input shard" in err
    notes.write_text('{"key": "x", "short_caption": "ok"}\n{not json\n')
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-000000.tar", "--out", str(tmp_path / "o2"), "--annotations", str(notes))
    assert code == 2 and "dci.jsonl:2" in err


def test_enriched_field_feeds_the_caption_transform(photos, tmp_path, capsys):
    """The enriched shards feed WebDataModule's decoder: concat_enriched gives original + enriched."""
    from infogap.data.captions import CaptionTransform
    from infogap.data.webdata import SkipCounter, _Decoder

    d, shards = photos
    notes = tmp_path / "n.jsonl"
    notes.write_text("".join(json.dumps({"key": s["__key__"], "short_caption": "LONG " + s["__key__"]}) + "\n"
                             for p in shards for s in _samples(p)))
    out = tmp_path / "out"
    assert _enrich_in_process(capsys, "--in", f"{d}/photos-000001.tar", "--out", str(out), "--annotations", str(notes))[0] == 0
    decode = _Decoder(["jpg"], "txt", None, "enriched", preprocess=lambda im: im.size, transform=CaptionTransform("concat_enriched"),
                      counter=SkipCounter(), seed=0)
    for sample in _samples(out / "photos-000001.tar"):
        size, caption = decode(sample)
        assert caption == f"{sample['txt'].decode()} LONG {sample['__key__']}" and size == (96, 96)


@pytest.mark.slow
def test_local_captioner_end_to_end(photos, captioner, tmp_path, capsys):
    from PIL import Image  # noqa: F401 - the captioner reads PIL images

    from infogap.data.enrich import Captioner, _image

    d, shards = photos
    out = tmp_path / "out"
    proc = in_process(capsys, "data", "enrich", "--in", f"{d}/photos-{{000000..000001}}.tar", "--out", str(out), "--captioner", str(captioner),
                      "--batch-size", "4", "--max-new-tokens", "6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["dropped_corrupt"] == 1 and summary["enriched"] == summary["samples"] - 1 == 13  # 12 photos + no-caption one
    assert "dropping photos0_corrupt" in proc.stderr
    model = Captioner(str(captioner), "cpu", max_new_tokens=6)
    for p in shards:
        src = [s for s in _samples(p) if s["__key__"] != "photos0_corrupt"]
        got = _samples(out / p.name)
        assert [s["__key__"] for s in got] == [s["__key__"] for s in src]
        expected = model([_image(s, ["jpg"]) for s in src])
        assert [json.loads(s["json"])["enriched"] for s in got] == expected
        assert all(len(c.split()) >= 3 for c in expected)


@pytest.mark.slow
def test_killed_enrichment_resumes_without_duplicates_or_losses(captioner, tmp_path):
    """Killed (SIGKILL, injected deterministically right after sample 5 of the second shard was
    written), then restarted: the finished shard is kept, the half-written one redone, none duplicated."""
    from infogap.data.enrich import KILL_AFTER_ENV

    d = tmp_path / "in"
    d.mkdir()
    shards = write_photo_shards(d, n_shards=3, per_shard=12, corrupt=False, prefix="big")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "infogap", "data", "enrich", "--in", f"{d}/big-{{000000..000002}}.tar", "--out", str(out),
            "--captioner", str(captioner), "--batch-size", "2", "--max-new-tokens", "6"]
    killed = subprocess.run(argv, env={**os.environ, KILL_AFTER_ENV: f"{shards[1].name}:5"}, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / shards[0].name).is_file() and (out / (shards[1].name + ".tmp")).is_file()  # killed mid-shard
    assert not (out / shards[1].name).exists() and not (out / shards[2].name).exists()
    first = _digest([out / shards[0].name])

    again = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 already done, 2 to do" in again.stderr
    assert _digest([out / shards[0].name]) == first  # the finished shard was not redone
    for p in shards:
        src = [s["__key__"] for s in _samples(p)]
        got = [s["__key__"] for s in _samples(out / p.name)]
        assert got == src  # each sample exactly once
    assert not list(out.glob("*.tmp"))
    report = json.loads((out / "enrich-report.json").read_text())
    assert sorted(report["done"]) == sorted(p.name for p in shards) and not report["failed"]


def test_a_failing_shard_is_reported_and_retried_alone(photos, tmp_path, capsys):
    d, shards = photos
    broken = tmp_path / "in"
    broken.mkdir()
    (broken / "photos-000000.tar").write_bytes(shards[0].read_bytes())
    (broken / "photos-000001.tar").write_bytes(b"not a tar file at all" * 100)
    notes = tmp_path / "n.jsonl"
    notes.write_text(json.dumps({"key": "none", "short_caption": "x"}) + "\n")
    out = tmp_path / "out"
    code, _, err = _enrich_in_process(capsys, "--in", f"{broken}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations", str(notes))
    assert code == 1
    assert "photos-000001.tar FAILED" in err and "--only photos-000001.tar" in err
    assert (out / "photos-000000.tar").is_file() and not (out / "photos-000001.tar").exists()
    report = json.loads((out / "enrich-report.json").read_text())
    assert "photos-000001.tar" in report["failed"] and "photos-000000.tar" in report["done"]
    (broken / "photos-000001.tar").write_bytes(shards[1].read_bytes())  # fixed: retry that one alone
    code, _, err = _enrich_in_process(capsys, "--in", f"{broken}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations",
                                      str(notes), "--only", "photos-000001.tar")
    assert code == 0, err
    report = json.loads((out / "enrich-report.json").read_text())
    assert not report["failed"] and sorted(report["done"]) == ["photos-000000.tar", "photos-000001.tar"]


def test_a_shard_counts_as_done_only_when_its_record_matches_it(photos, tmp_path, capsys):
    """A garbage file with a shard's name, a shard whose content changed after its record, and a shard
    without a record are redone; an --out under a file is one line."""
    d, shards = photos
    notes = tmp_path / "n.jsonl"
    notes.write_text("".join(json.dumps({"key": s["__key__"], "short_caption": "x"}) + "\n" for p in shards for s in _samples(p)))
    out = tmp_path / "out"
    (out).mkdir()
    (out / "photos-000000.tar").write_bytes(b"garbage!")  # 8 bytes with a shard's name, no record
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations", str(notes))
    assert code == 0 and "0 already done, 2 to do" in err
    assert len(_samples(out / "photos-000000.tar")) == len(_samples(shards[0]))
    record = json.loads((out / "photos-000000.tar.done.json").read_text())
    assert record["bytes"] == (out / "photos-000000.tar").stat().st_size and record["samples_written"] == len(_samples(shards[0]))
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations", str(notes))
    assert "2 already done, 0 to do" in err
    (out / "photos-000001.tar").write_bytes((out / "photos-000001.tar").read_bytes()[:-512])  # cut after its record was written
    (out / "photos-000000.tar.done.json").unlink()
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-{{000000..000001}}.tar", "--out", str(out), "--annotations", str(notes))
    assert code == 0 and "0 already done, 2 to do" in err
    (tmp_path / "afile").write_text("x")
    code, _, err = _enrich_in_process(capsys, "--in", f"{d}/photos-000000.tar", "--out", str(tmp_path / "afile" / "o"), "--annotations", str(notes))
    assert code == 2 and "is a file, not a directory" in err and len(err.strip().splitlines()) == 1
