"""Password hashes for the built-in index's users (argon2id, argon2-cffi's defaults)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8

_hasher = PasswordHasher()


def make_hash(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password has at least {MIN_LENGTH} characters")
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("no user has this password")


def verify(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches. Without a hash (an unknown user, or one with no
    password) a dummy hash is checked all the same, so timing does not tell which."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
