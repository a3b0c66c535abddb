"""Storage side effects that must follow the database transaction's outcome, and a full
storage turned into a problem."""

from __future__ import annotations

import contextlib
import errno

from ..interfaces import IFileStorage
from ..problems import InsufficientStorage

FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@contextlib.contextmanager
def storage_full(source: str = "body"):
    """Refuse (507) a write that found the storage full. The writer removes what it wrote
    (a temporary file, an append cut back to its offset) and the request's transaction
    aborts, so nothing of the upload is kept."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in FULL:
            raise
        raise InsufficientStorage("Insufficient storage", "The server has no room to store this file now; "
                                  "nothing of it was kept. Try again later.", source=source) from exc


def purge_after_commit(request, keys) -> None:
    """Delete stored bytes once the transaction that stopped referencing them commits."""
    keys = list(keys)
    if not keys:
        return
    storage = request.find_service(IFileStorage)

    def hook(committed: bool) -> None:
        if committed:
            for key in keys:
                storage.delete(key)

    request.tm.get().addAfterCommitHook(hook)


def purge_on_abort(request, keys) -> None:
    """Delete bytes written during a request whose transaction then fails."""
    keys = list(keys)
    storage = request.find_service(IFileStorage)

    def hook(committed: bool = False) -> None:
        if not committed:
            for key in keys:
                storage.delete(key)

    # A failed commit calls after-commit hooks; an abort (the view raised) only after-abort ones.
    request.tm.get().addAfterCommitHook(hook)
    request.tm.get().addAfterAbortHook(hook)
