"""Hostile archives, byte by byte: zips whose every header field the test chooses, and
compression bombs built without inflating them (a segment of deflated zeros repeated)."""

from __future__ import annotations

import dataclasses
import gzip
import io
import struct
import tarfile
import zlib

from .artifacts import _core_metadata

MiB = 1 << 20


def _zeros_segment() -> bytes:
    # After a full flush a deflate stream depends on nothing before it, so one flushed MiB of
    # zeros can be repeated to make a stream of any length.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)


SEGMENT = _zeros_segment()
FINAL = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty last block


def zeros_crc(mib: int, crc: int = 0) -> int:
    block = bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return crc


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@dataclasses.dataclass
class Entry:
    """One zip member as written: ``payload`` is what follows its local header."""

    name: bytes
    payload: bytes
    size: int
    crc: int
    method: int = 8
    flags: int = 0
    mode: int = 0o100644
    local_extra: bytes = b""


def entry(name: str | bytes, data: bytes, **fields) -> Entry:
    name = name.encode() if isinstance(name, str) else name
    return Entry(name, deflate(data), len(data), zlib.crc32(data), **fields)


def zeros_entry(name: str, mib: int, *, declared: int | None = None) -> Entry:
    """``mib`` MiB of deflated zeros; ``declared``: the size (and CRC) the headers claim instead."""
    size = mib * MiB if declared is None else declared
    crc = zeros_crc(mib) if declared is None else zlib.crc32(bytes(declared))
    return Entry(name.encode(), SEGMENT * mib + FINAL, size, crc)


def wheel_entries(name: str = "foo", version: str = "1.0") -> list[Entry]:
    dist_info = f"{name}-{version}.dist-info"
    return [
        entry(f"{name}/__init__.py", b"VALUE = 1\n"),
        entry(f"{dist_info}/METADATA", _core_metadata(name, version)),
        entry(f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n\n"),
        entry(f"{dist_info}/RECORD", b""),
    ]


def write_zip(entries: list[Entry], *, prefix: bytes = b"", suffix: bytes = b"", count: int | None = None,
              absolute_offsets: bool = False, before_end: bytes = b"", zip64: bool = False) -> bytes:
    """A zip archive of ``entries``. ``prefix``: bytes before it (offsets relative to the
    archive, as ``cat a b.zip`` gives, or to the file with ``absolute_offsets``, as
    self-extractors have); ``count``: the end record's entry count; ``before_end``: bytes
    between the central directory and the end record; ``zip64``: with zip64 end records."""
    out = io.BytesIO()
    out.write(prefix)
    base = 0 if absolute_offsets else len(prefix)
    central = []
    for e in entries:
        offset = out.tell() - base
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, e.flags, e.method, 0, 0x21, e.crc,
                              len(e.payload), e.size, len(e.name), len(e.local_extra)))
        out.write(e.name + e.local_extra + e.payload)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x031E, 20, e.flags, e.method, 0, 0x21, e.crc,
                                   len(e.payload), e.size, len(e.name), 0, 0, 0, 0, e.mode << 16, offset) + e.name)
    cd_offset = out.tell() - base
    directory = b"".join(central)
    out.write(directory + before_end)
    n = len(entries) if count is None else count
    if zip64:
        record = out.tell() - base
        out.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(directory), cd_offset))
        out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, record, 1))
        n, cd_offset = 0xFFFF, 0xFFFFFFFF
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(directory), cd_offset, 0))
    out.write(suffix)
    return out.getvalue()


def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def tar_member(name: str, data: bytes) -> bytes:
    return tar_header(name, len(data)) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def sdist_members(name: str = "foo", version: str = "1.0") -> bytes:
    """The tar members of a minimal valid sdist (no end-of-archive blocks)."""
    top = f"{name}-{version}"
    return tar_header(top, 0, tarfile.DIRTYPE) + tar_member(f"{top}/PKG-INFO", _core_metadata(name, version))


def gzip_with_zeros(head: bytes, mib: int, tail: bytes = bytes(1024)) -> bytes:
    """A gzip file of ``head``, ``mib`` MiB of zeros, then ``tail``, deflated segment by segment."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15)
    finish = end.compress(tail) + end.flush()
    crc = zlib.crc32(tail, zeros_crc(mib, zlib.crc32(head)))
    size = (len(head) + mib * MiB + len(tail)) & 0xFFFFFFFF
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + start + SEGMENT * mib + finish
            + struct.pack("<2L", crc, size))


def sdist_bytes(extra: bytes = b"", name: str = "foo", version: str = "1.0") -> bytes:
    return gzip.compress(sdist_members(name, version) + extra + bytes(1024), mtime=0)
