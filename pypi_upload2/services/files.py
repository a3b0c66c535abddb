"""File upload sessions: validated creation, completion with distribution checks, deletion."""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re

from packaging.version import Version

from .. import states
from ..db import insert, utcnow
from ..interfaces import IFilenames, IFileStorage, IReleases, ITaskQueue
from ..models import FileUploadSession, PublishingSession
from ..problems import BadRequest, Conflict, ContentTooLarge, FileExists, SecondSdist, UnprocessableContent
from ..states import FileStatus
from ..storage import StorageError
from . import attestations, loading
from .cleanup import purge_after_commit, storage_full
from .digests import ResumableDigests
from .distributions import CoreMetadata, DistributionError, Limits, inspect_distribution, parse_filename
from .members import MemberScan, NoScan
from .publication import check_new_files_window
from .publishing import extension, live_files
from .streaming import TooLarge, copy_hashing

log = logging.getLogger(__name__)

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
    if dist.name != session.normalized_name or dist.version != Version(session.version):
        raise BadRequest("Filename does not match the session",
                         f"{filename!r} is not a file of {session.name} {session.version}.", source="filename")
    project = session.host_project
    check_new_files_window(request, session, project)
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
    if request.find_service(IFilenames).used(request, filename):
        raise FileExists("File exists", f"{filename!r} already exists; published files are immutable.",
                       source="filename")
    for other in live_files(session):
        if other.filename == filename:
            if other.status != FileStatus.COMPLETED:
                raise Conflict("Upload in progress",
                               f"{filename!r} is {other.status}; delete it before uploading it again.",
                               source="filename")
            delete(request, other)  # a completed file is replaced by the new upload
        elif dist.packagetype == "sdist" and other.packagetype == "sdist":
            raise SecondSdist("Second sdist", f"The session already has an sdist, {other.filename!r}.",
                           source="filename")
    if (dist.packagetype == "sdist" and project is not None
            and request.find_service(IReleases).has_sdist(request, project, dist.version)):
        raise SecondSdist("Second sdist", "The release already has an sdist.", source="filename")
    states.publishing(session, "edit")
    file_session = FileUploadSession(
        publishing_session_id=session.id, filename=filename, packagetype=dist.packagetype, size=size,
        hashes=hashes, mechanism=mechanism, status=FileStatus.PENDING, notices=[],
        expires_at=min(session.expires_at,
                       utcnow() + datetime.timedelta(seconds=settings.file_session_lifetime)),
    )
    if not insert(db, file_session):
        raise Conflict("Upload in progress", f"{filename!r} is already being uploaded.", source="filename")
    return file_session


def record_received(file_session: FileUploadSession, size: int, *, hashes: dict[str, str] | None = None,
                    digest_state: dict | None = None, whole: bool = False, members: str | None = None) -> None:
    """The one call through which every mechanism records what it received: ``size`` bytes
    so far; ``whole`` once the last byte arrived, with the ``hashes`` computed while writing
    (none: verification hashes the stored bytes) and the ``members`` digest of a wheel scanned
    while writing (none: verification reads its members back), or ``digest_state`` to resume
    hashing."""
    file_session.received_size = size
    file_session.digest_state = digest_state
    file_session.received_members = members if whole else None
    if whole:
        file_session.received_hashes = hashes
        file_session.received_at = utcnow()


def delete(request, file_session: FileUploadSession) -> None:
    # Deleting is an edit of the publishing session: never from a processing or ended one,
    # whose files may share their bytes with the published release.
    states.publishing(file_session.publishing_session, "edit", dry_run=True)
    states.file_upload(file_session, "cancel")
    attestations.discard(request.db, file_session)
    request.db.flush()
    purge_after_commit(request, [file_session.blob_key, file_session.metadata_key])


def extend(request, file_session: FileUploadSession, extend_for) -> None:
    wanted = extension(request, extend_for)
    if file_session.status in (FileStatus.PENDING, FileStatus.PROCESSING):
        # A file upload session never outlives its publishing session.
        wanted = min(utcnow() + wanted, file_session.publishing_session.expires_at)
        file_session.expires_at = max(file_session.expires_at, wanted)


def member_scan(request, filename: str) -> MemberScan | NoScan:
    """A scan of the members of the wheel ``filename`` names, for a mechanism to feed while
    it writes the bytes (an sdist's scans nothing)."""
    if not filename.endswith(".whl"):
        return NoScan()
    settings = request.registry["upload2.settings"]
    return MemberScan(settings.max_inflated_size, settings.max_archive_members)


def inspect_stored(request, filename: str, blob_key: str, metadata_key: str,
                   members: str | None = None) -> CoreMetadata:
    """Check the bytes under ``blob_key`` are the distribution ``filename`` names and store
    its core metadata under ``metadata_key``; raises DistributionError. ``members``: the
    digest of the wheel's members scanned as the bytes arrived."""
    storage = request.find_service(IFileStorage)
    settings = request.registry["upload2.settings"]
    limits = Limits(metadata=settings.max_metadata_size, members=settings.max_archive_members,
                    inflated=settings.max_inflated_size)
    with storage.open(blob_key) as fh:
        metadata = inspect_distribution(fh, parse_filename(filename), limits, scanned_members=members)
    with storage_full("file"), storage.writer(metadata_key) as fh:
        fh.write(metadata.raw)
    return metadata


def inspect_received(request, filename: str, blob_key: str, metadata_key: str,
                     members: str | None) -> CoreMetadata | DistributionError:
    """inspect_stored for bytes that become a file's later (the legacy form's), its refusal
    kept, not raised, for ``verify`` to report in its turn: after the declaration's checks."""
    try:
        return inspect_stored(request, filename, blob_key, metadata_key, members)
    except DistributionError as exc:
        return exc


def verify(request, file_session: FileUploadSession,
           inspected: CoreMetadata | DistributionError | None = None) -> str | None:
    """Check the received bytes against the declaration and the distribution format;
    store the core metadata. Returns None when the file is good, else why not.
    ``inspected``: what ``inspect_received`` found of these bytes, their core metadata
    already stored under the file's key."""
    storage = request.find_service(IFileStorage)
    if file_session.received_size is None or storage.size(file_session.blob_key) is None:
        return "No bytes were uploaded for this file."
    if file_session.received_size != file_session.size:
        return f"Size mismatch: declared {file_session.size} bytes, received {file_session.received_size}."
    if file_session.received_at is None or file_session.received_hashes is None:
        return "The upload is not complete: its mechanism never received the end of the file."
    for algorithm, digest in file_session.hashes.items():
        actual = file_session.received_hashes.get(algorithm)
        if actual != digest:
            return f"{algorithm} mismatch: declared {digest}, received {actual}."
    # The attestations name the file by its name and sha256: checked before its bytes are read.
    if (failure := attestations.verify(file_session)) is not None:
        return failure
    try:
        if isinstance(inspected, DistributionError):
            raise inspected
        metadata = inspected or inspect_stored(request, file_session.filename, file_session.blob_key,
                                               file_session.metadata_key, file_session.received_members)
    except DistributionError as exc:
        return f"{exc.source}: {exc.message}"
    file_session.metadata_sha256 = hashlib.sha256(metadata.raw).hexdigest()
    file_session.requires_python = metadata.requires_python
    return None


def complete(request, file_session: FileUploadSession,
             inspected: CoreMetadata | DistributionError | None = None) -> None:
    """Complete: verify now (``completed``, or ``error`` with a notice saying why, which the
    caller reports and the transaction keeps), or defer to a task (``processing``) when the
    mechanism stored bytes it did not hash. ``inspected``: as for ``verify``."""
    session = file_session.publishing_session
    states.publishing(session, "edit", dry_run=True)
    states.file_upload(file_session, "complete", dry_run=True)
    if file_session.received_at is not None and file_session.received_hashes is None:
        _defer(request, file_session)
        return
    failure = verify(request, file_session, inspected)
    if failure is None:
        states.file_upload(file_session, "complete")
        return
    fail(request, file_session, failure)


def fail(request, file_session: FileUploadSession, failure: str) -> None:
    """The file goes to ``error`` with a notice saying why; its bytes are purged after commit."""
    states.file_upload(file_session, "fail")
    file_session.notices = [*file_session.notices, failure]
    attestations.discard(request.db, file_session)
    purge_after_commit(request, [file_session.blob_key, file_session.metadata_key])


def failure(file_session: FileUploadSession) -> BadRequest:
    """The problem reporting a file that failed verification (its last notice says why)."""
    return BadRequest("File verification failed", file_session.notices[-1], source=file_session.filename)


# -- deferred completion: a mechanism that stored its bytes over several requests (resumable
# appends) has them hashed and checked by a task while the file is processing ----------------

def _defer(request, file_session: FileUploadSession) -> None:
    states.file_upload(file_session, "defer")
    file_session.processing_since = utcnow()
    request.find_service(ITaskQueue).enqueue("verify_file", file_session.id)


def hash_stored(request, file_session: FileUploadSession) -> str | None:
    """The stored bytes' digests, as a mechanism hashing while receiving would have given
    them; why there are none, or None."""
    storage = request.find_service(IFileStorage)
    if file_session.received_size is not None:
        # The mechanism's parts, as far as they were acknowledged, become the stored file.
        try:
            storage.assemble(file_session.blob_key, file_session.received_size)
        except StorageError as exc:
            return f"The stored parts could not be assembled: {exc}."
    stored = storage.size(file_session.blob_key)
    if stored is None:
        return "No bytes were uploaded for this file."
    resumed = ResumableDigests.resume(file_session.digest_state)
    file_session.digest_state = None
    if resumed is not None and stored == file_session.received_size:
        # The appends hashed every byte as they wrote it.
        file_session.received_hashes = resumed.hexdigests()
        return None
    try:
        with storage.open(file_session.blob_key) as source, open(os.devnull, "wb") as sink:
            size, digests = copy_hashing(source, sink, file_session.hashes, file_session.size)
    except TooLarge:
        return f"Size mismatch: declared {file_session.size} bytes, more were stored."
    file_session.received_size, file_session.received_hashes = size, digests
    return None


def verify_deferred(request, file_id: int) -> None:
    """The task's half of a deferred completion: hash, verify, then settle the file under
    the session's lock and the file's, as DELETE takes them. Idempotent: a file no longer
    processing (settled by an earlier run, or canceled with its session) is left as it is."""
    db = request.db
    file_session = db.get(FileUploadSession, file_id)
    if file_session is None or file_session.status != FileStatus.PROCESSING:
        return
    log.info("verifying %s (file upload session %d)", file_session.filename, file_id)
    with db.no_autoflush:  # nothing is written before the locks are held
        failure = hash_stored(request, file_session) or verify(request, file_session)
        status = loading.lock_file(db, file_session)
    if status != FileStatus.PROCESSING:
        db.expunge(file_session)
        if status == FileStatus.CANCELED:  # its purge may have run before this run stored the metadata
            purge_after_commit(request, [file_session.blob_key, file_session.metadata_key])
        return
    file_session.processing_since = None
    if failure is None:
        states.file_upload(file_session, "succeed")
        return
    fail(request, file_session, failure)
