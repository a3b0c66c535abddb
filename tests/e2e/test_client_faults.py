"""Fault injection: a TCP proxy between the client and the server cuts the connection once,
mid-file. The upload still completes (the resumable mechanism resumes from the offset the
server reports on HEAD; http-post-bytes starts the file over) and the published bytes are
the input's."""

from __future__ import annotations

import pytest

from tests.conftest import build_wheel
from tests.e2e.test_client_upload import Proxy, client_env, published, run_json


@pytest.fixture
def proxy(server):
    proxies = []

    def make(cut_after: int) -> Proxy:
        proxies.append(Proxy(server, cut_after=cut_after))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


def test_a_cut_resumable_upload_resumes_from_the_servers_offset(server, proxy, make_user, dist_dir, tmp_path):
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=1_500_000)
    size = wheel.stat().st_size
    cutter = proxy(cut_after=800_000)  # in the fourth 256 KiB append

    report = run_json(["upload", "--repository-url", f"{cutter.url}/legacy/", "--resumable", "--chunk-size",
                       "256K", wheel], client_env(tmp_path, make_user("alice")))

    assert cutter.triggered.is_set()
    (session,) = report["sessions"]
    (entry,) = session["files"]
    assert entry["mechanism"] == "vnd-upload2-resumable-v1" and entry["status"] == "completed"
    assert entry["attempts"] == 1  # one file upload session: resumed, not started over
    (resumed,) = entry["resumed-from"]
    assert 0 < resumed < size and resumed % (256 * 1024) == 0  # the appends acknowledged before the cut
    assert session["status"] == "published"
    assert published(server, "foo") == {wheel.name: wheel.read_bytes()}


def test_a_cut_http_post_bytes_upload_starts_the_file_over(server, proxy, make_user, dist_dir, tmp_path):
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=1_500_000)
    cutter = proxy(cut_after=800_000)

    report = run_json(["upload", "--repository-url", f"{cutter.url}/legacy/", wheel],
                      client_env(tmp_path, make_user("alice")))

    assert cutter.triggered.is_set()
    (session,) = report["sessions"]
    (entry,) = session["files"]
    assert entry["mechanism"] == "http-post-bytes" and entry["status"] == "completed"
    assert entry["attempts"] == 2 and entry["resumed-from"] == []
    assert session["status"] == "published"
    assert published(server, "foo") == {wheel.name: wheel.read_bytes()}
