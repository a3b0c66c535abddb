"""The legacy (1.0) upload API as a second door into the Upload 2.0 model.

One form post carries one file. The file is streamed to storage while the form arrives;
then it becomes a completed file of a publishing session, through the 2.0 API's own
validation and verification, and is published with it at once (``services/publication.py``),
or, staged, stays in the release's live session. All of it in the request's one transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from sqlalchemy import orm

from ..interfaces import IAuthorization, IFileStorage, IProjects, IPublishedFiles
from ..mechanisms.http_post_bytes import IDENTIFIER as HTTP_POST_BYTES
from ..models import PublishingSession
from ..problems import (BadRequest, Conflict, ContentTooLarge, FileExists, FilenameConflict, Forbidden, SecondSdist,
                        UnprocessableContent)
from ..states import FileStatus
from . import attestations, files, formdata, loading, publication, publishing
from .cleanup import purge_after_commit, purge_on_abort, storage_full
from .distributions import CoreMetadata, Distribution, DistributionError, parse_filename
from .versions import canonical_version, parse_name_version

# The digests a legacy client may declare: form field -> (name, hashlib constructor).
DIGESTS = {
    "md5_digest": ("md5", hashlib.md5),
    "sha256_digest": ("sha256", hashlib.sha256),
    "blake2_256_digest": ("blake2b-256", lambda: hashlib.blake2b(digest_size=32)),
}
# The fields read; the rest (description, classifiers, ...) come from the file's own metadata.
FIELDS = frozenset({":action", "protocol_version", "name", "version", "filetype", "staged", "attestations",
                    *DIGESTS})
FIELD_LIMIT = 4096
# Legacy clients that cannot send ``staged=true`` (User-Agent prefix -> name): the 409 for a
# release with a live session tells their users how to end the session instead.
NO_STAGING_CLIENTS = {"twine/": "twine", "uv/": "uv"}


@dataclasses.dataclass
class Upload:
    """A received form: the fields read, and its file, already stored under ``key`` and
    inspected (a distribution's core metadata stored under ``metadata_key``)."""

    fields: dict[str, str]
    filename: str
    key: str
    size: int
    digests: dict[str, str]  # digest field -> hex digest of the bytes received
    members: str | None  # a wheel's members.MemberScan digest
    inspected: CoreMetadata | DistributionError

    @property
    def sha256(self) -> str:
        return self.digests["sha256_digest"]

    @property
    def metadata_key(self) -> str:
        return self.key + ".metadata"


def receive(request, who) -> Upload:
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
            _precheck(request, who, part.filename)
            received = part.filename, *_store(request, storage, key, part, fields)
        elif part.name in FIELDS and part.name not in fields:
            # PEP 740 attestations (twine --attestations) are a JSON array of a few KiB each.
            fields[part.name] = part.text(request.registry["upload2.settings"].max_attestations_size
                                          if part.name == "attestations" else FIELD_LIMIT)
    if received is None:
        raise BadRequest("Missing file", "The form has no 'content' file part.", source="content")
    filename, size, digests, members = received
    for field, (_, new) in DIGESTS.items():
        if fields.get(field) and field not in digests:  # declared after the file: hash what was stored
            digests[field] = _hash_stored(storage, key, new())
    # Here, before the transaction's first write: on SQLite, other writers go on meanwhile.
    inspected = files.inspect_received(request, filename, key, f"{key}.metadata", members)
    return Upload(fields, filename, key, size, digests, members, inspected)


def _precheck(request, who, filename: str) -> None:
    """Refuse what the filename alone settles before its bytes are stored (a bad name, a
    project the caller may not upload to); the session's own checks decide authoritatively."""
    dist = _distribution(filename)
    project = request.find_service(IProjects).find(request, dist.name)
    authz = request.find_service(IAuthorization)
    if not (authz.may_register(request, who, dist.name) if project is None
            else authz.may_upload(request, who, project)):
        raise Forbidden("Not allowed", f"You may not upload to {dist.name!r}.", source="name")


def _store(request, storage, key: str, part: formdata.Part, fields: dict) -> tuple[int, dict[str, str], str | None]:
    # sha256 always (the index's own record); the other digests when declared before the file
    # (a loop of its own: streaming.copy_hashing pulls from a file and cannot make blake2b-256).
    limit = request.registry["upload2.settings"].max_file_size
    hashers = {field: new() for field, (_, new) in DIGESTS.items() if field == "sha256_digest" or fields.get(field)}
    scan = files.member_scan(request, part.filename)
    sinks = [*hashers.values(), scan]
    size = 0
    with storage_full("content"), storage.writer(key) as fh:
        for chunk in part.chunks():
            size += len(chunk)
            if size > limit:
                raise ContentTooLarge("File too large", f"The file exceeds this index's limit of {limit} bytes.",
                                      source="content")
            for sink in sinks:
                sink.update(chunk)
            fh.write(chunk)
    return size, {field: hasher.hexdigest() for field, hasher in hashers.items()}, scan.hexdigest()


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


def _live_session_advice(request, url: str) -> str:
    """What the uploader can do about the release's live session ``url``, in terms of the
    client that sent the upload (its ``User-Agent``)."""
    agent = request.user_agent or ""
    client = next((name for prefix, name in NO_STAGING_CLIENTS.items() if agent.startswith(prefix)), None)
    if client is None:
        return ("publish or cancel it first, or stage this file in it with the form field staged=true "
                "(the header X-Upload-Staged: true).")
    return (f"{client} cannot stage files in it, so publish or cancel the session first, then upload again: "
            f"pypi-upload2 session publish {url} (or: pypi-upload2 session cancel {url}); or, with the "
            f"Upload 2.0 API, POST the session's links.publish (or DELETE {url}).")


def _session(request, who, upload: Upload, *, staged: bool) -> tuple[PublishingSession, bool]:
    """The publishing session the file joins, and whether it is new: for a staged upload,
    the release's live one (locked and authorized as every 2.0 edit), else a new one; a new
    one in any case when there is none."""
    name, version = upload.fields["name"], upload.fields["version"]
    _, normalized, parsed = parse_name_version(name, version)
    for _attempt in range(2):  # a live session that ends between the two queries is none: create again
        try:
            return publishing.create(request, who, name, version), True
        except Conflict as conflict:
            if "Location" not in conflict.headers:
                raise
            url = conflict.headers["Location"]
        live = loading.live_session_of(request.db, normalized, canonical_version(parsed))
        if live is not None:
            break
    else:
        raise Conflict("Session ended", "The release's publishing session just ended; retry.", source="version")
    if not staged:
        # A file published beside a live session would make its staged release public piecemeal.
        raise Conflict("Publishing session exists",
                       f"{live.name} {live.version} is being staged in a publishing session that is {live.status} "
                       f"({url}): {_live_session_advice(request, url)}", source="version", headers={"Location": url})
    session = loading.locked_session(request.db, live.id)
    loading.authorize(request, who, session)
    return session, False


def _add(request, who, session: PublishingSession, upload: Upload, moved: list[str] | None = None):
    """The received file as a completed file of ``session``, validated and verified as the
    2.0 API's own, its attestations with it; its bytes move to the file upload session's key
    (appended to ``moved``)."""
    attested = None
    if upload.fields.get("attestations"):
        publisher = attestations.publisher(request, who)  # first: PyPI's answer to a token no publisher minted
        attested = attestations.parse(request, upload.fields["attestations"]), publisher
    file_session = files.create(request, session, {
        "filename": upload.filename, "size": upload.size, "hashes": {"sha256": upload.sha256},
        "mechanism": HTTP_POST_BYTES})
    if attested is not None:
        attestations.store(request.db, file_session, *attested)
    keys = [file_session.blob_key, file_session.metadata_key]
    purge_on_abort(request, keys)
    storage = request.find_service(IFileStorage)
    storage.move(upload.key, file_session.blob_key)
    if isinstance(upload.inspected, CoreMetadata):
        storage.move(upload.metadata_key, file_session.metadata_key)
    if moved is not None:
        moved += keys
    files.record_received(file_session, upload.size, hashes={"sha256": upload.sha256}, whole=True,
                          members=upload.members)
    files.complete(request, file_session, upload.inspected)
    if file_session.status == FileStatus.ERROR:
        raise files.failure(file_session)  # nothing of this request is kept, a session it created included
    # The session's files were loaded before the new one joined by its foreign key.
    orm.attributes.set_committed_value(session, "files", [*session.files, file_session])
    return file_session


def publish(request, who, upload: Upload) -> bool:
    """Publish the file now, through a publishing session of its own, exactly as a 2.0
    publish; False when the same bytes were already published under its name."""
    _check_form(upload)
    # An already published name answers first: the same bytes are a no-op (clients re-run
    # uploads), other bytes are refused; neither publishes anything new.
    published = request.find_service(IPublishedFiles)
    if (existing := published.find_file(request, upload.filename)) is not None:
        return _exists(request, upload, existing)
    moved: list[str] = []
    try:
        with request.db.begin_nested():  # a refusal below leaves no session behind
            session, _ = _session(request, who, upload, staged=False)
            _add(request, who, session, upload, moved)
            publication.publish(request, session, session.host_project, deferrable=False)
    except UnprocessableContent as failed:
        # Legacy clients show only the status line (views/legacy.py): it says what failed.
        failed.detail = "; ".join(e["message"] for e in failed.errors)
        raise
    except SecondSdist:
        # This door's answer since before it shared the 2.0 path (twine shows the status line).
        raise BadRequest("Second sdist", "Only one sdist may be uploaded per release.", source="content")
    except (FileExists, FilenameConflict):
        # Taken meanwhile, or held: published (then answered as above), or reserved.
        if (existing := published.find_file(request, upload.filename)) is None:
            raise Conflict("Publish in progress",
                           f"{upload.filename!r} is reserved by a publish in progress (retry when it has "
                           "ended), or was the name of a file since deleted.",
                           source="content")
        purge_after_commit(request, moved)  # kept only if the same bytes make this a no-op
        return _exists(request, upload, existing)
    return True


def _exists(request, upload: Upload, existing) -> bool:
    if existing.size == upload.size and existing.sha256 == upload.sha256:
        purge_after_commit(request, [upload.key, upload.metadata_key])  # nothing new to keep
        return False
    # twine's and uv's --skip-existing look for "already exist" in PyPI's wording.
    raise BadRequest("File already exists",
                     f"File already exists: {upload.filename!r} was published with other content, "
                     "and a published file's name is never reused.", source="content")


def stage(request, who, upload: Upload) -> tuple[PublishingSession, bool]:
    """Add the file to the release's live publishing session as a completed file, creating
    the session when there is none (True)."""
    _check_form(upload)
    session, created = _session(request, who, upload, staged=True)
    _add(request, who, session, upload)
    return session, created
