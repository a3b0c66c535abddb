"""The object store gone away or stalled, behind a loopback proxy in front of moto's server:
each door answers 503 (problem+json with ``Retry-After``) within the configured timeouts,
keeps no row and no half-written object, and once the store is back the same request
succeeds; a resumable upload goes on from the offset it had."""

from __future__ import annotations

import hashlib
import threading

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.builtin.models import ReleaseFile
from pypi_upload2.models import FileUploadSession, PublishingSession
from tests.conftest import build_wheel, gunicorn
from tests.e2e.stack import own_redis, stack_ini  # noqa: F401
from tests.e2e.test_client_upload import Proxy
from tests.e2e.test_fault_storage import client  # noqa: F401
from tests.e2e.test_worker import (
    Worker,
    append,
    call,
    settled,
    start_resumable,
    wait_until,
)
from tests.functional.test_deferred import run_task
from tests.functional.test_legacy import encode, twine_fields
from tests.functional.test_s3 import make_app
from tests.s3 import keys, multipart_uploads, new_bucket, s3_client, s3_settings

KiB, MiB = 1024, 1024 * 1024
PART = 256 * KiB
# Fail fast: a second to connect and for each read; a retry (a pooled connection the proxy
# cut is found dead only when used).
TIMEOUTS = {"s3_connect_timeout": "1", "s3_read_timeout": "1", "s3_max_attempts": "2"}


@pytest.fixture
def s3(s3_any_part_endpoint):
    return s3_client(s3_any_part_endpoint)


@pytest.fixture
def bucket(s3):
    return new_bucket(s3)


@pytest.fixture
def store(s3_any_part_endpoint):
    proxy = Proxy(s3_any_part_endpoint)
    yield proxy
    proxy.close()


def s3_ini(tmp_path, database_url, storage_dir, store, bucket, broker_url: str = "", **extra):
    settings = s3_settings(store.url, bucket, **{"upload2.s3_min_part_size": "1", "upload2.s3_part_size": str(PART)})
    return stack_ini(tmp_path / "stack.ini", database_url, storage_dir, broker_url,
                     **{key.removeprefix("upload2."): value for key, value in settings.items()}, **TIMEOUTS, **extra)


@pytest.fixture
def base(tmp_path, database_url, storage_dir, store, bucket, dbsession):
    with gunicorn(s3_ini(tmp_path, database_url, storage_dir, store, bucket), "--workers", "2") as url:
        yield url


@pytest.fixture
def wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0", padding=MiB)  # four parts of a streamed write


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["title"] == "Storage unavailable"


def start_bytes(http, session, wheel) -> dict:
    data = wheel.read_bytes()
    return call(http, session["links"]["upload"], {"filename": wheel.name, "size": len(data), "hashes": {
        "sha256": hashlib.sha256(data).hexdigest()}, "mechanism": "http-post-bytes"}, 202).json()


def post_bytes(http, upload, data: bytes) -> httpx.Response:
    return http.post(upload["mechanism"]["file_url"], content=data,
                       headers={"Content-Type": "application/octet-stream"})


def sha256_of(http, url: str) -> str:
    response = http.get(url)
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def down_once_halfway(store: Proxy) -> threading.Thread:
    """The store goes away once ``store.cut_after`` bytes went to it: the connection that
    carried them, and every one after, until ``store.restore()``."""
    def watch():
        store.triggered.wait(60)
        store.fail("cut")
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_store_gone_mid_upload_keeps_nothing_and_the_same_post_then_succeeds(
        tmp_path, base, client, wheel, store, s3, bucket, dbsession, database_url, storage_dir):  # noqa: F811
    data = wheel.read_bytes()
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_bytes(client, session, wheel)
    store.cut_after, store.mode = 2 * PART, "hold"  # gone after its first part
    watcher = down_once_halfway(store)
    assert_unavailable(post_bytes(client, upload, data))
    watcher.join(10)
    assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "pending"
    assert dbsession.scalar(sa.select(FileUploadSession.received_size)) is None
    dbsession.rollback()
    # Its abort could not reach the store either: the begun multipart upload is the orphan
    # sweep's, and no object was written.
    store.restore()
    assert keys(s3, bucket) == []
    [orphan] = multipart_uploads(s3, bucket)

    assert post_bytes(client, upload, data).status_code == 204
    assert call(client, upload["links"]["complete"], expected=201).json()["status"] == "completed"
    call(client, session["links"]["publish"], expected=201)
    # The sweep drops the failed write's parts and leaves the file the retry stored.
    beat = make_app(database_url, storage_dir, store.url, bucket, **{"upload2.orphan_upload_age": "0",
                                                                     "upload2.s3_min_part_size": "1"})
    try:
        run_task(beat, "abort_orphan_uploads")
    finally:
        beat.registry["upload2.engine"].dispose()
    assert multipart_uploads(s3, bucket) == []
    assert keys(s3, bucket) == [orphan, orphan + ".metadata"]
    url = client.get(f"{base}/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()[
        "files"][0]["url"]
    assert sha256_of(client, url) == hashlib.sha256(data).hexdigest()


def test_a_stalled_store_refuses_an_append_and_the_upload_goes_on_from_its_offset(base, client, wheel,  # noqa: F811
                                                                                  store):
    data = wheel.read_bytes()
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_resumable(client, session, wheel)
    assert append(client, upload, data[:PART], 0, False).status_code == 204
    store.fail("hold")
    assert_unavailable(append(client, upload, data[PART:2 * PART], PART, False))
    state = client.head(upload["mechanism"]["file_url"])
    assert (state.headers["Upload-Offset"], state.headers["Upload-Complete"]) == (str(PART), "?0")

    store.restore()
    assert append(client, upload, data[PART:2 * PART], PART, False).status_code == 204
    assert append(client, upload, data[2 * PART:], 2 * PART, True).status_code == 204
    call(client, upload["links"]["complete"], expected=202)
    assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed"
    call(client, session["links"]["publish"], expected=201)
    listed = client.get(f"{base}/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert sha256_of(client, listed.json()["files"][0]["url"]) == hashlib.sha256(data).hexdigest()


def test_completion_and_downloads_answer_503_while_the_store_is_down(base, client, wheel, store,  # noqa: F811
                                                                     dbsession):
    data = wheel.read_bytes()
    session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
    upload = start_bytes(client, session, wheel)
    assert post_bytes(client, upload, data).status_code == 204
    store.fail("cut")
    # Completion reads the archive's metadata from the store.
    assert_unavailable(call(client, upload["links"]["complete"]))
    assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "pending"
    store.restore()
    call(client, upload["links"]["complete"], expected=201)

    stage = client.get(session["links"]["stage"] + "foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    staged_url = httpx.URL(session["links"]["stage"]).join(stage.json()["files"][0]["url"])
    store.fail("cut")
    assert_unavailable(client.get(staged_url))
    store.restore()
    assert sha256_of(client, staged_url) == hashlib.sha256(data).hexdigest()

    call(client, session["links"]["publish"], expected=201)
    listed = client.get(f"{base}/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    url = httpx.URL(f"{base}/simple/foo/").join(listed.json()["files"][0]["url"])
    store.fail("hold")
    assert_unavailable(client.get(url))
    store.restore()
    assert sha256_of(client, url) == hashlib.sha256(data).hexdigest()


def test_a_legacy_upload_while_the_store_is_down_keeps_nothing_and_then_succeeds(base, make_user, wheel, store,
                                                                                 s3, bucket, dbsession):
    body, content_type = encode([*twine_fields(wheel), ("content", (wheel.name, wheel.read_bytes()))])
    auth = ("__token__", make_user("alice"))
    store.fail("cut")
    response = httpx.post(base + "/legacy/", content=body, headers={"Content-Type": content_type}, auth=auth,
                          timeout=60)
    assert_unavailable(response)
    assert dbsession.scalars(sa.select(PublishingSession)).all() == []
    assert dbsession.scalars(sa.select(ReleaseFile)).all() == []
    dbsession.rollback()
    store.restore()
    assert keys(s3, bucket) == [] and multipart_uploads(s3, bucket) == []
    response = httpx.post(base + "/legacy/", content=body, headers={"Content-Type": content_type}, auth=auth,
                          timeout=60)
    assert response.status_code == 200, response.text
    assert dbsession.scalars(sa.select(ReleaseFile.filename)).all() == [wheel.name]


def test_a_worker_assembling_while_the_store_is_down_retries_until_it_is_back(
        tmp_path, database_url, storage_dir, store, bucket, own_redis, dbsession, make_user, wheel):  # noqa: F811
    ini = s3_ini(tmp_path, database_url, storage_dir, store, bucket, own_redis.url)
    worker = Worker(ini, tmp_path)
    worker.start()
    try:
        with gunicorn(ini) as base, httpx.Client(auth=("__token__", make_user("alice")), timeout=60) as client:
            data = wheel.read_bytes()
            session = call(client, base + "/2.0/", {"name": "foo", "version": "1.0"}, 201).json()
            upload = start_resumable(client, session, wheel)
            assert append(client, upload, data[:PART], 0, False).status_code == 204
            assert append(client, upload, data[PART:], PART, True).status_code == 204
            store.fail("cut")
            call(client, upload["links"]["complete"], expected=202)
            # The worker's verification cannot assemble the parts: it retries 1 s, then 2 s, ... later.
            wait_until(lambda: b"Retry in" in worker.log.read_bytes(), what="the worker to retry")
            assert client.get(upload["links"]["file-upload-session"]).json()["status"] == "processing"
            store.restore()
            assert settled(client, upload["links"]["file-upload-session"])["status"] == "completed", worker.tail()
    finally:
        worker.kill()
