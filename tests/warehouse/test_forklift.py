"""Forklift (POST /legacy/) beside the plugin: it still publishes, and both doors share
Warehouse's one filename namespace."""

from __future__ import annotations

import webtest

from tests.conftest import assert_problem, basic, build_sdist, build_wheel


def twine_form(path) -> list[tuple[str, str]]:
    """The multipart fields twine sends for ``path``."""
    from twine.package import PackageFile
    from twine.repository import Repository

    package = PackageFile.from_filename(str(path), comment=None)
    fields = Repository._convert_metadata_to_list_of_tuples(package.metadata_dictionary())
    return fields + [(":action", "file_upload"), ("protocol_version", "1")]


def forklift_upload(app, headers, path, status=200, extra=()):
    params = twine_form(path) + list(extra) + [
        ("content", webtest.Upload(path.name, path.read_bytes(), "application/octet-stream"))]
    return app.post("/legacy/", params=params, headers=headers, status=status)


def test_forklift_upload_still_works(owner, dist_dir, archive_dir, wh):
    from warehouse.packaging.models import File

    wheel = build_wheel(dist_dir, owner.project, "1.0")
    forklift_upload(owner.app, owner.headers, wheel)
    page = owner.app.get(f"/simple/{owner.project}/")
    assert wheel.name in page.text
    [(path,)] = wh.query(__import__("sqlalchemy").select(File.path).where(File.filename == wheel.name))
    assert (archive_dir / path).read_bytes() == wheel.read_bytes()


def test_filename_published_by_forklift_is_refused_by_2_0(owner, dist_dir):
    wheel = build_wheel(dist_dir, owner.project, "1.0")
    forklift_upload(owner.app, owner.headers, wheel)
    session = owner.create_session(owner.project, "1.0").json
    response = owner.start_file(session, wheel, status=409)
    assert_problem(response, 409)


def test_filename_published_by_2_0_is_refused_by_forklift(owner, dist_dir):
    wheel = build_wheel(dist_dir, owner.project, "1.0")
    session = owner.create_session(owner.project, "1.0").json
    owner.upload(session, wheel)
    owner.publish(session)
    # The same bytes: forklift's idempotent answer is only for its own identical file.
    again = forklift_upload(owner.app, owner.headers, wheel, status="*")
    assert again.status_int in (200, 400)
    other = build_wheel(dist_dir / "..", owner.project, "1.0", module_source="VALUE = 2\n")
    refused = forklift_upload(owner.app, owner.headers, other, status=400)
    assert "File already exists" in refused.status or "previously used" in refused.status


def test_sdist_published_by_2_0_blocks_a_forklift_sdist(owner, dist_dir):
    sdist = build_sdist(dist_dir, owner.project, "1.0")
    session = owner.create_session(owner.project, "1.0").json
    owner.upload(session, sdist)
    owner.publish(session)
    other_dir = dist_dir / "other"
    other_dir.mkdir()
    other = build_sdist(other_dir, owner.project, "1.0",
                       extra_members={f"{owner.project}-1.0/EXTRA.txt": b"other bytes"})
    refused = forklift_upload(owner.app, owner.headers, other, status=400)
    assert "File already exists" in refused.status or "previously used" in refused.status


def test_staged_legacy_upload_is_refused_with_a_problem(owner, dist_dir):
    wheel = build_wheel(dist_dir, owner.project, "1.0")
    response = forklift_upload(owner.app, owner.headers, wheel, status=400, extra=[("staged", "true")])
    body = assert_problem(response, 400, "staged")
    assert "2.0" in body["detail"]
    assert owner.app.get(f"/simple/{owner.project}/").text.count(wheel.name) == 0


def test_forklift_cannot_publish_into_a_release_being_staged(owner, wh, dist_dir):
    name = owner.project
    staged = build_wheel(dist_dir, name, "1.0")
    session = owner.create_session(name, "1.0").json
    owner.upload(session, staged)
    sdist = build_sdist(dist_dir, name, "1.0")
    refused = forklift_upload(owner.app, owner.headers, sdist, status=409)
    assert_problem(refused, 409, "version")
    assert refused.status.startswith(f"409 {name} 1.0 is being staged")
    assert refused.headers["Location"] == session["links"]["session"]
    # Someone who may not upload to the project learns nothing of the session: 403.
    stranger = basic(wh.token(wh.user()))
    assert_problem(forklift_upload(owner.app, stranger, sdist, status=403), 403)
    assert sdist.name not in owner.app.get(f"/simple/{name}/").text  # forklift published nothing

    owner.publish(session, status=201)
    # The session published the release whole; forklift adds to it as to any release.
    forklift_upload(owner.app, owner.headers, sdist)
    page = owner.app.get(f"/simple/{name}/").text
    assert staged.name in page and sdist.name in page
