"""A release staged through the 2.0 API, invisible to Warehouse until it is published, then
Warehouse's own rows, pages and archive."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from tests.conftest import build_sdist, build_wheel
from tests.functional.test_resumable import upload_resumable

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def digests(path) -> dict:
    data = path.read_bytes()
    return {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
            "blake2_256": hashlib.blake2b(data, digest_size=32).hexdigest()}


def simple_files(app, name) -> dict:
    return {f["filename"]: f for f in app.get(f"/simple/{name}/", headers=SIMPLE_JSON).json["files"]}


def assert_published(owner, wh, archive_dir, paths, version="1.0"):
    from warehouse.packaging.models import File, Release

    name = owner.project
    listed = simple_files(owner.app, name)
    assert set(listed) == {p.name for p in paths}
    for path in paths:
        assert listed[path.name]["hashes"]["sha256"] == digests(path)["sha256"]
    html = owner.app.get(f"/simple/{name}/").text
    assert all(p.name in html for p in paths)
    api = owner.app.get(f"/pypi/{name}/{version}/json").json
    assert api["info"]["version"] == version
    assert {u["filename"]: u["digests"]["sha256"] for u in api["urls"]} == {
        p.name: digests(p)["sha256"] for p in paths}
    assert owner.app.get(f"/pypi/{name}/json").json["info"]["version"] == version
    rows = {f.filename: f for (f,) in wh.query(
        sa.select(File).join(Release).where(Release.version == version, File.filename.in_(
            [p.name for p in paths])))}
    assert set(rows) == {p.name for p in paths}
    for path in paths:
        row, expected = rows[path.name], digests(path)
        assert (row.md5_digest, row.sha256_digest, row.blake2_256_digest) == (
            expected["md5"], expected["sha256"], expected["blake2_256"])
        assert row.path.startswith(f"{expected['blake2_256'][:2]}/{expected['blake2_256'][2:4]}/")
        assert (archive_dir / row.path).read_bytes() == path.read_bytes()
        assert row.size == path.stat().st_size
        if row.packagetype == "bdist_wheel":
            assert row.metadata_file_sha256_digest
            assert (archive_dir / (row.path + ".metadata")).exists()
    return rows


def test_stage_then_publish(owner, wh, archive_dir, dist_dir):
    name = owner.project
    wheel, sdist = build_wheel(dist_dir, name, "1.0"), build_sdist(dist_dir, name, "1.0")
    session = owner.create_session(name, "1.0").json
    for path in (wheel, sdist):
        assert owner.upload(session, path).json["status"] == "completed"

    stage = owner.app.get(session["links"]["stage"] + name + "/")
    assert sorted(a.text for a in stage.html.find_all("a")) == sorted([wheel.name, sdist.name])
    for path in (wheel, sdist):
        link = stage.html.find("a", string=path.name)["href"].split("#")[0]
        assert owner.app.get(link).body == path.read_bytes()

    # Nothing staged is a Warehouse row: its pages do not show the version.
    assert simple_files(owner.app, name) == {}
    assert wheel.name not in owner.app.get(f"/simple/{name}/").text
    owner.app.get(f"/pypi/{name}/1.0/json", status=404)
    owner.app.get(f"/pypi/{name}/json", status=404)

    published = owner.publish(session, status=201)
    assert published.json["status"] == "published"
    rows = assert_published(owner, wh, archive_dir, [wheel, sdist])
    assert rows[sdist.name].python_version == "source"
    assert rows[wheel.name].python_version == "py3"
    page = owner.app.get(f"/project/{name}/")
    assert "1.0" in page.text


def test_journal_and_release_metadata(owner, wh, archive_dir, dist_dir):
    from warehouse.packaging.models import JournalEntry

    name = owner.project
    wheel = build_wheel(dist_dir, name, "2.0", requires_python=">=3.8")
    session = owner.create_session(name, "2.0").json
    owner.upload(session, wheel)
    owner.publish(session)
    info = owner.app.get(f"/pypi/{name}/json").json["info"]
    assert info["requires_python"] == ">=3.8"
    assert info["summary"] == f"Test distribution {name}."
    actions = [a for (a,) in wh.query(sa.select(JournalEntry.action).where(JournalEntry.name == name)
                                      .order_by(JournalEntry.id))]
    assert actions[-2:] == ["new release", f"add py3 file {wheel.name}"]


def test_a_second_session_adds_files_to_the_published_release(owner, wh, archive_dir, dist_dir):
    name = owner.project
    wheel = build_wheel(dist_dir, name, "1.0")
    first = owner.create_session(name, "1.0").json
    owner.upload(first, wheel)
    owner.publish(first)
    sdist = build_sdist(dist_dir, name, "1.0")
    second = owner.create_session(name, "1.0").json
    owner.upload(second, sdist)
    stage = owner.app.get(second["links"]["stage"] + name + "/")
    assert sorted(a.text for a in stage.html.find_all("a")) == sorted([wheel.name, sdist.name])
    owner.publish(second)
    assert_published(owner, wh, archive_dir, [wheel, sdist])


def test_resumable_upload(owner, wh, archive_dir, dist_dir):
    name = owner.project
    wheel = build_wheel(dist_dir, name, "1.0", padding=20_000)
    session = owner.create_session(name, "1.0").json
    upload = upload_resumable(owner, session, wheel, chunk=4096)
    status = owner.get(upload["links"]["file-upload-session"]).json["status"]
    assert status == "completed"
    owner.publish(session)
    assert_published(owner, wh, archive_dir, [wheel])
