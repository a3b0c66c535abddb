"""Publish checks: what must hold of a session's files before they become public.

A check is a callable ``check(request, session, files)`` yielding ``(filename, message)``
for each problem, ``filename`` None when no one file is to blame. ``upload2.publish_checks``
names the checks in order (dotted names); any problem fails the publish, and the messages
become the session's and the files' notices. This is the hook a malware scanner would use.
"""

from __future__ import annotations

from packaging.metadata import parse_email
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..interfaces import IFileStorage
from ..models import FileUploadSession, PublishingSession


def metadata_agrees(request, session: PublishingSession, files: list[FileUploadSession]):
    """Every file's stored core metadata names the session's project and version."""
    storage = request.find_service(IFileStorage)
    limit = request.registry["upload2.settings"].max_metadata_size
    for f in files:
        if storage.size(f.metadata_key) is None:
            yield f.filename, "its core metadata is missing"
            continue
        with storage.open(f.metadata_key) as fh:
            fields, _ = parse_email(fh.read(limit))
        name, version = fields.get("name", ""), fields.get("version", "")
        if canonicalize_name(name) != canonicalize_name(session.name):
            yield f.filename, f"its metadata names project {name!r}, not {session.name!r}"
        elif not _same_version(version, session.version):
            yield f.filename, f"its metadata names version {version!r}, not {session.version!r}"


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def run(request, session: PublishingSession, files: list[FileUploadSession]) -> list[dict]:
    """Every check's problems, as the PEP's ``errors`` entries (source: filename or session)."""
    return [{"source": filename or "session", "message": message}
            for check in request.registry["upload2.publish_checks"]
            for filename, message in check(request, session, files)]


DEFAULT = ("pypi_upload2.services.checks.metadata_agrees",)


def includeme(config):
    # Unset, the plugin's own checks run, then the index's (the built-in index adds its quota).
    names = config.registry["upload2.settings"].publish_checks
    if names is None:
        names = DEFAULT + tuple(config.registry.get("upload2.index_checks", ()))
    config.registry["upload2.publish_checks"] = [config.maybe_dotted(name) for name in names]
