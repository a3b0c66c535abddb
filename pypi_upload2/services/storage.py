"""Distribution bytes on the local filesystem, keyed by server-derived keys."""

from __future__ import annotations

import contextlib
import os
import tempfile

from zope.interface import implementer

from ..interfaces import IFileStorage


@implementer(IFileStorage)
class LocalFileStorage:
    def __init__(self, base: str):
        self.base = os.path.abspath(base)

    @classmethod
    def create_service(cls, context, request):
        return cls(request.registry["upload2.settings"].storage)

    def path(self, key: str) -> str:
        path = os.path.abspath(os.path.join(self.base, key))
        if not path.startswith(self.base + os.sep):
            raise ValueError(f"storage key outside the storage root: {key!r}")
        return path

    @contextlib.contextmanager
    def writer(self, key: str):
        # Write beside the target and rename: readers never see a partial file.
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def open(self, key: str):
        return open(self.path(key), "rb")

    def move(self, source: str, target: str) -> None:
        path = self.path(target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(self.path(source), path)

    def size(self, key: str) -> int | None:
        try:
            return os.stat(self.path(key)).st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(key))
