"""What this process knows of the multipart uploads it appended to last, so that its next
append to one needs no listing of the store's uploads and parts (two requests, the second
growing with the parts). The database's offset decides: an entry serves only an append at
the offset it ended at, so an append made on another host, or one whose transaction did not
commit, sends the store's listing back into use."""

from __future__ import annotations

import collections
import threading

# Uploads in progress remembered per process: a few per thread at once is what they serve.
CAPACITY = 1024


class KnownUploads:
    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.entries: collections.OrderedDict[str, tuple[str, int, int]] = collections.OrderedDict()
        self.lock = threading.Lock()

    def at(self, key: str, offset: int) -> tuple[str, int] | None:
        """(upload id, parts acknowledged) of ``key``'s upload when its last append here ended
        at ``offset``."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry[2] != offset:
                return None
            self.entries.move_to_end(key)
            return entry[0], entry[1]

    def remember(self, key: str, upload_id: str, parts: int, end: int) -> None:
        with self.lock:
            self.entries[key] = (upload_id, parts, end)
            self.entries.move_to_end(key)
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)

    def forget(self, key: str) -> None:
        with self.lock:
            self.entries.pop(key, None)
