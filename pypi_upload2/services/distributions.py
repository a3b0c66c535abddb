"""Validation of uploaded distribution files (wheels and sdists).

Uploaded files are hostile: member counts and metadata sizes are bounded, and
sizes recorded in archive headers are never trusted.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
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

from .archives import (
    CHUNK,
    ArchiveError,
    InflatedGzip,
    check_zip_layout,
    check_zip_member,
)
from .members import central_digest

StrPath = str | os.PathLike[str]
# The characters of wheel and sdist filenames (escaped names, PEP 440 versions, tags): nothing
# that needs quoting in a header or a URL, and no look-alikes from other scripts.
FILENAME_CHARS = re.compile(r"[A-Za-z0-9._+!-]+")

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
    if not FILENAME_CHARS.fullmatch(filename):
        raise fail("may contain only ASCII letters, digits and the characters . _ + ! -.")
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
    # NUL ends the name for some tools only (zipfile cuts it there); a newline breaks RECORD.
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise _archive_error(f"Archive member {name!r} has a control character in its name.")


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


# The file types a zip entry's unix mode may name: none given, a regular file, a directory.
_ZIP_FILE_TYPES = {0, stat.S_IFREG, stat.S_IFDIR}


def _check_zip_entry(info: zipfile.ZipInfo) -> None:
    # orig_filename: zipfile cuts ``filename`` at a NUL, other tools do not.
    _check_member_name(info.orig_filename)
    if info.flag_bits & 0x1:
        raise _archive_error(f"Wheel member {info.filename!r} is encrypted.")
    if stat.S_IFMT(info.external_attr >> 16) not in _ZIP_FILE_TYPES:
        # unzip makes symlinks (and fifos) of these; a wheel holds only files.
        raise _archive_error(f"Wheel member {info.filename!r} is not a regular file (a symlink or device).")


def _inspect_wheel(f: IO[bytes], dist: Distribution, limits: Limits, scanned_members: str | None) -> bytes:
    limit, max_members = limits.metadata, limits.members
    check_zip_layout(f, max_members)
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        if len(names) > max_members:
            raise _archive_error(f"The wheel has more than {max_members} members.")
        # Only METADATA and WHEEL are inflated here, but installers inflate every member.
        if sum(info.file_size for info in zf.infolist()) > limits.inflated:
            raise _too_large("wheel", limits)
        for info in zf.infolist():
            _check_zip_entry(info)
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
        # Last, as it inflates everything: at most the declared total checked above. Not again
        # where the members were inflated as the bytes arrived and gave what the directory says.
        if scanned_members is None or scanned_members != central_digest(zf.infolist()):
            for info in zf.infolist():
                check_zip_member(zf, info)
        return metadata


def _check_link(member: tarfile.TarInfo) -> str | None:
    """The archive path a link member points to, as written (None for other members);
    refuses one pointing outside the archive."""
    if not (member.issym() or member.islnk()):
        return None
    # Symlinks are relative to their directory, hard links to the root.
    base = posixpath.dirname(member.name) if member.issym() else ""
    joined = posixpath.join(base, member.linkname)
    if member.linkname.startswith("/") or posixpath.normpath(joined).split("/")[0] == "..":
        raise _archive_error(
            f"Archive member {member.name!r} links outside the archive (path traversal)."
        )
    return joined


def _check_no_link_chains(symlinks: set[str], paths: dict[str, str]) -> None:
    """Refuse a member whose name or link target goes through a symlink of the archive:
    ``..`` after a symlink to a directory resolves elsewhere than it reads, so a chain of
    links that each stay inside can lead out."""
    for name, path in paths.items():
        parts = path.split("/")
        for end in range(1, len(parts)):
            if (prefix := posixpath.normpath("/".join(parts[:end]))) in symlinks:
                raise _archive_error(f"Archive member {name!r} goes through the symlink {prefix!r}.")


def _inspect_sdist(f: IO[bytes], dist: Distribution, limits: Limits) -> bytes:
    limit, max_members = limits.metadata, limits.members
    tops: set[str] = set()
    pkg_infos: dict[str, bytes] = {}
    symlinks: set[str] = set()
    paths: dict[str, str] = {}  # what must not go through a symlink: each name, each link target
    # Headers and PKG-INFO are read through a stream that bounds each read (a pax header
    # declaring a gigabyte would be read whole) and inflates the gzip members itself.
    stream = InflatedGzip(f, limits.inflated, max(limit + 1, tarfile.BLOCKSIZE) + tarfile.BLOCKSIZE,
                          _too_large("sdist", limits))
    with tarfile.open(fileobj=stream, mode="r:") as tf:
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
            paths[member.name] = member.name
            if (target := _check_link(member)) is not None:
                paths[f"{member.name} -> {member.linkname}"] = target
                if member.issym():
                    symlinks.add(posixpath.normpath(member.name))
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if parts:
                tops.add(parts[0])
            if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                if parts[0] in pkg_infos:
                    raise _archive_error("The sdist contains PKG-INFO twice.")
                extracted = tf.extractfile(member)
                assert extracted is not None  # regular files always have one
                pkg_infos[parts[0]] = _read_bounded(
                    extracted, member.size, limit, "PKG-INFO"
                )
        # tarfile silently stops at a corrupt header, but other tools skip it and
        # extract what follows, so only zero padding may follow. Draining the
        # gzip stream also catches truncation and bad CRCs.
        while chunk := stream.read(CHUNK):
            if chunk.strip(b"\0"):
                raise _archive_error(
                    "The sdist has data after the end of its tar archive."
                )
    _check_no_link_chains(symlinks, paths)
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


@contextlib.contextmanager
def _opened(source: StrPath | IO[bytes]) -> Iterator[IO[bytes]]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield f
    else:
        source.seek(0)
        yield source


def inspect_distribution(source: StrPath | IO[bytes], dist: Distribution,
                         limits: Limits = Limits(), scanned_members: str | None = None) -> CoreMetadata:
    """Check the file (a path, or a seekable binary file object) really is ``dist`` and
    return its core metadata. ``scanned_members``: a wheel's members.MemberScan digest."""
    wheel = dist.packagetype == "bdist_wheel"
    try:
        with _opened(source) as f:
            raw = _inspect_wheel(f, dist, limits, scanned_members) if wheel else _inspect_sdist(f, dist, limits)
    except ArchiveError as exc:
        raise _archive_error(str(exc)) from None
    except _CORRUPT_ARCHIVE as exc:
        kind = "wheel (zip)" if wheel else "sdist (.tar.gz)"
        raise _archive_error(
            f"The file is not a valid {kind} archive: {exc}."
        ) from None
    return _parse_metadata(raw, dist, "METADATA" if wheel else "PKG-INFO")
