"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``) for tests/e2e/test_schemathesis.py."""

import schemathesis

# The resumable mechanism's appends are raw bytes, sent as the draft's media type.
schemathesis.serializer.alias("application/partial-upload", "application/octet-stream")
