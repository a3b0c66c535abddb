"""A full storage: ``upload2.storage`` is an 8 MiB tmpfs and the file is larger. Each door
refuses the upload with 507 (problem+json), keeps no partial file and no row, and the upload
is where it was before the request: pending, or resumable from its acknowledged offset."""

from __future__ import annotations

import hashlib
import subprocess

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import ReleaseFile
from pypi_upload2.models import FileUploadSession, PublishingSession
from tests.conftest import build_wheel, gunicorn
from tests.e2e.stack import stack_ini
from tests.e2e.test_worker import append, call, start_resumable
from tests.functional.test_legacy import encode, twine_fields

MiB = 1024 * 1024


@pytest.fixture
def small_storage(tmp_path):
    path = tmp_path / "small"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], capture_output=True,
                             check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.decode(errors='replace').strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def base(tmp_path, database_url, small_storage, dbsession):
    with gunicorn(stack_ini(tmp_path / "stack.ini", database_url, small_storage), "--workers", "2") as url:
        yield url


@pytest.fixture
def client(base, make_user):
    with httpx.Client(auth=("__token__", make_user("alice")), timeout=60) as c:
        yield c


@pytest.fixture
def wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0", padding=10 * MiB)


def stored_bytes(path) -> dict:
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file()}


def assert_insufficient_storage(response) -> None:
    assert response.status_code == 507, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")


def test_http_post_bytes(base, client, wheel, small_storage, dbsession):
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    data = wheel.read_bytes()
    upload = call(client, session["links"]["upload"], {"filename": wheel.name, "size": len(data), "hashes": {
        "sha256": hashlib.sha256(data).hexdigest()}, "mechanism": "http-post-bytes"}, 202).json()
    response = client.post(upload["mechanism"]["file_url"], content=data,
                           headers={"Content-Type": "application/octet-stream"})
    assert_insufficient_storage(response)
    assert response.json()["errors"][0]["source"] == "body"
    assert stored_bytes(small_storage) == {}
    assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "pending"
    assert dbsession.scalar(sa.select(FileUploadSession.received_size)) is None


def test_resumable_append(base, client, wheel, small_storage, dbsession):
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    data = wheel.read_bytes()
    upload = start_resumable(client, session, wheel)
    assert append(client, upload, data[:4 * MiB], 0, False).status_code == 204
    assert_insufficient_storage(append(client, upload, data[4 * MiB:], 4 * MiB, True))
    # The refused append is cut off: the acknowledged bytes stay, and the upload resumes there.
    state = client.head(upload["mechanism"]["file_url"])
    assert (state.headers["Upload-Offset"], state.headers["Upload-Complete"]) == (str(4 * MiB), "?0")
    assert list(stored_bytes(small_storage).values()) == [4 * MiB]
    assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "pending"


def test_legacy_upload(base, make_user, wheel, small_storage, dbsession):
    body, content_type = encode([*twine_fields(wheel), ("content", (wheel.name, wheel.read_bytes()))])
    response = httpx.post(base + "/legacy/", content=body, headers={"Content-Type": content_type},
                          auth=("__token__", make_user("alice")), timeout=60)
    assert response.status_code == 507, response.text
    assert stored_bytes(small_storage) == {}
    assert dbsession.scalars(sa.select(PublishingSession)).all() == []
    assert dbsession.scalars(sa.select(ReleaseFile)).all() == []
