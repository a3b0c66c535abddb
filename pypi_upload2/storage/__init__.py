"""Where staged bytes live: the local disk (the embedded default) or an S3-compatible object store."""
