"""Digests that outlive a request: each resumable append hashes the bytes it writes and
stores the hashing state with the new offset, so verifying the assembled file reads nothing
back, as with ``http-post-bytes``, which hashes while it receives.

hashlib's objects cannot be serialized; rehashes (RustCrypto's hashes) can, for sha256,
sha512, sha1 and md5. A file that declares any other algorithm, or a server without
rehashes (it has wheels for Linux only), is hashed in full by the verification task.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

try:
    import rehashes
except ImportError:
    rehashes = None

_CLASSES = {"sha256": "PySha256", "sha512": "PySha512", "sha1": "PySha1", "md5": "PyMd5"}


class ResumableDigests:
    def __init__(self, hashers: dict):
        self.hashers = hashers

    @classmethod
    def start(cls, algorithms: Iterable[str]) -> ResumableDigests | None:
        """Fresh digests of sha256 and ``algorithms``; None when one of them cannot be resumed."""
        names = {"sha256", *algorithms}
        if rehashes is None or not names <= _CLASSES.keys():
            return None
        return cls({name: getattr(rehashes, _CLASSES[name])() for name in names})

    @classmethod
    def resume(cls, state: dict[str, str] | None) -> ResumableDigests | None:
        """The digests ``state`` holds; None when there is none this server can read."""
        if rehashes is None or not state:
            return None
        try:
            return cls({name: getattr(rehashes, _CLASSES[name]).deserialize(base64.b64decode(value, validate=True))
                        for name, value in state.items()})
        except (KeyError, ValueError, TypeError):  # binascii.Error is a ValueError
            return None

    def state(self) -> dict[str, str]:
        return {name: base64.b64encode(hasher.serialize()).decode() for name, hasher in self.hashers.items()}

    def hexdigests(self) -> dict[str, str]:
        return {name: hasher.finalize() for name, hasher in self.hashers.items()}
