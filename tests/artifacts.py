"""Build real distribution files (wheels and sdists) for the test-suite."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pathlib
import re
import tarfile
import zipfile

_CHUNK = 1 << 20


def _escape(name: str) -> str:
    # Wheel / sdist filename escaping of the project name.
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _core_metadata(
    name: str, version: str, requires_python: str | None = None, requires_dist: list[str] = ()
) -> bytes:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: Test distribution {name}.",
    ]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {requirement}" for requirement in requires_dist]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def build_wheel(
    directory,
    name: str,
    version: str,
    *,
    module: str | None = None,
    module_source: str = "VALUE = 1\n",
    requires_python: str | None = None,
    tag: str = "py3-none-any",
    extra_members: dict[str, bytes] | None = None,
    metadata_name: str | None = None,
    metadata_version: str | None = None,
    padding: int = 0,
    requires_dist: list[str] = (),
) -> pathlib.Path:
    """Write an installable wheel into ``directory`` and return its path."""
    escaped = _escape(name)
    module = module or name.replace("-", "_").replace(".", "_").lower()
    dist_info = f"{escaped}-{version}.dist-info"
    path = pathlib.Path(directory) / f"{escaped}-{version}-{tag}.whl"
    members: dict[str, bytes] = {
        f"{module}/__init__.py": module_source.encode("utf-8"),
        f"{dist_info}/METADATA": _core_metadata(
            metadata_name or name, metadata_version or version, requires_python, requires_dist
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\n"
            "Generator: pypi-upload2-tests\n"
            "Root-Is-Purelib: true\n"
            f"Tag: {tag}\n\n"
        ).encode(),
        **(extra_members or {}),
    }
    record: list[str] = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
            record.append(
                f"{member},{_record_hash(hashlib.sha256(data).digest())},{len(data)}"
            )
        if padding:
            # Random bytes do not compress, so the file really is this big; write
            # in chunks so huge wheels never sit in memory.
            info = zipfile.ZipInfo(
                f"{module}/_padding.bin", date_time=(2024, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_STORED
            digest = hashlib.sha256()
            with zf.open(info, "w", force_zip64=padding >= zipfile.ZIP64_LIMIT) as out:
                remaining = padding
                while remaining:
                    chunk = os.urandom(min(_CHUNK, remaining))
                    digest.update(chunk)
                    out.write(chunk)
                    remaining -= len(chunk)
            record.append(f"{info.filename},{_record_hash(digest.digest())},{padding}")
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


def build_sdist(
    directory,
    name: str,
    version: str,
    *,
    pkg_info_name: str | None = None,
    pkg_info_version: str | None = None,
    extra_members: dict[str, bytes] | None = None,
) -> pathlib.Path:
    """Write a ``.tar.gz`` sdist into ``directory`` and return its path."""
    escaped = _escape(name)
    top = f"{escaped}-{version}"
    module = escaped
    path = pathlib.Path(directory) / f"{top}.tar.gz"
    members: dict[str, bytes] = {
        f"{top}/PKG-INFO": _core_metadata(
            pkg_info_name or name, pkg_info_version or version
        ),
        f"{top}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=69"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ).encode(),
        f"{top}/{module}/__init__.py": b"VALUE = 1\n",
        **(extra_members or {}),
    }
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        top_info = tarfile.TarInfo(top)
        top_info.type, top_info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(top_info)
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


def sha256_file(path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
