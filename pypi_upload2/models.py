"""What the plugin owns: publishing sessions, their file upload sessions, and the new
project names they reserve. Everything else is the host's (interfaces.py); host rows are
referred to by the text keys the host gives, so that one schema serves integer and UUID hosts
alike (and no foreign key crosses into another application's tables)."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow
from .states import FileStatus, PublishingStatus

#: A host row's key as text: an integer's digits, a UUID's 36 characters.
HostKey = sa.String(64)


def _status(enum_cls):
    return sa.Enum(enum_cls, native_enum=False, length=16, create_constraint=False,
                   values_callable=lambda e: [m.value for m in e])


class Publishable:
    """What a publishing session and a release group share: the PEP's publishing lifecycle."""

    status: Mapped[PublishingStatus] = mapped_column(_status(PublishingStatus),
                                                     default=PublishingStatus.OPEN, index=True)
    notices: Mapped[list] = mapped_column(sa.JSON, default=list)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, index=True)
    # Since when a deferred publish has been processing: the re-send deadline counts from it.
    processing_since: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    # A scheduled publish waits (processing) until then; None once handed to a worker.
    publish_after: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    # When it was published or canceled: status retention counts from it.
    ended_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    # The secret is kept because the PEP has the server hand it back to any authorized
    # uploader (409 Location, status body); lookups go by digest.
    token: Mapped[str] = mapped_column(sa.String(64))
    token_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)


class PublishingSession(Publishable, Base):
    """A staged release of one (project, version), published atomically or canceled."""

    __tablename__ = "upload2_publishing_sessions"
    __table_args__ = (
        # One live (non-terminal) session per release, as the PEP requires.
        sa.Index("uq_upload2_publishing_sessions_live_release", "normalized_name", "canonical_version",
                 unique=True,
                 sqlite_where=sa.text("status IN ('open', 'processing', 'error')"),
                 postgresql_where=sa.text("status IN ('open', 'processing', 'error')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The project's name as the host shows it (or as the first session gave a new one).
    name: Mapped[str] = mapped_column(sa.String(200))
    normalized_name: Mapped[str] = mapped_column(sa.String(200), index=True)
    version: Mapped[str] = mapped_column(sa.String(100))
    canonical_version: Mapped[str] = mapped_column(sa.String(100))
    created_by: Mapped[str] = mapped_column(HostKey)
    # The release group it belongs to (this index's extension, services/groups.py).
    group_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("upload2_release_groups.id", ondelete="SET NULL"), index=True)

    files: Mapped[list[FileUploadSession]] = relationship(
        back_populates="publishing_session", order_by="FileUploadSession.id", passive_deletes=True)
    group: Mapped[ReleaseGroup | None] = relationship(back_populates="sessions")

    #: The host's project, set when services/loading.py authorizes a request (None: the
    #: name is only reserved). Not a column: the host's rows are the host's.
    host_project = None
    host_principal = None  # likewise, the principal the request was authorized as


class ReleaseGroup(Publishable, Base):
    """Publishing sessions of different projects, published together in one transaction or
    not at all (this index's extension, docs/api.md). Its status follows the sessions' table."""

    __tablename__ = "upload2_release_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by: Mapped[str] = mapped_column(HostKey)

    sessions: Mapped[list[PublishingSession]] = relationship(
        back_populates="group", order_by="PublishingSession.id", passive_deletes=True)

    host_principal = None  # as a session's: the principal services/loading.py authorized


class FileUploadSession(Base):
    """One file's upload into a publishing session."""

    __tablename__ = "upload2_file_upload_sessions"
    __table_args__ = (
        # A filename has at most one live entry in a session's ``files`` map.
        sa.Index("uq_upload2_file_upload_sessions_live_filename", "publishing_session_id", "filename",
                 unique=True,
                 sqlite_where=sa.text("status != 'canceled'"),
                 postgresql_where=sa.text("status != 'canceled'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    publishing_session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("upload2_publishing_sessions.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.Text)
    packagetype: Mapped[str] = mapped_column(sa.String(20))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    hashes: Mapped[dict] = mapped_column(sa.JSON)
    mechanism: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[FileStatus] = mapped_column(_status(FileStatus), default=FileStatus.PENDING)
    notices: Mapped[list] = mapped_column(sa.JSON, default=list)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    # What the mechanism received (services/receiving.py): bytes so far, and the digests
    # computed while writing them once the last byte arrived.
    received_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    received_hashes: Mapped[dict | None] = mapped_column(sa.JSON)
    # When the last byte arrived: the upload is whole from then on.
    received_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    # A wheel's members as inflated while the bytes arrived (services/members.py): their
    # table's digest, or None where verification reads them back.
    received_members: Mapped[str | None] = mapped_column(sa.String(64))
    # Resumable appends: the hashing state of the first received_size bytes (services/digests.py).
    digest_state: Mapped[dict | None] = mapped_column(sa.JSON)
    # Since when deferred verification has been processing: the re-send deadline counts from it.
    processing_since: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    # Filled in when the file is completed and its core metadata extracted.
    requires_python: Mapped[str | None] = mapped_column(sa.Text)
    metadata_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    # Whether attestations were posted for it (services/attestations.py): a file without any,
    # the usual case, costs no query for them.
    attested: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())

    publishing_session: Mapped[PublishingSession] = relationship(back_populates="files")
    attestations: Mapped[list[Attestation]] = relationship(
        back_populates="file_session", order_by="Attestation.id", passive_deletes=True)

    @property
    def blob_key(self) -> str:
        # Derived by the server, never from the client's filename.
        return f"sessions/{self.publishing_session_id}/{self.id}"

    @property
    def metadata_key(self) -> str:
        return self.blob_key + ".metadata"

    @property
    def sha256(self) -> str | None:
        return (self.received_hashes or {}).get("sha256")


class Attestation(Base):
    """A PEP 740 attestation object posted to a file's ``attestations_url`` (or with a legacy
    upload), kept with the trusted publisher of the token that posted it: completing the file
    verifies it against that publisher (services/attestations.py)."""

    __tablename__ = "upload2_attestations"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_upload_session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("upload2_file_upload_sessions.id", ondelete="CASCADE"), index=True)
    body: Mapped[dict] = mapped_column(sa.JSON)
    # The publisher as PEP 740's provenance object names it ({"kind": "GitHub", ...}).
    publisher: Mapped[dict] = mapped_column(sa.JSON)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    file_session: Mapped[FileUploadSession] = relationship(back_populates="attestations")


class NameReservation(Base):
    """A new project name held by the first-release sessions of one principal, as the PEP
    requires, until one of them publishes (the host registers it) or all of them end."""

    __tablename__ = "upload2_name_reservations"

    normalized_name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    principal_key: Mapped[str] = mapped_column(HostKey)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
