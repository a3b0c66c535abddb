"""A seekable read-only file over an object, read with ranged GETs: archive inspection seeks
to a zip's central directory and its members without fetching the whole file, and a
sequential scan (the member check inflating every member, a download) streams one GET."""

from __future__ import annotations

import io

from .faults import reachable

# Small reads (zipfile's headers, tarfile's blocks) are served from one GET of this many bytes.
READ_AHEAD = 256 * 1024
# A read this large, or one going on where the last GET ended, opens one GET to the object's
# end, and the reads that follow it in order take their bytes from that response as they
# arrive: one request per scan, not one per read (a request costs its round trip on any
# store, and some stores copy the object for each).
STREAM_FROM = 1024 * 1024
# An object's last bytes, fetched by one GET the first time a read falls inside them and kept,
# as the last small GET is: a zip's end record, central directory and (as wheels are written)
# its .dist-info members are there, its first members at the start, and zipfile reads them
# in many small seeks back and forth.
TAIL = 1024 * 1024


class _RangedRaw(io.RawIOBase):
    def __init__(self, client, bucket: str, key: str, size: int):
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.position = 0
        # The open response of a sequential scan, and the offset its next byte has; where the
        # last bounded GET ended.
        self.stream, self.stream_at, self.read_end = None, -1, -1
        self.tail: tuple[int, bytes] | None = None
        self.window: tuple[int, bytes] = (0, b"")  # the last small GET's

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def _request(self, end: int, start: int | None = None):
        start = self.position if start is None else start
        return self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end}")["Body"]

    @reachable()
    def _get(self, length: int) -> bytes:
        end = min(self.size, self.position + length) - 1
        if end < self.position:
            return b""
        if self.stream is None or self.stream_at != self.position:
            if (kept := self._kept(end)) is not None:
                return kept
            self._end_stream()
            if length < STREAM_FROM and self.position != self.read_end:
                with self._request(end) as body:
                    data = body.read()
                self.window = (self.position, data)
                self.position += len(data)
                self.read_end = self.position
                return data
            self.stream, self.stream_at = self._request(self.size - 1), self.position
        try:
            data = self.stream.read(end + 1 - self.position)
        except BaseException:
            self._end_stream()  # the next read opens a new GET where this one broke off
            raise
        self.position += len(data)
        self.stream_at = self.position
        return data

    def _kept(self, end: int) -> bytes | None:
        """The bytes from the position on (up to ``end``) out of the tail or the last small
        GET, if either holds the position; the tail is fetched when the position is in it."""
        tail_start = max(0, self.size - TAIL)
        if self.tail is None and self.position >= tail_start:
            with self._request(self.size - 1, start=tail_start) as body:
                self.tail = (tail_start, body.read())
        for start, data in (self.tail or (0, b""), self.window):
            if start <= self.position < start + len(data):
                piece = data[self.position - start:end + 1 - start]
                self.position += len(piece)
                return piece
        return None

    def _end_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()  # a response read only in part: its connection is not reused
            self.stream = None

    def readinto(self, buffer) -> int:
        data = self._get(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        # One GET for the rest (small objects: core metadata), not one per default buffer.
        return self._get(self.size - self.position)

    def close(self) -> None:
        self._end_stream()
        super().close()


def ranged_reader(client, bucket: str, key: str, size: int) -> io.BufferedReader:
    """A buffered reader over ``size`` bytes of ``key``: small reads come from ranged GETs of
    READ_AHEAD bytes, and a sequential run of large reads from one streamed GET."""
    return io.BufferedReader(_RangedRaw(client, bucket, key, size), buffer_size=READ_AHEAD)
