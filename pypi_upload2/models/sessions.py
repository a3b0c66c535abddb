from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base, UTCDateTime, utcnow
from ..states import FileStatus, PublishingStatus


def _status(enum_cls):
    return sa.Enum(enum_cls, native_enum=False, length=16, create_constraint=False,
                   values_callable=lambda e: [m.value for m in e])


class PublishingSession(Base):
    """A staged release of one (project, version), published atomically or canceled."""

    __tablename__ = "publishing_sessions"
    __table_args__ = (
        # One live (non-terminal) session per release, as the PEP requires.
        sa.Index("uq_publishing_sessions_live_release", "release_id", unique=True,
                 sqlite_where=sa.text("status IN ('open', 'processing', 'error')"),
                 postgresql_where=sa.text("status IN ('open', 'processing', 'error')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The secret is kept because the PEP has the server hand it back to any
    # authorized uploader (409 Location, status body); lookups go by digest.
    token: Mapped[str] = mapped_column(sa.String(64))
    token_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[str] = mapped_column(sa.String(100))
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("projects.id", ondelete="SET NULL"),
                                                   index=True)
    release_id: Mapped[int | None] = mapped_column(sa.ForeignKey("releases.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[PublishingStatus] = mapped_column(_status(PublishingStatus),
                                                     default=PublishingStatus.OPEN, index=True)
    notices: Mapped[list] = mapped_column(sa.JSON, default=list)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    project = relationship("Project")
    release = relationship("Release")
    files: Mapped[list[FileUploadSession]] = relationship(
        back_populates="publishing_session", order_by="FileUploadSession.id", passive_deletes=True)


class FileUploadSession(Base):
    """One file's upload into a publishing session."""

    __tablename__ = "file_upload_sessions"
    __table_args__ = (
        # A filename has at most one live entry in a session's ``files`` map.
        sa.Index("uq_file_upload_sessions_live_filename", "publishing_session_id", "filename",
                 unique=True,
                 sqlite_where=sa.text("status != 'canceled'"),
                 postgresql_where=sa.text("status != 'canceled'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    publishing_session_id: Mapped[int] = mapped_column(
        sa.ForeignKey("publishing_sessions.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.Text)
    packagetype: Mapped[str] = mapped_column(sa.String(20))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    hashes: Mapped[dict] = mapped_column(sa.JSON)
    mechanism: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[FileStatus] = mapped_column(_status(FileStatus), default=FileStatus.PENDING)
    notices: Mapped[list] = mapped_column(sa.JSON, default=list)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime)
    # What the mechanism received: byte count and digests computed while writing.
    received_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    received_hashes: Mapped[dict | None] = mapped_column(sa.JSON)
    received_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    # Resumable appends: the hashing state of the first received_size bytes (services/digests.py).
    digest_state: Mapped[dict | None] = mapped_column(sa.JSON)
    # Filled in when the file is completed and its core metadata extracted.
    requires_python: Mapped[str | None] = mapped_column(sa.Text)
    metadata_sha256: Mapped[str | None] = mapped_column(sa.String(64))

    publishing_session: Mapped[PublishingSession] = relationship(back_populates="files")

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
