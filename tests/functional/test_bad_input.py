"""Bad input through the full app: hostile archives over http-post-bytes, the resumable
mechanism and the legacy form; hostile JSON, numbers, headers and filenames. Every refusal is
a 4xx problem that leaves no stored bytes and no release, file or filename rows behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.parse

import pytest
import sqlalchemy as sa
import webtest

from pypi_upload2.builtin.models import Filename, ReleaseFile
from pypi_upload2.mechanisms.resumable import IDENTIFIER as RESUMABLE
from pypi_upload2.models import FileUploadSession
from tests.conftest import CT, META, Uploader, assert_problem, count, stored
from tests.functional.test_legacy import (  # noqa: F401
    Legacy,
    encode,
    snapshot,
    twine_fields,
)
from tests.functional.test_resumable import PARTIAL
from tests.hostile import (
    MiB,
    entry,
    gzip_with_zeros,
    sdist_bytes,
    sdist_members,
    tar_header,
    wheel_entries,
    write_zip,
    zeros_entry,
)

WHEEL, SDIST = "foo-1.0-py3-none-any.whl", "foo-1.0.tar.gz"


def _symlink_wheel() -> bytes:
    return write_zip(wheel_entries() + [entry("foo/link", b"/etc/passwd", mode=0o120777)])


HOSTILE = {
    "lying-zip-sizes": (WHEEL, lambda: write_zip(wheel_entries() + [zeros_entry("foo/z.bin", 64, declared=10)]),
                        "inflates to more than the 10 bytes"),
    "zip-bomb": (WHEEL, lambda: write_zip(wheel_entries() + [zeros_entry("foo/z.bin", 1024)]),
                 "inflates to more than 1073741824 bytes"),
    "trailing-data": (WHEEL, lambda: write_zip(wheel_entries(), suffix=b"x" * 64), "data after the end"),
    "prepended-data": (WHEEL, lambda: write_zip(wheel_entries(), prefix=b"MZ" + bytes(62)), "does not start"),
    "encrypted": (WHEEL, lambda: write_zip(wheel_entries() + [entry("foo/s.py", b"", flags=1)]), "encrypted"),
    "zip-symlink": (WHEEL, _symlink_wheel, "not a regular file"),
    "nul-in-name": (WHEEL, lambda: write_zip(wheel_entries() + [entry(b"foo/a\0.py", b"")]), "control character"),
    "two-records": (WHEEL, lambda: write_zip(wheel_entries() + [entry("foo-1.0.dist-info/RECORD", b"")]),
                    "duplicate member names"),
    "pax-bomb": (SDIST, lambda: gzip_with_zeros(sdist_members() + tar_header("foo-1.0/x", 64 * MiB, tarfile.XHDTYPE),
                                                64), "tar header or member read larger than"),
    "tar-bomb": (SDIST, lambda: gzip_with_zeros(sdist_members() + tar_header("foo-1.0/z", 1024 * MiB), 1024),
                 "inflates to more than 1073741824 bytes"),
    "gzip-members": (SDIST, lambda: sdist_bytes() + gzip.compress(b"", mtime=0) * 64, "more than 16 members"),
}


def no_leftovers(dbsession, storage_dir) -> None:
    assert stored(storage_dir) == []
    assert count(dbsession, ReleaseFile) == 0 and count(dbsession, Filename) == 0


@pytest.fixture
def session(alice):
    return alice.create_session("foo", "1.0").json


def declare(alice, session, filename: str, data: bytes, mechanism: str = "http-post-bytes") -> dict:
    body = {"filename": filename, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": mechanism}
    return alice.post(session["links"]["upload"], body, status=202).json


# --- hostile archives, through each door ---------------------------------------------------------

@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_over_http_post_bytes_fails_and_keeps_nothing(alice, session, dbsession, storage_dir, case):
    filename, build, reason = HOSTILE[case]
    data = build()
    upload = declare(alice, session, filename, data)
    alice.send_bytes(upload, data)
    problem = assert_problem(alice.post(upload["links"]["complete"], status=400), 400, filename)
    assert reason in problem["detail"]
    assert alice.get(upload["links"]["file-upload-session"]).json["status"] == "error"
    no_leftovers(dbsession, storage_dir)


@pytest.mark.parametrize("case", ["lying-zip-sizes", "pax-bomb", "gzip-members"])
def test_a_hostile_archive_over_the_resumable_mechanism_fails_and_keeps_nothing(alice, session, dbsession,
                                                                                storage_dir, case):
    filename, build, reason = HOSTILE[case]
    data = build()
    upload = declare(alice, session, filename, data, RESUMABLE)
    alice.app.patch(upload["mechanism"]["file_url"], data, status=204, content_type=PARTIAL,
                    headers={**alice.headers, "Upload-Offset": "0", "Upload-Complete": "?1"})
    alice.post(upload["links"]["complete"], status=202)  # verified by a task, run after the commit
    status = alice.get(upload["links"]["file-upload-session"]).json
    assert status["status"] == "error" and reason in status["notices"][-1]
    no_leftovers(dbsession, storage_dir)


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_over_the_legacy_form_changes_nothing(legacy_alice, dbsession, storage_dir, dist_dir, case):
    filename, build, reason = HOSTILE[case]
    path = dist_dir / filename
    path.write_bytes(build())
    before = snapshot(dbsession, storage_dir)
    response = legacy_alice.upload(path, 400)
    assert response.status.startswith("400 archive: ") and reason in response.status
    assert snapshot(dbsession, storage_dir) == before


@pytest.fixture
def legacy_alice(testapp, make_user):
    return Legacy(testapp, make_user("alice"))


# --- JSON bodies ------------------------------------------------------------------------------------

def json_urls(alice, session) -> dict[str, str]:
    upload = declare(alice, session, WHEEL, b"x" * 10)
    return {"root": "/2.0/", "upload": session["links"]["upload"], "publish": session["links"]["publish"],
            "extend": session["links"]["extend"], "complete": upload["links"]["complete"],
            "file-extend": upload["links"]["extend"]}


def post_raw(alice, url: str, raw: bytes, status, **headers):
    return alice.app.post(url, raw, status=status, headers={**alice.headers, "Content-Type": CT, **headers})


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


BAD_BODIES = {
    "duplicate-key": b'{"meta": {"api-version": "2.0"}, "meta": {"api-version": "2.0"}}',
    "duplicate-nested-key": b'{"meta": {"api-version": "2.0", "api-version": "2.0"}}',
    "nan": b'{"meta": {"api-version": "2.0"}, "x": NaN}',
    "infinity": b'{"meta": {"api-version": "2.0"}, "x": -Infinity}',
    "utf-16": json.dumps({"meta": META}).encode("utf-16"),
    "utf-32": json.dumps({"meta": META}).encode("utf-32-le"),
    "latin-1": b'{"meta": {"api-version": "2.0"}, "x": "\xe9"}',
    "bom": b"\xef\xbb\xbf" + json.dumps({"meta": META}).encode(),
    "too-deep": json.dumps({"meta": {**META, "_x": nested(40)}}).encode(),
    "recursion": b'{"meta": {"api-version": "2.0"}, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    "huge-number": b'{"meta": {"api-version": "2.0"}, "x": 1' + b"0" * 5000 + b"}",
    "top-level-array": b'[{"meta": {"api-version": "2.0"}}]',
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_hostile_json_is_400_on_every_json_endpoint(alice, session, case):
    for link, url in json_urls(alice, session).items():
        assert_problem(post_raw(alice, url, BAD_BODIES[case], 400), 400, "body"), (case, link)


def test_the_json_body_limit_is_a_setting(make_app, make_user):
    alice = Uploader(make_app(**{"upload2.max_json_body": "300"}), make_user("alice"))
    alice.create_session("foo", "1.0")
    padded = json.dumps({"meta": META, "name": "foo", "version": "2.0", "_pad": "x" * 300}).encode()
    problem = assert_problem(post_raw(alice, "/2.0/", padded, 413), 413, "body")
    assert "at most 300 bytes" in problem["detail"]


WRONG_TYPES = [
    ("root", "name", [1, ["foo"], {"a": 1}, True, None]),
    ("root", "version", [1.0, ["1.0"], False, " 2.0", "2.0\n", "2.0\r\nX: y", "\t2.0"]),
    ("upload", "filename", [1, [WHEEL], {"a": WHEEL}]),
    ("upload", "size", ["10", 10.0, 1e3, True, [10], {"n": 10}, -1, 0]),
    ("upload", "hashes", ["sha256", ["a" * 64], {"sha256": 1}, {"sha256": ["a" * 64]}, {}]),
    ("upload", "mechanism", [1, ["http-post-bytes"], None]),
    ("extend", "extend-for", ["60", 60.0, 1e400, True, -1, [60]]),
    ("file-extend", "extend-for", ["60", 60.5, False, -5, None]),
]


@pytest.mark.parametrize(("link", "key", "values"), WRONG_TYPES)
def test_a_wrong_type_or_value_for_each_field_is_400_naming_it(alice, session, link, key, values):
    valid = {
        "root": {"name": "foo", "version": "2.0"},
        "upload": {"filename": "foo-1.0-py2-none-any.whl", "size": 10, "hashes": {"sha256": "a" * 64},
                   "mechanism": "http-post-bytes"},
        "extend": {"extend-for": 60}, "file-extend": {"extend-for": 60},
    }[link]
    url = json_urls(alice, session)[link]
    for value in values:
        body = {**valid, key: value}
        raw = json.dumps({"meta": META, **body}).replace("Infinity", "1e400").encode()
        response = post_raw(alice, url, raw, 400)
        assert_problem(response, 400)
        assert {e["source"] for e in response.json["errors"]} & {key, f"{key}.sha256", "hashes"}, (key, value)


@pytest.mark.parametrize("size", [2**63, 2**64 + 1, 10**30])
def test_a_size_beyond_the_limit_or_a_bigint_is_413_and_stores_nothing(alice, session, dbsession, storage_dir, size):
    body = {"filename": WHEEL, "size": size, "hashes": {"sha256": "a" * 64}, "mechanism": "http-post-bytes"}
    assert_problem(alice.post(session["links"]["upload"], body, status=413), 413, "size")
    assert alice.get(session["links"]["session"]).json["files"] == {}


@pytest.mark.parametrize("seconds", [2**63, 10**30])
def test_a_huge_extend_for_is_capped_not_an_overflow(alice, session, seconds):
    extended = alice.post(session["links"]["extend"], {"extend-for": seconds}).json
    assert extended["expires-at"] > session["expires-at"]


# --- headers ---------------------------------------------------------------------------------------

def send(app, url: str, method: str, body: bytes, length: str, headers: dict):
    """A request whose CONTENT_LENGTH is ``length`` as is: WebTest sets it from the body, and
    its lint refuses one that is not a number (as a front server may not)."""
    request = webtest.TestRequest.blank(url, method=method, headers=headers)
    request.environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": length.encode().decode("latin-1")})
    return webtest.TestApp(app.app, lint=False).do_request(request, status=400)


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "\u0663", "+5", "-0"])
def test_a_content_length_that_is_not_a_number_is_400_everywhere(alice, session, legacy_alice, dist_dir,
                                                                 dbsession, storage_dir, length):
    data = write_zip(wheel_entries())
    upload = declare(alice, session, WHEEL, data)
    resumable = declare(alice, session, "foo-1.0-py2-none-any.whl", data, RESUMABLE)
    requests = [
        (upload["mechanism"]["file_url"], "POST", "application/octet-stream", {}),
        (resumable["mechanism"]["file_url"], "PATCH", PARTIAL, {"Upload-Offset": "0", "Upload-Complete": "?1"}),
        (session["links"]["extend"], "POST", CT, {}),
    ]
    for url, method, content_type, headers in requests:
        response = send(alice.app, url, method, data, length, {**alice.headers, "Content-Type": content_type,
                                                               **headers})
        assert_problem(response, 400, "Content-Length")
    path = dist_dir / WHEEL
    path.write_bytes(data)
    body, content_type = encode(twine_fields(path) + [("content", (WHEEL, data))])
    legacy = send(alice.app, "/legacy/", "POST", body, length, {**alice.headers, "Content-Type": content_type})
    assert legacy.status.startswith("400 Content-Length must be")
    status = alice.get(session["links"]["session"]).json
    assert {f["status"] for f in status["files"].values()} == {"pending"}
    no_leftovers(dbsession, storage_dir)


@pytest.mark.parametrize("offset", ["-1", "1e3", "9" * 20, "0x10", "\u0660"])
def test_an_upload_offset_out_of_range_is_400_and_writes_nothing(alice, session, dbsession, storage_dir, offset):
    data = write_zip(wheel_entries())
    upload = declare(alice, session, WHEEL, data, RESUMABLE)
    response = alice.app.patch(upload["mechanism"]["file_url"], data, status=400, content_type=PARTIAL,
                               headers={**alice.headers, "Upload-Offset": offset, "Upload-Complete": "?1"})
    assert_problem(response, 400, "Upload-Offset")
    assert stored(storage_dir) == []


def test_an_upload_length_other_than_the_declared_size_is_400(alice, session):
    data = write_zip(wheel_entries())
    upload = declare(alice, session, WHEEL, data, RESUMABLE)
    for length in (str(len(data) + 1), "0", "9" * 15):
        response = alice.app.patch(upload["mechanism"]["file_url"], data, status=400, content_type=PARTIAL,
                                   headers={**alice.headers, "Upload-Offset": "0", "Upload-Complete": "?1",
                                            "Upload-Length": length})
        assert_problem(response, 400, "Upload-Length")


# --- filenames -------------------------------------------------------------------------------------

BAD_FILENAMES = [
    'foo-1.0-py3-none-any";x=.whl',  # would end a quoted Content-Disposition filename
    "foo-1.0-1;x-py3-none-any.whl",
    "foo-1.0-py3-none-an\u00e9.whl",  # not ASCII
    "foo-1.0-py3-none-any\u2028.whl",  # a line separator
    "foo-1.0-py3-none-\u202eany.whl",  # right-to-left override
    "foo-1.0-py3-none-\uff41ny.whl",  # a fullwidth look-alike
    "foo-1.0-py3-none-a\u0301ny.whl",  # NFD: a combining accent
    "foo-1.0-py3-none-a%0d%0any.whl",
    "foo-1.0-py3-none-any\r\nX-Injected: 1.whl",
    "foo-1.0-py3-none-any/x.whl",
    "foo-1.0-py3-none-" + "a" * 240 + ".whl",
]


@pytest.mark.parametrize("filename", BAD_FILENAMES)
def test_a_filename_with_unsafe_characters_is_400(alice, session, filename):
    body = {"filename": filename, "size": 10, "hashes": {"sha256": "a" * 64}, "mechanism": "http-post-bytes"}
    assert_problem(alice.post(session["links"]["upload"], body, status=400), 400, "filename")
    assert alice.get(session["links"]["session"]).json["files"] == {}


@pytest.mark.parametrize("filename", [f for f in BAD_FILENAMES if "\r" not in f]
                         + ["dir/foo-1.0-py3-none-any.whl"])
def test_a_form_filename_with_unsafe_characters_is_400_and_stores_nothing(legacy_alice, dist_dir, dbsession,
                                                                          storage_dir, filename):
    path = dist_dir / WHEEL
    path.write_bytes(write_zip(wheel_entries()))
    fields = twine_fields(path, name="foo", version="1.0")
    body, content_type = encode(fields + [("content", (filename.replace('"', "%22"), path.read_bytes()))])
    before = snapshot(dbsession, storage_dir)
    response = legacy_alice.app.post("/legacy/", body, status=400,
                                     headers={**legacy_alice.headers, "Content-Type": content_type})
    assert response.status.startswith("400 ")
    assert snapshot(dbsession, storage_dir) == before


@pytest.mark.parametrize("header, value, status", [
    ("Content-Type", CT + "\xff", 415), ("Content-Type", "application/vnd.pypi.upload.v2+json\u00e9", 415),
    ("Authorization", "Basic \xff\xfe", 401)])
def test_a_header_that_is_not_ascii_is_a_4xx_problem(alice, header, value, status):
    body = json.dumps({"meta": META, "name": "foo", "version": "1.0"}).encode()
    response = alice.app.post("/2.0/", body, status=status, headers={**alice.headers, "Content-Type": CT,
                                                                    header: value.encode().decode("latin-1")})
    assert_problem(response, status, header)


def test_an_sdist_with_a_zip_appended_is_refused(legacy_alice, dist_dir, dbsession, storage_dir):
    # Unzip tools look for the end record at the end of the file: a zip after the gzip stream
    # would be a second archive in the file.
    path = dist_dir / SDIST
    path.write_bytes(sdist_bytes() + write_zip(wheel_entries()))
    before = snapshot(dbsession, storage_dir)
    assert legacy_alice.upload(path, 400).status.startswith("400 archive: The file is not a valid sdist")
    assert snapshot(dbsession, storage_dir) == before


def test_a_form_filename_that_is_not_utf8_is_400(legacy_alice, dist_dir, dbsession, storage_dir):
    path = dist_dir / WHEEL
    path.write_bytes(write_zip(wheel_entries()))
    body, content_type = encode(twine_fields(path) + [("content", ("FILENAME", path.read_bytes()))])
    body = body.replace(b"FILENAME", b"foo-1.0-py3-none-\xff\xfe.whl")
    before = snapshot(dbsession, storage_dir)
    legacy_alice.app.post("/legacy/", body, status=400, headers={**legacy_alice.headers, "Content-Type": content_type})
    assert snapshot(dbsession, storage_dir) == before


def test_a_form_field_that_is_not_utf8_is_400(legacy_alice, dist_dir, dbsession, storage_dir):
    path = dist_dir / WHEEL
    path.write_bytes(write_zip(wheel_entries()))
    body, content_type = encode(twine_fields(path, version="VERSION") + [("content", (WHEEL, path.read_bytes()))])
    before = snapshot(dbsession, storage_dir)
    response = legacy_alice.app.post("/legacy/", body.replace(b"VERSION", b"1.0\xff"), status=400,
                                     headers={**legacy_alice.headers, "Content-Type": content_type})
    assert response.status == "400 The 'version' field is not UTF-8 text."
    assert snapshot(dbsession, storage_dir) == before


@pytest.mark.parametrize("segment", ["%ff", "%C3%28", "%00", "..%2f..%2fetc%2fpasswd", "%0d%0aX:%201"])
def test_percent_encoded_garbage_in_a_stage_filename_is_a_4xx_problem(alice, session, testapp, segment):
    data = write_zip(wheel_entries())
    upload = declare(alice, session, WHEEL, data)
    alice.send_bytes(upload, data)
    alice.post(upload["links"]["complete"], status=201)
    file_id = upload["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[1]
    url = f"/2.0/stage/{session['session-token']}/files/{file_id}/{segment}"
    response = testapp.get(url, status="4*")
    assert response.status_int in (400, 404)
    assert_problem(response, response.status_int, "url")


def test_a_stored_filename_from_before_the_check_is_percent_encoded_in_content_disposition(alice, session, dbsession,
                                                                                          testapp):
    data = write_zip(wheel_entries())
    upload = declare(alice, session, WHEEL, data)
    alice.send_bytes(upload, data)
    alice.post(upload["links"]["complete"], status=201)
    file_id = int(upload["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[1])
    hostile = 'foo-1.0-py3-none-any";\r\nX-Injected: 1.whl'
    dbsession.execute(sa.update(FileUploadSession).where(FileUploadSession.id == file_id).values(filename=hostile))
    dbsession.commit()
    url = f"/2.0/stage/{session['session-token']}/files/{file_id}/{urllib.parse.quote(hostile, safe='')}"
    response = testapp.get(url)
    assert response.body == data and "X-Injected" not in response.headers
    assert response.headers["Content-Disposition"] == (
        "attachment; filename*=UTF-8''foo-1.0-py3-none-any%22%3B%0D%0AX-Injected%3A%201.whl")
