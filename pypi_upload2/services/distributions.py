"""Validation of uploaded distribution files (wheels and sdists).

Uploaded files are hostile: member counts and metadata sizes are bounded, and
sizes recorded in archive headers are never trusted.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO

from packaging.metadata import InvalidMetadata, Metadata, parse_email
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

StrPath = str | os.PathLike[str]
# A path, or a seekable binary file (storage backends without local paths give one).
Source = StrPath | IO[bytes]

# What zipfile/tarfile/gzip raise for corrupt input. RuntimeError: an encrypted
# zip member; ValueError: e.g. a zip member name flagged UTF-8 that is not.
_CORRUPT_ARCHIVE = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    RuntimeError,
    ValueError,
)


class DistributionError(Exception):
    """A distribution file or its name is invalid. .source names what is wrong
    (e.g. "filename", "METADATA", "PKG-INFO", "archive"), .message says why in
    one sentence."""

    def __init__(self, message: str, source: str = "file") -> None:
        super().__init__(message)
        self.message = message
        self.source = source


@dataclass(frozen=True)
class Distribution:
    filename: str
    packagetype: str  # "sdist" or "bdist_wheel"
    name: str  # canonicalized project name
    version: Version


@dataclass(frozen=True)
class CoreMetadata:
    raw: bytes  # the METADATA / PKG-INFO bytes exactly as in the archive
    name: str
    version: str
    requires_python: str | None
    summary: str | None


def parse_filename(filename: str) -> Distribution:
    def fail(why: str) -> DistributionError:
        return DistributionError(f"{filename!r} {why}", source="filename")

    if not filename:
        raise DistributionError("The filename is empty.", source="filename")
    if "/" in filename or "\\" in filename:
        raise fail("must not contain path separators.")
    if any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise fail("must not contain control characters.")
    try:
        encoded = filename.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON allows
        raise fail("is not valid UTF-8.")
    if len(encoded) > 255:
        raise fail("is longer than 255 bytes.")
    if filename.startswith("."):
        raise fail("must not start with '.'.")
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return Distribution(filename, "bdist_wheel", name, version)
        if filename.endswith(".tar.gz"):
            name, version = parse_sdist_filename(filename)
            return Distribution(filename, "sdist", name, version)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise fail(f"is not a valid distribution filename: {exc}.") from None
    if filename.endswith(".zip"):
        raise fail(
            "is a .zip sdist; the source distribution format specification "
            "requires sdists to be .tar.gz files."
        )
    raise fail("is neither a wheel (.whl) nor an sdist (.tar.gz) filename.")


def _archive_error(message: str) -> DistributionError:
    return DistributionError(message, source="archive")


def _check_member_name(name: str) -> None:
    # Installers and mirrors extract archives: refuse anything that could land
    # outside the target directory on any platform.
    unsafe = name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name)
    if unsafe or ".." in name.split("/"):
        raise _archive_error(f"Archive member {name!r} is unsafe (path traversal).")


def _check_matches(directory: str, dist: Distribution, kind: str) -> None:
    """Check "{name}-{version}[.dist-info]" names ``dist`` (names may be escaped)."""
    stem = directory.removesuffix(".dist-info") if kind == ".dist-info" else directory
    name, _, version = stem.rpartition("-")
    try:
        if canonicalize_name(name) == dist.name and Version(version) == dist.version:
            return
    except InvalidVersion:
        pass
    raise _archive_error(
        f"The {kind} directory {directory!r} does not match {dist.name} {dist.version}."
    )


def _read_bounded(stream: IO[bytes], declared: int, limit: int, what: str) -> bytes:
    # The declared size may lie (zip/gzip bombs), so also bound the read itself.
    data = b"" if declared > limit else stream.read(limit + 1)
    if declared > limit or len(data) > limit:
        raise DistributionError(f"{what} is larger than {limit} bytes.", source=what)
    return data


@dataclass(frozen=True)
class Limits:
    """What inspecting one archive may cost: its core metadata's size, its member count,
    and the bytes it inflates to (an sdist's gzip stream is read to its end)."""

    metadata: int = 1 << 20
    members: int = 100_000
    inflated: int = 1 << 30


def _too_large(kind: str, limits: Limits) -> DistributionError:
    return _archive_error(f"The {kind} inflates to more than {limits.inflated} bytes, "
                          "this index's limit for archives.")


def _inspect_wheel(path: Source, dist: Distribution, limits: Limits) -> bytes:
    limit, max_members = limits.metadata, limits.members
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if len(names) > max_members:
            raise _archive_error(f"The wheel has more than {max_members} members.")
        # Only METADATA and WHEEL are inflated here, but installers inflate every member.
        if sum(info.file_size for info in zf.infolist()) > limits.inflated:
            raise _too_large("wheel", limits)
        for name in names:
            _check_member_name(name)
        if len(set(names)) != len(names):
            # Tools disagree on which duplicate wins, e.g. which METADATA counts.
            raise _archive_error("The wheel contains duplicate member names.")
        tops = {n.split("/", 1)[0] for n in names if "/" in n}
        dist_infos = [top for top in tops if top.endswith(".dist-info")]
        if len(dist_infos) != 1:
            raise _archive_error(
                "A wheel needs exactly one .dist-info directory, "
                f"found {len(dist_infos)}."
            )
        dist_info = dist_infos[0]
        _check_matches(dist_info, dist, ".dist-info")

        def read(member: str) -> bytes:
            try:
                info = zf.getinfo(f"{dist_info}/{member}")
            except KeyError:
                message = f"The wheel has no {dist_info}/{member} file."
                raise DistributionError(message, source=member) from None
            with zf.open(info) as stream:
                return _read_bounded(stream, info.file_size, limit, member)

        metadata = read("METADATA")
        if not any(
            line.startswith(b"Wheel-Version:") for line in read("WHEEL").splitlines()
        ):
            raise DistributionError("WHEEL has no Wheel-Version line.", source="WHEEL")
        return metadata


def _inspect_sdist(path: Source, dist: Distribution, limits: Limits) -> bytes:
    limit, max_members = limits.metadata, limits.members
    tops: set[str] = set()
    pkg_infos: dict[str, bytes] = {}
    with (tarfile.open(fileobj=path, mode="r:gz") if hasattr(path, "read") else tarfile.open(path, "r:gz")) as tf:
        for count, member in enumerate(tf, start=1):
            if count > max_members:
                raise _archive_error(f"The sdist has more than {max_members} members.")
            # Checked before tarfile inflates its way past the member's data to the next.
            if member.offset_data + member.size > limits.inflated:
                raise _too_large("sdist", limits)
            _check_member_name(member.name)
            if member.ischr() or member.isblk() or member.isfifo():
                raise _archive_error(
                    f"Archive member {member.name!r} is a device file."
                )
            if member.issym() or member.islnk():
                # Symlinks are relative to their directory, hard links to the root.
                base = posixpath.dirname(member.name) if member.issym() else ""
                target = posixpath.normpath(posixpath.join(base, member.linkname))
                if member.linkname.startswith("/") or target.split("/")[0] == "..":
                    raise _archive_error(
                        f"Archive member {member.name!r} links outside the archive "
                        "(path traversal)."
                    )
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if parts:
                tops.add(parts[0])
            if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                if parts[0] in pkg_infos:
                    raise _archive_error("The sdist contains PKG-INFO twice.")
                stream = tf.extractfile(member)
                assert stream is not None  # regular files always have one
                pkg_infos[parts[0]] = _read_bounded(
                    stream, member.size, limit, "PKG-INFO"
                )
        # tarfile silently stops at a corrupt header, but other tools skip it and
        # extract what follows, so only zero padding may follow. Draining the
        # gzip stream also catches truncation and bad CRCs.
        assert tf.fileobj is not None
        inflated = tf.offset
        while chunk := tf.fileobj.read(1 << 16):
            if chunk.strip(b"\0"):
                raise _archive_error(
                    "The sdist has data after the end of its tar archive."
                )
            inflated += len(chunk)
            if inflated > limits.inflated:
                raise _too_large("sdist", limits)
    if len(tops) != 1:
        raise _archive_error(
            f"An sdist needs exactly one top-level directory, found {len(tops)}."
        )
    top = tops.pop()
    _check_matches(top, dist, "top-level")
    if top not in pkg_infos:
        raise DistributionError(
            f"The sdist has no {top}/PKG-INFO file.", source="PKG-INFO"
        )
    return pkg_infos[top]


def _messages(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [message for sub in exc.exceptions for message in _messages(sub)]
    return [str(exc)]


def _parse_metadata(raw: bytes, dist: Distribution, source: str) -> CoreMetadata:
    try:
        meta = Metadata.from_email(raw, validate=True)
    except (InvalidMetadata, ExceptionGroup) as exc:
        message = f"Invalid {source}: {'; '.join(_messages(exc))}."
        raise DistributionError(message, source=source) from None
    # Metadata normalizes Version and Requires-Python; report them as written.
    fields, _ = parse_email(raw)
    version = fields["version"]
    if canonicalize_name(meta.name) != dist.name:
        raise DistributionError(
            f"{source} Name {meta.name!r} does not match the filename's project name "
            f"{dist.name!r}.",
            source=source,
        )
    if Version(version) != dist.version:
        raise DistributionError(
            f"{source} Version {version!r} does not match the filename's version "
            f"{str(dist.version)!r}.",
            source=source,
        )
    return CoreMetadata(
        raw, meta.name, version, fields.get("requires_python"), meta.summary
    )


def inspect_distribution(path: Source, dist: Distribution, limits: Limits = Limits()) -> CoreMetadata:
    """Check the file at ``path`` (or the seekable binary file ``path``) really is ``dist``
    and return its core metadata."""
    wheel = dist.packagetype == "bdist_wheel"
    inspect = _inspect_wheel if wheel else _inspect_sdist
    try:
        raw = inspect(path, dist, limits)
    except _CORRUPT_ARCHIVE as exc:
        kind = "wheel (zip)" if wheel else "sdist (.tar.gz)"
        raise _archive_error(
            f"The file is not a valid {kind} archive: {exc}."
        ) from None
    return _parse_metadata(raw, dist, "METADATA" if wheel else "PKG-INFO")
