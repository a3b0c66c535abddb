"""Every 2.0 error is an RFC 9457 problem: unknown URLs, wrong methods, wrong Content-Type,
malformed JSON, missing keys, the api-version, and authentication (401)."""

from __future__ import annotations

import base64
import json

import pytest
import webtest

from pypi_upload2 import main
from pypi_upload2.builtin.models import ApiToken
from tests.conftest import CT, META, PROBLEM, assert_problem, basic, build_wheel


@pytest.fixture
def session(alice):
    return alice.create_session("foo", "1.0").json


@pytest.fixture
def file(alice, session, dist_dir):
    return alice.start_file(session, build_wheel(dist_dir, "foo", "1.0")).json


def post_as_is(uploader, url, body: dict, status):
    """POST ``body`` without the ``meta`` the Uploader helper adds."""
    return uploader.app.post(url, json.dumps(body), status=status, headers={**uploader.headers, "Content-Type": CT})


def urls(session, file) -> dict[str, str]:
    """Every 2.0 URL the API hands out, by the name of its link."""
    return {
        "root": "/2.0/",
        "session": session["links"]["session"],
        "upload": session["links"]["upload"],
        "publish": session["links"]["publish"],
        "extend": session["links"]["extend"],
        "file-upload-session": file["links"]["file-upload-session"],
        "complete": file["links"]["complete"],
        "file-extend": file["links"]["extend"],
        "file_url": file["mechanism"]["file_url"],
        "vnd-upload2-preflight": session["links"]["vnd-upload2-preflight"],
        "vnd-upload2-diff": session["links"]["vnd-upload2-diff"],
        # Linked only while a publish is scheduled; the route is there all along.
        "vnd-upload2-unschedule": session["links"]["session"] + "unschedule",
    }


# --- 404 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/2.0/nothing", "/2.0/sessions/", "/2.0/sessions", "/2.0/stage/",
                                  "/2.0/sessions/x/y/z/", "/2.0/stage/not-a-token/",
                                  "/2.0/stage/not-a-token/foo/"])
def test_unknown_urls_under_the_root_are_404_problems(testapp, path):
    for method in ("get", "post", "delete"):
        response = getattr(testapp, method)(path, status=404)
        assert_problem(response, 404, "url")


def test_unknown_sessions_and_files_are_404_problems(alice, session, file):
    token = session["session-token"]
    base = session["links"]["session"].replace(token, "x" * len(token))
    assert_problem(alice.get(base, status=404), 404, "url")
    assert_problem(alice.delete(base, status=404), 404, "url")
    assert_problem(alice.post(base + "publish", status=404), 404, "url")
    for file_id in ("999999", "abc", "-1", "99999999999999999999999999"):
        url = session["links"]["session"] + f"files/{file_id}/"
        assert_problem(alice.get(url, status=404), 404, "url")
        assert_problem(alice.post(url + "complete", status=404), 404, "url")
    # A file URL under another session's token is no file of that session.
    other = alice.create_session("foo", "2.0").json
    foreign = file["links"]["file-upload-session"].replace(token, other["session-token"])
    assert_problem(alice.get(foreign, status=404), 404, "url")


def test_a_path_that_is_not_utf8_is_a_400_problem(alice):
    for url in ("/2.0/sessions/%ff/", "/2.0/%C3%28"):
        assert_problem(alice.get(url, status=400), 400, "url")


def test_urls_outside_the_root_keep_the_hosts_own_errors(testapp):
    response = testapp.get("/nothing/here", status=404)
    assert response.content_type != PROBLEM
    # The standalone app, as the host, answers a path that does not decode with a plain 400.
    for url in ("/nothing/%ff", "/simple/%ff/", "/files/1/%ff", "/files/%C3%28/x.whl"):
        response = testapp.get(url, status=400)
        assert response.content_type == "text/plain" and "not valid UTF-8" in response.text


# --- 405 ------------------------------------------------------------------------------------

ALLOWED = {
    "root": {"GET", "HEAD", "POST"},  # GET: the links of this index's extensions
    "session": {"GET", "HEAD", "DELETE"},
    "upload": {"POST"},
    "publish": {"POST"},
    "extend": {"POST"},
    "file-upload-session": {"GET", "HEAD", "DELETE"},
    "complete": {"POST"},
    "file-extend": {"POST"},
    "file_url": {"POST"},
    "vnd-upload2-preflight": {"GET", "HEAD"},
    "vnd-upload2-diff": {"GET", "HEAD"},
    "vnd-upload2-unschedule": {"POST"},
}


@pytest.mark.parametrize("link", list(ALLOWED))
def test_a_wrong_method_is_405_with_allow(testapp, alice, session, file, link):
    url = urls(session, file)[link]
    for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"} - ALLOWED[link]):
        response = testapp.request(url, method=method, headers=alice.headers, status=405)
        assert_problem(response, 405, "method")
        assert set(response.headers["Allow"].split(", ")) == ALLOWED[link]
        assert method in response.json["detail"]


# --- request bodies -------------------------------------------------------------------------

JSON_ENDPOINTS = ["root", "upload", "publish", "extend", "complete", "file-extend"]


def valid_body(link: str) -> dict:
    return {
        "root": {"name": "foo", "version": "2.0"},
        "upload": {"filename": "foo-1.0-py2-none-any.whl", "size": 10, "hashes": {"sha256": "a" * 64},
                   "mechanism": "http-post-bytes"},
        "extend": {"extend-for": 60},
        "file-extend": {"extend-for": 60},
    }.get(link, {})


@pytest.mark.parametrize("link", JSON_ENDPOINTS)
@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "application/octet-stream",
                                          "application/vnd.pypi.upload.v1+json",
                                          "application/vnd.pypi.upload.v2+xml"])
def test_a_wrong_content_type_on_a_json_endpoint_is_415(testapp, alice, session, file, link, content_type):
    body = json.dumps({"meta": META, **valid_body(link)}).encode()
    headers = dict(alice.headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = testapp.post(urls(session, file)[link], body, headers=headers, status=415)
    problem = assert_problem(response, 415, "Content-Type")
    assert CT in problem["detail"]


@pytest.mark.parametrize("link", JSON_ENDPOINTS)
def test_the_content_type_may_carry_parameters_and_any_case(alice, session, file, testapp, link):
    body = json.dumps({"meta": META, **valid_body(link)}).encode()
    for content_type in (CT + "; charset=utf-8", CT.upper(), "Application/Vnd.PyPI.Upload.v2+JSON"):
        # Media types are case-insensitive (RFC 9110, section 8.3.1).
        response = testapp.post(urls(session, file)[link], body, status="*",
                                headers={**alice.headers, "Content-Type": content_type})
        assert response.status_int != 415, content_type


@pytest.mark.parametrize("link", JSON_ENDPOINTS)
@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"meta": {"api-version": "2.0"},}', b"\xff\xfe\xfa",
                                 b"[]", b'"2.0"', b"null", b"[" * 30_000 + b"]" * 30_000])
def test_malformed_json_is_400(testapp, alice, session, file, link, raw):
    response = testapp.post(urls(session, file)[link], raw, status=400,
                            headers={**alice.headers, "Content-Type": CT})
    assert_problem(response, 400, "body")


@pytest.mark.parametrize("link", JSON_ENDPOINTS)
def test_an_oversized_json_body_is_413(testapp, alice, session, file, link):
    body = json.dumps({"meta": META, **valid_body(link), "padding": "x" * 100_000})
    response = testapp.post(urls(session, file)[link], body, status=413,
                            headers={**alice.headers, "Content-Type": CT})
    assert_problem(response, 413, "body")


@pytest.mark.parametrize("link", JSON_ENDPOINTS)
@pytest.mark.parametrize("meta", [None, {}, "2.0", {"api_version": "2.0"}])
def test_a_missing_meta_api_version_is_400(alice, session, file, link, meta):
    body = valid_body(link)
    if meta is not None:
        body["meta"] = meta
    response = post_as_is(alice, urls(session, file)[link], body, status=400)
    problem = assert_problem(response, 400, "meta.api-version")
    assert "meta.api-version" in problem["detail"]


@pytest.mark.parametrize("link", JSON_ENDPOINTS)
@pytest.mark.parametrize("version", ["1.0", "2", "2.1", "3.0", 2.0, None, ""])
def test_a_wrong_api_version_is_400(alice, session, file, link, version):
    body = {"meta": {"api-version": version}, **valid_body(link)}
    response = post_as_is(alice, urls(session, file)[link], body, status=400)
    assert_problem(response, 400, "meta.api-version")


@pytest.mark.parametrize("link, key", [
    ("root", "name"), ("root", "version"),
    ("upload", "filename"), ("upload", "size"), ("upload", "hashes"), ("upload", "mechanism"),
    ("extend", "extend-for"), ("file-extend", "extend-for"),
])
def test_a_missing_key_is_400_naming_it(alice, session, file, link, key):
    body = valid_body(link)
    del body[key]
    response = alice.post(urls(session, file)[link], body, status=400)
    problem = assert_problem(response, 400, key)
    assert repr(key) in problem["detail"]


def test_index_specific_meta_keys_are_accepted(alice):
    body = {"meta": {"api-version": "2.0", "_example.org": {"organization": "x"}}, "name": "foo",
            "version": "1.0"}
    assert post_as_is(alice, "/2.0/", body, status=201).json["status"] == "open"


# --- 401 ------------------------------------------------------------------------------------

def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def bad_credentials(token: str) -> dict[str, dict]:
    token_id, secret = token.removeprefix("pypi-upload2-").split("-", 1)
    wrong = ("A" if secret[0] != "A" else "B") + secret[1:]
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "bearer": {"Authorization": f"Bearer {token}"},
        "not base64": {"Authorization": "Basic !!!"},
        "no colon": {"Authorization": "Basic " + base64.b64encode(b"__token__").decode()},
        "not utf-8": {"Authorization": "Basic " + base64.b64encode(b"__token__:\xff").decode()},
        "not ascii": {"Authorization": "Basic \u00e9"},
        "other username": {"Authorization": _basic("alice", token)},
        "wrong secret": {"Authorization": _basic("__token__", f"pypi-upload2-{token_id}-{wrong}")},
        "unknown token": {"Authorization": _basic("__token__", f"pypi-upload2-99999-{secret}")},
        "huge token id": {"Authorization": _basic("__token__", f"pypi-upload2-{'9' * 30}-{secret}")},
        "unicode digits": {"Authorization": _basic("__token__", f"pypi-upload2-\u00b2-{secret}")},
        "no secret": {"Authorization": _basic("__token__", f"pypi-upload2-{token_id}-")},
        "no prefix or id": {"Authorization": _basic("__token__", secret)},
    }


@pytest.mark.parametrize("case", list(bad_credentials("pypi-upload2-1-secret")))
def test_missing_or_invalid_credentials_are_401_with_a_basic_challenge(
        testapp, make_user, session, file, case):
    headers = bad_credentials(make_user("alice"))[case]
    for link, url in urls(session, file).items():
        method = "GET" if link in ("session", "file-upload-session", "vnd-upload2-preflight",
                                   "vnd-upload2-diff") else "POST"
        content_type = "application/octet-stream" if link == "file_url" else CT
        body = b"" if method == "GET" else json.dumps({"meta": META, **valid_body(link)}).encode()
        response = testapp.request(url, method=method, body=body, status=401,
                                   headers={**headers, "Content-Type": content_type})
        assert_problem(response, 401, "Authorization")
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pypi-upload2"'
    for url in (urls(session, file)["session"], urls(session, file)["file-upload-session"]):
        assert_problem(testapp.delete(url, headers=headers, status=401), 401)
    # Nothing changed: the session and its file are as they were.
    owner = basic(make_user("alice"))
    status = testapp.get(session["links"]["session"], headers=owner).json
    assert status["status"] == "open" and status["expires-at"] == session["expires-at"]
    assert list(status["files"].values())[0]["status"] == "pending"


@pytest.mark.usefixtures("engine")  # a migrated database, as every app expects
def test_the_realm_is_configurable(settings):
    app = main({}, **{**settings, "upload2.realm": "Example Index"})
    try:
        response = webtest.TestApp(app).post("/2.0/", "{}", headers={"Content-Type": CT}, status=401)
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Example Index"'
    finally:
        app.registry["upload2.engine"].dispose()


def test_a_revoked_token_row_stops_working(testapp, make_user, dbsession):
    token = make_user("carol")
    headers = {**basic(token), "Content-Type": CT}
    body = json.dumps({"meta": META, "name": "foo", "version": "1.0"})
    testapp.post("/2.0/", body, headers=headers, status=201)
    dbsession.query(ApiToken).delete()
    dbsession.commit()
    assert_problem(testapp.post("/2.0/", body, headers=headers, status=401), 401, "Authorization")
