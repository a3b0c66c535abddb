"""The host's side of the plugin's interfaces (pypi_upload2/interfaces.py), on its own
tables, its own security policy and its own storage folder."""

from __future__ import annotations

import datetime
import os
import shutil
import uuid

import sqlalchemy as sa
from packaging.utils import canonicalize_name, canonicalize_version
from zope.interface import implementer

from pypi_upload2.interfaces import (IAuthentication, IAuthorization, IFilenames, IFileStorage, IProjects,
                                     IPublishedFiles, IPublisher, IReleases)
from pypi_upload2.problems import Conflict, FilenameConflict
from pypi_upload2.views.index import Entry

from .models import Artifact, DeletedFilename, FilenameHold, Maintainer, Package, PackageVersion, now
from .security import ROOT


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)  # SQLite stores naive


def _inserted(db, *rows) -> bool:
    """Insert ``rows`` in a savepoint; False when a unique constraint refused them."""
    try:
        with db.begin_nested():
            db.add_all(rows)
            db.flush()
    except sa.exc.IntegrityError:
        return False
    return True


@implementer(IAuthentication)
class HostAuthentication:
    @classmethod
    def create_service(cls, context, request):
        return cls()

    def identify(self, request):
        return request.identity

    def principal_key(self, principal) -> str:
        return str(principal.id)

    def challenge(self, request) -> str:
        return 'Bearer realm="host"'


@implementer(IAuthorization)
class HostAuthorization:
    """The host's permissions: a package's maintainers may upload (its ACL), anyone may register."""

    @classmethod
    def create_service(cls, context, request):
        return cls()

    def may_upload(self, request, principal, project: Package) -> bool:
        return bool(request.has_permission("upload", project))

    def may_register(self, request, principal, name: str) -> bool:
        return bool(request.has_permission("register", ROOT))


@implementer(IProjects, IReleases, IFilenames, IPublisher, IPublishedFiles)
class HostIndex:
    def __init__(self, db, folder: str):
        self.db, self.folder = db, folder

    @classmethod
    def create_service(cls, context, request):
        return cls(request.db, request.registry.settings["host.files"])

    # -- IProjects
    def find(self, request, normalized_name: str) -> Package | None:
        return self.db.scalar(sa.select(Package).where(Package.canonical == normalized_name))

    def display_name(self, project: Package) -> str:
        return project.display

    def check_new_name(self, request, principal, name: str) -> None:
        """The host takes any free valid name."""

    def register(self, request, owner_key: str, name: str) -> Package:
        package = Package(display=name, canonical=canonicalize_name(name))
        if not _inserted(self.db, package):
            raise Conflict("Name taken", f"{name!r} was registered meanwhile.", source="name")
        self.db.add(Maintainer(package_id=package.id, account_id=uuid.UUID(owner_key)))
        return package

    # -- IReleases
    def _version(self, project: Package, version) -> PackageVersion | None:
        return self.db.scalar(sa.select(PackageVersion).where(
            PackageVersion.package_id == project.id, PackageVersion.canonical == canonicalize_version(str(version))))

    def first_published(self, request, project: Package, version):
        found = self._version(project, version)
        return _utc(found.first_published) if found is not None else None

    def has_sdist(self, request, project: Package, version) -> bool:
        found = self._version(project, version)
        return found is not None and self.db.scalar(sa.select(Artifact.id).where(
            Artifact.version_id == found.id, Artifact.kind == "sdist")) is not None

    # -- IFilenames: published, deleted, or held by a publish in progress
    def used(self, request, filename: str) -> bool:
        return any(self.db.get(model, filename) is not None for model in (DeletedFilename, FilenameHold)) or (
            self.db.scalar(sa.select(Artifact.id).where(Artifact.filename == filename)) is not None)

    def reserve(self, request, filenames: list[str]) -> None:
        taken = [name for name in filenames if self.used(request, name)]
        if not taken and not _inserted(self.db, *[FilenameHold(filename=name) for name in filenames]):
            taken = [name for name in filenames if self.used(request, name)] or filenames
        if taken:
            raise FilenameConflict([{"source": name, "message": "this filename was used already"}
                                    for name in taken])

    def release(self, request, filenames: list[str]) -> None:
        self.db.execute(sa.delete(FilenameHold).where(FilenameHold.filename.in_(filenames)))

    # -- IPublisher: the host's rows, and a copy of the bytes in the host's own folder
    def publish(self, request, session, files, project: Package) -> None:
        version = self._version(project, session.version)
        if version is None:
            version = PackageVersion(package_id=project.id, version=session.version,
                                     canonical=canonicalize_version(session.version))
            self.db.add(version)
            self.db.flush()
        sdists = [f for f in files if f.packagetype == "sdist"]
        if sdists and self.has_sdist(request, project, session.version):
            raise FilenameConflict([{"source": f.filename, "message": "the release has an sdist"} for f in sdists])
        rows = [Artifact(version_id=version.id, filename=f.filename, kind=f.packagetype, sha256=f.sha256,
                         size=f.received_size, path=f"{project.canonical}/{f.filename}",
                         requires_python=f.requires_python, uploaded=now()) for f in files]
        if not _inserted(self.db, *rows):
            raise FilenameConflict([{"source": f.filename, "message": "already published"} for f in files])
        self.release(request, [f.filename for f in files])
        storage = request.find_service(IFileStorage)
        copies = []
        for f, row in zip(files, rows):
            target = os.path.join(self.folder, row.path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            copies.append(target)
            with storage.open(f.blob_key) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
        request.tm.get().addAfterCommitHook(_unless_committed, args=(copies,))

    # -- IPublishedFiles: entries pointing at the host's own file route
    def _entry(self, request, artifact: Artifact, version: str) -> Entry:
        return Entry(filename=artifact.filename, version=version, size=artifact.size, sha256=artifact.sha256,
                     url=request.route_url("host.file", artifact_id=artifact.id, filename=artifact.filename),
                     requires_python=artifact.requires_python, metadata_sha256=None,
                     upload_time=_utc(artifact.uploaded))

    def _rows(self, *where):
        return self.db.execute(sa.select(Artifact, PackageVersion.version).join(PackageVersion)
                               .where(*where).order_by(Artifact.filename)).all()

    def entries(self, request, project: Package) -> list[Entry]:
        return [self._entry(request, *row) for row in self._rows(PackageVersion.package_id == project.id)]

    def find_file(self, request, filename: str) -> Entry | None:
        rows = self._rows(Artifact.filename == filename)
        return self._entry(request, *rows[0]) if rows else None


def _unless_committed(committed: bool, copies: list[str]) -> None:
    if not committed:
        for path in copies:
            if os.path.exists(path):
                os.remove(path)
