"""The archive structure zipfile and tarfile take on trust, checked with bounded work.

An uploaded wheel must be one zip archive and nothing else (no bytes before its first member
or after its end record, no tar header on top: tools that scan differently would find another
archive), with its central directory counted before zipfile loads it into memory, and members
that inflate to exactly the size and CRC they declare. An sdist's gzip stream is inflated here
rather than by gzip, so that its members, its total and each read tarfile makes are bounded.
Everything takes a seekable binary file object.
"""

from __future__ import annotations

import copy
import struct
import tarfile
import zipfile
import zlib
from typing import IO

CHUNK = 1 << 16
# An sdist is one gzip member; concatenated members are legal gzip but cost a header parse
# each, so a file of millions of empty ones is a slow bomb.
MAX_GZIP_MEMBERS = 16

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s24x3H12x")  # a central directory header: name, extra, comment lengths


class ArchiveError(Exception):
    """The archive is hostile or malformed; the message says how, in one sentence."""


def _is_tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _end_records(f: IO[bytes], size: int) -> tuple[int, int, int, int]:
    """(entries, central directory size and offset, where the directory must end), from
    the end record (zip64's where present), which must end the file."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise zipfile.BadZipFile("File is not a zip file")  # as zipfile says it
    _, disk, cd_disk, _, entries, cd_size, cd_offset, comment = _EOCD.unpack_from(tail, at)
    if at + _EOCD.size + comment != len(tail):
        raise ArchiveError("The wheel has data after the end of its zip archive.")
    end = size - tail_size + at
    if end >= _ZIP64_LOCATOR.size:  # zipfile reads zip64 records wherever their locator is
        f.seek(end - _ZIP64_LOCATOR.size)
        signature, disk64, record, disks = _ZIP64_LOCATOR.unpack(f.read(_ZIP64_LOCATOR.size))
        if signature == b"PK\x06\x07":
            f.seek(record)
            raw = f.read(_ZIP64_EOCD.size)
            if len(raw) < _ZIP64_EOCD.size or disk64 or disks != 1:
                raise ArchiveError("The wheel's zip64 end record is missing or spans several disks.")
            signature, length, _, _, disk, cd_disk, _, entries, cd_size, cd_offset = _ZIP64_EOCD.unpack(raw)
            if signature != b"PK\x06\x06" or record + 12 + length != end - _ZIP64_LOCATOR.size:
                raise ArchiveError("The wheel's zip64 end record is not where its locator says.")
            end = record
    if disk or cd_disk:
        raise ArchiveError("The wheel is a multi-disk zip archive.")
    return entries, cd_size, cd_offset, end


def check_zip_layout(f: IO[bytes], max_members: int) -> None:
    """Refuse a zip that is not exactly one archive, or has more than ``max_members`` entries
    (counted by walking the central directory: zipfile trusts its size, not its count)."""
    entries, cd_size, cd_offset, end = _end_records(f, f.seek(0, 2))
    f.seek(0)
    head = f.read(tarfile.BLOCKSIZE)
    if not head.startswith(b"PK\x03\x04"):
        raise ArchiveError("The wheel does not start with a zip member (it has data before its zip archive).")
    if len(head) == tarfile.BLOCKSIZE and _is_tar_header(head):
        raise ArchiveError("The wheel is a tar archive as well as a zip archive.")
    if cd_offset + cd_size != end:
        raise ArchiveError("The wheel's central directory is not where its end record says "
                           "(data before the archive, or between its parts).")
    if entries > max_members:
        raise ArchiveError(f"The wheel has more than {max_members} members.")
    position, count = cd_offset, 0
    while position < end:
        f.seek(position)
        header = f.read(_CENTRAL.size)
        if len(header) < _CENTRAL.size or not header.startswith(b"PK\x01\x02"):
            raise ArchiveError("The wheel's central directory is corrupt.")
        count += 1
        if count > max_members:
            raise ArchiveError(f"The wheel has more than {max_members} members.")
        position += _CENTRAL.size + sum(_CENTRAL.unpack(header)[1:])
    if position != end or count != entries:
        raise ArchiveError("The wheel's central directory does not match its end record.")


def check_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Inflate the member and refuse it unless it gives exactly its declared size and CRC:
    a member that inflates further than its central directory entry says is truncated by
    zipfile but not by other tools. Costs at most its declared size plus one chunk."""
    declared = info.file_size
    probe = copy.copy(info)
    # Read on past the declared end, if there is more, and check the CRC here (zipfile would
    # check it at the declared end, and report a lie as a bad CRC).
    probe.file_size, probe.CRC = declared + 1, None
    total = crc = 0
    with zf.open(probe) as stream:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
            if total > declared:
                raise ArchiveError(f"Wheel member {info.filename!r} inflates to more than the "
                                   f"{declared} bytes its zip entry declares.")
            crc = zlib.crc32(chunk, crc)
    if total != declared:
        raise ArchiveError(f"Wheel member {info.filename!r} inflates to {total} bytes, "
                           f"not the {declared} its zip entry declares.")
    if crc != info.CRC:
        raise ArchiveError(f"Wheel member {info.filename!r} has a bad CRC-32.")


class InflatedGzip:
    """A gzip file's inflated bytes as the forward-only file tarfile reads (``r:`` mode):
    at most ``limit`` bytes in all, at most ``max_read`` in one read (tarfile reads a pax or
    GNU long-name header whole, whatever size it declares), at most MAX_GZIP_MEMBERS members.
    Like gzip, zero padding between and after members is allowed."""

    def __init__(self, raw: IO[bytes], limit: int, max_read: int, too_large: Exception):
        self._raw, self._limit, self._max_read, self._too_large = raw, limit, max_read, too_large
        self._inflater = zlib.decompressobj(31)
        self._input = b""
        self._members = 1
        self._position = 0
        self._done = False

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = 0) -> int:
        if whence == 1:
            position += self._position
        if whence not in (0, 1) or position < self._position:
            raise OSError("an inflating stream only seeks forward")
        while self._position < position and self._inflate(min(position - self._position, CHUNK)):
            pass
        return self._position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._max_read:
            raise ArchiveError(f"The sdist has a tar header or member read larger than {self._max_read} bytes.")
        out = bytearray()
        while len(out) < size and (chunk := self._inflate(size - len(out))):
            out += chunk
        return bytes(out)

    def _inflate(self, size: int) -> bytes:
        while not self._done:
            if self._inflater.eof:
                self._next_member()
                continue
            if not self._input:
                self._input = self._raw.read(CHUNK)
                if not self._input:
                    # As gzip says it: the caller reports the archive as not valid.
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            out = self._inflater.decompress(self._input, size)
            self._input = self._inflater.unconsumed_tail or self._inflater.unused_data
            if out:
                self._position += len(out)
                if self._position > self._limit:
                    raise self._too_large
                return out
        return b""

    def _next_member(self) -> None:
        rest = self._input.lstrip(b"\0")
        while not rest:
            if not (raw := self._raw.read(CHUNK)):
                self._done = True
                return
            rest = raw.lstrip(b"\0")
        self._members += 1
        if self._members > MAX_GZIP_MEMBERS:
            raise ArchiveError(f"The sdist's gzip stream has more than {MAX_GZIP_MEMBERS} members.")
        self._inflater, self._input = zlib.decompressobj(31), rest
