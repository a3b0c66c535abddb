"""The built-in index behind the plugin's interfaces: its projects, releases, filename
registry, publication and published files, all in its own tables (models.py)."""

from __future__ import annotations

import sqlalchemy as sa
from packaging.utils import canonicalize_name
from packaging.version import Version
from zope.interface import implementer

from ..db import insert, utcnow
from ..interfaces import (IFilenames, IFileStorage, IProjects, IPublishedArchives, IPublishedFiles, IPublisher,
                          IReleases)
from ..problems import Conflict, FilenameConflict, SecondSdist
from ..services import attestations
from ..services.versions import canonical_version
from ..views.index import Entry, core_metadata_sha256
from .models import Filename, Project, Release, ReleaseFile, Role, TrustedPublisher


# A published file, its release's version, and whether it has a provenance object.
ENTRIES = sa.select(ReleaseFile, Release.version, ReleaseFile.provenance.is_not(None)).join(Release)


@implementer(IProjects, IReleases, IFilenames, IPublisher, IPublishedFiles, IPublishedArchives)
class BuiltinIndex:
    def __init__(self, db):
        self.db = db

    @classmethod
    def create_service(cls, context, request):
        return cls(request.db)

    # -- IProjects -------------------------------------------------------------------------

    def find(self, request, normalized_name: str) -> Project | None:
        return self.db.scalar(sa.select(Project).where(Project.normalized_name == normalized_name))

    def display_name(self, project: Project) -> str:
        return project.name

    def check_new_name(self, request, principal, name: str) -> None:
        """Any valid name that is free may be registered here."""

    def register(self, request, owner_key: str, name: str) -> Project:
        project = Project(name=name, normalized_name=canonicalize_name(name))
        if not insert(self.db, project):
            raise Conflict("Name taken", f"The project name {name!r} was registered meanwhile.", source="name")
        self.db.add(Role(project_id=project.id, user_id=int(owner_key), role_name="Owner"))
        # The owner's pending publishers of the name become the project's. Anyone else's stay
        # pending, and mint nothing (oidc.find_publisher): the name is registered now.
        self.db.execute(sa.update(TrustedPublisher).where(
            TrustedPublisher.project_id.is_(None), TrustedPublisher.project_name == project.normalized_name,
            TrustedPublisher.user_id == int(owner_key)).values(project_id=project.id)
            .execution_options(synchronize_session="fetch"))
        return project

    # -- IReleases -------------------------------------------------------------------------

    def _release(self, project: Project, version: Version) -> Release | None:
        return self.db.scalar(sa.select(Release).where(
            Release.project_id == project.id, Release.canonical_version == canonical_version(version)))

    def first_published(self, request, project: Project, version: Version):
        release = self._release(project, version)
        return release.published_at if release is not None else None

    def has_sdist(self, request, project: Project, version: Version) -> bool:
        return self.db.scalar(sa.select(ReleaseFile.id).join(Release).where(
            Release.project_id == project.id, Release.canonical_version == canonical_version(version),
            ReleaseFile.packagetype == "sdist")) is not None

    # -- IFilenames ------------------------------------------------------------------------

    def used(self, request, filename: str) -> bool:
        return self.db.get(Filename, filename) is not None

    def reserve(self, request, filenames: list[str]) -> None:
        # The primary key settles races between every door at once.
        if not insert(self.db, *[Filename(filename=name) for name in filenames]):
            taken = set(self.db.scalars(sa.select(Filename.filename).where(Filename.filename.in_(filenames))))
            raise FilenameConflict([{"source": name, "message": "a file with this name already exists"}
                                    for name in filenames if name in taken])

    def release(self, request, filenames: list[str]) -> None:
        published = sa.select(ReleaseFile.filename).where(ReleaseFile.filename.in_(filenames))
        self.db.execute(sa.delete(Filename).where(Filename.filename.in_(filenames),
                                                  Filename.filename.not_in(published)))

    # -- IPublisher ------------------------------------------------------------------------

    def publish(self, request, session, files, project: Project) -> None:
        now = utcnow()
        version = Version(session.version)
        release = self._release(project, version)
        if release is None:
            release = Release(project_id=project.id, version=session.version,
                              canonical_version=canonical_version(version), published_at=now)
            if not insert(self.db, release):  # one live session per release: only another door
                raise Conflict("Release exists", f"{project.name} {session.version} was published meanwhile; "
                               "publish again.", source="version")
        provenances = attestations.provenances(self.db, files)
        rows = [ReleaseFile(release_id=release.id, filename=f.filename, packagetype=f.packagetype,
                            size=f.received_size, sha256=f.sha256, requires_python=f.requires_python,
                            blob_key=f.blob_key, metadata_sha256=f.metadata_sha256,
                            uploaded_at=f.received_at, published_at=now, publishing_session_id=session.id,
                            provenance=provenances.get(f.id))
                for f in files]
        # The unique filename and one-sdist indexes settle races with concurrent publishes.
        if not insert(self.db, *rows):
            taken = set(self.db.scalars(sa.select(ReleaseFile.filename).where(
                ReleaseFile.filename.in_([f.filename for f in files]))))
            if not taken:
                raise SecondSdist("Second sdist", "The release already has an sdist.",
                                  errors=[{"source": f.filename, "message": "the release already has an sdist"}
                                          for f in files if f.packagetype == "sdist"])
            raise FilenameConflict([{"source": f.filename, "message": "a file with this name already exists"}
                                    for f in files if f.filename in taken])

    # -- IPublishedFiles -------------------------------------------------------------------

    def _entry(self, request, f: ReleaseFile, version: str, attested: bool) -> Entry:
        url = request.route_url("simple.file", file_id=f.id, filename=f.filename)
        provenance = request.route_url("simple.provenance", file_id=f.id, filename=f.filename) if attested else None
        return Entry(filename=f.filename, url=url, version=version, size=f.size, sha256=f.sha256,
                     requires_python=f.requires_python, metadata_sha256=core_metadata_sha256(f),
                     upload_time=f.published_at, provenance=provenance)

    def entries(self, request, project: Project) -> list[Entry]:
        rows = self.db.execute(ENTRIES.where(Release.project_id == project.id).order_by(ReleaseFile.filename))
        return [self._entry(request, *row) for row in rows]

    def find_file(self, request, filename: str) -> Entry | None:
        row = self.db.execute(ENTRIES.where(ReleaseFile.filename == filename)).first()
        return self._entry(request, *row) if row is not None else None

    # -- IPublishedArchives ----------------------------------------------------------------

    def open(self, request, filename: str, metadata: bool = False):
        f = self.db.scalar(sa.select(ReleaseFile).where(ReleaseFile.filename == filename))
        if f is None or (metadata and not f.metadata_sha256):
            return None
        return request.find_service(IFileStorage).open(f.metadata_key if metadata else f.blob_key)
