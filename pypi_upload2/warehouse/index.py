"""Warehouse's projects, releases, files and filename registry behind the plugin's
interfaces. Publication makes the rows forklift makes, from each file's stored core metadata,
and stores the bytes in Warehouse's archive storage at their content-addressed paths."""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
import uuid

import sqlalchemy as sa
from pyramid.httpexceptions import HTTPException
from zope.interface import implementer

from ..interfaces import IFilenames, IFileStorage, IProjects, IPublishedFiles, IPublisher, IReleases
from ..problems import BadRequest, Conflict, FilenameConflict, Forbidden, Problem, SecondSdist
from ..services.streaming import CHUNK
from ..services.versions import canonical_version
from ..views.index import Entry

# Forklift's own choice of hash for the content-addressed path.
PATH_HASHER = "blake2_256"
DEPENDENCY_FIELDS = ("requires", "provides", "obsoletes", "requires_dist", "provides_dist", "obsoletes_dist",
                     "requires_external")


def _problem(exc: HTTPException) -> Problem:
    """Warehouse's refusal (an HTTP exception with its reason) as the API's problem."""
    kind = {403: Forbidden, 409: Conflict}.get(exc.code, BadRequest)
    return kind("Refused by the index", str(exc.detail or exc.explanation), source="name")


def _python_version(filename: str, packagetype: str) -> str:
    if packagetype == "sdist":
        return "source"
    return filename.removesuffix(".whl").split("-")[-3]  # the wheel's python tag, as twine sends it


@implementer(IProjects, IReleases, IFilenames, IPublisher, IPublishedFiles)
class WarehouseIndex:
    def __init__(self, request):
        self.request = request
        self.db = request.db

    @classmethod
    def create_service(cls, context, request):
        return cls(request)

    # -- IProjects -------------------------------------------------------------------------

    def find(self, request, normalized_name: str):
        from warehouse.packaging.models import Project

        return self.db.scalar(sa.select(Project).where(Project.normalized_name == normalized_name))

    def display_name(self, project) -> str:
        return project.name

    def check_new_name(self, request, principal, name: str) -> None:
        from warehouse.packaging.interfaces import IProjectService
        from warehouse.packaging.services import (ProjectNameUnavailableInvalidError,
                                                  ProjectNameUnavailableTypoSquattingError)

        try:
            request.find_service(IProjectService).check_project_name(name)
        except ProjectNameUnavailableTypoSquattingError:
            pass  # forklift only warns the admins of those, when the project is created
        except ProjectNameUnavailableInvalidError:
            raise BadRequest("Invalid name", f"The name {name!r} is invalid.", source="name")
        except Exception as exc:  # the other ProjectNameUnavailable*Error: prohibited, similar, stdlib
            if not type(exc).__name__.startswith("ProjectNameUnavailable"):
                raise
            raise BadRequest("Name not allowed", f"The name {name!r} isn't allowed on this index "
                             f"({type(exc).__name__.removeprefix('ProjectNameUnavailable').removesuffix('Error')}).",
                             source="name")

    def register(self, request, owner_key: str, name: str):
        from warehouse.accounts.models import User
        from warehouse.packaging.interfaces import IProjectService
        from warehouse.rate_limiting.interfaces import RateLimiterException

        owner = self.db.get(User, uuid.UUID(owner_key))
        if owner is None:
            raise Forbidden("Not allowed", "The session's creator is no longer a user of this index.", source="name")
        try:
            return request.find_service(IProjectService).create_project(name, owner, request)
        except HTTPException as exc:
            raise _problem(exc)
        except RateLimiterException:
            raise Conflict("Too many new projects", "Too many new projects were created; retry later.", source="name")

    # -- IReleases -------------------------------------------------------------------------

    def _release(self, project, version):
        from warehouse.packaging.models import Release

        return self.db.scalar(sa.select(Release).where(
            Release.project == project, Release.canonical_version == canonical_version(version)))

    def first_published(self, request, project, version):
        release = self._release(project, version)
        if release is None:
            return None
        # Warehouse stores naive UTC timestamps; the interface answers an aware one.
        created = release.created
        return created.replace(tzinfo=datetime.timezone.utc) if created.tzinfo is None else created

    def has_sdist(self, request, project, version) -> bool:
        release = self._release(project, version)
        return release is not None and any(f.packagetype == "sdist" for f in release.files)

    # -- IFilenames: Warehouse's file_registry, which forklift reads ------------------------

    def used(self, request, filename: str) -> bool:
        from warehouse.packaging.models import File, Filename

        return (self.db.scalar(sa.select(Filename.id).where(Filename.filename == filename)) is not None
                or self.db.scalar(sa.select(File.id).where(File.filename == filename)) is not None)

    def reserve(self, request, filenames: list[str]) -> None:
        from warehouse.packaging.models import Filename

        try:
            with self.db.begin_nested():
                self.db.execute(sa.insert(Filename.__table__), [{"filename": name} for name in filenames])
        except sa.exc.IntegrityError:
            taken = set(self.db.scalars(sa.select(Filename.filename).where(Filename.filename.in_(filenames))))
            raise FilenameConflict([{"source": name, "message": "a file with this name already exists"}
                                    for name in filenames if name in taken])

    def release(self, request, filenames: list[str]) -> None:
        from warehouse.packaging.models import File, Filename

        published = sa.select(File.filename).where(File.filename.in_(filenames))
        self.db.execute(sa.delete(Filename.__table__).where(Filename.filename.in_(filenames),
                                                            Filename.filename.not_in(published)))

    # -- IPublisher ------------------------------------------------------------------------

    def publish(self, request, session, files, project) -> None:
        from warehouse.packaging.models import Filename, JournalEntry

        if not files:
            return
        user = getattr(request.identity, "user", None)
        release, new_release = self._release_for(request, session, files, project, user)
        if any(f.packagetype == "sdist" for f in files) and any(f.packagetype == "sdist" for f in release.files):
            raise SecondSdist("Second sdist", "The release already has an sdist.",
                              errors=[{"source": f.filename, "message": "the release already has an sdist"}
                                      for f in files if f.packagetype == "sdist"])
        # File's own insert hook registers each filename: the reservation makes way for it.
        self.db.execute(sa.delete(Filename.__table__).where(Filename.filename.in_([f.filename for f in files])))
        rows = [self._file(request, release, f) for f in files]
        if new_release:
            self.db.add(JournalEntry(name=project.name, version=release.version, action="new release",
                                     submitted_by=user))
        for row in rows:
            self.db.add(JournalEntry(name=project.name, version=release.version,
                                     action=f"add {row.python_version} file {row.filename}", submitted_by=user))
        try:
            with self.db.begin_nested():
                self.db.flush()
        except sa.exc.IntegrityError:
            raise FilenameConflict([{"source": f.filename, "message": "a file with this name or content exists"}
                                    for f in files])

    def _release_for(self, request, session, files, project, user):
        from warehouse.classifiers.models import Classifier
        from warehouse.events.tags import EventTag
        from warehouse.forklift.legacy import _construct_dependencies, _sort_releases
        from warehouse.forklift.metadata import parse
        from warehouse.packaging.models import DependencyKind, Description, Release
        from warehouse.utils import readme

        existing = self._release(project, session.version)
        if existing is not None:
            return existing, False
        storage = request.find_service(IFileStorage)
        # The core metadata of a wheel if there is one (complete by definition), else the sdist's.
        source = sorted(files, key=lambda f: f.packagetype != "bdist_wheel")[0]
        with storage.open(source.metadata_key) as fh:
            meta = parse(fh.read())
        classifiers = list(self.db.scalars(sa.select(Classifier).where(
            Classifier.classifier.in_(meta.classifiers or []))))
        rendered = readme.render(meta.description, meta.description_content_type) if meta.description else None
        release = Release(
            project=project, _classifiers=classifiers,
            dependencies=list(_construct_dependencies(
                meta, {field: getattr(DependencyKind, field) for field in DEPENDENCY_FIELDS})),
            version=str(meta.version), canonical_version=canonical_version(meta.version),
            description=Description(content_type=meta.description_content_type, raw=meta.description or "",
                                    html=rendered or "", rendered_by=readme.renderer_version()),
            home_page=meta.home_page, home_page_verified=False,
            download_url=meta.download_url, download_url_verified=False,
            project_urls={name: {"url": url, "verified": False} for name, url in (meta.project_urls or {}).items()},
            author_email=meta.author_email, author_email_verified=False,
            maintainer_email=meta.maintainer_email, maintainer_email_verified=False,
            platform=meta.platforms[0] if meta.platforms else None,
            keywords=", ".join(meta.keywords) if meta.keywords else None,
            requires_python=str(meta.requires_python) if meta.requires_python else None,
            dynamic=[x.title() for x in meta.dynamic] if meta.dynamic else None,
            summary=meta.summary, license=meta.license, license_expression=meta.license_expression,
            license_files=meta.license_files, author=meta.author, maintainer=meta.maintainer,
            provides_extra=meta.provides_extra, uploader=user, uploaded_via=request.user_agent,
        )
        self.db.add(release)
        project.record_event(tag=EventTag.Project.ReleaseAdd, request=request, additional={
            "submitted_by": user.username if user else "OpenID created token",
            "canonical_version": release.canonical_version, "publisher_url": None,
            "uploaded_via_trusted_publisher": False})
        _sort_releases(request, project)
        return release, True

    def _file(self, request, release, f):
        """The File row of ``f``, its bytes (and a wheel's metadata) stored in the archive."""
        from warehouse.events.tags import EventTag
        from warehouse.packaging.interfaces import IFileStorage as IArchive
        from warehouse.packaging.models import File

        storage = request.find_service(IFileStorage)
        archive = request.find_service(IArchive, name="archive")
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, f.filename)
            hashes = self._copy(storage, f.blob_key, local, ("md5", "sha256", "blake2_256"))
            metadata_hashes = {}
            if f.packagetype == "bdist_wheel":
                metadata_hashes = self._copy(storage, f.metadata_key, local + ".metadata", ("sha256", "blake2_256"))
            digest = hashes[PATH_HASHER]
            row = File(release=release, filename=f.filename, python_version=_python_version(f.filename, f.packagetype),
                       # requires_python: a trigger copies the release's (File refuses it assigned)
                       packagetype=f.packagetype, comment_text=None, size=f.received_size,
                       md5_digest=hashes["md5"], sha256_digest=hashes["sha256"], blake2_256_digest=digest,
                       metadata_file_sha256_digest=metadata_hashes.get("sha256"),
                       metadata_file_blake2_256_digest=metadata_hashes.get("blake2_256"),
                       path="/".join([digest[:2], digest[2:4], digest[4:], f.filename]),
                       uploaded_via=request.user_agent)
            self.db.add(row)
            meta = {"project": release.project.normalized_name, "version": release.version,
                    "package-type": row.packagetype, "python-version": row.python_version}
            # As forklift does: stored before the commit, at a content-addressed path.
            archive.store(row.path, local, meta=meta)
            if metadata_hashes:
                archive.store(row.metadata_path, local + ".metadata", meta=meta)
        row.record_event(tag=EventTag.File.FileAdd, request=request, additional={
            "filename": row.filename, "submitted_by": getattr(getattr(request.identity, "user", None), "username", None),
            "canonical_version": release.canonical_version, "publisher_url": None,
            "project_id": str(release.project.id), "uploaded_via_trusted_publisher": False})
        return row

    @staticmethod
    def _copy(storage, key: str, path: str, algorithms) -> dict[str, str]:
        hashers = {a: hashlib.blake2b(digest_size=32) if a == "blake2_256" else hashlib.new(a) for a in algorithms}
        with storage.open(key) as source, open(path, "wb") as target:
            while chunk := source.read(CHUNK):
                for hasher in hashers.values():
                    hasher.update(chunk)
                target.write(chunk)
        return {a: h.hexdigest() for a, h in hashers.items()}

    # -- IPublishedFiles -------------------------------------------------------------------

    def _entry(self, request, f) -> Entry:
        wheel = f.packagetype == "bdist_wheel"
        return Entry(filename=f.filename, url=request.route_url("packaging.file", path=f.path),
                     version=f.release.version, size=f.size, sha256=f.sha256_digest,
                     requires_python=f.requires_python,
                     metadata_sha256=f.metadata_file_sha256_digest if wheel else None, upload_time=f.upload_time)

    def entries(self, request, project) -> list[Entry]:
        from warehouse.packaging.models import File, Release

        rows = self.db.scalars(sa.select(File).join(Release).where(Release.project == project)
                               .order_by(File.filename))
        return [self._entry(request, f) for f in rows]

    def find_file(self, request, filename: str) -> Entry | None:
        from warehouse.packaging.models import File

        f = self.db.scalar(sa.select(File).where(File.filename == filename))
        return self._entry(request, f) if f is not None else None
