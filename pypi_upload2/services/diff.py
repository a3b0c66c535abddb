"""The stage diff: what a publish would change against the project's latest published release.

Computed from stored core metadata and bounded reads of the wheels' zip directories (names,
``entry_points.txt``), never by running code. Files are paired by kind (the sdist; a wheel by
its tags), since their names differ from one version to the next. What only wheels declare
reliably (entry points, top-level modules, ``.pth`` files) is read from wheels alone.
"""

from __future__ import annotations

import configparser
import zipfile

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..interfaces import IFileStorage, IPublishedArchives, IPublishedFiles
from ..states import FileStatus
from .publishing import live_files

SIZE_CHANGE = 0.25  # a paired file's size changing by more than this is reported


def _kind(filename: str, packagetype: str) -> str:
    if packagetype == "bdist_wheel":
        return "wheel " + "-".join(str(t) for t in sorted(parse_wheel_filename(filename)[3]))
    return "sdist"


class _Side:
    """One release's files: name -> size, kind, and a way to open each (or None)."""

    def __init__(self, files: dict[str, int], packagetypes: dict[str, str], opener):
        self.sizes, self.kinds = files, {f: _kind(f, packagetypes[f]) for f in files}
        self.opener = opener

    def by_kind(self) -> dict[str, str]:
        return {kind: name for name, kind in sorted(self.kinds.items())}

    def metadata(self, limit: int) -> dict | None:
        """The core metadata of a wheel if there is one (its Requires-Dist is reliable), else the sdist's."""
        for name in sorted(self.kinds, key=lambda n: self.kinds[n] == "sdist"):
            fh = self.opener(name, True)
            if fh is None:
                continue
            with fh:
                fields, _ = parse_email(fh.read(limit))
            return fields
        return None

    def wheel_contents(self, settings) -> tuple[set[str], set[str], set[str]] | None:
        """(top-level modules, .pth files, entry points) of all wheels, or None if none can be read."""
        modules, pth, entry_points = set(), set(), set()
        read = False
        for name in (n for n, k in self.kinds.items() if k != "sdist"):
            fh = self.opener(name, False)
            if fh is None:
                continue
            read = True
            with fh, zipfile.ZipFile(fh) as archive:
                # The central directory alone names the members; only entry_points.txt is inflated.
                for info in archive.infolist()[:settings.max_archive_members]:
                    top, _, rest = info.filename.partition("/")
                    if top.endswith(".dist-info") and rest == "entry_points.txt":
                        if info.file_size <= settings.max_metadata_size:
                            entry_points |= _entry_points(archive.read(info).decode("utf-8", "replace"))
                    elif top.endswith((".dist-info", ".data")) or not top:
                        continue
                    elif rest:
                        modules.add(top)  # a package (or a namespace package's portion)
                    elif top.endswith(".pth"):
                        pth.add(top)
                    elif top.endswith((".py", ".so", ".pyd")):
                        modules.add(top.split(".", 1)[0])
        return (modules, pth, entry_points) if read else None


def _entry_points(text: str) -> set[str]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # entry point names are case-sensitive
    try:
        parser.read_string(text)
    except configparser.Error:
        return set()
    return {f"{group}:{name}" for group in parser.sections() for name in parser[group]}


def _requirements(fields: dict | None) -> dict[tuple[str, str], str]:
    """Requires-Dist by (project, marker): the same project under another marker is another entry."""
    found = {}
    for line in (fields or {}).get("requires_dist", []):
        try:
            req = Requirement(line)
        except InvalidRequirement:
            found[(line, "")] = line
            continue
        found[(canonicalize_name(req.name), str(req.marker or ""))] = str(req)
    return found


def _added_removed(old: set, new: set) -> dict:
    return {"added": sorted(new - old), "removed": sorted(old - new)}


def stage_diff(request, session, project) -> dict:
    """The diff body: the base release, and what the stage adds, removes or changes."""
    storage = request.find_service(IFileStorage)
    staged_files = [f for f in live_files(session) if f.status == FileStatus.COMPLETED]
    by_name = {f.filename: f for f in staged_files}
    staged = _Side({f.filename: f.received_size for f in staged_files},
                   {f.filename: f.packagetype for f in staged_files},
                   lambda name, metadata: storage.open(by_name[name].metadata_key if metadata
                                                       else by_name[name].blob_key))
    base_version, base = _base(request, session, project)
    settings = request.registry["upload2.settings"]
    body: dict = {"base-version": base_version, "files": {}, "notices": []}
    old_kinds, new_kinds = (base.by_kind() if base else {}), staged.by_kind()
    body["files"] = {"added": sorted(new_kinds[k] for k in set(new_kinds) - set(old_kinds)),
                     "removed": sorted(old_kinds[k] for k in set(old_kinds) - set(new_kinds))}
    body["wheel-tags"] = _added_removed({k[6:] for k in old_kinds if k != "sdist"},
                                        {k[6:] for k in new_kinds if k != "sdist"})
    body["size-changes"] = [
        {"kind": k, "old": {"filename": old_kinds[k], "size": base.sizes[old_kinds[k]]},
         "new": {"filename": new_kinds[k], "size": staged.sizes[new_kinds[k]]}}
        for k in sorted(set(old_kinds) & set(new_kinds))
        if abs(staged.sizes[new_kinds[k]] - base.sizes[old_kinds[k]]) > SIZE_CHANGE * base.sizes[old_kinds[k]]]
    if base is None:
        body["notices"].append("Nothing of this project is published yet: everything is new.")
    old_meta = base.metadata(settings.max_metadata_size) if base else None
    new_meta = staged.metadata(settings.max_metadata_size)
    if base is not None and old_meta is None:
        body["notices"].append("The published release's core metadata is not available to compare.")
    old_python = (old_meta or {}).get("requires_python")
    new_python = (new_meta or {}).get("requires_python")
    body["requires-python"] = {"old": old_python, "new": new_python} if old_python != new_python else None
    old_reqs, new_reqs = _requirements(old_meta), _requirements(new_meta)
    body["requires-dist"] = {
        **_added_removed({old_reqs[n] for n in set(old_reqs) - set(new_reqs)},
                         {new_reqs[n] for n in set(new_reqs) - set(old_reqs)}),
        "changed": [{"old": old_reqs[n], "new": new_reqs[n]} for n in sorted(set(old_reqs) & set(new_reqs))
                    if old_reqs[n] != new_reqs[n]]}
    old_contents = base.wheel_contents(settings) if base else (set(), set(), set())
    new_contents = staged.wheel_contents(settings) or (set(), set(), set())
    if old_contents is None:
        body["notices"].append("The published wheels cannot be read: modules and entry points are not compared.")
        old_contents = new_contents
    body["top-level-modules"] = _added_removed(old_contents[0], new_contents[0])
    body["pth-files"] = _added_removed(old_contents[1], new_contents[1])
    body["entry-points"] = _added_removed(old_contents[2], new_contents[2])
    return body


def _base(request, session, project) -> tuple[str | None, _Side | None]:
    """The latest published release other than the session's own version."""
    if project is None:
        return None, None
    entries = [e for e in request.find_service(IPublishedFiles).entries(request, project)
               if Version(e.version) != Version(session.version)]
    if not entries:
        return None, None
    latest = max({e.version for e in entries}, key=Version)
    files = [e for e in entries if e.version == latest]
    archives = _archives(request)
    opener = (lambda name, metadata: archives.open(request, name, metadata)) if archives else (lambda *a: None)
    return latest, _Side({e.filename: e.size for e in files},
                         {e.filename: "bdist_wheel" if e.filename.endswith(".whl") else "sdist" for e in files},
                         opener)


def _archives(request):
    """The host's IPublishedArchives, or None: the interface is optional."""
    try:
        return request.find_service(IPublishedArchives)
    except LookupError:
        return None
