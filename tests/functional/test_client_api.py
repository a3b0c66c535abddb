"""The client's HTTP layer and release flow against the full WSGI app, in process (httpx's
WSGI transport), with a transport in front of the app where a test needs the network or
the server to misbehave."""

from __future__ import annotations

import io
import json
import threading

import httpx
import pytest

from pypi_upload2_client.api import Api, ProblemError, TransientError
from pypi_upload2_client.config import Credentials
from pypi_upload2_client.dists import inspect
from pypi_upload2_client.progress import Reporter, make_console
from pypi_upload2_client import upload
from pypi_upload2_client.upload import FileResult, Options, Release, Uploader
from tests.conftest import build_sdist, build_wheel

BASE = "http://index.example"


class Front(httpx.BaseTransport):
    """The app behind a hook that may answer (or fail) a request instead of the app."""

    def __init__(self, app, hook=None):
        self.app = httpx.WSGITransport(app=app)
        self.hook = hook or (lambda request: None)
        self.seen: list[httpx.Request] = []

    def handle_request(self, request):
        self.seen.append(request)
        return self.hook(request) or self.app.handle_request(request)


@pytest.fixture
def token(make_user):
    return make_user("alice")


def make_api(transport, token, **kw) -> tuple[Api, list[str]]:
    retries: list[str] = []
    api = Api(BASE + "/legacy/", Credentials("__token__", token), transport=transport, on_retry=retries.append, **kw)
    api.backoff = lambda attempt: 0.01  # no real waiting in these tests
    return api, retries


def quiet_reporter() -> tuple[Reporter, io.StringIO]:
    out = io.StringIO()
    return Reporter(make_console(out), bars=False), out


def test_a_problem_is_read_with_its_title_detail_and_errors_and_not_retried(wsgi_app, token):
    front = Front(wsgi_app)
    api, retries = make_api(front, token)
    with pytest.raises(ProblemError) as caught:
        api.post(BASE + "/2.0/", {"name": "foo"})
    problem = caught.value
    assert problem.status == 400 and problem.is_problem
    lines = problem.lines()
    assert lines[0] == f"{problem.title} (HTTP 400)" and lines[1] == problem.detail
    assert any(line.startswith("- version: ") for line in lines[2:])
    assert len(front.seen) == 1 and retries == []


def test_network_errors_and_503_are_retried_then_given_up(wsgi_app, token):
    failures = iter([httpx.ConnectError("refused"), httpx.Response(503, headers={"Retry-After": "0"})])

    def flaky(request):
        failure = next(failures, None)
        if isinstance(failure, Exception):
            raise failure
        return failure

    api, retries = make_api(Front(wsgi_app, flaky), token)
    reply = api.post(BASE + "/2.0/", {"name": "foo", "version": "1.0"})
    assert reply.status == 201 and reply.retried
    assert [r.split(" failed")[0].split(": HTTP")[0] for r in retries] == [f"POST {BASE}/2.0/"] * 2

    def down(request):
        raise httpx.ReadError("connection reset")

    api, retries = make_api(Front(wsgi_app, down), token, retries=2)
    with pytest.raises(TransientError, match="ReadError: connection reset"):
        api.get(BASE + "/2.0/")
    assert len(retries) == 2


def test_credentials_go_to_the_index_origin_only(wsgi_app, token):
    front = Front(wsgi_app, lambda request: httpx.Response(204))
    api, _ = make_api(front, token)
    api.get(BASE + "/2.0/sessions/x/")
    api.get("https://cdn.example/bucket/file")
    api.get("http://index.example:8080/elsewhere")
    assert [("Authorization" in r.headers) for r in front.seen] == [True, False, False]


def test_a_409_while_others_upload_is_tried_again_alone(wsgi_app, token, dist_dir, testapp):
    """A server need not allow parallel uploads (the PEP): this one refuses a second file
    while one is pending; the client finishes the first, then uploads the second alone."""
    pending = set()
    second_refused = threading.Event()
    lock = threading.Lock()

    def one_at_a_time(request):
        path = request.url.path
        if request.method == "POST" and path.endswith("/files/"):
            with lock:
                if pending:
                    second_refused.set()
                    return httpx.Response(409, json={"title": "One at a time", "detail": "busy", "errors": []},
                                          headers={"Content-Type": "application/problem+json"})
                pending.add(path)
        if request.method == "POST" and path.endswith("/bytes"):
            second_refused.wait(10)  # hold the first transfer until the other file was refused
        if request.method == "POST" and path.endswith("/complete"):
            with lock:
                pending.clear()
        return None

    api, _ = make_api(Front(wsgi_app, one_at_a_time), token)
    reporter, out = quiet_reporter()
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")]
    release = Release("foo", "1.0", [FileResult(inspect(p)) for p in paths])
    uploader = Uploader(api, reporter, Options(parallel=2))
    uploader.open_session(BASE + "/2.0/", release)
    uploader.upload_all([release])
    assert second_refused.is_set()
    assert [f.status for f in release.files] == ["completed", "completed"], out.getvalue()
    uploader.publish(release)
    assert release.status == "published"
    page = testapp.get("/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert sorted(f["filename"] for f in page.json["files"]) == sorted(p.name for p in paths)


def test_a_lost_answer_to_session_creation_adopts_the_session_it_created(wsgi_app, token):
    """The first POST reaches the app but its answer is lost: the retry gets 409 with the
    session's Location, which is this run's own session."""
    lost = []

    def lose_first_answer(request):
        if request.method == "POST" and request.url.path == "/2.0/" and not lost:
            lost.append(front.app.handle_request(request))
            raise httpx.ReadError("answer lost")
        return None

    front = Front(wsgi_app, lose_first_answer)
    api, _ = make_api(front, token)
    reporter, _ = quiet_reporter()
    release = Release("foo", "1.0", [])
    Uploader(api, reporter, Options()).open_session(BASE + "/2.0/", release)
    assert lost[0].status_code == 201
    assert release.created is True and release.status == "open"
    assert release.links["session"] == lost[0].headers["Location"]


def test_an_html_error_page_is_named_never_shown(wsgi_app, token):
    page = "<!DOCTYPE html><html><head><title>Oops</title></head><body><h1>Bad gateway</h1></body></html>"
    front = Front(wsgi_app, lambda request: httpx.Response(404, text=page, headers={"Content-Type": "text/html"}))
    api, _ = make_api(front, token)
    with pytest.raises(ProblemError) as caught:
        api.get(BASE + "/2.0/")
    problem = caught.value
    assert (problem.status, problem.content_type) == (404, "text/html")
    assert problem.detail == "The server answered with an HTML page (text/html)."
    assert "<" not in str(problem) and "<" not in json.dumps(problem.as_json())


def test_a_wait_says_it_is_waiting_and_stops_at_the_wait_timeout(wsgi_app, token, monkeypatch):
    """A publish the server accepts (202) but never settles: the client notes the wait now
    and then and gives up after ``wait_timeout`` seconds, the session left processing."""
    monkeypatch.setattr(upload, "NOTE_EVERY", 0.3)

    def never_settles(request):
        if request.method == "POST" and request.url.path.endswith("/publish"):
            request = httpx.Request("GET", str(request.url).removesuffix("publish"), headers=request.headers)
        elif request.method != "GET" or "/sessions/" not in request.url.path:
            return None
        response = front.app.handle_request(request)
        response.read()
        return httpx.Response(200, json={**response.json(), "status": "processing"}, headers={"Retry-After": "0"})

    front = Front(wsgi_app, never_settles)
    api, _ = make_api(front, token)
    reporter, out = quiet_reporter()
    uploader = Uploader(api, reporter, Options(wait_timeout=1.0))
    release = Release("foo", "1.0", [])
    uploader.open_session(BASE + "/2.0/", release)
    with pytest.raises(upload.WaitTimeout) as caught:
        uploader.publish(release)
    assert 1.0 <= caught.value.waited < 5
    assert str(caught.value) == "foo 1.0: still processing after 1s (--wait-timeout)"
    assert release.status == "processing"
    lines = out.getvalue().splitlines()
    assert "foo 1.0: publishing; waiting up to 1s (--wait-timeout)" in lines
    assert any(line.startswith("foo 1.0: still processing after ") for line in lines), lines
    polls = [r for r in front.seen if r.method == "GET"]
    assert 3 <= len(polls) <= 15  # as Retry-After asks (0.1s at the least), not a busy loop
