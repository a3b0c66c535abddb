"""Races against a real server process: 8 client threads released at once by a barrier.

The design follows the data model. A filename encodes its project and version, and a release
has at most one live publishing session, so two *sessions* holding the same filename never
coexist: the reachable races on one filename are

* a 2.0 publish against legacy (1.0) uploads of the same filename, the race the PEP's
  filename reservation is about: exactly one of them gets the name;
* concurrent publishes of one session: exactly one 201, the others 409;
* concurrent file upload sessions for one filename in one session: one 202, the others 409;
* concurrent publishes of a release group racing publishes of its sessions alone, and one of
  them leaving the group: one group publish wins, and nothing is published partly or twice;

and on the name and release namespaces, concurrent session creations for one name-version
(by 8 users, or by one user). Every race ends with the database and the storage checked:
no duplicate rows, and storage holds exactly the blobs that rows reference (no orphans).

Both databases: on PostgreSQL the requests run at once and rows are locked; on SQLite a
request's reads before its first write run at once too (on a snapshot that may be outdated
when it writes, as under PostgreSQL's READ COMMITTED), and writers then queue on its one
write lock.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession, NameReservation, PublishingSession
from pypi_upload2.builtin.models import Project, Release, ReleaseFile, Role, User
from pypi_upload2.states import LIVE_PUBLISHING as LIVE
from pypi_upload2.states import FileStatus, PublishingStatus
from tests.conftest import build_wheel

THREADS = 8
CT = "application/vnd.pypi.upload.v2+json"
META = {"api-version": "2.0"}


@pytest.fixture
def server_options():
    return {"threads": THREADS + 4}  # as many server threads as racing clients


def race(*calls):
    """Run the calls in threads released together (at least THREADS); returns their results in order."""
    assert len(calls) >= THREADS
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=60)
        return call()

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(run, call) for call in calls]]


class Client:
    """One principal over real HTTP; one connection per client, so threads do not share one."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        self.http = httpx.Client(auth=("__token__", token), timeout=120)

    def post(self, url, body=None):
        return self.http.post(url, json={"meta": META, **(body or {})}, headers={"Content-Type": CT})

    def create_session(self, name="foo", version="1.0"):
        return self.post(f"{self.base}/2.0/", {"name": name, "version": version})

    def start_file(self, session, path):
        data = path.read_bytes()
        return self.post(session["links"]["upload"], {
            "filename": path.name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": "http-post-bytes"})

    def upload(self, session, path):
        file_session = self.start_file(session, path)
        assert file_session.status_code == 202, file_session.text
        file_session = file_session.json()
        sent = self.http.post(file_session["mechanism"]["file_url"], content=path.read_bytes(),
                              headers={"Content-Type": "application/octet-stream"})
        assert sent.status_code == 204, sent.text
        completed = self.post(file_session["links"]["complete"])
        assert completed.status_code == 201, completed.text

    def publish(self, session):
        return self.post(session["links"]["publish"])

    def legacy_upload(self, path, name="foo", version="1.0"):
        data = path.read_bytes()
        fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
                  "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
        return self.http.post(f"{self.base}/legacy/", data=fields,
                              files={"content": (path.name, data, "application/octet-stream")})

    def close(self):
        self.http.close()


class Clients:
    def __init__(self, base, make_user):
        self.base, self.make_user, self.made = base, make_user, []

    def __call__(self, username: str) -> Client:
        """A client for a new user."""
        return self._client(self.make_user(username))

    def connections(self, client: Client) -> list[Client]:
        """``client`` and THREADS - 1 more clients of the same user, each with its own connection."""
        return [client] + [self._client(client.token) for _ in range(THREADS - 1)]

    def _client(self, token: str) -> Client:
        self.made.append(Client(self.base, token))
        return self.made[-1]


@pytest.fixture
def clients(server, make_user):
    made = Clients(server, make_user)
    yield made
    for client in made.made:
        client.close()


def statuses(responses) -> collections.Counter:
    return collections.Counter(r.status_code for r in responses)


def assert_no_orphans(dbsession, stored_keys):
    """Storage holds exactly the blobs (and metadata files) that live rows reference."""
    referenced = set()
    for row in dbsession.scalars(sa.select(ReleaseFile)):
        referenced |= {row.blob_key, row.metadata_key} if row.metadata_sha256 else {row.blob_key}
    for f in dbsession.scalars(sa.select(FileUploadSession).where(FileUploadSession.status != FileStatus.CANCELED,
                                                                  FileUploadSession.received_size.is_not(None))):
        referenced |= {f.blob_key, f.metadata_key} if f.metadata_sha256 else {f.blob_key}
    dbsession.rollback()
    assert stored_keys() == referenced


def published_wheel(dbsession, filename) -> list[ReleaseFile]:
    rows = list(dbsession.scalars(sa.select(ReleaseFile).where(ReleaseFile.filename == filename)))
    dbsession.rollback()
    return rows


def test_a_2_0_publish_racing_legacy_uploads_of_its_filename(clients, server, dbsession, stored_keys, dist_dir,
                                                             tmp_path):
    alice = clients("alice")
    started = time.monotonic()
    assert alice.legacy_upload(build_wheel(dist_dir, "foo", "0.1"), version="0.1").status_code == 200
    # The publish is much quicker than a legacy upload: sent at once it always wins. Sent
    # when the uploads are about to insert their rows, either side may win.
    head_start = (time.monotonic() - started) * 0.8
    staged = build_wheel(dist_dir, "foo", "1.0", module_source="WHO = 'session'\n")
    session = alice.create_session("foo", "1.0").json()
    alice.upload(session, staged)
    # Seven legacy uploads of the same filename, each with different bytes.
    rivals = []
    for i in range(THREADS - 1):
        folder = tmp_path / f"rival{i}"
        folder.mkdir()
        rivals.append(build_wheel(folder, "foo", "1.0", module_source=f"WHO = 'legacy {i}'\n"))
    assert {p.name for p in rivals} == {staged.name}
    uploaders = clients.connections(alice)[1:]

    results = race(lambda: time.sleep(head_start) or alice.publish(session),
                   *[lambda c=c, p=p: c.legacy_upload(p) for c, p in zip(uploaders, rivals)])

    winners = [i for i, r in enumerate(results) if r.status_code in (200, 201)]
    assert len(winners) == 1, [(r.status_code, r.text) for r in results]
    losers = [r for i, r in enumerate(results[1:], 1) if i not in winners]
    assert {r.status_code for r in losers} <= {400, 409}, [(r.status_code, r.text) for r in losers]
    if winners != [0]:  # the PEP: a publish-time filename collision is a 409 naming the file
        assert results[0].status_code == 409
        assert [e["source"] for e in results[0].json()["errors"]] == [staged.name]
    rows = published_wheel(dbsession, staged.name)
    assert len(rows) == 1 and rows[0].published_at is not None
    won_with = staged if winners == [0] else rivals[winners[0] - 1]
    assert rows[0].sha256 == hashlib.sha256(won_with.read_bytes()).hexdigest()
    page = httpx.get(f"{server}/simple/foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    served = [f for f in page["files"] if f["filename"] == staged.name]
    assert httpx.get(served[0]["url"]).content == won_with.read_bytes()
    status = alice.http.get(session["links"]["session"]).json()["status"]
    assert status == ("published" if winners == [0] else "open")
    assert_no_orphans(dbsession, stored_keys)


def test_concurrent_publishes_of_one_session(clients, dbsession, stored_keys, dist_dir):
    alice = clients("alice")
    session = alice.create_session("foo", "1.0").json()
    wheels = [build_wheel(dist_dir, "foo", "1.0", tag=tag) for tag in ("py3-none-any", "py2.py3-none-any")]
    for wheel in wheels:
        alice.upload(session, wheel)
    results = race(*[lambda c=c: c.publish(session) for c in clients.connections(alice)])

    assert statuses(results) == {201: 1, 409: THREADS - 1}, [r.text for r in results]
    for wheel in wheels:
        assert len(published_wheel(dbsession, wheel.name)) == 1
    # A Release row exists only once published: one, published by the one session.
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Release)) == 1
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Project)) == 1
    assert list(dbsession.scalars(sa.select(PublishingSession.status))) == [PublishingStatus.PUBLISHED]
    dbsession.rollback()
    assert_no_orphans(dbsession, stored_keys)


def test_concurrent_file_upload_sessions_for_one_filename(clients, dbsession, stored_keys, dist_dir):
    alice = clients("alice")
    session = alice.create_session("foo", "1.0").json()
    wheel = build_wheel(dist_dir, "foo", "1.0")
    results = race(*[lambda c=c: c.start_file(session, wheel) for c in clients.connections(alice)])

    assert statuses(results) == {202: 1, 409: THREADS - 1}, [r.text for r in results]
    files = alice.http.get(session["links"]["session"]).json()["files"]
    assert list(files) == [wheel.name] and files[wheel.name]["status"] == "pending"
    rows = dbsession.scalar(sa.select(sa.func.count()).select_from(FileUploadSession).where(
        FileUploadSession.filename == wheel.name))
    dbsession.rollback()
    assert rows == 1
    # The winner's file upload session is the one that works.
    winner = next(r for r in results if r.status_code == 202).json()
    sent = alice.http.post(winner["mechanism"]["file_url"], content=wheel.read_bytes(),
                           headers={"Content-Type": "application/octet-stream"})
    assert sent.status_code == 204
    assert alice.post(winner["links"]["complete"]).status_code == 201
    assert alice.publish(session).status_code == 201
    assert_no_orphans(dbsession, stored_keys)


def test_concurrent_first_sessions_for_a_new_name_by_different_users(clients, dbsession):
    users = [clients(f"user{i}") for i in range(THREADS)]

    results = race(*[lambda u=u: u.create_session("Brand-New", "1.0") for u in users])

    counts = statuses(results)
    assert counts[201] == 1 and counts[403] == THREADS - 1, [r.text for r in results]
    # Losers never learn the winner's session: its token is a capability.
    assert all("Location" not in r.headers for r in results if r.status_code == 403)
    winner = f"user{next(i for i, r in enumerate(results) if r.status_code == 201)}"
    # The name is only reserved (no project before a first publish), by the winner alone.
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Project)) == 0
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Role)) == 0
    reservations = list(dbsession.scalars(sa.select(NameReservation)))
    live = list(dbsession.scalars(sa.select(PublishingSession).where(PublishingSession.status.in_(LIVE))))
    assert [r.normalized_name for r in reservations] == ["brand-new"]
    assert len(live) == 1 and live[0].normalized_name == "brand-new"
    assert live[0].created_by == reservations[0].principal_key
    owner = dbsession.scalar(sa.select(User.username).where(User.id == int(live[0].created_by)))
    assert owner == winner
    dbsession.rollback()


@pytest.mark.parametrize("existing", [False, True], ids=["new-name", "new-version-of-existing-project"])
def test_concurrent_session_creations_by_one_user(clients, dbsession, dist_dir, existing):
    alice = clients("alice")
    if existing:
        first = alice.create_session("foo", "0.1").json()
        alice.upload(first, build_wheel(dist_dir, "foo", "0.1"))
        assert alice.publish(first).status_code == 201
    results = race(*[lambda c=c: c.create_session("foo", "1.0") for c in clients.connections(alice)])

    assert statuses(results) == {201: 1, 409: THREADS - 1}, [r.text for r in results]
    location = next(r for r in results if r.status_code == 201).headers["Location"]
    assert {r.headers["Location"] for r in results} == {location}
    # Nothing of the index is created before a publish: a project only when one was published,
    # the name otherwise reserved once; no release 1.0 yet.
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Project)) == (1 if existing else 0)
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(NameReservation)) == (0 if existing else 1)
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(Release).where(Release.version == "1.0")) == 0
    live = list(dbsession.scalars(sa.select(PublishingSession).where(PublishingSession.status.in_(LIVE))))
    assert len(live) == 1 and live[0].version == "1.0"
    dbsession.rollback()


GROUPED = ("core", "core-cli", "core-plugins")


def _staged_group(clients, server, dist_dir):
    """alice's three sessions, two wheels each, in one release group."""
    alice = clients("alice")
    sessions = []
    for name in GROUPED:
        session = alice.create_session(name, "1.0").json()
        for tag in ("py3-none-any", "py2.py3-none-any"):
            alice.upload(session, build_wheel(dist_dir, name, "1.0", tag=tag))
        sessions.append(session)
    groups = httpx.get(f"{server}/2.0/").json()["links"]["vnd-upload2-groups"]
    created = alice.post(groups, {"sessions": [s["session-token"] for s in sessions]})
    assert created.status_code == 201, created.text
    return alice, sessions, created.json()


def _published(dbsession) -> dict[str, int]:
    """How many files each project has published."""
    rows = dbsession.execute(sa.select(Project.normalized_name, sa.func.count(ReleaseFile.id))
                             .join(Release, Release.project_id == Project.id)
                             .join(ReleaseFile, ReleaseFile.release_id == Release.id)
                             .group_by(Project.normalized_name)).all()
    dbsession.rollback()
    return dict(rows)


def test_concurrent_group_publishes_racing_single_publishes(clients, server, dbsession, stored_keys, dist_dir):
    alice, sessions, group = _staged_group(clients, server, dist_dir)
    connections = clients.connections(alice) + clients.connections(alice)[1:4]
    # THREADS publishes of the group, and each member published alone (refused while grouped),
    # locking the rows from both ends at once.
    results = race(*[lambda c=c: c.post(group["links"]["publish"]) for c in connections[:THREADS]],
                   *[lambda c=c, s=s: c.publish(s) for c, s in zip(connections[THREADS:], sessions)])

    groups, singles = results[:THREADS], results[THREADS:]
    assert statuses(groups) == {201: 1, 409: THREADS - 1}, [r.text for r in groups]
    assert statuses(singles) == {409: 3}, [r.text for r in singles]
    assert all(r.json()["errors"][0]["source"] in ("vnd-upload2-group", "status") for r in singles)
    assert _published(dbsession) == dict.fromkeys(GROUPED, 2)
    assert list(dbsession.scalars(sa.select(PublishingSession.status))) == [PublishingStatus.PUBLISHED] * 3
    dbsession.rollback()
    assert_no_orphans(dbsession, stored_keys)


def test_concurrent_group_publishes_racing_a_member_leaving_and_publishing_alone(clients, server, dbsession,
                                                                                 stored_keys, dist_dir):
    alice, sessions, group = _staged_group(clients, server, dist_dir)
    connections = clients.connections(alice)
    leaving = group["sessions"][0]
    results = race(*[lambda c=c: c.post(group["links"]["publish"]) for c in connections[:4]],
                   *[lambda c=c: c.http.delete(leaving["remove"]) for c in connections[4:6]],
                   *[lambda c=c: c.publish(sessions[0]) for c in connections[6:]])

    groups, removals, alone = results[:4], results[4:6], results[6:]
    assert statuses(groups) == {201: 1, 409: 3}, [r.text for r in groups]
    assert set(statuses(removals)) <= {200, 409} and set(statuses(alone)) <= {201, 409}
    assert sum(r.status_code == 201 for r in alone) <= 1
    published_group = next(r for r in groups if r.status_code == 201).json()
    members = [m["name"] for m in published_group["sessions"]]
    # No partial publish: what the group held when it published is published, all of it; core
    # went public with the group, or alone after leaving it, or not at all, but only once.
    assert all(m["status"] == "published" for m in published_group["sessions"])
    published = _published(dbsession)
    assert {name: published.get(name, 0) for name in GROUPED[1:]} == dict.fromkeys(GROUPED[1:], 2)
    core_alone = any(r.status_code == 201 for r in alone)
    assert published.get("core", 0) == (2 if "core" in members or core_alone else 0)
    assert not ("core" in members and core_alone)
    dbsession.rollback()
    assert_no_orphans(dbsession, stored_keys)
