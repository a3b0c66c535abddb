"""An object store that does not answer, told apart from one that answers no: connection
errors, timeouts, cut responses and the store's own 5xx (after botocore's retries) become
``StorageUnavailable`` (503 with ``Retry-After``); a 4xx stays the error it is."""

from __future__ import annotations

import contextlib
import logging

from botocore import exceptions as boto

from . import StorageUnavailable

log = logging.getLogger(__name__)
# Refused connections, connect and read timeouts, connections closed or cut mid-response.
TRANSIENT = (boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError)


def unavailable(exc: Exception) -> bool:
    if isinstance(exc, boto.ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
    return isinstance(exc, TRANSIENT)


@contextlib.contextmanager
def reachable():
    """Around calls to the store (a decorator too)."""
    try:
        yield
    except (boto.ClientError, *TRANSIENT) as exc:
        if not unavailable(exc):
            raise
        log.warning("object storage unavailable: %s", exc)
        raise StorageUnavailable(str(exc)) from exc
