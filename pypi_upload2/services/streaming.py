"""Copy a request body to storage in bounded chunks, hashing while writing."""

from __future__ import annotations

import hashlib

CHUNK = 1024 * 1024


class TooLarge(Exception):
    pass


def copy_hashing(source, target, algorithms, limit: int) -> tuple[int, dict[str, str]]:
    """Copy ``source`` to ``target`` (file objects); return (size, {algorithm: hexdigest}).
    Raises TooLarge as soon as more than ``limit`` bytes arrive. Memory stays at one chunk."""
    hashers = {name: hashlib.new(name) for name in {"sha256", *algorithms}}
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(size)
        for hasher in hashers.values():
            hasher.update(chunk)
        target.write(chunk)
    return size, {name: hasher.hexdigest() for name, hasher in hashers.items()}
