"""Hostile wheels and sdists against the inspection: bombs refused by the inflation cap with
bounded memory, zips that are more (or less) than one archive, lying headers, links out."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
import zipfile

import pytest

from pypi_upload2.services.distributions import (
    DistributionError,
    Limits,
    inspect_distribution,
    parse_filename,
)
from tests.hostile import (
    MiB,
    entry,
    gzip_with_zeros,
    sdist_bytes,
    sdist_members,
    tar_header,
    tar_member,
    wheel_entries,
    write_zip,
    zeros_entry,
)

WHEEL, SDIST = "foo-1.0-py3-none-any.whl", "foo-1.0.tar.gz"
PEAK = 64 * MiB


def inspect(data: bytes, filename: str = WHEEL, **limits):
    # A file object, not a path: the inspection must work on any seekable binary file.
    return inspect_distribution(io.BytesIO(data), parse_filename(filename), Limits(**limits))


def refused(data: bytes, match: str, filename: str = WHEEL, **limits) -> str:
    with pytest.raises(DistributionError, match=match) as info:
        inspect(data, filename, **limits)
    assert info.value.source == "archive"
    return info.value.message


def peak_of(call) -> int:
    """Peak bytes Python allocated while ``call`` ran (bounded memory, not time, is asserted)."""
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_the_builders_make_valid_distributions():
    assert inspect(write_zip(wheel_entries())).name == "foo"
    assert inspect(sdist_bytes(), SDIST).name == "foo"


# --- bombs ------------------------------------------------------------------------------------

def test_a_one_gib_zip_member_is_refused_by_the_cap_in_bounded_memory():
    bomb = write_zip(wheel_entries() + [zeros_entry("foo/zeros.bin", 1024)])
    assert len(bomb) < 2 * MiB
    peak = peak_of(lambda: refused(bomb, "inflates to more than 1073741824 bytes"))
    assert peak < PEAK


def test_a_zip_member_inflating_past_its_declared_size_is_refused_in_bounded_memory():
    # The central directory says 1000 bytes (with their CRC); the stream inflates to 1 GiB.
    # zipfile stops at the declared size, unzip and other tools do not.
    lying = write_zip(wheel_entries() + [zeros_entry("foo/zeros.bin", 1024, declared=1000)])
    with zipfile.ZipFile(io.BytesIO(lying)) as zf, zf.open("foo/zeros.bin") as member:
        assert member.read(2000) == bytes(1000)  # zipfile alone sees nothing wrong
    peak = peak_of(lambda: refused(lying, "inflates to more than the 1000 bytes its zip entry declares"))
    assert peak < PEAK


def test_a_zip_member_inflating_to_less_than_declared_is_refused():
    short = entry("foo/data.bin", bytes(1000))
    short.size = 5000
    refused(write_zip(wheel_entries() + [short]), "inflates to 1000 bytes, not the 5000")


def test_a_zip_member_with_a_bad_crc_is_refused():
    bad = entry("foo/data.py", b"x = 1\n")
    bad.crc ^= 1
    refused(write_zip(wheel_entries() + [bad]), "bad CRC-32")


def test_a_one_gib_sdist_member_is_refused_by_the_cap_in_bounded_memory():
    bomb = gzip_with_zeros(sdist_members() + tar_header("foo-1.0/zeros.bin", 1024 * MiB), 1024)
    assert len(bomb) < 2 * MiB
    peak = peak_of(lambda: refused(bomb, "inflates to more than 1073741824 bytes", SDIST))
    assert peak < PEAK


def test_a_huge_pax_header_is_refused_before_it_is_read_into_memory():
    # tarfile reads an extended header whole, whatever size it declares.
    bomb = gzip_with_zeros(sdist_members() + tar_header("foo-1.0/x", 256 * MiB, tarfile.XHDTYPE), 256)
    peak = peak_of(lambda: refused(bomb, "tar header or member read larger than", SDIST))
    assert peak < PEAK


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_a_huge_gnu_long_name_is_refused(kind):
    bomb = gzip_with_zeros(sdist_members() + tar_header("././@LongLink", 64 * MiB, kind), 64)
    refused(bomb, "tar header or member read larger than", SDIST)


def test_an_sdist_of_many_concatenated_gzip_members_is_refused():
    # Each empty member costs a header parse: millions of them are a slow bomb.
    data = sdist_bytes() + gzip.compress(b"", mtime=0) * 100
    refused(data, "more than 16 members", SDIST)
    assert inspect(sdist_bytes() + bytes(100), SDIST).name == "foo"  # zero padding is fine, as for gzip


def test_nested_archives_are_not_inflated():
    # A compressed archive inside is data: the inspection never opens it, so a bomb inside
    # costs its compressed size.
    inner = gzip_with_zeros(b"", 256)
    wheel = write_zip(wheel_entries() + [entry("foo/inner.tar.gz", inner)])
    sdist = sdist_bytes(tar_member("foo-1.0/tests/inner.tar.gz", inner))
    assert peak_of(lambda: inspect(wheel)) < PEAK
    assert peak_of(lambda: inspect(sdist, SDIST)) < PEAK


# --- one archive, and only one -----------------------------------------------------------------

def test_data_after_the_end_of_the_zip_is_refused():
    refused(write_zip(wheel_entries(), suffix=b"hidden"), "data after the end of its zip archive")


@pytest.mark.parametrize("absolute", [False, True], ids=["appended", "self-extractor"])
def test_data_before_the_zip_is_refused(absolute):
    data = write_zip(wheel_entries(), prefix=b"#!/bin/sh\nexit 0\n", absolute_offsets=absolute)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # zipfile reads it happily
    refused(data, "does not start with a zip member")


def test_a_zip_that_is_also_a_tar_is_refused():
    entries = wheel_entries()
    first = entries[0]
    start = 30 + len(first.name) + 4  # the tar fields go into the first local header's extra field
    first.local_extra = b"\xfe\xca" + (600).to_bytes(2, "little") + bytes(600)
    block = bytearray(write_zip(entries)[:tarfile.BLOCKSIZE])
    tar = tar_header("x", 0)
    block[100:] = tar[100:]
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    first.local_extra = first.local_extra[:4] + bytes(block[start:]) + bytes(600 - (tarfile.BLOCKSIZE - start))
    polyglot = write_zip(entries)
    with tarfile.open(fileobj=io.BytesIO(polyglot), mode="r:") as tf:
        assert tf.getmembers()  # a tar
    with zipfile.ZipFile(io.BytesIO(polyglot)) as zf:
        assert zf.testzip() is None  # and a zip
    refused(polyglot, "a tar archive as well as a zip archive")


def test_an_end_record_whose_count_lies_is_refused():
    # zipfile reads as many entries as the directory's size holds, whatever the count says.
    refused(write_zip(wheel_entries(), count=2), "does not match its end record")


def test_too_many_entries_are_counted_before_zipfile_parses_them():
    entries = wheel_entries() + [entry(f"foo/m{n}.py", b"") for n in range(20)]
    refused(write_zip(entries, count=3), "more than 10 members", members=10)


def test_a_zip64_locator_pointing_nowhere_is_refused():
    locator = b"PK\x06\x07" + bytes(4) + (12345).to_bytes(8, "little") + (1).to_bytes(4, "little")
    with pytest.raises(DistributionError):
        inspect(write_zip(wheel_entries(), before_end=locator))


def test_zip64_end_records_are_read_and_their_count_checked():
    assert inspect(write_zip(wheel_entries(), zip64=True)).name == "foo"
    refused(write_zip(wheel_entries(), zip64=True, count=1 << 40), "more than 100000 members")
    refused(write_zip(wheel_entries(), zip64=True, count=2), "does not match its end record")


# --- members -----------------------------------------------------------------------------------

def test_an_encrypted_member_is_refused():
    refused(write_zip(wheel_entries() + [entry("foo/secret.py", b"x", flags=0x1)]), "is encrypted")


@pytest.mark.parametrize("mode", [0o120777, 0o010644, 0o020644], ids=["symlink", "fifo", "device"])
def test_a_zip_member_that_is_not_a_regular_file_is_refused(mode):
    refused(write_zip(wheel_entries() + [entry("foo/link", b"/etc/passwd", mode=mode)]), "not a regular file")


@pytest.mark.parametrize("name", [b"foo/a\0/evil.py", b"foo/a\nb.py", b"foo/\x1b[2Jx.py"])
def test_control_characters_in_zip_member_names_are_refused(name):
    refused(write_zip(wheel_entries() + [entry(name, b"")]), "control character")


@pytest.mark.parametrize("name", ["foo-1.0.dist-info/METADATA", "foo-1.0.dist-info/RECORD"])
def test_duplicate_zip_members_are_refused(name):
    refused(write_zip(wheel_entries() + [entry(name, b"Name: evil\n")]), "duplicate member names")


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "foo\\..\\evil", "C:/evil", "c:evil", "foo/../../x",
                                  "foo/a\0/../../evil"])
def test_traversal_in_zip_member_names_is_refused(name):
    refused(write_zip(wheel_entries() + [entry(name, b"")]), "path traversal")


def _sdist_with(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for member in members:
            tf.addfile(member)
    return gzip.compress(sdist_members() + buffer.getvalue(), mtime=0)


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_chain_of_symlinks_leading_out_is_refused():
    # a -> .. is the archive's root, b -> a/.. reads as foo-1.0 but resolves above the root.
    data = _sdist_with(_link("foo-1.0/a", ".."), _link("foo-1.0/b", "a/.."))
    refused(data, "goes through the symlink 'foo-1.0/a'", SDIST)


def test_a_member_written_through_a_symlink_is_refused():
    file = tarfile.TarInfo("foo-1.0/a/evil.py")
    refused(_sdist_with(_link("foo-1.0/a", "../.."), file), "links outside", SDIST)
    refused(_sdist_with(_link("foo-1.0/a", "."), file), "goes through the symlink", SDIST)


@pytest.mark.parametrize("target, kind", [("/etc/passwd", tarfile.SYMTYPE), ("../../x", tarfile.SYMTYPE),
                                          ("../x", tarfile.LNKTYPE), ("/etc/passwd", tarfile.LNKTYPE)])
def test_links_pointing_outside_are_refused(target, kind):
    refused(_sdist_with(_link("foo-1.0/link", target, kind)), "links outside", SDIST)


def test_symlinks_inside_the_sdist_are_fine():
    data = _sdist_with(_link("foo-1.0/README", "PKG-INFO"), _link("foo-1.0/docs/index", "../README"))
    assert inspect(data, SDIST).name == "foo"


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.BLKTYPE, tarfile.CHRTYPE])
def test_fifos_and_devices_in_an_sdist_are_refused(kind):
    device = tarfile.TarInfo("foo-1.0/dev")
    device.type = kind
    refused(_sdist_with(device), "device file", SDIST)


def test_a_nul_in_a_pax_path_is_refused():
    member = tarfile.TarInfo("foo-1.0/x.py")
    member.pax_headers = {"path": "foo-1.0/x\0/../../../evil"}
    refused(_sdist_with(member), "control character|path traversal", SDIST)
