"""A wheel's members inflated as its bytes arrive, so that completion need not read the
stored copy back (on an object store, a second transfer of the whole file).

``MemberScan`` follows the local headers in the order the bytes come and inflates each
member, recording what it gave: where it starts, its name and flags, its method, how many
compressed bytes it took, and the size and CRC-32 they inflate to. Completion builds the
same table from the central directory (``central_digest``); when the digests agree, every
member zipfile would open inflates to exactly what the directory declares, which is what
``archives.check_zip_member`` proves by reading it back. When they disagree, or the scan could
not follow the archive (a data descriptor, encryption, a method zipfile cannot inflate, more
inflated bytes than the limit), the digest is None or differs and the members are read back:
the scan only ever saves work, it never decides a refusal.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
import zlib

_LOCAL = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, CRC, sizes, name and extra lengths
_ZIP64_EXTRA = 0x0001
_UTF8_NAME = 0x800
# Encrypted, or sizes and CRC in a data descriptor after the data: not followed here.
_UNFOLLOWED_FLAGS = 0x1 | 0x8
# The flags zipfile reads from the central directory when it opens a member: the name's
# encoding, and those it refuses (encryption, patch data).
_COMPARED_FLAGS = _UTF8_NAME | 0x1 | 0x20 | 0x40
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_OUT = 1 << 20  # inflated bytes per decompress call: memory stays bounded whatever the ratio


def _digest(rows: list[list]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()


def central_digest(infos: list[zipfile.ZipInfo]) -> str:
    """The table the central directory declares, digested as ``MemberScan`` digests its own."""
    return _digest([[info.header_offset, info.flag_bits & _COMPARED_FLAGS, info.compress_type, info.compress_size,
                     info.file_size, info.CRC, info.orig_filename] for info in infos])


class NoScan:
    """An sdist's scan: fed as a wheel's is, it scans nothing and has no digest."""

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> None:
        return None


class MemberScan:
    """Fed the file's bytes in order from its first (``update``, as a hasher is), it gives
    the digest of its members' table (``hexdigest``), or None where it lost the archive."""

    def __init__(self, max_inflated: int, max_members: int):
        self.budget, self.max_members = max_inflated, max_members
        self.rows: list[list] | None = []
        self.position = 0  # the stream offset of the next byte fed
        self.header = bytearray()  # a local header being gathered
        self.member: list | None = None  # the row of the member whose data is being fed
        self.left = 0  # its compressed bytes still to come
        self.inflater = None
        self.ended = False  # past the last local header: the central directory, or whatever follows

    def update(self, data) -> None:
        view = memoryview(data)
        while view and self.rows is not None and not self.ended:
            taken = self._data(view) if self.member is not None else self._header(view)
            self.position += taken
            view = view[taken:]

    def hexdigest(self) -> str | None:
        if self.rows is None or self.member is not None or (self.header and not self.ended):
            return None  # lost, or the bytes stopped inside a member
        return _digest(self.rows)

    def _lose(self) -> None:
        self.rows, self.member, self.inflater = None, None, None

    def _header_size(self) -> int:
        if len(self.header) < _LOCAL.size:
            return _LOCAL.size
        return _LOCAL.size + sum(_LOCAL.unpack_from(self.header)[9:])  # with its name and extra field

    def _header(self, view: memoryview) -> int:
        taken = min(len(view), self._header_size() - len(self.header))
        self.header += view[:taken]
        if len(self.header) >= 4 and self.header[:4] != b"PK\x03\x04":
            self.ended = True
        elif len(self.header) == self._header_size():
            self._begin_member(self.position + taken - len(self.header))
        return taken

    def _begin_member(self, start: int) -> None:
        _, _, flags, method, _, _, _, csize, usize, name_length, _ = _LOCAL.unpack_from(self.header)
        name = bytes(self.header[_LOCAL.size:_LOCAL.size + name_length])
        extra = bytes(self.header[_LOCAL.size + name_length:])
        self.header = bytearray()
        if flags & _UNFOLLOWED_FLAGS or method not in _METHODS:
            self._lose()
            return
        if 0xFFFFFFFF in (csize, usize):
            csize = _zip64_compressed_size(extra, csize, usize)
            if csize is None:
                self._lose()
                return
        decoded = name.decode("utf-8" if flags & _UTF8_NAME else "cp437", "surrogateescape")
        self.member = [start, flags & _COMPARED_FLAGS, method, csize, 0, 0, decoded]
        self.left = csize
        self.inflater = zlib.decompressobj(-15) if method == zipfile.ZIP_DEFLATED else None
        if not csize:
            self._end_member()

    def _data(self, view: memoryview) -> int:
        piece = view[:self.left]
        self.left -= len(piece)
        try:
            self._inflate(piece)
        except zlib.error:
            self._lose()  # a corrupt stream: the inspection says so from the stored copy
        if self.rows is None:
            return 0
        if not self.left:
            self._end_member()
        return len(piece)

    def _inflate(self, piece: memoryview) -> None:
        if self.inflater is None:
            self._inflated(piece)
            return
        chunk = bytes(piece)
        while chunk and not self.inflater.eof:
            self._inflated(self.inflater.decompress(chunk, _OUT))
            if self.rows is None:
                return
            chunk = self.inflater.unconsumed_tail
        if not self.left and not self.inflater.eof:
            self._inflated(self.inflater.flush())

    def _inflated(self, out) -> None:
        self.budget -= len(out)
        if self.budget < 0:
            self._lose()  # the inspection refuses it (or finds why) from the stored copy
            return
        self.member[4] += len(out)
        self.member[5] = zlib.crc32(out, self.member[5])

    def _end_member(self) -> None:
        self.rows.append(self.member)
        self.member, self.inflater = None, None
        if len(self.rows) > self.max_members:
            self._lose()  # the inspection refuses so many; the table stays bounded meanwhile


def _zip64_compressed_size(extra: bytes, csize: int, usize: int) -> int | None:
    """The compressed size from a local header's zip64 field (its sizes come in that order,
    each only where the header's own is 0xFFFFFFFF)."""
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4:at + 4 + length]
        if kind == _ZIP64_EXTRA:
            values = [v for (v,) in struct.iter_unpack("<Q", body[:len(body) // 8 * 8])]
            if usize == 0xFFFFFFFF:
                values = values[1:]
            if csize == 0xFFFFFFFF:
                return values[0] if values else None
            return csize
        at += 4 + length
    return None
