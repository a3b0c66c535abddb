"""Secrets as they are kept and compared, and HTTP Basic credentials."""

from __future__ import annotations

import base64
import hashlib


def secret_digest(secret: str) -> str:
    """How a secret is kept (an API token's, a publishing session's token): its sha256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def basic_credentials(request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 (UnicodeDecodeError)
        return None
    return (username, password) if sep else None
