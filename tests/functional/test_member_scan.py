"""What each door records of a wheel's members scanned as its bytes arrived (services/members.py):
http-post-bytes and the legacy form scan a wheel while writing it, so completion does not read
its members back; an sdist, and resumable appends (whose inflating cannot be carried from one
request to the next), record none and are read back."""

from __future__ import annotations

import hashlib
import io
import zipfile

import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession
from pypi_upload2.services.members import central_digest
from tests.conftest import build_sdist, build_wheel
from tests.hostile import entry, wheel_entries, write_zip
from tests.functional.test_legacy import Legacy
from tests.functional.test_resumable import upload_resumable


def recorded(dbsession, filename: str) -> str | None:
    members = dbsession.scalar(sa.select(FileUploadSession.received_members)
                               .where(FileUploadSession.filename == filename))
    dbsession.rollback()  # no transaction left open: SQLite writers queue on it
    return members


def directory(path) -> str:
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        return central_digest(zf.infolist())


def test_http_post_bytes_records_a_wheels_members_and_completes(alice, dist_dir, dbsession):
    session = alice.create_session().json
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0", padding=200_000), build_sdist(dist_dir, "foo", "1.0")
    assert alice.upload(session, wheel).json["status"] == "completed"
    assert alice.upload(session, sdist).json["status"] == "completed"
    assert recorded(dbsession, wheel.name) == directory(wheel)
    assert recorded(dbsession, sdist.name) is None


def test_a_corrupt_wheel_over_http_post_bytes_is_still_refused(alice, dist_dir, dbsession):
    session = alice.create_session().json
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=200_000)
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the padding member: its CRC no longer holds
    file_session = alice.start_file(session, wheel, size=len(data),
                                    hashes={"sha256": hashlib.sha256(data).hexdigest()}).json
    alice.send_bytes(file_session, bytes(data))
    refused = alice.post(file_session["links"]["complete"], status=400).json
    assert refused["title"] == "File verification failed" and "bad CRC-32" in refused["detail"]
    assert recorded(dbsession, wheel.name) not in (None, directory(wheel))


def test_resumable_appends_record_no_scan(alice, dist_dir, dbsession):
    session = alice.create_session().json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    assert upload_resumable(alice, session, wheel)["status"] in ("processing", "completed")
    assert recorded(dbsession, wheel.name) is None


def test_the_legacy_form_records_a_wheels_members(testapp, make_user, dist_dir, dbsession):
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=200_000)
    Legacy(testapp, make_user("carol")).upload(wheel)
    assert recorded(dbsession, wheel.name) == directory(wheel)


def broken_deflate_wheel(dist_dir, name: str):
    """A wheel whose member's deflate stream is not one (a reserved block type)."""
    broken = entry(f"{name}/broken.py", b"x = 1\n")
    broken.payload = b"\xff" * 16
    path = dist_dir / f"{name}-1.0-py3-none-any.whl"
    path.write_bytes(write_zip(wheel_entries(name) + [broken]))
    return path


def test_a_broken_deflate_stream_is_a_400_through_either_door(alice, testapp, make_user, dist_dir, dbsession):
    wheel = broken_deflate_wheel(dist_dir, "foo")
    session = alice.create_session().json
    file_session = alice.start_file(session, wheel).json
    alice.send_bytes(file_session, wheel.read_bytes())
    refused = alice.post(file_session["links"]["complete"], status=400).json
    assert refused["title"] == "File verification failed" and "not a valid wheel" in refused["detail"]
    assert recorded(dbsession, wheel.name) is None  # the scan gave up on it
    response = Legacy(testapp, make_user("carol")).upload(broken_deflate_wheel(dist_dir, "bar"), status=400)
    assert "not a valid wheel" in response.text
