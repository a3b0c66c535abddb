"""The S3 storage backend against a real S3 API (moto's server process, with S3's 5 MiB
minimum part size): streamed multipart writes, resumable appends as parts, several web hosts
sharing one bucket, aborted and orphaned multipart uploads, and presigned downloads."""

from __future__ import annotations

import collections
import hashlib
import json
import types
import urllib.request
import zipfile

import pytest
import webtest

from pypi_upload2 import main
from pypi_upload2.models import FileUploadSession
from pypi_upload2.services.archives import check_zip_member
from pypi_upload2.services.distributions import inspect_distribution, parse_filename
from pypi_upload2.services.members import MemberScan
from pypi_upload2.storage.ranged import TAIL
from pypi_upload2.storage.s3 import S3FileStorage
from tests.conftest import Uploader, assert_problem, build_wheel, fetch
from tests.functional.test_deferred import run_task
from tests.functional.test_resumable import head, patch, peak_allocated, start
from tests.s3 import keys, multipart_uploads, s3_settings

MiB = 1024 * 1024
PART = 5 * MiB
JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"


def make_app(database_url, storage_dir, s3_endpoint, s3_bucket, **extra):
    return main({}, **{"sqlalchemy.url": database_url, "upload2.storage": str(storage_dir),
                       **s3_settings(s3_endpoint, s3_bucket, **{"upload2.s3_part_size": str(PART), **extra})})


@pytest.fixture
def settings(database_url, storage_dir, s3_endpoint, s3_bucket):
    return {"sqlalchemy.url": database_url, "upload2.storage": str(storage_dir),
            **s3_settings(s3_endpoint, s3_bucket, **{"upload2.s3_part_size": str(PART)})}


@pytest.fixture
def session(alice):
    return alice.create_session("foo", "1.0").json


@pytest.fixture
def big_wheel(dist_dir):
    # Three parts of a streamed write, and three appends of the minimum size.
    return build_wheel(dist_dir, "foo", "1.0", padding=12 * MiB)


def blob_key(dbsession, upload: dict) -> str:
    file_id = int(upload["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[1])
    return fetch(dbsession, FileUploadSession, id=file_id).blob_key


def warm(wsgi_app) -> None:
    """Build the process's S3 client (its service model is megabytes) before measuring."""
    S3FileStorage.create_service(None, types.SimpleNamespace(registry=wsgi_app.registry))


def published_url(testapp, name: str = "foo") -> str:
    return testapp.get(f"/simple/{name}/", headers={"Accept": JSON_SIMPLE}).json["files"][0]["url"]


def test_http_post_bytes_streams_into_a_multipart_upload_with_its_hashes(alice, session, big_wheel, s3_api,
                                                                         s3_bucket, dbsession, storage_dir):
    data = big_wheel.read_bytes()
    file_session = alice.start_file(session, big_wheel).json
    alice.send_bytes(file_session, data)
    assert alice.post(file_session["links"]["complete"], status=201).json["status"] == "completed"
    key = blob_key(dbsession, file_session)
    stored = s3_api.get_object(Bucket=s3_bucket, Key=key)
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert stored["ETag"].strip('"').endswith("-3")  # sent as three parts, not one buffered PUT
    assert keys(s3_api, s3_bucket) == [key, key + ".metadata"]
    assert multipart_uploads(s3_api, s3_bucket) == []
    assert not list(storage_dir.iterdir())  # nothing on the local disk


def test_too_many_bytes_abort_the_multipart_upload_and_keep_nothing(alice, session, big_wheel, s3_api, s3_bucket):
    file_session = alice.start_file(session, big_wheel, size=6 * MiB).json
    response = alice.send_bytes(file_session, big_wheel.read_bytes(), status=413)
    assert_problem(response, 413)
    assert keys(s3_api, s3_bucket) == []
    assert multipart_uploads(s3_api, s3_bucket) == []


def test_an_http_post_bytes_upload_holds_parts_not_the_file(alice, dist_dir, wsgi_app):
    warm(wsgi_app)
    peaks = {}
    for size in (24, 96):
        session = alice.create_session("foo", f"{size}.0").json
        wheel = build_wheel(dist_dir, "foo", f"{size}.0", tag="py2-none-any", padding=size * MiB)
        file_session = alice.start_file(session, wheel).json
        request = webtest.TestRequest.blank(file_session["mechanism"]["file_url"], method="POST", headers={
            **alice.headers, "Content-Type": "application/octet-stream"})
        response, peaks[size] = peak_allocated(wsgi_app, request, wheel)
        assert response.status_int == 204, response.body
    # Two part buffers taking turns, the chunks being hashed, the client's own buffers: 16.3
    # MiB at either size, and the same at both whenever the garbage collector runs.
    assert abs(peaks[96] - peaks[24]) < MiB, {size: f"{peak / MiB:.1f} MiB" for size, peak in peaks.items()}
    assert peaks[96] < 2 * PART + 8 * MiB, f"{peaks[96] / MiB:.1f} MiB allocated for a 96 MiB upload"


def test_resumable_appends_advertise_and_enforce_the_minimum_part(alice, session, big_wheel, s3_api, s3_bucket,
                                                                  dbsession):
    data = big_wheel.read_bytes()
    upload = start(alice, session, big_wheel)
    assert f"min-append-size={PART}" in head(alice, upload).headers["Upload-Limit"]
    response = patch(alice, upload, data[:1000], 0, False, status=400)
    body = assert_problem(response, 400, "Content-Length")
    assert body["title"] == "Append too small" and f"{PART}" in body["detail"]
    assert f"min-append-size={PART}" in response.headers["Upload-Limit"]
    assert head(alice, upload).headers["Upload-Offset"] == "0"
    # Two parts of the minimum size, then the smaller last one.
    for offset in (0, PART):
        patch(alice, upload, data[offset:offset + PART], offset, False)
    assert len(s3_api.list_parts(Bucket=s3_bucket, Key=blob_key(dbsession, upload),
                                 UploadId=s3_api.list_multipart_uploads(Bucket=s3_bucket)["Uploads"][0]["UploadId"])
               ["Parts"]) == 2
    patch(alice, upload, data[2 * PART:], 2 * PART, True)
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    key = blob_key(dbsession, upload)
    assert s3_api.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data
    assert multipart_uploads(s3_api, s3_bucket) == []


def test_a_part_of_an_append_that_did_not_commit_is_replaced(alice, session, big_wheel, s3_api, s3_bucket, dbsession):
    data = big_wheel.read_bytes()
    upload = start(alice, session, big_wheel)
    patch(alice, upload, data[:PART], 0, False)
    # An append past the declared size is refused after its part was stored: never acknowledged.
    key = blob_key(dbsession, upload)
    upload_id = s3_api.list_multipart_uploads(Bucket=s3_bucket)["Uploads"][0]["UploadId"]
    s3_api.upload_part(Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"x" * PART)
    patch(alice, upload, data[PART:], PART, True)
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    assert s3_api.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data


def test_appends_on_one_host_list_the_store_once(alice, session, big_wheel, s3_api, s3_bucket, dbsession,
                                                wsgi_app):
    """The host that made an append knows the upload and its parts at the offset it ended at:
    its next appends list neither the uploads nor the parts."""
    listed = collections.Counter()
    client = wsgi_app.registry["upload2.s3_storage"].client
    for operation in ("ListMultipartUploads", "ListParts"):
        client.meta.events.register(f"before-call.s3.{operation}",
                                    lambda operation=operation, **_: listed.update([operation]))
    data = big_wheel.read_bytes()
    upload = start(alice, session, big_wheel)
    patch(alice, upload, data[:PART], 0, False)
    assert listed == {"ListMultipartUploads": 1}  # the first append: is an upload begun already?
    patch(alice, upload, data[PART:2 * PART], PART, False)
    patch(alice, upload, data[2 * PART:], 2 * PART, True)
    assert listed == {"ListMultipartUploads": 1}
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    assert s3_api.get_object(Bucket=s3_bucket, Key=blob_key(dbsession, upload))["Body"].read() == data


def test_an_append_after_the_upload_was_replaced_in_the_store_lists_it_on_retry(alice, session, big_wheel, s3_api,
                                                                                s3_bucket, dbsession):
    data = big_wheel.read_bytes()
    upload = start(alice, session, big_wheel)
    patch(alice, upload, data[:PART], 0, False)
    # The store's upload replaced under the host's knowledge by one holding the same first part.
    key = blob_key(dbsession, upload)
    known = s3_api.list_multipart_uploads(Bucket=s3_bucket)["Uploads"][0]["UploadId"]
    s3_api.abort_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=known)
    other = s3_api.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    s3_api.upload_part(Bucket=s3_bucket, Key=key, UploadId=other, PartNumber=1, Body=data[:PART])
    # The append to the upload the host knew fails and keeps nothing (moto answers 500 where S3
    # answers 404); its retry lists the store and goes on in the upload it holds now.
    assert_problem(patch(alice, upload, data[PART:], PART, True, status=503), 503)
    assert head(alice, upload).headers["Upload-Offset"] == str(PART)
    patch(alice, upload, data[PART:], PART, True)
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
    assert s3_api.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data
    assert multipart_uploads(s3_api, s3_bucket) == []


def test_two_hosts_share_the_database_and_the_bucket(database_url, tmp_path, s3_endpoint, s3_bucket, s3_api,
                                                     make_user, dbsession, big_wheel):
    """Create on A, append on A and B in turn, complete and publish on B, download from A."""
    token = make_user("alice")
    apps = []
    for host in ("a", "b"):
        (tmp_path / host / "spool").mkdir(parents=True)
        apps.append(make_app(database_url, tmp_path / host / "files", s3_endpoint, s3_bucket,
                             **{"upload2.s3_spool_dir": str(tmp_path / host / "spool")}))
    a, b = (Uploader(webtest.TestApp(app), token) for app in apps)
    try:
        data = big_wheel.read_bytes()
        session = a.create_session("foo", "1.0").json
        upload = start(a, session, big_wheel)
        for host, offset in zip((a, b, a), range(0, len(data), PART)):
            part = data[offset:offset + PART]
            patch(host, upload, part, offset, offset + len(part) == len(data))
        b.post(upload["links"]["complete"], status=202)
        assert b.get(upload["links"]["file-upload-session"]).json["status"] == "completed"
        assert b.publish(session).json["status"] == "published"
        for host in (a, b):
            assert host.app.get(published_url(host.app)).body == data
            assert not (tmp_path / "a" / "files").exists() or not list((tmp_path / "a" / "files").rglob("*.whl"))
        assert [p for host in "ab" for p in (tmp_path / host / "spool").iterdir()] == []
    finally:
        for app in apps:
            app.registry["upload2.engine"].dispose()


def test_canceling_a_resumable_upload_aborts_its_multipart_upload(alice, session, big_wheel, s3_api, s3_bucket):
    upload = start(alice, session, big_wheel)
    patch(alice, upload, big_wheel.read_bytes()[:PART], 0, False)
    assert len(multipart_uploads(s3_api, s3_bucket)) == 1
    alice.app.delete(upload["mechanism"]["file_url"], headers=alice.headers, status=204)
    assert multipart_uploads(s3_api, s3_bucket) == []
    assert keys(s3_api, s3_bucket) == []


def test_the_periodic_sweep_aborts_multipart_uploads_nobody_owns(alice, session, big_wheel, s3_api, s3_bucket,
                                                                 dbsession, database_url, storage_dir, s3_endpoint):
    upload = start(alice, session, big_wheel)
    patch(alice, upload, big_wheel.read_bytes()[:PART], 0, False)
    live = blob_key(dbsession, upload)
    for orphan in ("sessions/999/999", "legacy/0123abcd"):  # a file long gone; a legacy request that died
        s3_api.create_multipart_upload(Bucket=s3_bucket, Key=orphan)
    # A beat of its own, for which every upload is old enough.
    beat = make_app(database_url, storage_dir, s3_endpoint, s3_bucket, **{"upload2.orphan_upload_age": "0"})
    try:
        run_task(beat, "abort_orphan_uploads")
    finally:
        beat.registry["upload2.engine"].dispose()
    assert multipart_uploads(s3_api, s3_bucket) == [live]
    # The live upload carries on.
    data = big_wheel.read_bytes()
    patch(alice, upload, data[PART:], PART, True)
    alice.post(upload["links"]["complete"], status=202)
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "completed"


def test_downloads_redirect_to_presigned_urls(database_url, storage_dir, s3_endpoint, s3_bucket, make_user,
                                              dbsession, big_wheel):
    app = make_app(database_url, storage_dir, s3_endpoint, s3_bucket, **{"upload2.storage_redirect": "true"})
    try:
        alice = Uploader(webtest.TestApp(app), make_user("alice"))
        session = alice.create_session("foo", "1.0").json
        alice.upload(session, big_wheel)
        staged = alice.app.get(session["links"]["stage"] + "foo/", headers={"Accept": JSON_SIMPLE}).json["files"][0]
        stage = alice.app.get(staged["url"], status=302)
        alice.publish(session)
        public = alice.app.get(published_url(alice.app), status=302)
        for response in (stage, public):
            location = response.headers["Location"]
            assert location.startswith(s3_endpoint + "/") and "Signature=" in location
            with urllib.request.urlopen(location) as reply:
                assert reply.read() == big_wheel.read_bytes()
                assert reply.headers["Content-Disposition"] == f'attachment; filename="{big_wheel.name}"'
        metadata = alice.app.get(published_url(alice.app) + ".metadata", status=302).headers["Location"]
        with urllib.request.urlopen(metadata) as reply:
            assert b"Name: foo" in reply.read()
    finally:
        app.registry["upload2.engine"].dispose()


def test_downloads_stream_from_the_bucket_without_redirects(alice, session, big_wheel, testapp):
    alice.upload(session, big_wheel)
    alice.publish(session)
    response = testapp.get(published_url(testapp))
    assert response.body == big_wheel.read_bytes()
    assert response.content_length == big_wheel.stat().st_size
    assert json.loads(testapp.get("/simple/foo/", headers={"Accept": JSON_SIMPLE}).body)["files"]


@pytest.mark.parametrize("size", [12, 48])
def test_a_resumable_append_is_spooled_not_held_in_memory(alice, session, dist_dir, wsgi_app, size):
    wheel = build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any", padding=size * MiB)
    upload = start(alice, session, wheel)
    request = webtest.TestRequest.blank(upload["mechanism"]["file_url"], method="PATCH", headers={
        **alice.headers, "Content-Type": "application/partial-upload", "Upload-Offset": "0",
        "Upload-Complete": "?1"})
    warm(wsgi_app)
    response, peak = peak_allocated(wsgi_app, request, wheel)
    assert response.status_int == 204, response.body
    # The spool's first MiB in memory, then its file: 3.3 MiB at 12 MiB and at 48 MiB.
    assert peak < 5 * MiB, f"{peak / MiB:.1f} MiB allocated for a {size} MiB append"


def test_parts_lost_in_the_store_fail_the_file_with_a_notice(alice, session, big_wheel, s3_api, s3_bucket,
                                                             dbsession):
    data = big_wheel.read_bytes()
    upload = start(alice, session, big_wheel)
    patch(alice, upload, data[:PART], 0, False)
    patch(alice, upload, data[PART:], PART, True)
    # Someone aborted the upload in the store and began another under the same key.
    key = blob_key(dbsession, upload)
    lost = s3_api.list_multipart_uploads(Bucket=s3_bucket)["Uploads"][0]["UploadId"]
    s3_api.abort_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=lost)
    other = s3_api.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    s3_api.upload_part(Bucket=s3_bucket, Key=key, UploadId=other, PartNumber=1, Body=b"x" * 10)
    alice.post(upload["links"]["complete"], status=202)
    body = alice.get(upload["links"]["file-upload-session"]).json
    assert body["status"] == "error"
    assert "could not be assembled" in body["notices"][-1]
    assert multipart_uploads(s3_api, s3_bucket) == []  # the failure purged them


def test_small_reads_are_ranged_and_a_sequential_scan_is_one_request(s3_api, s3_bucket, big_wheel):
    """And reads in the object's last MiB come from one GET of it, kept."""
    data = big_wheel.read_bytes()
    s3_api.put_object(Bucket=s3_bucket, Key="wheel", Body=data)
    storage = S3FileStorage(s3_api, s3_bucket)
    ranges = []
    s3_api.meta.events.register("before-call.s3.GetObject", lambda params, **kw: ranges.append(params["headers"]["Range"]))
    with storage.open("wheel") as fh:
        fh.seek(len(data) - 100)
        assert fh.read(100) == data[-100:]
        fh.seek(len(data) - TAIL + 5)
        assert fh.read(1000) == data[len(data) - TAIL + 5:len(data) - TAIL + 1005]
        fh.seek(0)
        assert b"".join(iter(lambda: fh.read(MiB), b"")) == data
        fh.seek(3 * MiB)
        assert fh.read(MiB) + fh.read(10) == data[3 * MiB:4 * MiB + 10]
    # The tail for both small reads in it; one GET to the end for each sequential scan.
    assert ranges == [f"bytes={len(data) - TAIL}-{len(data) - 1}", f"bytes=0-{len(data) - 1}",
                      f"bytes={3 * MiB}-{len(data) - 1}"]
    # Inspecting the wheel (its central directory, METADATA, every member inflated) reads
    # it in a handful of requests, not one per MiB.
    ranges.clear()
    with storage.open("wheel") as fh, zipfile.ZipFile(fh) as zf:
        for info in zf.infolist():
            check_zip_member(zf, info)
    assert len(ranges) < 8, ranges
    # What a completion reads of a wheel whose members were scanned as it arrived: its first
    # block and its tail (central directory, METADATA, WHEEL).
    scan = MemberScan(1 << 30, 100)
    scan.update(data)
    ranges.clear()
    with storage.open("wheel") as fh:
        assert inspect_distribution(fh, parse_filename(big_wheel.name), scanned_members=scan.hexdigest()).name == "foo"
    assert ranges == [f"bytes={len(data) - TAIL}-{len(data) - 1}", "bytes=0-262143"], ranges
