"""Project names and versions as the API receives them, and the release key."""

from __future__ import annotations

from packaging.utils import InvalidName, canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

from ..models import PublishingSession
from ..problems import BadRequest

_columns = PublishingSession.__table__.c


def _string(value, key: str, limit: int) -> str:
    if value is None:
        raise BadRequest("Missing key", f"The request has no {key!r} key.", source=key)
    if not isinstance(value, str):
        raise BadRequest(f"Invalid {key}", f"{key!r} must be a string.", source=key)
    if len(value) > limit:  # the columns' limits: a longer value would fail the INSERT
        raise BadRequest(f"Invalid {key}", f"{key!r} is longer than {limit} characters.", source=key)
    return value


def canonical_version(version: Version) -> str:
    """The release key: versions equal under PEP 440 (1.0, 1.0.0, v1.0) are one release."""
    return canonicalize_version(version)


def parse_name_version(name, version) -> tuple[str, str, Version]:
    """(name as given, normalized name, version), or a 400 saying what is wrong."""
    name = _string(name, "name", _columns.normalized_name.type.length)
    try:
        normalized = canonicalize_name(name, validate=True)
    except InvalidName:
        raise BadRequest("Invalid name", f"{name!r} is not a valid project name.", source="name")
    limit = _columns.version.type.length
    version = _string(version, "version", limit)
    try:
        # Version() allows surrounding whitespace, but the version is kept as written.
        if version != version.strip():
            raise InvalidVersion(version)
        parsed = Version(version)
    except InvalidVersion:
        raise BadRequest("Invalid version", f"{version!r} is not a valid version.", source="version")
    # Normalizing can lengthen a version ("1-1" is 1.post1), and the normal form is stored too.
    if len(canonical_version(parsed)) > _columns.canonical_version.type.length:
        raise BadRequest("Invalid version", f"'version' is longer than {limit} characters once normalized.",
                         source="version")
    return name, normalized, parsed
