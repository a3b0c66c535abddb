"""The distribution files to upload: the release each belongs to (its normalized name and
version, from the filename), its digests, its core metadata (for the legacy form) and the
modules a wheel provides (for the default test-install import)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path

from packaging.version import Version
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)

CHUNK = 256 * 1024
MAX_METADATA = 16 * 1024 * 1024


class DistError(Exception):
    pass


ATTESTATION_SUFFIX = ".attestation"


@dataclasses.dataclass
class Dist:
    path: Path
    name: str  # normalized
    version: str  # normalized
    packagetype: str  # "sdist" or "bdist_wheel"
    size: int
    python_tag: str = "source"
    # PEP 740 attestation objects to upload with it (``--attestations``).
    attestations: list = dataclasses.field(default_factory=list, repr=False)
    _digests: dict | None = dataclasses.field(default=None, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def filename(self) -> str:
        return self.path.name

    def digests(self) -> dict[str, str]:
        """sha256 (what Upload 2.0 is sent) and blake2b-256 (the legacy form's), in one pass."""
        with self._lock:
            if self._digests is None:
                sha256, blake2 = hashlib.sha256(), hashlib.blake2b(digest_size=32)
                for chunk in self.chunks():
                    sha256.update(chunk)
                    blake2.update(chunk)
                self._digests = {"sha256": sha256.hexdigest(), "blake2_256": blake2.hexdigest()}
            return self._digests

    def chunks(self, start: int = 0, end: int | None = None, size: int = CHUNK) -> Iterator[bytes]:
        """The file's bytes from ``start`` to ``end``, one chunk in memory at a time."""
        end = self.size if end is None else end
        with open(self.path, "rb") as fh:
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = fh.read(min(size, remaining))
                if not chunk:
                    raise DistError(f"{self.path} shrank while it was being uploaded")
                remaining -= len(chunk)
                yield chunk


def inspect(path) -> Dist:
    path = Path(path)
    if not path.is_file():
        raise DistError(f"no such file: {path}")
    filename = path.name
    try:
        if filename.endswith(".whl"):
            name, version, _, tags = parse_wheel_filename(filename)
            packagetype, python_tag = "bdist_wheel", ".".join(sorted({t.interpreter for t in tags}))
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            packagetype, python_tag = "sdist", "source"
        else:
            raise DistError(f"not a distribution (.whl, .tar.gz or .zip): {path}")
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise DistError(f"{path}: {exc}")
    size = os.path.getsize(path)
    if size == 0:
        raise DistError(f"empty file: {path}")
    return Dist(path=path, name=canonicalize_name(name), version=str(version), packagetype=packagetype,
                size=size, python_tag=python_tag)


def find_attestations(path: Path) -> list[dict]:
    """The attestations beside ``path``: ``<file>.<kind>.attestation`` (``.publish.attestation``
    from pypa/gh-action-pypi-publish or ``pypi-attestations sign``), as twine finds them."""
    found = []
    for candidate in sorted(path.parent.glob(glob_escape(path.name) + ".*" + ATTESTATION_SUFFIX)):
        try:
            value = json.loads(candidate.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise DistError(f"{candidate}: not a JSON attestation: {exc}")
        if not isinstance(value, dict):
            raise DistError(f"{candidate}: not a PEP 740 attestation object")
        found.append(value)
    return found


def group(dists: list[Dist]) -> dict[tuple[str, str], list[Dist]]:
    """One group per release, in the order first named; within a group the sdist first,
    as twine orders them."""
    groups: dict[tuple[str, Version], list[Dist]] = {}
    for dist in dists:
        # Version equality: 1.0 and 1.0.0 are one release.
        groups.setdefault((dist.name, Version(dist.version)), []).append(dist)
    for files in groups.values():
        files.sort(key=lambda d: d.packagetype != "sdist")
    return {(files[0].name, files[0].version): files for files in groups.values()}


def core_metadata(dist: Dist) -> bytes:
    """The METADATA (wheel) or PKG-INFO (sdist) file of ``dist``."""
    try:
        if dist.filename.endswith((".whl", ".zip")):
            with zipfile.ZipFile(dist.path) as zf:
                names = zf.namelist()
                member = _metadata_member(names, dist)
                info = zf.getinfo(member)
                if info.file_size > MAX_METADATA:
                    raise DistError(f"{dist.filename}: {member} is too large")
                return zf.read(member)
        with tarfile.open(dist.path, "r:gz") as tf:
            names = tf.getnames()
            member = tf.getmember(_metadata_member(names, dist))
            if member.size > MAX_METADATA or not member.isfile():
                raise DistError(f"{dist.filename}: {member.name} is not a metadata file")
            return tf.extractfile(member).read()
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError) as exc:
        raise DistError(f"{dist.filename}: cannot read its metadata: {exc}")


def _metadata_member(names: list[str], dist: Dist) -> str:
    if dist.packagetype == "bdist_wheel":
        found = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    else:
        found = [n for n in names if n.count("/") == 1 and n.endswith("/PKG-INFO")]
    if len(found) != 1:
        raise DistError(f"{dist.filename}: expected one {'METADATA' if dist.packagetype != 'sdist' else 'PKG-INFO'}"
                        f" file, found {len(found)}")
    return found[0]


def top_level_modules(dist: Dist) -> list[str]:
    """The importable top-level modules a wheel installs (``top_level.txt`` when it has one)."""
    if dist.packagetype != "bdist_wheel":
        return []
    try:
        with zipfile.ZipFile(dist.path) as zf:
            names = zf.namelist()
            listed = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/top_level.txt")]
            if listed:
                found = zf.read(listed[0]).decode("utf-8", "replace").split()
            else:
                found = []
                for name in names:
                    head, sep, tail = name.partition("/")
                    if sep and head.endswith((".dist-info", ".data")):
                        continue
                    if sep and tail == "__init__.py":
                        found.append(head)
                    elif not sep and name.endswith(".py"):
                        found.append(name[:-3])
    except (OSError, zipfile.BadZipFile) as exc:
        raise DistError(f"{dist.filename}: {exc}")
    return sorted({m.replace("/", ".") for m in found if m.replace("/", ".").replace(".", "_").isidentifier()})
