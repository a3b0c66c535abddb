"""Where staged bytes live: the local disk (the embedded default) or an S3-compatible object store."""


class StorageError(Exception):
    """The stored parts do not match what the database recorded of them."""
