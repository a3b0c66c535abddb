import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import tarfile
import zipfile

import pytest
from packaging.version import Version

from pypi_upload2.services.distributions import (
    CoreMetadata,
    Distribution,
    DistributionError,
    Limits,
    inspect_distribution,
    parse_filename,
)
from tests.artifacts import build_sdist, build_wheel, sha256_file


def inspect(path, **kwargs) -> CoreMetadata:
    return inspect_distribution(path, parse_filename(path.name), Limits(**kwargs))


def refused(path, source: str, match: str, **kwargs) -> DistributionError:
    with pytest.raises(DistributionError, match=match) as info:
        inspect(path, **kwargs)
    assert info.value.source == source
    return info.value


def rewrite_zip(path, *, drop: set[str]) -> None:
    """Rewrite a zip file without the members named in ``drop``."""
    with zipfile.ZipFile(path) as zf:
        kept = [
            (info, zf.read(info)) for info in zf.infolist() if info.filename not in drop
        ]
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in kept:
            zf.writestr(info, data)


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


# --- parse_filename -------------------------------------------------------


def test_parse_wheel_filename():
    dist = parse_filename("Foo_Bar-1.0.0-py3-none-any.whl")
    assert dist == Distribution(
        "Foo_Bar-1.0.0-py3-none-any.whl", "bdist_wheel", "foo-bar", Version("1.0")
    )


def test_parse_sdist_filename():
    dist = parse_filename("foo_bar-2.0rc1.tar.gz")
    assert (dist.packagetype, dist.name, dist.version) == (
        "sdist",
        "foo-bar",
        Version("2.0rc1"),
    )


@pytest.mark.parametrize(
    ("filename", "match"),
    [
        ("", "empty"),
        ("dir/foo-1.0.tar.gz", "path separators"),
        ("dir\\foo-1.0.tar.gz", "path separators"),
        ("foo\x00-1.0.tar.gz", "control characters"),
        ("foo\n-1.0.tar.gz", "control characters"),
        ("foo\x7f-1.0.tar.gz", "control characters"),
        ("f" * 250 + "-1.0.tar.gz", "longer than 255 bytes"),
        ("foo-1.0-py3-none-any\ud800.whl", "not valid UTF-8"),
        (
            "\u00e9" * 123 + "-1.0.tar.gz",
            "longer than 255 bytes",
        ),  # 134 chars, 257 bytes
        (
            "foo.exe",
            r"^'foo\.exe' is neither a wheel \(\.whl\) "
            r"nor an sdist \(\.tar\.gz\) filename\.$",
        ),
        ("foo-1.0.tar.bz2", "neither a wheel"),
        ("foo-1.0.zip", r"\.zip sdist.*source distribution format.*\.tar\.gz"),
        (".foo-1.0.tar.gz", r"must not start with '\.'"),
        ("foo-1.0.whl", "not a valid distribution filename"),
        ("foo-1.0-py3-none-any-extra-bits.whl", "not a valid distribution filename"),
        ("foo-notaversion-py3-none-any.whl", "not a valid distribution filename"),
        ("foo.tar.gz", "not a valid distribution filename"),
        ("foo-notaversion.tar.gz", "not a valid distribution filename"),
    ],
)
def test_parse_filename_rejects(filename, match):
    with pytest.raises(DistributionError, match=match) as info:
        parse_filename(filename)
    assert info.value.source == "filename"
    assert info.value.message == str(info.value)


def test_parse_filename_allows_255_bytes():
    filename = "f" * 244 + "-1.0.tar.gz"
    assert len(filename) == 255
    assert parse_filename(filename).name == "f" * 244


# --- valid distributions --------------------------------------------------


def test_valid_wheel(tmp_path):
    path = build_wheel(tmp_path, "Foo.Bar", "1.0.0", requires_python=">=3.9, <4")
    assert path.name == "foo_bar-1.0.0-py3-none-any.whl"
    meta = inspect(path)
    assert (meta.name, meta.version) == ("Foo.Bar", "1.0.0")
    assert meta.requires_python == ">=3.9, <4"  # as written, not re-ordered
    assert meta.summary == "Test distribution Foo.Bar."
    with zipfile.ZipFile(path) as zf:
        assert meta.raw == zf.read("foo_bar-1.0.0.dist-info/METADATA")


def test_valid_sdist(tmp_path):
    path = build_sdist(tmp_path, "Foo.Bar", "1.0")
    assert path.name == "foo_bar-1.0.tar.gz"
    meta = inspect(path)
    assert (meta.name, meta.version, meta.requires_python) == ("Foo.Bar", "1.0", None)
    with tarfile.open(path) as tf:
        assert meta.raw == tf.extractfile("foo_bar-1.0/PKG-INFO").read()


def test_version_is_kept_as_written_but_compared_normalized(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0", metadata_version="1.0.0")
    assert inspect(path).version == "1.0.0"


def test_padded_wheel_is_big_valid_and_hashable(tmp_path):
    path = build_wheel(tmp_path, "big", "1.0", padding=3 * 1024 * 1024 + 7)
    assert path.stat().st_size > 3 * 1024 * 1024
    assert inspect(path).name == "big"
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        record = zf.read("big-1.0.dist-info/RECORD").decode()
    assert "big/_padding.bin,sha256=" in record and ",3145735\n" in record


def test_built_wheel_is_installable(tmp_path):
    path = build_wheel(tmp_path, "Install.Me", "1.0", module_source="VALUE = 42\n")
    target = tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    assert (target / "install_me-1.0.dist-info" / "RECORD").is_file()
    result = subprocess.run(
        [sys.executable, "-c", "import install_me; print(install_me.VALUE)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert result.stdout.strip() == "42"


# --- bad wheels -----------------------------------------------------------


def test_wheel_without_metadata(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0")
    rewrite_zip(path, drop={"foo-1.0.dist-info/METADATA"})
    refused(path, "METADATA", r"no foo-1\.0\.dist-info/METADATA file")


def test_wheel_without_wheel_file(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0")
    rewrite_zip(path, drop={"foo-1.0.dist-info/WHEEL"})
    refused(path, "WHEEL", r"no foo-1\.0\.dist-info/WHEEL file")


def test_wheel_file_without_wheel_version(tmp_path):
    path = build_wheel(
        tmp_path,
        "foo",
        "1.0",
        extra_members={"foo-1.0.dist-info/WHEEL": b"Tag: py3-none-any\n"},
    )
    refused(path, "WHEEL", "no Wheel-Version line")


def test_wheel_with_two_dist_info_dirs(tmp_path):
    path = build_wheel(
        tmp_path, "foo", "1.0", extra_members={"bar-1.0.dist-info/METADATA": b""}
    )
    refused(path, "archive", "needs exactly one .dist-info directory, found 2")


def test_wheel_with_dist_info_for_another_project(tmp_path):
    path = build_wheel(tmp_path, "bar", "1.0")
    path = path.rename(tmp_path / "foo-1.0-py3-none-any.whl")
    refused(
        path,
        "archive",
        r"^The \.dist-info directory 'bar-1\.0\.dist-info' does not match foo 1\.0\.$",
    )


def test_wheel_with_dist_info_for_another_version(tmp_path):
    path = build_wheel(tmp_path, "foo", "2.0")
    path = path.rename(tmp_path / "foo-1.0-py3-none-any.whl")
    refused(path, "archive", r"directory 'foo-2\.0\.dist-info' does not match foo 1\.0")


def test_wheel_metadata_name_mismatch(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0", metadata_name="bar")
    refused(
        path,
        "METADATA",
        r"^METADATA Name 'bar' does not match the filename's project name 'foo'\.$",
    )


def test_wheel_metadata_version_mismatch(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0", metadata_version="1.1")
    refused(
        path, "METADATA", r"Version '1\.1' does not match the filename's version '1\.0'"
    )


def test_wheel_invalid_metadata(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0", metadata_version="not a version")
    refused(
        path,
        "METADATA",
        r"^Invalid METADATA: 'not a version' is invalid for 'version'\.$",
    )


def test_wheel_invalid_metadata_joins_all_problems(tmp_path):
    bad = b"Metadata-Version: 9.9\nName: foo\nVersion: 1.0\nColour: blue\n\n"
    path = build_wheel(
        tmp_path, "foo", "1.0", extra_members={"foo-1.0.dist-info/METADATA": bad}
    )
    error = refused(path, "METADATA", "Invalid METADATA")
    assert "unrecognized field: 'colour'" in error.message
    assert "'9.9' is not a valid metadata version" in error.message


def test_wheel_not_a_zip(tmp_path):
    path = tmp_path / "foo-1.0-py3-none-any.whl"
    path.write_bytes(b"this is not a zip file" * 100)
    refused(path, "archive", r"not a valid wheel \(zip\) archive")


def test_wheel_truncated(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0")
    path.write_bytes(path.read_bytes()[:-30])
    refused(path, "archive", "not a valid wheel")


def test_wheel_metadata_over_the_limit(tmp_path):
    # Deflated zeros: a tiny archive member that inflates to 4 MiB.
    big = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n\n" + b"0" * (4 << 20)
    path = build_wheel(
        tmp_path, "foo", "1.0", extra_members={"foo-1.0.dist-info/METADATA": big}
    )
    assert path.stat().st_size < 64 * 1024
    refused(
        path, "METADATA", "METADATA is larger than 65536 bytes", metadata=65536
    )
    assert inspect(path, metadata=8 << 20).name == "foo"


def test_wheel_metadata_bomb_with_lying_header(tmp_path):
    big = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n\n" + b"0" * (4 << 20)
    path = build_wheel(
        tmp_path, "foo", "1.0", extra_members={"foo-1.0.dist-info/METADATA": big}
    )
    # Claim the member is 100 bytes in both local and central headers.
    data = bytearray(path.read_bytes())
    name = b"foo-1.0.dist-info/METADATA"
    local = data.find(b"PK\x03\x04")
    while local != -1:
        if data[local + 30 : local + 30 + len(name)] == name:
            struct.pack_into("<I", data, local + 22, 100)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        if data[central + 46 : central + 46 + len(name)] == name:
            struct.pack_into("<I", data, central + 24, 100)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo(name.decode()).file_size == 100
    refused(path, "archive", "not a valid wheel", metadata=65536)


def test_wheel_with_too_many_members(tmp_path):
    path = build_wheel(
        tmp_path, "foo", "1.0", extra_members={f"foo/m{i}.py": b"" for i in range(10)}
    )
    refused(path, "archive", "more than 10 members", members=10)
    assert inspect(path, members=20).name == "foo"


@pytest.mark.parametrize(
    "member", ["../evil", "foo/../../evil", "/etc/evil", "foo\\..\\evil", "C:/evil"]
)
def test_wheel_with_unsafe_member(tmp_path, member):
    path = build_wheel(tmp_path, "foo", "1.0", extra_members={member: b"pwned"})
    error = refused(path, "archive", "path traversal")
    assert repr(member) in error.message


def test_wheel_with_duplicate_members(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0")
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as zf:
        zf.writestr(
            "foo-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
        )
    refused(path, "archive", "duplicate member names")


# --- bad sdists -----------------------------------------------------------


def test_sdist_without_pkg_info(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    write_tar(path, {"foo-1.0/pyproject.toml": b"", "foo-1.0/foo/__init__.py": b""})
    refused(path, "PKG-INFO", r"no foo-1\.0/PKG-INFO file")


def test_sdist_with_nested_pkg_info_only(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    write_tar(
        path,
        {"foo-1.0/sub/PKG-INFO": b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"},
    )
    refused(path, "PKG-INFO", "no foo-1.0/PKG-INFO file")


@pytest.mark.parametrize("member", ["../evil", "foo-1.0/../../evil", "/etc/evil"])
def test_sdist_with_unsafe_member(tmp_path, member):
    path = build_sdist(tmp_path, "foo", "1.0", extra_members={member: b"pwned"})
    error = refused(path, "archive", "path traversal")
    assert repr(member) in error.message


def test_sdist_with_symlink_outside(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        link = tarfile.TarInfo("foo-1.0/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(link)
    refused(path, "archive", "links outside the archive")


def test_sdist_with_device_file(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        device = tarfile.TarInfo("foo-1.0/dev")
        device.type = tarfile.CHRTYPE
        tf.addfile(device)
    refused(path, "archive", "device file")


def test_sdist_truncated_gzip(tmp_path):
    path = build_sdist(tmp_path, "foo", "1.0")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 4):  # mid-stream, and just the gzip trailer
        path.write_bytes(data[:cut])
        refused(path, "archive", r"not a valid sdist \(\.tar\.gz\) archive")


def test_sdist_not_gzip(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    path.write_bytes(b"plain text, not gzip")
    refused(path, "archive", "not a valid sdist")


def test_sdist_with_wrong_top_level_directory(tmp_path):
    path = build_sdist(tmp_path, "bar", "1.0").rename(tmp_path / "foo-1.0.tar.gz")
    refused(path, "archive", r"top-level directory 'bar-1\.0' does not match foo 1\.0")


def test_sdist_with_two_top_level_directories(tmp_path):
    path = build_sdist(tmp_path, "foo", "1.0", extra_members={"other/file.txt": b""})
    refused(path, "archive", "needs exactly one top-level directory, found 2")


def test_sdist_pkg_info_mismatch(tmp_path):
    path = build_sdist(tmp_path, "foo", "1.0", pkg_info_name="bar")
    refused(
        path,
        "PKG-INFO",
        "PKG-INFO Name 'bar' does not match the filename's project name 'foo'",
    )
    path = build_sdist(tmp_path, "foo", "1.0", pkg_info_version="3")
    refused(path, "PKG-INFO", "PKG-INFO Version '3' does not match")


def test_sdist_pkg_info_over_the_limit(tmp_path):
    big = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n\n" + b"0" * (1 << 20)
    path = build_sdist(tmp_path, "foo", "1.0", extra_members={"foo-1.0/PKG-INFO": big})
    refused(
        path, "PKG-INFO", "PKG-INFO is larger than 1000 bytes", metadata=1000
    )


def test_sdist_with_too_many_members(tmp_path):
    path = build_sdist(
        tmp_path, "foo", "1.0"
    )  # 4 members: directory, PKG-INFO, pyproject, module
    refused(path, "archive", "more than 3 members", members=3)
    assert inspect(path, members=4).name == "foo"


def test_sdist_member_hidden_after_corrupt_header(tmp_path):
    # tarfile stops at a corrupt header; GNU tar skips it and extracts the rest.
    path = build_sdist(tmp_path, "foo", "1.0")
    with tarfile.open(path) as tf:
        tf.getmembers()
        end = tf.offset
    hidden = io.BytesIO()
    with tarfile.open(fileobj=hidden, mode="w") as tf:
        info = tarfile.TarInfo("../evil")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    tar = gzip.decompress(path.read_bytes())[:end] + b"\x01" * 512 + hidden.getvalue()
    path.write_bytes(gzip.compress(tar))
    refused(path, "archive", "data after the end of its tar archive")


def test_sdist_with_pkg_info_twice(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    pkg_info = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n"
    with tarfile.open(path, "w:gz") as tf:
        for data in (pkg_info, pkg_info.replace(b"foo", b"bar")):
            info = tarfile.TarInfo("foo-1.0/PKG-INFO")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    refused(path, "archive", "PKG-INFO twice")


def test_sdist_with_hard_link_outside(tmp_path):
    path = tmp_path / "foo-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        link = tarfile.TarInfo("foo-1.0/link")
        link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tf.addfile(link)
    refused(path, "archive", "links outside the archive")


def test_sdist_with_symlink_inside_is_fine(tmp_path):
    path = build_sdist(tmp_path, "foo", "1.0")
    data = gzip.decompress(path.read_bytes())
    with (
        tarfile.open(path, "w:gz") as tf,
        tarfile.open(fileobj=io.BytesIO(data)) as src,
    ):
        for member in src:
            tf.addfile(member, src.extractfile(member) if member.isfile() else None)
        link = tarfile.TarInfo("foo-1.0/foo/README")
        link.type, link.linkname = tarfile.SYMTYPE, "../PKG-INFO"
        tf.addfile(link)
    assert inspect(path).name == "foo"


def test_wheel_with_undecodable_member_name(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0", extra_members={"foo/\u00e9.py": b""})
    # The name is flagged UTF-8; make its bytes invalid UTF-8.
    path.write_bytes(path.read_bytes().replace(b"foo/\xc3\xa9.py", b"foo/\xc3\x28.py"))
    refused(path, "archive", "not a valid wheel")


def test_an_sdist_inflating_past_the_limit_is_refused_before_it_is_inflated(tmp_path):
    # 64 MiB of zeros gzip to about 64 KiB: the header's size is enough to refuse it.
    path = build_sdist(tmp_path, "foo", "1.0", extra_members={"foo-1.0/zeros.bin": bytes(64 << 20)})
    assert path.stat().st_size < 1 << 20
    refused(path, "archive", "inflates to more than 16777216 bytes", inflated=16 << 20)
    assert inspect(path, inflated=128 << 20).name == "foo"


def test_an_sdist_with_inflated_padding_past_the_limit_is_refused(tmp_path):
    # Zero padding after the archive is allowed, but it is inflated too: it counts.
    path = build_sdist(tmp_path, "foo", "1.0")
    with tarfile.open(path) as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf]
    with gzip.open(path, "wb") as gz:
        with tarfile.open(fileobj=gz, mode="w") as out:
            for member, data in members:
                out.addfile(member, io.BytesIO(data) if data is not None else None)
        gz.write(bytes(32 << 20))
    refused(path, "archive", "inflates to more than 8388608 bytes", inflated=8 << 20)
    assert inspect(path, inflated=64 << 20).name == "foo"


def test_a_wheel_declaring_more_inflated_bytes_than_the_limit_is_refused(tmp_path):
    path = build_wheel(tmp_path, "foo", "1.0", extra_members={"foo/zeros.bin": bytes(64 << 20)})
    refused(path, "archive", "inflates to more than 16777216 bytes", inflated=16 << 20)
    assert inspect(path, inflated=128 << 20).name == "foo"
