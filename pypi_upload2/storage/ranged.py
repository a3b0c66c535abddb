"""A seekable read-only file over an object, read with ranged GETs: archive inspection seeks
to a zip's central directory and its members without fetching the whole file."""

from __future__ import annotations

import io

# Small reads (zipfile's headers, tarfile's blocks) are served from one GET of this many bytes.
READ_AHEAD = 256 * 1024


class _RangedRaw(io.RawIOBase):
    def __init__(self, client, bucket: str, key: str, size: int):
        self.client, self.bucket, self.key, self.size = client, bucket, key, size
        self.position = 0

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

    def _get(self, length: int) -> bytes:
        end = min(self.size, self.position + length) - 1
        if end < self.position:
            return b""
        body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end}")["Body"]
        with body:
            data = body.read()
        self.position += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self._get(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        # One GET for the rest (small objects: core metadata), not one per default buffer.
        return self._get(self.size - self.position)


def ranged_reader(client, bucket: str, key: str, size: int) -> io.BufferedReader:
    """A buffered reader over ``size`` bytes of ``key``: reads past the buffer go straight to
    one ranged GET each, so a sequential copy in 1 MiB reads costs one request per MiB."""
    return io.BufferedReader(_RangedRaw(client, bucket, key, size), buffer_size=READ_AHEAD)
