"""The legacy (1.0) upload API as a second door into the Upload 2.0 model.

One form post carries one file. It is published at once as a release file, or, staged,
joins the release's publishing session as a completed file. The file is streamed to
storage while the form arrives; then the 2.0 API's validation, distribution checks,
authorization and unique constraints decide, in the request's one transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from types import SimpleNamespace

import sqlalchemy as sa
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .. import states
from ..db import utcnow
from ..interfaces import IAuthorization, IFileStorage
from ..mechanisms.http_post_bytes import IDENTIFIER as HTTP_POST_BYTES
from ..models import Project, PublishingSession, ReleaseFile
from ..problems import BadRequest, Conflict, ContentTooLarge, Forbidden, UnprocessableContent
from . import checks, files, formdata, publication, publishing
from .cleanup import purge_after_commit, purge_on_abort
from .distributions import Distribution, DistributionError, parse_filename

# The digests a legacy client may declare: form field -> (name, hashlib constructor).
DIGESTS = {
    "md5_digest": ("md5", hashlib.md5),
    "sha256_digest": ("sha256", hashlib.sha256),
    "blake2_256_digest": ("blake2b-256", lambda: hashlib.blake2b(digest_size=32)),
}
# The fields read; the rest (description, classifiers, ...) come from the file's own metadata.
FIELDS = frozenset({":action", "protocol_version", "name", "version", "filetype", "staged", *DIGESTS})
FIELD_LIMIT = 4096


@dataclasses.dataclass
class Upload:
    """A received form: the fields read, and its file, already stored under ``key``."""

    fields: dict[str, str]
    filename: str
    key: str
    size: int
    digests: dict[str, str]  # digest field -> hex digest of the bytes received

    @property
    def sha256(self) -> str:
        return self.digests["sha256_digest"]

    @property
    def metadata_key(self) -> str:
        return self.key + ".metadata"


def receive(request, user) -> Upload:
    """Read the form, streaming its ``content`` file into storage under a fresh key that
    is deleted again unless the transaction commits."""
    storage = request.find_service(IFileStorage)
    key = f"legacy/{secrets.token_hex(16)}"
    purge_on_abort(request, [key, key + ".metadata"])
    # PyPI's URL carries :action and protocol_version in the query string; twine sends fields.
    fields = {k: v for k, v in request.GET.items() if k in (":action", "protocol_version")}
    received = None
    for part in formdata.parts(request):
        if part.name == "content":
            if received is not None or part.filename is None:
                raise BadRequest("Invalid content", "Send exactly one file, as the 'content' part.", source="content")
            _precheck(request, user, part.filename)
            received = part.filename, *_store(request, storage, key, part, fields)
        elif part.name in FIELDS and part.name not in fields:
            fields[part.name] = part.text(FIELD_LIMIT)
    if received is None:
        raise BadRequest("Missing file", "The form has no 'content' file part.", source="content")
    filename, size, digests = received
    for field, (_, new) in DIGESTS.items():
        if fields.get(field) and field not in digests:  # declared after the file: hash what was stored
            digests[field] = _hash_stored(storage, key, new())
    return Upload(fields, filename, key, size, digests)


def _precheck(request, user, filename: str) -> None:
    """Refuse what the filename alone settles before its bytes are stored (a bad name, a
    project the user may not upload to); publish and stage check again authoritatively."""
    dist = _distribution(filename)
    project = request.db.scalar(sa.select(Project).where(Project.normalized_name == dist.name))
    authz = request.find_service(IAuthorization)
    if not (authz.may_register(user, dist.name) if project is None else authz.may_upload(user, project)):
        raise Forbidden("Not allowed", f"You may not upload to {dist.name!r}.", source="name")


def _store(request, storage, key: str, part: formdata.Part, fields: dict) -> tuple[int, dict[str, str]]:
    # sha256 always (the index's own record); the other digests when declared before the file
    # (a loop of its own: streaming.copy_hashing pulls from a file and cannot make blake2b-256).
    limit = request.registry["upload2.settings"].max_file_size
    hashers = {field: new() for field, (_, new) in DIGESTS.items() if field == "sha256_digest" or fields.get(field)}
    size = 0
    with storage.writer(key) as fh:
        for chunk in part.chunks():
            size += len(chunk)
            if size > limit:
                raise ContentTooLarge("File too large", f"The file exceeds this index's limit of {limit} bytes.",
                                      source="content")
            for hasher in hashers.values():
                hasher.update(chunk)
            fh.write(chunk)
    return size, {field: hasher.hexdigest() for field, hasher in hashers.items()}


def _hash_stored(storage, key: str, hasher) -> str:
    with storage.open(key) as fh:
        while chunk := fh.read(formdata.CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _distribution(filename: str) -> Distribution:
    try:
        return parse_filename(filename)
    except DistributionError as exc:
        raise BadRequest("Invalid filename", exc.message, source="content")


def _check_form(upload: Upload) -> Distribution:
    """The form's protocol fields, and its claims about the file checked against the file."""
    fields = upload.fields
    if fields.get(":action") != "file_upload":
        raise BadRequest("Unsupported action", f"':action' must be 'file_upload', not {fields.get(':action')!r}.",
                         source=":action")
    if fields.get("protocol_version", "1") != "1":
        raise BadRequest("Unknown protocol version", "'protocol_version' must be '1'.", source="protocol_version")
    dist = _distribution(upload.filename)
    for key in ("name", "version"):
        if not fields.get(key):
            raise BadRequest("Missing field", f"The form has no {key!r} field.", source=key)
    try:
        version = Version(fields["version"])
    except InvalidVersion:
        raise BadRequest("Invalid version", f"{fields['version']!r} is not a valid version.", source="version")
    if canonicalize_name(fields["name"]) != dist.name or version != dist.version:
        raise BadRequest("Filename does not match the form",
                         f"{upload.filename!r} is not a file of {fields['name']} {fields['version']}.",
                         source="content")
    if fields.get("filetype", dist.packagetype) != dist.packagetype:
        raise BadRequest("Invalid filetype",
                         f"{upload.filename!r} is a {dist.packagetype}, not a {fields['filetype']}.", source="filetype")
    declared = {field: fields[field].strip().lower() for field in DIGESTS if fields.get(field)}
    if not declared:
        raise BadRequest("Missing digest", "Include at least one message digest (sha256_digest).",
                         source="sha256_digest")
    for field, digest in declared.items():
        # Bytes: compare_digest refuses str with non-ASCII characters.
        if not hmac.compare_digest(digest.encode(), upload.digests[field].encode()):
            raise BadRequest("Digest mismatch", f"The file's {DIGESTS[field][0]} digest is not {field}.", source=field)
    if upload.size == 0:
        raise BadRequest("Empty file", "The file is empty.", source="content")
    return dist


def publish(request, user, upload: Upload) -> bool:
    """Publish the file now; False when the same bytes were already published under its name."""
    db = request.db
    dist = _check_form(upload)
    release = publishing.release_for(request, user, upload.fields["name"], upload.fields["version"])
    # An already published name answers first: the same bytes are a no-op (clients re-run
    # uploads), other bytes are refused; neither publishes anything new.
    if (existing := _published(db, upload.filename)) is not None:
        return _exists(request, upload, existing)
    _no_live_session(request, release)
    publication.check_new_files_window(request, release)
    if dist.packagetype == "sdist" and _has_sdist(db, release.id):
        raise BadRequest("Second sdist", "Only one sdist may be uploaded per release.", source="content")
    metadata = _inspect(request, upload)
    _publish_checks(request, release, upload)
    now = utcnow()
    row = ReleaseFile(release_id=release.id, filename=upload.filename, packagetype=dist.packagetype,
                      size=upload.size, sha256=upload.sha256, requires_python=metadata.requires_python,
                      blob_key=upload.key, metadata_sha256=hashlib.sha256(metadata.raw).hexdigest(),
                      uploaded_at=now, published_at=now)
    try:
        # The unique filename (and one-sdist) constraints settle races with concurrent
        # legacy uploads and 2.0 publishes; the checks above only give better answers.
        with db.begin_nested():
            db.add(row)
            db.flush()
    except sa.exc.IntegrityError:
        if (existing := _published(db, upload.filename)) is not None:
            return _exists(request, upload, existing)
        raise BadRequest("Second sdist", "Only one sdist may be uploaded per release.", source="content")
    release.published = True
    release.published_at = release.published_at or now
    release.project.registered_at = release.project.registered_at or now
    return True


def _no_live_session(request, release) -> None:
    """A release with a live publishing session is published whole, by that session: a file
    published beside it would make the staged release public piecemeal. The user is
    authorized for the project by now, so the answer may show the session's URL."""
    session = request.db.scalar(sa.select(PublishingSession).where(
        PublishingSession.release_id == release.id, PublishingSession.status.in_(states.LIVE_PUBLISHING)))
    if session is not None:
        url = request.route_url("upload2.session", token=session.token)
        raise Conflict("Publishing session exists",
                       f"{session.name} {session.version} is being staged in a publishing session that is "
                       f"{session.status} ({url}): add the file to it with staged=true, or publish or cancel "
                       "the session first.", source="version", headers={"Location": url})


def _publish_checks(request, release, upload: Upload) -> None:
    """The index's publish checks (services/checks.py) see the file as a one-file session
    would show it: the legacy door is no way around a quota or a scanner."""
    session = SimpleNamespace(id=None, name=release.project.name, version=release.version,
                              project_id=release.project_id, release_id=release.id)
    file = SimpleNamespace(filename=upload.filename, blob_key=upload.key, metadata_key=upload.metadata_key,
                           size=upload.size, received_size=upload.size, sha256=upload.sha256)
    errors = checks.run(request, session, [file])
    if errors:
        raise UnprocessableContent("Publish checks failed", "; ".join(e["message"] for e in errors), errors=errors)


def _published(db, filename: str) -> ReleaseFile | None:
    return db.scalar(sa.select(ReleaseFile).where(ReleaseFile.filename == filename))


def _has_sdist(db, release_id: int) -> bool:
    return db.scalar(sa.select(ReleaseFile.id).where(
        ReleaseFile.release_id == release_id, ReleaseFile.packagetype == "sdist")) is not None


def _exists(request, upload: Upload, existing: ReleaseFile) -> bool:
    if existing.published_at is None:
        raise Conflict("Publish in progress",
                       f"{upload.filename!r} is reserved by a publish in progress; retry when it has ended.",
                       source="content")
    if existing.size == upload.size and existing.sha256 == upload.sha256:
        purge_after_commit(request, [upload.key, upload.metadata_key])  # nothing new to keep
        return False
    # twine's and uv's --skip-existing look for "already exist" in PyPI's wording.
    raise BadRequest("File already exists",
                     f"File already exists: {upload.filename!r} was published with other content, "
                     "and a published file's name is never reused.", source="content")


def _inspect(request, upload: Upload):
    try:
        return files.inspect_stored(request, upload.filename, upload.key, upload.metadata_key)
    except DistributionError as exc:
        raise BadRequest("Invalid distribution", f"{exc.source}: {exc.message}", source="content")


def stage(request, user, upload: Upload) -> tuple[PublishingSession, bool]:
    """Add the file to the release's live publishing session as a completed file, creating
    the session when there is none (True). Validation and completion are the 2.0 API's own."""
    db = request.db
    _check_form(upload)
    session, created = publishing.create(request, user, upload.fields["name"], upload.fields["version"])
    if session is None:  # the live session ended between two queries
        raise Conflict("Session ended", "The release's publishing session just ended; retry.", source="version")
    if not created:
        # Lock it as every 2.0 edit does, then the per-request authorization.
        session = db.scalar(sa.select(PublishingSession).where(PublishingSession.id == session.id)
                            .with_for_update().execution_options(populate_existing=True))
        publishing.authorize(request, user, session)
    file_session = files.create(request, session, {
        "filename": upload.filename, "size": upload.size, "hashes": {"sha256": upload.sha256},
        "mechanism": HTTP_POST_BYTES})
    # The file's bytes move to the file upload session's key, like every staged file's.
    purge_on_abort(request, [file_session.blob_key, file_session.metadata_key])
    request.find_service(IFileStorage).move(upload.key, file_session.blob_key)
    file_session.received_size = upload.size
    file_session.received_hashes = {"sha256": upload.sha256}
    file_session.received_at = utcnow()
    failure = files.complete(request, file_session)
    if failure is not None:
        raise failure  # nothing of this request is kept, the session it created included
    db.expire(session, ["files"])  # loaded before the new file joined by its foreign key
    return session, created
