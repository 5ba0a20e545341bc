"""Shard members read straight from the tar headers: the stage webdataset's ``tarfile_to_samples``
runs, without Python's ``tarfile`` in the loop.

Why: profiling the shards path (BENCHMARKS.md, "Where the time goes") showed ``tarfile``'s
pure-Python header parsing (``frombuf``, ``_proc_pax``, ``nti``) taking about 40 % of a loader
worker's time on webdataset shards, more than decoding the images: every member written by
webdataset's ``TarWriter`` carries a PAX header (its float ``mtime``), so each file costs two
headers, and a sample three files. Here a header is one ``struct`` unpack and the data one read.

What it reads, as ``tarfile`` does in stream mode: POSIX ustar (name prefix), PAX extended headers
(``x`` per member and ``g`` global: ``path`` and ``size``), GNU long names (``L``), base-256 sizes;
regular files only (``0``, ``\\0``, ``7``; directories, links and the rest are skipped); webdataset's
metadata files (``__...__``) are skipped as its ``tar_file_iterator`` does. It stops at the first
zero block. A bad checksum, a truncated member, or a sparse file raises ``tarfile.ReadError``
naming the shard; the pipeline's handler warns and moves to the next shard (``tarfile`` in stream
mode ends a shard silently on a bad header after the first). Samples are grouped by webdataset's
own ``group_by_keys``, so keys, suffixes, ``__url__`` and the end-of-shard marker are webdataset's.
"""
from __future__ import annotations

import re
import tarfile
from typing import Callable, Iterator, Optional

import webdataset as wds
from webdataset.tariterators import group_by_keys, url_opener

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_SKIP_META = re.compile(r"__[^/]*__($|/)")


def _number(field: bytes) -> int:
    """An octal header number, or GNU base-256 when the first byte has its high bit set."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[0] == 0xFF else value
    field = field.split(b"\0", 1)[0].strip()
    return int(field, 8) if field else 0


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _signed_checksum(header: bytes) -> int:
    """The checksum some old tars wrote: bytes summed as signed chars (``tarfile`` accepts both)."""
    return 256 + sum(b - 256 if b > 127 else b for i, b in enumerate(header) if not 148 <= i < 156)


def _pax(data: bytes, where: str) -> dict[str, str]:
    """PAX records ``"%d %s=%s\\n"`` (length includes itself) -> {keyword: value}."""
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= 0:
            raise tarfile.ReadError(f"{where}: bad PAX record length {length}")
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _read(stream, n: int, where: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise tarfile.ReadError(f"{where}: unexpected end of data ({len(data)} of {n} bytes)")
    return data


def tar_members(stream, where: str = "?") -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file of an uncompressed tar stream, in order."""
    global_pax: dict[str, str] = {}
    pending: dict[str, str] = {}  # what a PAX or GNU long-name header says about the next member
    while True:
        header = stream.read(BLOCK)
        if not header:
            return
        if len(header) < BLOCK:
            raise tarfile.ReadError(f"{where}: truncated header ({len(header)} bytes)")
        if header.count(0) == BLOCK:
            return  # end of archive
        stored = _number(header[148:156])
        if stored != sum(header) - sum(header[148:156]) + 256 and stored != _signed_checksum(header):
            raise tarfile.ReadError(f"{where}: bad header checksum")
        kind = header[156:157]
        info = {**global_pax, **pending}
        size = int(info["size"]) if "size" in info and kind in _REGULAR else _number(header[124:136])
        data = _read(stream, size, where)
        stream.read(-size % BLOCK)
        if kind == b"x":
            pending = {**pending, **_pax(data, where)}
            continue
        if kind == b"g":
            global_pax.update(_pax(data, where))
            continue
        if kind == b"L":
            pending = {**pending, "path": data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")}
            continue
        if kind == b"K":
            continue
        pending = {}
        if kind == b"S":
            raise tarfile.ReadError(f"{where}: sparse member {_text(header[0:100])!r} is not supported")
        if kind not in _REGULAR:
            continue
        name = info.get("path")
        if name is None:
            name, prefix = _text(header[0:100]), _text(header[345:500])
            name = f"{prefix}/{name}" if prefix else name
        if kind == b"\0" and name.endswith("/"):
            continue  # a V7 directory
        yield name, data


def _expand(sources: Iterator[dict], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    """Opened shards -> webdataset's file records ({fname, data, __url__}), then ``{}`` at each
    shard's end (the marker ``group_by_keys`` needs); like ``tar_file_expander``."""
    for source in sources:
        url, stream = source["url"], source["stream"]
        try:
            for name, data in tar_members(stream, url):
                if "/" not in name and name.startswith("__") and name.endswith("__") or _SKIP_META.match(name):
                    continue
                yield {"fname": name, "data": data, "__url__": url}
        except Exception as exn:
            exn.args = (*exn.args, url)
            if not handler(exn):
                break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        yield {}


def tar_samples(src: Iterator[dict], handler: Callable[[Exception], bool] = wds.reraise_exception,
                suffixes: Optional[set[str]] = None) -> Iterator[dict]:
    """Shard URLs ({"url": ...}) -> webdataset samples ({__key__, __url__, ext: bytes}): a drop-in for
    ``wds.tarfile_to_samples(handler=...)``. ``suffixes`` keeps only those extensions."""
    return group_by_keys(_expand(url_opener(src, handler=handler), handler), suffixes=suffixes, handler=handler)


tarfile_to_samples = wds.filters.pipelinefilter(tar_samples)
