"""The release manager's path end to end through the WSGI app."""

from tests.conftest import build_sdist, build_wheel


def test_stage_then_publish_makes_every_file_public_at_once(alice, testapp, dist_dir):
    session = alice.create_session("Foo", "1.0").json
    assert session["status"] == "open"
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0"),
             build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any")]
    for path in paths:
        assert alice.upload(session, path).json["status"] == "completed"

    stage = testapp.get(session["links"]["stage"] + "foo/")
    assert sorted(a.text for a in stage.html.find_all("a")) == sorted(p.name for p in paths)
    assert "X-Robots-Tag" in stage.headers
    assert testapp.get("/simple/foo/", status=404)
    assert "foo" not in testapp.get("/simple/").text

    published = alice.publish(session)
    assert published.json["status"] == "published"
    assert published.headers["Location"] == session["links"]["session"]
    page = testapp.get("/simple/foo/")
    assert sorted(a.text for a in page.html.find_all("a")) == sorted(p.name for p in paths)
    for path in paths:
        link = page.html.find("a", string=path.name)["href"].split("#")[0]
        assert testapp.get(link).body == path.read_bytes()
