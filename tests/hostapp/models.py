"""The host index's own rows, shaped unlike the built-in index's: UUID keys, its own
declarative base and ``host_*`` tables, beside the plugin's tables in the same database."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid

import sqlalchemy as sa
from pyramid.authorization import Allow
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class HostBase(DeclarativeBase):
    pass


def uuid_key() -> Mapped[uuid.UUID]:
    return mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)


class Account(HostBase):
    __tablename__ = "host_accounts"

    id: Mapped[uuid.UUID] = uuid_key()
    login: Mapped[str] = mapped_column(sa.String(100), unique=True)
    key_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)


class Package(HostBase):
    __tablename__ = "host_packages"

    id: Mapped[uuid.UUID] = uuid_key()
    display: Mapped[str] = mapped_column(sa.String(200))
    canonical: Mapped[str] = mapped_column(sa.String(200), unique=True)
    maintainers: Mapped[list[Maintainer]] = relationship()

    @property
    def __acl__(self):
        """The host's permission to upload: one ACE per maintainer row."""
        return [(Allow, str(m.account_id), "upload") for m in self.maintainers]


class Maintainer(HostBase):
    __tablename__ = "host_maintainers"

    package_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("host_packages.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("host_accounts.id"), primary_key=True)


class PackageVersion(HostBase):
    __tablename__ = "host_versions"
    __table_args__ = (sa.UniqueConstraint("package_id", "canonical"),)

    id: Mapped[uuid.UUID] = uuid_key()
    package_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("host_packages.id"))
    version: Mapped[str] = mapped_column(sa.String(100))
    canonical: Mapped[str] = mapped_column(sa.String(100))
    first_published: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True), default=now)


class Artifact(HostBase):
    __tablename__ = "host_artifacts"

    id: Mapped[uuid.UUID] = uuid_key()
    version_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("host_versions.id"))
    filename: Mapped[str] = mapped_column(sa.Text, unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    path: Mapped[str] = mapped_column(sa.Text)  # under the host's storage folder
    requires_python: Mapped[str | None] = mapped_column(sa.Text)
    uploaded: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True), default=now)


class DeletedFilename(HostBase):
    """Filenames of deleted artifacts: never usable again."""

    __tablename__ = "host_deleted_filenames"

    filename: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    deleted: Mapped[datetime.datetime] = mapped_column(sa.DateTime(timezone=True), default=now)


class FilenameHold(HostBase):
    """A filename reserved by a publish in progress; the primary key settles races."""

    __tablename__ = "host_filename_holds"

    filename: Mapped[str] = mapped_column(sa.Text, primary_key=True)


def new_account(db, login: str) -> tuple[Account, str]:
    """An account and its plain API key (only the key's digest is stored)."""
    key = secrets.token_urlsafe(24)
    account = Account(login=login, key_sha256=key_digest(key))
    db.add(account)
    db.flush()
    return account, key
