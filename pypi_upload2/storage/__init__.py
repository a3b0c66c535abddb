"""Where staged bytes live: the local disk (the embedded default) or an S3-compatible object store."""

from ..problems import ServiceUnavailable

# Seconds a client is asked to wait when the storage did not answer.
STORAGE_RETRY_AFTER = 5


class StorageError(Exception):
    """The stored parts do not match what the database recorded of them."""


class StorageUnavailable(ServiceUnavailable):
    """The storage did not answer (unreachable, timed out, a connection cut, its own 5xx).
    Transient: the request's transaction aborts and its writer drops what it had begun, so the
    client retries the same request (a resumable upload from the offset it last had)."""

    def __init__(self, cause: str):
        super().__init__("Storage unavailable", "The server could not reach its file storage; nothing of this "
                         "request was kept. Retry the request later.",
                         headers={"Retry-After": str(STORAGE_RETRY_AFTER)})
        self.cause = cause
