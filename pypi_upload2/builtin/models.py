"""The built-in index's own rows: users and API tokens, projects and roles, published
releases and their files, and the registry of every filename ever used. A host index keeps
its own instead; nothing outside ``pypi_upload2.builtin`` reads these."""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "upload2_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The web pages' sign-in (None: the user signs in nowhere, only uses API tokens), and the
    # consecutive failures that lock it until ``locked_until`` (builtin/web/signin.py).
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    """An API token; only a digest of its secret part is stored. Revoking deletes the row."""

    __tablename__ = "upload2_api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("upload2_users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None: never expires; last_used to the minute (written outside the request's transaction).
    expires_at: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    last_used: Mapped[datetime.datetime | None] = mapped_column(UTCDateTime)
    # False: a stage-only token, which may stage and cancel releases but not publish them.
    may_publish: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    # A token minted for a trusted publisher (builtin/oidc.py): usable only for the project of
    # that normalized name, and revoked with its publisher.
    publisher_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("upload2_trusted_publishers.id", ondelete="CASCADE"), index=True)
    project_name: Mapped[str | None] = mapped_column(sa.String(200))

    user: Mapped[User] = relationship(back_populates="tokens")
    publisher: Mapped[TrustedPublisher | None] = relationship()


class TrustedPublisher(Base):
    """A CI workflow that may exchange its OIDC token for a short-lived API token of one
    project: a GitHub repository and workflow file, or a GitLab project and CI file, each
    optionally in one environment. Pending while ``project_id`` is None: it may then register
    the new name ``project_name``, as PyPI's pending publishers do, and becomes the project's
    publisher when it does. The tokens it mints act as ``user`` (the owner of a new project)."""

    __tablename__ = "upload2_trusted_publishers"
    __table_args__ = (sa.UniqueConstraint("project_name", "kind", "repository", "workflow", "environment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("upload2_projects.id", ondelete="CASCADE"),
                                                   index=True)
    project_name: Mapped[str] = mapped_column(sa.String(200), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("upload2_users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))  # "github" or "gitlab"
    # owner/name on GitHub, namespace/project on GitLab, as the OIDC claims spell them.
    repository: Mapped[str] = mapped_column(sa.String(200))
    # The workflow's filename (GitHub), or the CI file's path in the repository (GitLab).
    workflow: Mapped[str] = mapped_column(sa.String(200))
    environment: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")  # "": any
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()

    @property
    def pending(self) -> bool:
        return self.project_id is None


class UsedOIDCToken(Base):
    """An OIDC token already exchanged: the primary key refuses its ``jti`` a second time
    (a replay), until it has expired and the sweep may forget it."""

    __tablename__ = "upload2_used_oidc_tokens"

    issuer: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    jti: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    expires_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, index=True)


class Project(Base):
    """A registered project: its first release was published (a new name is only reserved
    before that, by the plugin's sessions)."""

    __tablename__ = "upload2_projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    normalized_name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    roles: Mapped[list[Role]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                             passive_deletes=True)
    releases: Mapped[list[Release]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                                   passive_deletes=True)


class Role(Base):
    __tablename__ = "upload2_roles"
    __table_args__ = (sa.UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("upload2_projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("upload2_users.id", ondelete="CASCADE"), index=True)
    role_name: Mapped[str] = mapped_column(sa.String(20), default="Maintainer")

    project: Mapped[Project] = relationship(back_populates="roles")


class Release(Base):
    """A published version of a project (a staged one lives in its publishing session)."""

    __tablename__ = "upload2_releases"
    __table_args__ = (sa.UniqueConstraint("project_id", "canonical_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("upload2_projects.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(sa.String(100))
    canonical_version: Mapped[str] = mapped_column(sa.String(100))
    # When its first files were published: the new-files window counts from it.
    published_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="releases")
    files: Mapped[list[ReleaseFile]] = relationship(back_populates="release", passive_deletes=True)


class ReleaseFile(Base):
    """A published file of a release."""

    __tablename__ = "upload2_release_files"
    __table_args__ = (
        # At most one sdist per release.
        sa.Index("uq_upload2_release_files_one_sdist", "release_id", unique=True,
                 sqlite_where=sa.text("packagetype = 'sdist'"),
                 postgresql_where=sa.text("packagetype = 'sdist'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("upload2_releases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.Text, unique=True)
    packagetype: Mapped[str] = mapped_column(sa.String(20))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    requires_python: Mapped[str | None] = mapped_column(sa.Text)
    blob_key: Mapped[str] = mapped_column(sa.Text)
    metadata_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    # When its last byte arrived, and when it became public (PEP 700's upload-time).
    uploaded_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The PEP 740 provenance object of its verified attestations (NULL: it had none); a few
    # KiB a file, loaded only when served (listings ask whether there is one).
    provenance: Mapped[dict | None] = mapped_column(sa.JSON(none_as_null=True), deferred=True)
    publishing_session_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("upload2_publishing_sessions.id", ondelete="SET NULL"), index=True)

    release: Mapped[Release] = relationship(back_populates="files")

    @property
    def metadata_key(self) -> str:
        return self.blob_key + ".metadata"


class Filename(Base):
    """Every filename ever used, published or held by a publish in progress: a name, once
    used, is never usable again (as on PyPI), whichever door it came through."""

    __tablename__ = "upload2_filenames"

    filename: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    created: Mapped[datetime.datetime] = mapped_column(UTCDateTime, default=utcnow)
