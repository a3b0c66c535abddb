"""The public simple index and the stage preview (PEP 503, 691, 700, 658/714) through the WSGI app."""

from __future__ import annotations

import datetime
import hashlib
import zipfile

import pytest
import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession
from pypi_upload2.builtin.models import ReleaseFile
from tests.conftest import assert_problem, build_sdist, build_wheel

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = f"{JSON}, {HTML}; q=0.1, text/html; q=0.01"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def publish_release(uploader, name, version, paths):
    session = uploader.create_session(name, version).json
    for path in paths:
        uploader.upload(session, path)
    uploader.publish(session)
    return session


def anchors(response) -> dict:
    return {a.text: a for a in response.html.find_all("a")}


def as_json(testapp, url, status=200):
    return testapp.get(url, headers={"Accept": JSON}, status=status)


@pytest.fixture
def foo_files(dist_dir):
    return [build_sdist(dist_dir, "foo", "1.0"),
            build_wheel(dist_dir, "foo", "1.0", requires_python=">=3.8,<4"),
            build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any")]


# --- the public index ---------------------------------------------------------------------------------


def test_index_lists_only_projects_with_a_published_release(alice, testapp, dist_dir):
    alice.create_session("Reserved-Name", "1.0")  # a name reservation, nothing uploaded
    staged = alice.create_session("staged-only", "1.0").json
    alice.upload(staged, build_wheel(dist_dir, "staged-only", "1.0"))
    publish_release(alice, "Pub.Lished", "1.0", [build_wheel(dist_dir, "pub.lished", "1.0")])

    page = testapp.get("/simple/")
    assert page.content_type == "text/html"
    assert list(anchors(page)) == ["Pub.Lished"]
    assert anchors(page)["Pub.Lished"]["href"] == "http://localhost/simple/pub-lished/"
    assert as_json(testapp, "/simple/").json == {"meta": {"api-version": "1.3"},
                                                  "projects": [{"name": "Pub.Lished"}]}
    for name in ("reserved-name", "staged-only"):
        testapp.get(f"/simple/{name}/", status=404)
        as_json(testapp, f"/simple/{name}/", status=404)
    # A name no project can have is no project's page (a NUL byte never reaches the database).
    for name in ("a%00b", "-leading", "a%20b"):
        testapp.get(f"/simple/{name}/", status=404)


def test_project_page_lists_only_published_files(alice, testapp, dist_dir):
    published = build_wheel(dist_dir, "foo", "1.0")
    publish_release(alice, "foo", "1.0", [published])
    next_release = alice.create_session("foo", "2.0").json
    alice.upload(next_release, build_wheel(dist_dir, "foo", "2.0"))
    # Another file staged for the already-published 1.0 is not public either.
    more = alice.create_session("foo", "1.0").json
    alice.upload(more, build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any"))

    assert list(anchors(testapp.get("/simple/foo/"))) == [published.name]
    data = as_json(testapp, "/simple/foo/").json
    assert data["versions"] == ["1.0"]
    assert [f["filename"] for f in data["files"]] == [published.name]


def test_project_page_html_is_pep_503_with_hashes_and_metadata(alice, testapp, foo_files):
    publish_release(alice, "Foo", "1.0", foo_files)
    page = testapp.get("/simple/foo/")

    assert page.content_type == "text/html"
    assert page.headers["Vary"] == "Accept"
    meta = page.html.find("meta", attrs={"name": "pypi:repository-version"})
    assert meta["content"] == "1.3"
    links = anchors(page)
    assert sorted(links) == sorted(p.name for p in foo_files)
    sdist, wheel, universal = foo_files
    for path in foo_files:
        url, _, fragment = links[path.name]["href"].partition("#")
        assert fragment == f"sha256={sha256(path.read_bytes())}"
        assert url.endswith("/" + path.name)
    # The raw markup escapes the specifier; the parsed attribute is the specifier itself.
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in page.text
    assert links[wheel.name]["data-requires-python"] == ">=3.8,<4"
    assert not links[universal.name].has_attr("data-requires-python")
    for path in (wheel, universal):
        metadata = testapp.get(links[path.name]["href"].partition("#")[0] + ".metadata").body
        expected = f"sha256={sha256(metadata)}"
        assert links[path.name]["data-dist-info-metadata"] == expected
        assert links[path.name]["data-core-metadata"] == expected
    # An sdist's PKG-INFO before PEP 643 may omit its dependencies: no metadata is offered for it.
    assert not links[sdist.name].has_attr("data-core-metadata")
    assert not links[sdist.name].has_attr("data-dist-info-metadata")
    testapp.get(links[sdist.name]["href"].partition("#")[0] + ".metadata", status=404)


def test_project_page_json_is_pep_691_with_pep_700_and_714(alice, testapp, foo_files, dist_dir):
    publish_release(alice, "Foo", "1.0", foo_files)
    later = build_wheel(dist_dir, "foo", "1.10")
    publish_release(alice, "foo", "1.10", [later])
    publish_release(alice, "foo", "1.9", [build_wheel(dist_dir, "foo", "1.9")])

    response = as_json(testapp, "/simple/foo/")
    assert response.content_type == JSON
    data = response.json
    assert data["meta"] == {"api-version": "1.3"}
    assert data["name"] == "foo"
    assert data["versions"] == ["1.0", "1.9", "1.10"]  # PEP 440 order, not string order
    files = {f["filename"]: f for f in data["files"]}
    sdist, wheel, _ = foo_files
    for path in [*foo_files, later]:
        entry, body = files[path.name], path.read_bytes()
        assert entry["hashes"] == {"sha256": sha256(body)}
        assert entry["size"] == len(body)
        datetime.datetime.strptime(entry["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert testapp.get(entry["url"]).body == body
    assert files[wheel.name]["requires-python"] == ">=3.8,<4"
    assert "requires-python" not in files[later.name]
    metadata = testapp.get(files[wheel.name]["url"] + ".metadata")
    assert metadata.content_type == "text/plain"
    with zipfile.ZipFile(wheel) as zf:
        assert metadata.body == zf.read("foo-1.0.dist-info/METADATA")
    assert files[wheel.name]["core-metadata"] == {"sha256": sha256(metadata.body)}
    assert files[wheel.name]["dist-info-metadata"] == files[wheel.name]["core-metadata"]
    assert "core-metadata" not in files[sdist.name]


@pytest.mark.parametrize("accept, expected", [
    (PIP_ACCEPT, JSON),
    (JSON, JSON),
    (HTML, HTML),
    (None, "text/html"),
    ("*/*", "text/html"),
    ("text/html", "text/html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
])
def test_content_negotiation(alice, testapp, dist_dir, accept, expected):
    publish_release(alice, "foo", "1.0", [build_wheel(dist_dir, "foo", "1.0")])
    headers = {"Accept": accept} if accept else {}
    for url in ("/simple/", "/simple/foo/"):
        response = testapp.get(url, headers=headers)
        assert response.content_type == expected
        assert "Accept" in response.headers["Vary"]
        if expected == JSON:
            assert response.json["meta"]["api-version"] == "1.3"
        else:
            assert response.html.find("meta", attrs={"name": "pypi:repository-version"})


@pytest.mark.parametrize("name", ["Foo.Bar", "foo_bar", "FOO--bar", "foo.bar"])
def test_non_normalized_project_names_redirect(alice, testapp, dist_dir, name):
    publish_release(alice, "Foo.Bar", "1.0", [build_wheel(dist_dir, "Foo.Bar", "1.0")])
    response = testapp.get(f"/simple/{name}/", status=301)
    assert response.headers["Location"] == "http://localhost/simple/foo-bar/"
    testapp.get("/simple/foo-bar/", status=200)


def test_upload_time_is_the_publish_moment_not_the_upload(alice, testapp, dbsession, dist_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, wheel)
    # The bytes arrived long ago: the index must still date the file from its publication.
    long_ago = datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    dbsession.execute(sa.update(FileUploadSession).values(received_at=long_ago))
    dbsession.commit()

    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    alice.publish(session)
    entry = as_json(testapp, "/simple/foo/").json["files"][0]

    row = dbsession.scalar(sa.select(ReleaseFile).where(ReleaseFile.filename == wheel.name))
    dbsession.rollback()
    upload_time = datetime.datetime.strptime(entry["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert upload_time.replace(tzinfo=datetime.UTC) == row.published_at
    assert row.published_at >= before
    assert row.uploaded_at == long_ago


def test_file_urls_of_unpublished_or_unknown_files_are_404(alice, testapp, dist_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, wheel)
    stage_link = anchors(testapp.get(session["links"]["stage"] + "foo/"))[wheel.name]["href"].partition("#")[0]
    file_id = stage_link.rstrip("/").split("/")[-2]
    testapp.get(f"/files/{file_id}/{wheel.name}", status=404)
    publish_release(alice, "bar", "1.0", [build_wheel(dist_dir, "bar", "1.0")])
    public = anchors(testapp.get("/simple/bar/"))["bar-1.0-py3-none-any.whl"]["href"].partition("#")[0]
    testapp.get(public.replace("bar-1.0-py3-none-any.whl", "bar-1.0.tar.gz"), status=404)
    testapp.get("/files/x/bar-1.0-py3-none-any.whl", status=404)
    testapp.get("/files/999999/bar-1.0-py3-none-any.whl", status=404)


# --- the stage preview --------------------------------------------------------------------------------


def assert_private(response):
    assert response.headers["X-Robots-Tag"] == "noindex"
    assert response.cache_control.private
    assert response.cache_control.no_store


def test_stage_root_lists_only_the_session_project(alice, testapp, dist_dir):
    publish_release(alice, "other", "1.0", [build_wheel(dist_dir, "other", "1.0")])
    session = alice.create_session("Foo.Bar", "1.0").json
    stage = session["links"]["stage"]

    page = testapp.get(stage)  # no credentials: the unguessable URL is the capability
    assert_private(page)
    assert page.html.find("meta", attrs={"name": "pypi:repository-version"})["content"] == "1.3"
    assert {a.text: a["href"] for a in page.html.find_all("a")} == {"Foo.Bar": stage + "foo-bar/"}
    data = as_json(testapp, stage)
    assert_private(data)
    assert data.json == {"meta": {"api-version": "1.3"}, "projects": [{"name": "Foo.Bar"}]}


def test_stage_project_lists_completed_and_published_files(alice, testapp, dist_dir):
    sdist = build_sdist(dist_dir, "foo", "1.0")
    publish_release(alice, "foo", "1.0", [sdist])
    done, pending, broken = (build_wheel(dist_dir, "foo", "1.1", tag=tag)
                             for tag in ("py3-none-any", "py2.py3-none-any", "cp311-none-any"))
    session = alice.create_session("foo", "1.1").json
    alice.upload(session, done)
    alice.start_file(session, pending)
    broken_session = alice.start_file(session, broken).json
    alice.send_bytes(broken_session, bytes(len(broken.read_bytes())))  # right size, wrong bytes
    alice.post(broken_session["links"]["complete"], status=400)

    stage = session["links"]["stage"]
    page = testapp.get(stage + "foo/")
    assert_private(page)
    links = anchors(page)
    assert sorted(links) == sorted([sdist.name, done.name])
    data = as_json(testapp, stage + "foo/")
    assert_private(data)
    files = {f["filename"]: f for f in data.json["files"]}
    assert sorted(files) == sorted([sdist.name, done.name])
    assert data.json["versions"] == ["1.0", "1.1"]
    assert files[done.name]["size"] == len(done.read_bytes())
    assert "upload-time" not in files[done.name]  # not uploaded to the index yet

    staged_url = files[done.name]["url"]
    assert staged_url.startswith(stage)
    assert links[done.name]["href"] == f"{staged_url}#sha256={sha256(done.read_bytes())}"
    download = testapp.get(staged_url)
    assert_private(download)
    assert download.body == done.read_bytes()
    metadata = testapp.get(staged_url + ".metadata")
    assert_private(metadata)
    assert files[done.name]["core-metadata"] == {"sha256": sha256(metadata.body)}
    assert links[done.name]["data-core-metadata"] == f"sha256={sha256(metadata.body)}"
    assert testapp.get(files[sdist.name]["url"]).body == sdist.read_bytes()
    # The stage never serves files that are not completed, even by their ids.
    status = alice.get(session["links"]["session"]).json["files"]
    assert (status[pending.name]["status"], status[broken.name]["status"]) == ("pending", "error")
    for path in (pending, broken):
        file_id = status[path.name]["link"].rstrip("/").rpartition("/")[2]
        testapp.get(f"{stage}files/{file_id}/{path.name}", status=404)


def test_stage_redirects_non_normalized_names_and_refuses_other_projects(alice, testapp, dist_dir):
    publish_release(alice, "bar", "1.0", [build_wheel(dist_dir, "bar", "1.0")])
    session = alice.create_session("Foo.Bar", "1.0").json
    stage = session["links"]["stage"]
    assert testapp.get(stage + "Foo_Bar/", status=301).headers["Location"] == stage + "foo-bar/"
    for other in ("bar", "baz"):
        response = testapp.get(f"{stage}{other}/", status=404)
        assert response.content_type == "application/problem+json"
    testapp.get("/2.0/stage/not-a-session-token/", status=404)
    testapp.get("/2.0/stage/not-a-session-token/foo-bar/", status=404)


@pytest.mark.parametrize("end", ["cancel", "publish"])
def test_stage_is_gone_once_the_session_ends(alice, testapp, dist_dir, end):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, wheel)
    stage = session["links"]["stage"]
    url = as_json(testapp, stage + "foo/").json["files"][0]["url"]
    for live in (stage, stage + "foo/", url, url + ".metadata"):
        testapp.get(live)

    if end == "cancel":
        alice.delete(session["links"]["session"])
    else:
        alice.publish(session)
    for gone in (stage, stage + "foo/", url, url + ".metadata"):
        testapp.get(gone, status=404)
    testapp.get("/simple/foo/", status=200 if end == "publish" else 404)


def test_the_front_page_says_where_to_install_from_and_upload_to(testapp):
    page = testapp.get("/", status=200)
    assert page.content_type == "text/html"
    links = {a["href"] for a in page.html.find_all("a")}
    assert {"http://localhost/simple/", "http://localhost/2.0/", "http://localhost/legacy/"} <= links
    assert "pip install --index-url http://localhost/simple/" in page.text


def test_a_staged_file_answers_ranges_and_a_range_outside_it_is_a_problem(alice, testapp, dist_dir):
    wheel = build_wheel(dist_dir, "foo", "1.0")
    data = wheel.read_bytes()
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, wheel)
    url = as_json(testapp, session["links"]["stage"] + "foo/").json["files"][0]["url"]
    part = testapp.get(url, headers={"Range": "bytes=0-3"}, status=206)
    assert part.body == data[:4]
    assert part.headers["Content-Range"] == f"bytes 0-3/{len(data)}"
    outside = testapp.get(url, headers={"Range": f"bytes={len(data)}-"}, status=416)
    assert_problem(outside, 416, "Range")
    assert outside.headers["Content-Range"] == f"bytes */{len(data)}"
    testapp.get(url, headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, status=304)
