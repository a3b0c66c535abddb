from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base, UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    normalized_name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None while the name is only reserved by a first-release publishing session.
    registered_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    roles: Mapped[list[Role]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                             passive_deletes=True)
    releases: Mapped[list[Release]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                                   passive_deletes=True)


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (sa.UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_name: Mapped[str] = mapped_column(sa.String(20), default="Maintainer")

    project: Mapped[Project] = relationship(back_populates="roles")


class Release(Base):
    """A version of a project; ``published`` is false while it is only staged."""

    __tablename__ = "releases"
    __table_args__ = (sa.UniqueConstraint("project_id", "canonical_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(sa.String(100))
    canonical_version: Mapped[str] = mapped_column(sa.String(100))
    published: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    published_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="releases")
    files: Mapped[list[ReleaseFile]] = relationship(back_populates="release", passive_deletes=True)


class ReleaseFile(Base):
    """A file of a release. ``published_at`` is None while a publish holds the filename
    reserved; the unique filename makes a name, once used, never usable again."""

    __tablename__ = "release_files"
    __table_args__ = (
        # At most one sdist per release.
        sa.Index("uq_release_files_one_sdist", "release_id", unique=True,
                 sqlite_where=sa.text("packagetype = 'sdist'"),
                 postgresql_where=sa.text("packagetype = 'sdist'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.Text, unique=True)
    packagetype: Mapped[str] = mapped_column(sa.String(20))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    requires_python: Mapped[str | None] = mapped_column(sa.Text)
    blob_key: Mapped[str] = mapped_column(sa.Text)
    metadata_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    uploaded_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    publishing_session_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("publishing_sessions.id", ondelete="SET NULL"), index=True)

    release: Mapped[Release] = relationship(back_populates="files")

    @property
    def metadata_key(self) -> str:
        return self.blob_key + ".metadata"
