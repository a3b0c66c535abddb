"""Storage side effects that must follow the database transaction's outcome."""

from __future__ import annotations

from ..interfaces import IFileStorage


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
