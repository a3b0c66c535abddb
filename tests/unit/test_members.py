"""The scan of a wheel's members as its bytes arrive: it agrees with the central directory on
every well-formed wheel, in any chunking; a matching digest spares the read-back; and on no
hostile archive does it turn the inspection's refusal into an acceptance."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zipfile

import pytest

from pypi_upload2.services.distributions import DistributionError, Limits, inspect_distribution, parse_filename
from pypi_upload2.services.members import MemberScan, central_digest
from tests.artifacts import build_wheel
from tests.hostile import MiB, entry, wheel_entries, write_zip, zeros_entry

WHEEL = "foo-1.0-py3-none-any.whl"


def scanned(data: bytes, step: int | None = None, budget: int = 1 << 30, members: int = 100) -> str | None:
    scan = MemberScan(budget, members)
    step = step or len(data) or 1
    for at in range(0, len(data), step):
        scan.update(data[at:at + step])
    return scan.hexdigest()


def directory(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return central_digest(zf.infolist())


class CountingFile(io.BytesIO):
    """A seekable file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        n = super().readinto(buffer)
        self.read_bytes += n
        return n


def mixed_zip() -> bytes:
    """Stored, deflated and empty members, and one with zip64 sizes in its local header."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(zipfile.ZipInfo("foo/empty"), b"")
        zf.writestr("foo/stored", b"x" * 1000, compress_type=zipfile.ZIP_STORED)
        zf.writestr("foo/deflated", b"y" * 100_000, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("foo/é.txt", "unicode name".encode())
        with zf.open("foo/zip64", "w", force_zip64=True) as member:
            member.write(b"z" * 5000)
    return out.getvalue()


@pytest.mark.parametrize("step", [1, 7, 4096, None])
def test_a_scan_in_any_chunking_agrees_with_the_central_directory(tmp_path, step):
    wheel = build_wheel(tmp_path, "foo", "1.0", padding=300_000).read_bytes()
    assert scanned(wheel, step) == directory(wheel)
    assert scanned(mixed_zip(), step) == directory(mixed_zip())


def test_a_matching_scan_spares_reading_the_members_back(tmp_path):
    data = build_wheel(tmp_path, "foo", "1.0", padding=8 * MiB).read_bytes()
    digest = scanned(data, 1 << 20)
    spared, read_back = CountingFile(data), CountingFile(data)
    dist = parse_filename(build_wheel(tmp_path, "foo", "1.0").name)
    assert inspect_distribution(spared, dist, scanned_members=digest).name == "foo"
    assert inspect_distribution(read_back, dist).name == "foo"
    assert read_back.read_bytes > len(data)  # the layout checks, then every member inflated
    assert spared.read_bytes < MiB  # the central directory, METADATA and WHEEL only


def test_the_scan_gives_up_where_it_cannot_follow(tmp_path):
    class Unseekable(io.RawIOBase):  # zipfile writes data descriptors to a file it cannot seek
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w") as zf:
        zf.writestr("foo/x.py", b"x = 1\n" * 100)
    assert scanned(bytes(sink.data)) is None
    wheel = build_wheel(tmp_path, "foo", "1.0", padding=100_000).read_bytes()
    assert scanned(wheel[:len(wheel) // 2], 4096) is None  # the bytes stopped inside a member
    assert scanned(wheel, budget=1000) is None  # more inflated than it may inflate
    assert scanned(wheel, members=2) is None  # more members than a wheel may have
    stored_method = write_zip(wheel_entries() + [entry("foo/b.bin", b"data", method=12)])  # bzip2
    assert scanned(stored_method) is None


def test_a_bomb_exhausts_the_budget_in_bounded_memory():
    bomb = write_zip(wheel_entries() + [zeros_entry("foo/zeros.bin", 1024)])
    tracemalloc.start()
    try:
        assert scanned(bomb, 1 << 20, budget=1 << 30) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB


def lying(member) -> bytes:
    return write_zip(wheel_entries() + [member])


def inflating_past():
    return lying(zeros_entry("foo/zeros.bin", 4, declared=1000))


def inflating_short():
    short = entry("foo/data.bin", bytes(1000))
    short.size = 5000
    return lying(short)


def bad_crc():
    bad = entry("foo/data.py", b"x = 1\n")
    bad.crc ^= 1
    return lying(bad)


def patch_central(data: bytes, member: bytes, **fields) -> bytes:
    """``data`` with the central directory entry of ``member`` changed: ``flags``, ``method``,
    ``name`` (of the same length) or ``offset``."""
    at = data.rindex(b"PK\x01\x02", 0, data.rindex(member))
    header = bytearray(data[at:at + 46])
    if "flags" in fields:
        struct.pack_into("<H", header, 8, fields["flags"])
    if "method" in fields:
        struct.pack_into("<H", header, 10, fields["method"])
    if "offset" in fields:
        struct.pack_into("<L", header, 42, fields["offset"])
    return data[:at] + bytes(header) + fields.get("name", member) + data[at + 46 + len(member):]


def renamed_in_directory():
    data = lying(entry("foo/aaaa.py", b"x = 1\n"))
    return patch_central(data, b"foo/aaaa.py", name=b"foo/bbbb.py")


def encrypted_in_directory():
    data = lying(entry("foo/data.py", b"x = 1\n"))
    return patch_central(data, b"foo/data.py", flags=0x1)


def stored_in_directory():
    data = lying(entry("foo/data.py", b"x = 1\n" * 50))
    return patch_central(data, b"foo/data.py", method=0)


def overlapping():
    # Two directory entries for one local header: the second member's bytes are the first's.
    data = lying(entry("foo/data.py", b"x = 1\n"))
    first = data.index(b"PK\x03\x04")
    return patch_central(data, b"foo/data.py", offset=first)


@pytest.mark.parametrize("build", [inflating_past, inflating_short, bad_crc, renamed_in_directory,
                                   encrypted_in_directory, stored_in_directory, overlapping])
def test_the_scan_never_turns_a_refusal_into_an_acceptance(build):
    data = build()
    with pytest.raises(DistributionError) as read_back:
        inspect_distribution(io.BytesIO(data), parse_filename(WHEEL), Limits())
    digest = scanned(data, 4096)
    assert digest != directory_or_none(data)
    with pytest.raises(DistributionError) as with_scan:
        inspect_distribution(io.BytesIO(data), parse_filename(WHEEL), Limits(), scanned_members=digest)
    assert with_scan.value.message == read_back.value.message


def directory_or_none(data: bytes) -> str | None:
    try:
        return directory(data)
    except zipfile.BadZipFile:
        return None


def test_on_randomly_damaged_wheels_the_scan_changes_no_verdict():
    """Bytes flipped anywhere (local headers, deflate streams, the central directory): the
    inspection with the scan's digest says what it says without it, a refusal word for word."""
    base = write_zip(wheel_entries() + [entry("foo/data.py", b"x = 1\n" * 200),
                                        entry("foo/table.bin", bytes(range(256)) * 40)])
    dist, rng = parse_filename(WHEEL), random.Random(694)

    def verdict(data: bytes, digest: str | None):
        try:
            return inspect_distribution(io.BytesIO(data), dist, Limits(), scanned_members=digest).name
        except DistributionError as exc:
            return exc.message

    refusals = 0
    for _ in range(1500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        data = bytes(data)
        plain = verdict(data, None)
        assert verdict(data, scanned(data, 97)) == plain
        refusals += plain != "foo"
    assert 0 < refusals < 1500  # damage that matters, and damage that does not (a flipped time)
