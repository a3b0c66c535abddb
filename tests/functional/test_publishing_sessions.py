"""Publishing sessions through the full WSGI app on a real database: every row of the PEP's
"Publishing Session States" table that needs no deferred processing, creation, status,
cancel, publish, extend, and the reservation of new project names."""

from __future__ import annotations

import datetime
import re

import pytest
import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession, NameReservation, PublishingSession
from pypi_upload2.builtin.models import Filename, Project, ReleaseFile, Role, User
from tests.conftest import CT, META, RFC3339_Z, assert_problem, build_sdist, build_wheel, fetch, stored





def force_status(dbsession, model, status, **where) -> None:
    """Put a row into a state the synchronous API never leaves it in (deferred processing)."""
    dbsession.execute(sa.update(model).filter_by(**where).values(status=status))
    dbsession.commit()


def parse_expiry(value: str) -> datetime.datetime:
    assert RFC3339_Z.fullmatch(value), value
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def simple_filenames(testapp, name) -> list[str]:
    page = testapp.get(f"/simple/{name}/")
    return sorted(a.text for a in page.html.find_all("a"))


# --- creation -------------------------------------------------------------------------------

def test_create_answers_201_with_location_and_the_peps_body(alice, dbsession):
    response = alice.create_session("foo", "1.0")
    assert response.status_int == 201
    assert response.content_type == CT
    body = response.json
    assert set(body) == {"meta", "links", "mechanisms", "session-token", "expires-at", "status", "files",
                         "notices"}
    assert body["meta"] == META
    assert set(body["links"]) == {"stage", "upload", "session", "publish", "extend", "vnd-upload2-preflight",
                                  "vnd-upload2-diff", "vnd-upload2-groups"}
    assert all(url.startswith("http://localhost/") for url in body["links"].values())
    assert response.headers["Location"] == body["links"]["session"]
    assert "http-post-bytes" in body["mechanisms"] and all(isinstance(m, str) for m in body["mechanisms"])
    assert body["status"] == "open"
    assert body["files"] == {}
    assert body["notices"] == []
    # The stage URL is made unguessable by the session token.
    assert body["session-token"] in body["links"]["stage"]

    row = fetch(dbsession, PublishingSession, token=body["session-token"])
    expires = parse_expiry(body["expires-at"])
    assert expires == row.expires_at
    lifetime = expires - row.created
    assert datetime.timedelta(days=7, seconds=-1) <= lifetime <= datetime.timedelta(days=7)


def test_the_session_token_is_at_least_128_random_bits_unrelated_to_name_and_version(alice):
    tokens = set()
    for name in ("foo", "bar"):
        session = alice.create_session(name, "1.0").json
        alice.delete(session["links"]["session"])
        again = alice.create_session(name, "1.0").json
        tokens |= {session["session-token"], again["session-token"]}
    assert len(tokens) == 4
    for token in tokens:
        # URL-safe base64: 22 characters carry 132 bits.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", token), token
        assert "foo" not in token.lower() and "bar" not in token.lower() and "1.0" not in token


def test_status_get_answers_the_creation_body(alice):
    created = alice.create_session().json
    status = alice.get(created["links"]["session"])
    assert status.status_int == 200
    assert status.content_type == CT
    assert status.json == created


@pytest.mark.parametrize("live", ["open", "error", "processing"])
def test_a_second_create_for_a_live_pair_is_409_with_location(alice, dbsession, live):
    first = alice.create_session("foo", "1.0").json
    force_status(dbsession, PublishingSession, live, token=first["session-token"])
    second = alice.create_session("foo", "1.0", status=409)
    assert_problem(second, 409)
    assert second.headers["Location"] == first["links"]["session"]
    assert fetch(dbsession, PublishingSession, token=first["session-token"]).status == live
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(PublishingSession)) == 1
    dbsession.commit()


def test_an_unauthorized_caller_gets_403_not_409_so_the_session_stays_secret(alice, bob):
    first = alice.create_session("foo", "1.0").json
    alice.publish(first)
    alice.create_session("foo", "2.0")
    for version in ("1.0", "2.0", "3.0"):
        refused = bob.create_session("foo", version, status=403)
        assert_problem(refused, 403)
        assert "Location" not in refused.headers
        assert "sessions/" not in refused.text


def test_after_publish_or_cancel_a_new_session_gets_a_new_token_urls_and_stage(alice, testapp):
    canceled = alice.create_session("foo", "1.0").json
    alice.delete(canceled["links"]["session"])
    published = alice.create_session("foo", "1.0").json
    alice.publish(published)
    latest = alice.create_session("foo", "1.0").json
    sessions = [canceled, published, latest]
    assert len({s["session-token"] for s in sessions}) == 3
    for key in ("stage", "upload", "session", "publish", "extend"):
        assert len({s["links"][key] for s in sessions}) == 3, key
    # The earlier sessions keep their own terminal status.
    assert alice.get(canceled["links"]["session"]).json["status"] == "canceled"
    assert alice.get(published["links"]["session"]).json["status"] == "published"
    assert testapp.get(latest["links"]["stage"]).status_int == 200


@pytest.mark.parametrize("again", ["foo-bar", "FOO_BAR", "foo.bar", "Foo--Bar"])
def test_the_name_is_normalized(alice, dbsession, again):
    first = alice.create_session("Foo.Bar", "1.0")
    refused = alice.create_session(again, "1.0", status=409)
    assert refused.headers["Location"] == first.headers["Location"]
    # The first session's spelling is the name; the reservation is by the normalized one.
    assert fetch(dbsession, PublishingSession, normalized_name="foo-bar").name == "Foo.Bar"
    assert fetch(dbsession, NameReservation, normalized_name="foo-bar") is not None


@pytest.mark.parametrize("again", ["1.0.0", "1.0.0.0", "v1.0", "01.0", "1.00"])
def test_the_version_is_compared_as_a_version(alice, again):
    first = alice.create_session("foo", "1.0")
    refused = alice.create_session("foo", again, status=409)
    assert refused.headers["Location"] == first.headers["Location"]


@pytest.mark.parametrize("body, source", [
    ({"version": "1.0"}, "name"),
    ({"name": None, "version": "1.0"}, "name"),
    ({"name": "", "version": "1.0"}, "name"),
    ({"name": "-foo", "version": "1.0"}, "name"),
    ({"name": "foo bar", "version": "1.0"}, "name"),
    ({"name": "foo/../bar", "version": "1.0"}, "name"),
    ({"name": 42, "version": "1.0"}, "name"),
    ({"name": "a" * 250, "version": "1.0"}, "name"),
    ({"name": "foo"}, "version"),
    ({"name": "foo", "version": ""}, "version"),
    ({"name": "foo", "version": "one"}, "version"),
    ({"name": "foo", "version": 1.0}, "version"),
    ({"name": "foo", "version": "1." + "0" * 150}, "version"),
    # 99 characters, 103 once normalized ("-1" is ".post1"): the normal form is stored too.
    ({"name": "foo", "version": "1." * 48 + "1-1"}, "version"),
])
def test_an_invalid_name_or_version_is_400_naming_the_key(alice, dbsession, body, source):
    refused = alice.post("/2.0/", body, status=400)
    problem = assert_problem(refused, 400, source)
    assert source in problem["detail"] or source in problem["title"].lower()
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Project)) == 0
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(NameReservation)) == 0
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(PublishingSession)) == 0
    dbsession.commit()


# --- cancel ---------------------------------------------------------------------------------

@pytest.mark.local_storage
def test_cancel_discards_everything_but_the_status_url(alice, testapp, dist_dir, storage_dir, dbsession):
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    sdist = build_sdist(dist_dir, "foo", "1.0")
    pending = alice.start_file(session, sdist).json
    alice.send_bytes(pending, sdist.read_bytes())
    files = alice.get(session["links"]["session"]).json["files"]
    assert len(files) == 2 and stored(storage_dir)
    stage = testapp.get(session["links"]["stage"] + "foo/")

    canceled = alice.delete(session["links"]["session"])
    assert canceled.status_int == 200
    assert canceled.json["status"] == "canceled"
    assert canceled.json["files"] == {}
    assert stored(storage_dir) == []

    assert alice.get(session["links"]["session"]).json["status"] == "canceled"
    assert_problem(testapp.get(session["links"]["stage"], status=404), 404)
    assert_problem(testapp.get(session["links"]["stage"] + "foo/", status=404), 404)
    staged_file = stage.html.find("a")["href"].split("#")[0]
    assert_problem(testapp.get(staged_file, status=404), 404)
    for entry in files.values():
        assert_problem(alice.get(entry["link"], status=404), 404)
        assert_problem(alice.delete(entry["link"], status=404), 404)
        assert_problem(alice.post(entry["link"] + "complete", status=404), 404)
        assert_problem(alice.post(entry["link"] + "extend", {"extend-for": 60}, status=404), 404)
    assert_problem(alice.send_bytes(pending, sdist.read_bytes(), status=404), 404)
    # No further changes are possible.
    assert_problem(alice.start_file(session, sdist, status=409), 409, "status")
    assert_problem(alice.publish(session, status=409), 409, "status")
    assert_problem(alice.delete(session["links"]["session"], status=409), 409, "status")
    statuses = dbsession.scalars(sa.select(FileUploadSession.status)).all()
    dbsession.commit()
    assert statuses == ["canceled", "canceled"]


def test_cancel_of_an_existing_projects_session_leaves_the_project_alone(alice, testapp, dist_dir):
    first = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    alice.upload(first, wheel)
    alice.publish(first)
    second = alice.create_session("foo", "2.0").json
    alice.upload(second, build_wheel(dist_dir, "foo", "2.0"))
    alice.delete(second["links"]["session"])
    assert simple_filenames(testapp, "foo") == [wheel.name]
    assert alice.create_session("foo", "2.0").status_int == 201


def test_cancel_is_allowed_while_a_file_is_processing(alice, dist_dir, dbsession, storage_dir):
    session = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    file = alice.start_file(session, wheel).json
    alice.send_bytes(file, wheel.read_bytes())
    force_status(dbsession, FileUploadSession, "processing", filename=wheel.name)
    assert alice.get(session["links"]["session"]).json["files"][wheel.name]["status"] == "processing"

    canceled = alice.delete(session["links"]["session"])
    assert canceled.json["status"] == "canceled"
    assert canceled.json["files"] == {}
    assert fetch(dbsession, FileUploadSession, filename=wheel.name).status == "canceled"
    assert stored(storage_dir) == []


def test_a_processing_session_refuses_cancel_and_every_change(alice, dist_dir, dbsession):
    session = alice.create_session("foo", "1.0").json
    done = alice.upload(session, build_wheel(dist_dir, "foo", "1.0")).json
    force_status(dbsession, PublishingSession, "processing", token=session["session-token"])

    assert_problem(alice.delete(session["links"]["session"], status=409), 409, "status")
    assert_problem(alice.start_file(session, build_sdist(dist_dir, "foo", "1.0"), status=409), 409)
    assert_problem(alice.delete(done["links"]["file-upload-session"], status=409), 409)
    assert_problem(alice.publish(session, status=409), 409, "status")
    response = alice.get(session["links"]["session"])
    assert response.json["status"] == "processing"
    assert list(response.json["files"].values())[0]["status"] == "completed"
    assert int(response.headers["Retry-After"]) >= 1  # pollers are told when to look again
    assert "Retry-After" not in alice.get(alice.create_session("bar", "1.0").json["links"]["session"]).headers


# --- publish --------------------------------------------------------------------------------

def test_publish_answers_201_with_location_and_every_file_is_public_at_once(alice, testapp, dist_dir):
    session = alice.create_session("foo", "1.0").json
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0")]
    for path in paths:
        alice.upload(session, path)
    assert testapp.get("/simple/foo/", status=404)

    published = alice.publish(session)
    assert published.status_int == 201
    assert published.content_type == CT
    assert published.headers["Location"] == session["links"]["session"]
    assert published.json["status"] == "published"
    assert {name: f["status"] for name, f in published.json["files"].items()} == \
        {p.name: "completed" for p in paths}
    assert simple_filenames(testapp, "foo") == sorted(p.name for p in paths)
    page = testapp.get("/simple/foo/")
    for path in paths:
        assert testapp.get(page.html.find("a", string=path.name)["href"]).body == path.read_bytes()
    # The stage is gone; the status URL keeps answering.
    assert_problem(testapp.get(session["links"]["stage"], status=404), 404)
    assert alice.get(session["links"]["session"]).json["status"] == "published"


def test_publish_with_pending_or_error_files_is_409_naming_each_and_changes_nothing(
        alice, testapp, dist_dir, dbsession):
    session = alice.create_session("foo", "1.0").json
    good = build_wheel(dist_dir, "foo", "1.0")
    alice.upload(session, good)
    pending = build_sdist(dist_dir, "foo", "1.0")
    alice.start_file(session, pending)
    broken = build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    file = alice.start_file(session, broken).json
    alice.post(file["links"]["complete"], status=400)  # no bytes: the file goes to error
    before = alice.get(session["links"]["session"]).json

    refused = alice.publish(session, status=409)
    problem = assert_problem(refused, 409)
    assert sorted((e["source"], e["message"]) for e in problem["errors"]) == sorted([
        (pending.name, "status is pending"), (broken.name, "status is error")])
    assert alice.get(session["links"]["session"]).json == before
    assert testapp.get("/simple/foo/", status=404)
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(ReleaseFile)) == 0
    dbsession.commit()

    # Deleting the offenders unblocks the publish, which then publishes only the good file.
    alice.delete(file["links"]["file-upload-session"], status=204)
    alice.delete(before["files"][pending.name]["link"], status=204)
    alice.publish(session)
    assert simple_filenames(testapp, "foo") == [good.name]


def test_publish_with_a_processing_file_is_409(alice, dist_dir, dbsession):
    session = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    alice.start_file(session, wheel)
    force_status(dbsession, FileUploadSession, "processing", filename=wheel.name)
    refused = alice.publish(session, status=409)
    assert assert_problem(refused, 409)["errors"] == [{"source": wheel.name, "message": "status is processing"}]
    assert alice.get(session["links"]["session"]).json["status"] == "open"


@pytest.mark.parametrize("end", ["publish", "cancel"])
def test_publish_of_a_published_or_canceled_session_is_409(alice, dist_dir, end):
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    if end == "publish":
        alice.publish(session)
    else:
        alice.delete(session["links"]["session"])
    terminal = alice.get(session["links"]["session"]).json
    assert_problem(alice.publish(session, status=409), 409, "status")
    assert_problem(alice.delete(session["links"]["session"], status=409), 409, "status")
    assert alice.get(session["links"]["session"]).json == terminal


@pytest.mark.parametrize("state", ["open", "error"])
def test_a_publish_time_filename_conflict_is_409_and_leaves_the_session_editable(
        alice, dist_dir, dbsession, state):
    session = alice.create_session("foo", "1.0").json
    wheel, sdist = build_wheel(dist_dir, "foo", "1.0"), build_sdist(dist_dir, "foo", "1.0")
    alice.upload(session, wheel)
    alice.upload(session, sdist)
    force_status(dbsession, PublishingSession, state, token=session["session-token"])
    # The same filename is used through another path (e.g. the legacy API) meanwhile: the
    # index's filename registry now holds it.
    dbsession.add(Filename(filename=wheel.name))
    dbsession.commit()

    refused = alice.publish(session, status=409)
    assert assert_problem(refused, 409)["errors"] == [
        {"source": wheel.name, "message": "a file with this name already exists"}]
    status = alice.get(session["links"]["session"]).json
    assert status["status"] == state
    assert {f["status"] for f in status["files"].values()} == {"completed"}
    # Nothing was published, nor the sdist's name reserved, nor the new name registered.
    assert dbsession.scalars(sa.select(ReleaseFile.filename)).all() == []
    assert dbsession.scalars(sa.select(Filename.filename)).all() == [wheel.name]
    assert dbsession.scalars(sa.select(Project.normalized_name)).all() == []
    dbsession.commit()

    # Still editable: drop the conflicting file and publish the rest.
    alice.delete(status["files"][wheel.name]["link"], status=204)
    assert alice.get(session["links"]["session"]).json["status"] == state
    assert alice.publish(session).json["status"] == "published"
    assert dbsession.scalars(sa.select(ReleaseFile.filename)).all() == [sdist.name]
    dbsession.commit()


def test_an_error_session_permits_the_same_operations_as_open(alice, testapp, dist_dir, dbsession):
    """The PEP's rows for ``error``: edits stay ``error``; publish retried; cancel."""
    session = alice.create_session("foo", "1.0").json
    force_status(dbsession, PublishingSession, "error", token=session["session-token"])
    wheel = build_wheel(dist_dir, "foo", "1.0")
    file = alice.upload(session, wheel).json
    assert alice.get(session["links"]["session"]).json["status"] == "error"
    alice.delete(file["links"]["file-upload-session"], status=204)
    assert alice.get(session["links"]["session"]).json["status"] == "error"
    alice.upload(session, wheel)
    replaced = alice.upload(session, wheel).json  # the same filename again replaces it
    assert alice.get(session["links"]["session"]).json["status"] == "error"
    assert alice.get(session["links"]["session"]).json["files"][wheel.name]["link"] == \
        replaced["links"]["file-upload-session"]
    assert testapp.get(session["links"]["stage"] + "foo/").html.find("a").text == wheel.name
    extended = alice.post(session["links"]["extend"], {"extend-for": 60}).json
    assert extended["status"] == "error"
    published = alice.publish(session)
    assert published.json["status"] == "published"
    assert simple_filenames(testapp, "foo") == [wheel.name]

    other = alice.create_session("foo", "2.0").json
    force_status(dbsession, PublishingSession, "error", token=other["session-token"])
    assert alice.delete(other["links"]["session"]).json["status"] == "canceled"


@pytest.mark.parametrize("end", ["publish", "cancel"])
def test_a_terminal_session_keeps_answering_its_status_url(alice, bob, end):
    session = alice.create_session("foo", "1.0").json
    alice.publish(session)  # foo is registered; its 2.0 session is then ended
    second = alice.create_session("foo", "2.0").json
    if end == "publish":
        alice.publish(second)
    else:
        alice.delete(second["links"]["session"])
    for _ in range(2):
        status = alice.get(second["links"]["session"])
        assert status.status_int == 200
        assert status.json["status"] == {"publish": "published", "cancel": "canceled"}[end]
        assert status.json["session-token"] == second["session-token"]
    # Still authorized per request: a stranger gets 403.
    assert_problem(bob.get(second["links"]["session"], status=403), 403)


# --- extend ---------------------------------------------------------------------------------

class TestExtend:
    LIFETIME, MAXIMUM = 3600, 7200

    @pytest.fixture
    def settings(self, settings):
        return {**settings, "upload2.session_lifetime": str(self.LIFETIME),
                "upload2.max_session_lifetime": str(self.MAXIMUM)}

    def test_extend_moves_expiry_later_up_to_the_configured_maximum(self, alice, dbsession):
        session = alice.create_session().json
        created = fetch(dbsession, PublishingSession, token=session["session-token"]).created
        expires = parse_expiry(session["expires-at"])

        for small in (0, 1, 60):
            # Less than what is left: the server keeps the expiry, and still answers 200.
            response = alice.post(session["links"]["extend"], {"extend-for": small})
            assert response.status_int == 200
            assert parse_expiry(response.json["expires-at"]) == expires

        longer = alice.post(session["links"]["extend"], {"extend-for": self.LIFETIME + 1800}).json
        later = parse_expiry(longer["expires-at"])
        assert expires < later <= created + datetime.timedelta(seconds=self.MAXIMUM)
        assert set(longer) == set(session) and longer["links"] == session["links"]

        for huge in (10 * self.MAXIMUM, 10**30):
            capped = alice.post(session["links"]["extend"], {"extend-for": huge})
            assert capped.status_int == 200
            assert parse_expiry(capped.json["expires-at"]) == created + datetime.timedelta(seconds=self.MAXIMUM)
        assert alice.get(session["links"]["session"]).json["expires-at"] == capped.json["expires-at"]
        assert RFC3339_Z.fullmatch(capped.json["expires-at"])

    @pytest.mark.parametrize("body", [{}, {"extend-for": -1}, {"extend-for": "60"}, {"extend-for": 1.5},
                                      {"extend-for": True}, {"extend-for": None}, {"extend-for": [60]}])
    def test_a_bad_extend_for_is_400(self, alice, body):
        session = alice.create_session().json
        refused = alice.post(session["links"]["extend"], body, status=400)
        assert_problem(refused, 400, "extend-for")
        assert alice.get(session["links"]["session"]).json["expires-at"] == session["expires-at"]


# --- new projects ---------------------------------------------------------------------------

def test_a_session_for_an_unknown_name_reserves_it_until_published(alice, bob, testapp, dist_dir, dbsession):
    session = alice.create_session("New-Project", "1.0").json
    # Reserved for alice: a reservation, no project yet.
    alice_id = fetch(dbsession, User, username="alice").id
    assert fetch(dbsession, NameReservation, normalized_name="new-project").principal_key == str(alice_id)
    assert fetch(dbsession, Project, normalized_name="new-project") is None
    # Reserved, not navigable through the regular index.
    assert "new-project" not in testapp.get("/simple/").text.lower()
    testapp.get("/simple/new-project/", status=404)
    for name, version in (("new-project", "1.0"), ("NEW.project", "2.0")):
        assert_problem(bob.create_session(name, version, status=403), 403)

    wheel = build_wheel(dist_dir, "new-project", "1.0")
    alice.upload(session, wheel)
    alice.publish(session)
    assert fetch(dbsession, Project, normalized_name="new-project").name == "New-Project"
    assert fetch(dbsession, NameReservation, normalized_name="new-project") is None
    assert "New-Project" in testapp.get("/simple/").text
    assert simple_filenames(testapp, "new-project") == [wheel.name]
    # The creator owns the name now; others still may not upload.
    alice.create_session("new-project", "2.0")
    assert_problem(bob.create_session("new-project", "3.0", status=403), 403)


def test_cancel_releases_a_reserved_name(alice, bob, dbsession):
    session = alice.create_session("fresh", "1.0").json
    alice.delete(session["links"]["session"])
    assert fetch(dbsession, NameReservation, normalized_name="fresh") is None
    assert fetch(dbsession, Project, normalized_name="fresh") is None
    # Still the creator's to look at, and nobody else's.
    assert alice.get(session["links"]["session"]).json["status"] == "canceled"
    assert_problem(bob.get(session["links"]["session"], status=403), 403)

    taken = bob.create_session("Fresh", "1.0")
    assert taken.status_int == 201
    assert_problem(alice.create_session("fresh", "2.0", status=403), 403)


def test_publishing_an_empty_session_registers_the_name(alice, bob, dbsession):
    session = alice.create_session("empty", "1.0").json
    published = alice.publish(session)
    assert published.json["status"] == "published"
    assert published.json["files"] == {}
    assert fetch(dbsession, Project, normalized_name="empty") is not None
    assert fetch(dbsession, NameReservation, normalized_name="empty") is None
    assert_problem(bob.create_session("empty", "2.0", status=403), 403)
    alice.create_session("empty", "2.0")


def test_canceling_one_of_two_sessions_of_a_reserved_name_keeps_the_reservation(
        alice, bob, testapp, dist_dir, dbsession):
    first = alice.create_session("twin", "1.0").json
    second = alice.create_session("twin", "2.0").json
    alice.delete(first["links"]["session"])
    # The 2.0 session still holds the name.
    assert fetch(dbsession, NameReservation, normalized_name="twin") is not None
    assert_problem(bob.create_session("twin", "1.0", status=403), 403)
    wheel = build_wheel(dist_dir, "twin", "2.0")
    alice.upload(second, wheel)
    assert alice.publish(second).json["status"] == "published"
    assert simple_filenames(testapp, "twin") == [wheel.name]

    # And the other way round: the last live session to end releases the name.
    third = alice.create_session("triplet", "1.0").json
    fourth = alice.create_session("triplet", "2.0").json
    alice.delete(fourth["links"]["session"])
    alice.delete(third["links"]["session"])
    assert fetch(dbsession, NameReservation, normalized_name="triplet") is None
    assert fetch(dbsession, Project, normalized_name="triplet") is None
    assert bob.create_session("triplet", "1.0").status_int == 201


def test_a_reservation_makes_its_creator_owner(alice, dbsession):
    session = alice.create_session("mine", "1.0").json
    alice_id = fetch(dbsession, User, username="alice").id
    assert fetch(dbsession, NameReservation, normalized_name="mine").principal_key == str(alice_id)
    alice.publish(session)  # the reservation becomes the project, its creator the Owner
    roles = dbsession.execute(
        sa.select(User.username, Role.role_name).join(Role, Role.user_id == User.id)
        .join(Project).where(Project.normalized_name == "mine")).all()
    dbsession.commit()
    assert [tuple(r) for r in roles] == [("alice", "Owner")]


class TestExpiryIsUTC:
    """``expires-at`` stays UTC when the database hands back times in another zone."""

    @pytest.fixture
    def settings(self, settings, is_postgresql):
        if not is_postgresql:
            pytest.skip("needs PostgreSQL (UPLOAD2_TEST_DATABASE_URL)")
        url = sa.engine.make_url(settings["sqlalchemy.url"]).update_query_dict(
            {"options": "-c timezone=Asia/Kolkata"})
        return {**settings, "sqlalchemy.url": url.render_as_string(hide_password=False)}

    def test_expires_at_is_utc_whatever_the_connection_time_zone(self, alice, dist_dir, dbsession):
        session = alice.create_session().json
        row = fetch(dbsession, PublishingSession, token=session["session-token"])
        for body in (alice.get(session["links"]["session"]).json,
                     alice.post(session["links"]["extend"], {"extend-for": 60}).json):
            assert parse_expiry(body["expires-at"]) == row.expires_at
        file = alice.start_file(session, build_wheel(dist_dir, "foo", "1.0")).json
        status = alice.get(file["links"]["file-upload-session"]).json
        expires = fetch(dbsession, FileUploadSession, filename="foo-1.0-py3-none-any.whl").expires_at
        assert parse_expiry(status["expires-at"]) == expires
