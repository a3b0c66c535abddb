"""File upload sessions: validated creation, completion with distribution checks, deletion."""

from __future__ import annotations

import datetime
import hashlib
import re

import sqlalchemy as sa
from packaging.utils import canonicalize_name
from packaging.version import Version

from .. import states
from ..db import utcnow
from ..interfaces import IFileStorage
from ..models import FileUploadSession, PublishingSession, ReleaseFile
from ..problems import BadRequest, Conflict, ContentTooLarge, Problem, UnprocessableContent
from ..states import FileStatus
from .cleanup import purge_after_commit
from .distributions import DistributionError, inspect_distribution, parse_filename
from .publishing import live_files

# Broken or length-less algorithms cannot vouch for a file's integrity.
SECURE_HASHES = frozenset(hashlib.algorithms_guaranteed) - {"md5", "sha1"} - {
    a for a in hashlib.algorithms_guaranteed if a.startswith("shake_")}
_HEX = re.compile(r"[0-9a-f]+")


def _require(body: dict, key: str, kind: type, what: str):
    value = body.get(key)
    if value is None:
        raise BadRequest("Missing key", f"The request has no {key!r} key.", source=key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadRequest(f"Invalid {key}", f"{key!r} must be {what}.", source=key)
    return value


def parse_hashes(hashes: dict) -> dict[str, str]:
    parsed = {}
    for algorithm, digest in hashes.items():
        name = algorithm.lower() if isinstance(algorithm, str) else algorithm
        if name not in hashlib.algorithms_available or name.startswith("shake_"):
            raise BadRequest("Unsupported hash", f"{algorithm!r} is not a supported hashlib algorithm.",
                             source=f"hashes.{algorithm}")
        expected = hashlib.new(name).digest_size * 2
        if not isinstance(digest, str) or len(digest) != expected or not _HEX.fullmatch(digest.lower()):
            raise BadRequest("Invalid digest", f"The {name} digest must be {expected} hex digits.",
                             source=f"hashes.{algorithm}")
        parsed[name] = digest.lower()
    if not SECURE_HASHES & parsed.keys():
        raise BadRequest("No secure hash",
                         "Include at least one secure hash, such as sha256 (md5 and sha1 are not enough).",
                         source="hashes")
    return parsed


def create(request, session: PublishingSession, body: dict) -> FileUploadSession:
    """Validate a file upload request up front, then open its file upload session."""
    db = request.db
    settings = request.registry["upload2.settings"]
    mechanisms = request.registry["upload2.mechanisms"]
    states.publishing(session, "edit", dry_run=True)
    filename = _require(body, "filename", str, "a string")
    size = _require(body, "size", int, "an integer")
    hashes = parse_hashes(_require(body, "hashes", dict, "a mapping of algorithm to hex digest"))
    mechanism = _require(body, "mechanism", str, "a string")
    try:
        dist = parse_filename(filename)
    except DistributionError as exc:
        raise BadRequest("Invalid filename", exc.message, source="filename")
    if dist.name != canonicalize_name(session.name) or dist.version != Version(session.version):
        raise BadRequest("Filename does not match the session",
                         f"{filename!r} is not a file of {session.name} {session.version}.", source="filename")
    if size <= 0:
        raise BadRequest("Invalid size", "'size' must be a positive number of bytes.", source="size")
    if size > settings.max_file_size:
        raise ContentTooLarge("File too large",
                              f"{size} bytes exceeds this index's limit of {settings.max_file_size} bytes.",
                              source="size")
    if mechanism not in mechanisms:
        raise UnprocessableContent("Unsupported mechanism",
                                   f"{mechanism!r} is not supported; use one of {', '.join(mechanisms)}.",
                                   source="mechanism")
    if db.scalar(sa.select(ReleaseFile.id).where(ReleaseFile.filename == filename)) is not None:
        raise Conflict("File exists", f"{filename!r} already exists; published files are immutable.",
                       source="filename")
    for other in live_files(session):
        if other.filename == filename:
            if other.status != FileStatus.COMPLETED:
                raise Conflict("Upload in progress",
                               f"{filename!r} is {other.status}; delete it before uploading it again.",
                               source="filename")
            delete(request, other)  # a completed file is replaced by the new upload
        elif dist.packagetype == "sdist" and other.packagetype == "sdist":
            raise Conflict("Second sdist", f"The session already has an sdist, {other.filename!r}.",
                           source="filename")
    if dist.packagetype == "sdist" and db.scalar(sa.select(ReleaseFile.id).where(
            ReleaseFile.release_id == session.release_id, ReleaseFile.packagetype == "sdist")):
        raise Conflict("Second sdist", "The release already has an sdist.", source="filename")
    states.publishing(session, "edit")
    file_session = FileUploadSession(
        publishing_session_id=session.id, filename=filename, packagetype=dist.packagetype, size=size,
        hashes=hashes, mechanism=mechanism, status=FileStatus.PENDING, notices=[],
        expires_at=min(session.expires_at,
                       utcnow() + datetime.timedelta(seconds=settings.file_session_lifetime)),
    )
    try:
        with db.begin_nested():
            db.add(file_session)
            db.flush()
    except sa.exc.IntegrityError:
        raise Conflict("Upload in progress", f"{filename!r} is already being uploaded.", source="filename")
    return file_session


def delete(request, file_session: FileUploadSession) -> None:
    states.file_upload(file_session, "cancel")
    request.db.flush()
    purge_after_commit(request, [file_session.blob_key, file_session.metadata_key])


def extend(request, file_session: FileUploadSession, extend_for) -> None:
    if not isinstance(extend_for, int) or isinstance(extend_for, bool) or extend_for < 0:
        raise BadRequest("Invalid extension", "'extend-for' must be a non-negative integer.", source="extend-for")
    if file_session.status in (FileStatus.PENDING, FileStatus.PROCESSING):
        # A file upload session never outlives its publishing session.
        wanted = min(utcnow() + datetime.timedelta(seconds=extend_for), file_session.publishing_session.expires_at)
        file_session.expires_at = max(file_session.expires_at, wanted)


def verify(request, file_session: FileUploadSession) -> str | None:
    """Check the received bytes against the declaration and the distribution format;
    store the core metadata. Returns None when the file is good, else why not."""
    storage = request.find_service(IFileStorage)
    settings = request.registry["upload2.settings"]
    if file_session.received_size is None or storage.size(file_session.blob_key) is None:
        return "No bytes were uploaded for this file."
    if file_session.received_size != file_session.size:
        return f"Size mismatch: declared {file_session.size} bytes, received {file_session.received_size}."
    for algorithm, digest in file_session.hashes.items():
        actual = file_session.received_hashes.get(algorithm)
        if actual != digest:
            return f"{algorithm} mismatch: declared {digest}, received {actual}."
    dist = parse_filename(file_session.filename)
    try:
        metadata = inspect_distribution(storage.path(file_session.blob_key), dist,
                                        max_metadata_size=settings.max_metadata_size)
    except DistributionError as exc:
        return f"{exc.source}: {exc.message}"
    with storage.writer(file_session.metadata_key) as fh:
        fh.write(metadata.raw)
    file_session.metadata_sha256 = hashlib.sha256(metadata.raw).hexdigest()
    file_session.requires_python = metadata.requires_python
    return None


def complete(request, file_session: FileUploadSession) -> Problem | None:
    """Complete synchronously. A failure is committed (the file moves to ``error``) and
    returned, not raised, so the caller can report it without rolling the state back."""
    session = file_session.publishing_session
    states.publishing(session, "edit", dry_run=True)
    states.file_upload(file_session, "complete", dry_run=True)
    failure = verify(request, file_session)
    if failure is None:
        states.file_upload(file_session, "complete")
        return None
    states.file_upload(file_session, "fail")
    file_session.notices = [*file_session.notices, failure]
    purge_after_commit(request, [file_session.blob_key, file_session.metadata_key])
    return BadRequest("File verification failed", failure, source=file_session.filename)
