"""The shard reader of ``infogap.data.tarstream`` against Python's ``tarfile`` and webdataset's own
``tarfile_to_samples``: the same samples from every tar format, the same skipping, and an error
naming the shard where a tar is damaged."""
from __future__ import annotations

import io
import tarfile

import pytest
import webdataset as wds

from infogap.data.tarstream import tar_members, tarfile_to_samples


def _tar(path, members, fmt, pax_global=None):
    """Write ``members`` [(name, bytes | "dir" | ("link", target))] as a tar of format ``fmt``."""
    with tarfile.open(path, "w", format=fmt, pax_headers=pax_global or {}) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000.5  # a float, as webdataset's TarWriter writes: a PAX header per member
            if data == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


LONG = "deep/" * 25 + "sample.txt"  # 135 characters: a ustar prefix, a GNU long name or a PAX path
MEMBERS = [
    ("a.jpg", b"\xff\xd8 jpeg bytes"), ("a.txt", b"a red cube"), ("a.json", b'{"label": 3}'),
    ("folder", "dir"), ("__meta__", b"webdataset skips me"), ("b.PNG", b"x" * 512), ("b.txt", b""),
    ("link.txt", ("link", "a.txt")), (LONG, b"long"), ("d\u00e9j\u00e0.txt", "é".encode()), ("c.cls", b"7" * 1025),
]


def _reference_members(path):
    with tarfile.open(path, "r|") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["ustar", "gnu", "pax"])
def test_members_equal_tarfile_in_every_format(tmp_path, fmt):
    members = [m for m in MEMBERS if fmt != tarfile.USTAR_FORMAT or "\u00e9" not in m[0]]  # ustar cannot hold non-ASCII names
    path = _tar(tmp_path / "s.tar", members, fmt)
    with open(path, "rb") as f:
        ours = list(tar_members(f, str(path)))
    assert ours == _reference_members(path)
    assert [n for n, _ in ours][:3] == ["a.jpg", "a.txt", "a.json"] and LONG in [n for n, _ in ours]
    assert "folder" not in [n for n, _ in ours] and "link.txt" not in [n for n, _ in ours]


def test_a_global_pax_header_renames_nothing_but_is_read_past(tmp_path):
    path = _tar(tmp_path / "g.tar", MEMBERS[:3], tarfile.PAX_FORMAT, pax_global={"comment": "made by a test"})
    with open(path, "rb") as f:
        assert list(tar_members(f, str(path))) == _reference_members(path)


def test_samples_equal_webdatasets_own_reader(tmp_path):
    """Grouped into samples, with ``__key__``/``__url__``, lower-case suffixes, metadata skipped, and
    no sample spanning two shards: a sample written by webdataset's ShardWriter and hand-made tars."""
    with wds.ShardWriter(str(tmp_path / "w-%06d.tar"), maxcount=3, verbose=0) as sink:
        for i in range(7):
            sink.write({"__key__": f"s{i:03d}", "png": bytes([i]) * (100 + i), "txt": f"caption {i}", "json": {"i": i}})
    _tar(tmp_path / "w-000003.tar", MEMBERS, tarfile.PAX_FORMAT)
    urls = [str(p) for p in sorted(tmp_path.glob("w-*.tar"))]
    ours = list(wds.DataPipeline(wds.SimpleShardList(urls), tarfile_to_samples()))
    theirs = list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))
    assert ours == theirs  # keys a, b, deep/.../sample, déjà, c from the hand-made shard; folder, link and __meta__ skipped
    assert len(ours) == 7 + 5 and ours[0]["txt"] == b"caption 0" and ours[0]["__url__"] == urls[0]
    assert {"png", "txt", "json"} == {k for k in ours[0] if not k.startswith("__")}
    assert ours[-4]["__key__"] == "b" and set(ours[-4]) == {"__key__", "__url__", "png", "txt"}  # suffix lower-cased


@pytest.mark.parametrize("damage", ["truncated data", "bad checksum", "truncated header"])
def test_a_damaged_shard_raises_naming_it_and_the_handler_moves_on(tmp_path, damage):
    good = _tar(tmp_path / "good.tar", MEMBERS[:3], tarfile.PAX_FORMAT)
    raw = bytearray(good.read_bytes())
    if damage == "truncated data":
        raw = raw[:512 * 3 + 5]  # blocks: a.jpg's PAX header, its records, a.jpg's header, then 5 of its 15 bytes
    elif damage == "bad checksum":
        raw[512 * 4 + 1] ^= 0xFF  # the name of a.txt's PAX header (block 4, after a.jpg's data block)
    else:
        raw = raw[:512 * 2 + 100]  # a.jpg's header cut short
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(raw))
    with open(bad, "rb") as f, pytest.raises(tarfile.ReadError, match="bad.tar"):
        list(tar_members(f, str(bad)))
    warned = []
    samples = list(wds.DataPipeline(wds.SimpleShardList([str(bad), str(good)]),
                                    tarfile_to_samples(handler=lambda exn: warned.append(exn) or True)))
    assert len(warned) == 1 and str(bad) in str(warned[0].args)
    assert [s["__key__"] for s in samples][-1] == "a" and samples[-1]["__url__"] == str(good)  # the next shard is read whole
    assert all(s["__url__"] != str(bad) or set(s) - {"__key__", "__url__"} <= {"jpg"} for s in samples)


def test_an_empty_stream_has_no_members():
    assert list(tar_members(io.BytesIO(b""))) == []
    assert list(tar_members(io.BytesIO(b"\0" * 1024))) == []
