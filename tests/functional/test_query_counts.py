"""Statements per request on the small-request paths, counted by kind: a regression (an
extra load, a lazy relationship, a second lookup of the token) fails here. Transaction
control (BEGIN, SAVEPOINT, RELEASE) is not counted: it differs between SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import contextlib

import pytest
import sqlalchemy as sa

from tests.conftest import build_wheel
from tests.s3 import STORAGE
from tests.functional.test_legacy import encode, twine_fields

KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def statements(wsgi_app):
    """A context manager counting, by kind, the statements the app's engine runs inside it."""
    engine = wsgi_app.registry["upload2.engine"]

    @contextlib.contextmanager
    def record():
        seen = collections.Counter()

        def on_execute(conn, cursor, statement, *args):
            kind = statement.lstrip().split(None, 1)[0].upper()
            if kind in KINDS:
                seen[kind] += 1

        sa.event.listen(engine, "before_cursor_execute", on_execute)
        try:
            yield seen
        finally:
            sa.event.remove(engine, "before_cursor_execute", on_execute)

    return record


def counts(seen) -> dict[str, int]:
    return {kind: seen[kind] for kind in KINDS if seen[kind]}


@pytest.fixture
def small_wheel(dist_dir):
    return build_wheel(dist_dir, "foo", "1.0", padding=10 * 1024)


@pytest.fixture
def warm(alice):
    """One authenticated request first: the token's ``last_used`` is then fresh, and later
    requests do not write it (at most once a minute)."""
    alice.get("/2.0/sessions/none/", status=404)
    return alice


def five_requests(alice, wheel, statements, version="1.0") -> list[dict[str, int]]:
    """One release through create session, create file, POST bytes, complete, publish: the
    statements each request ran, by kind."""
    steps = [
        lambda: alice.create_session(version=version).json,
        lambda session: (session, alice.start_file(session, wheel).json),
        lambda pair: alice.send_bytes(pair[1], wheel.read_bytes()) and pair,
        lambda pair: alice.post(pair[1]["links"]["complete"], status=201) and pair,
        lambda pair: alice.publish(pair[0]),
    ]
    found, value = [], None
    for n, step in enumerate(steps):
        with statements() as seen:
            value = step() if n == 0 else step(value)
        found.append(counts(seen))
    return found


# On the local disk (a move is a rename) the body arrives before the file is locked: its row
# is read again under the lock.
RELOCK = 1 if STORAGE == "local" else 0


def test_a_first_release_through_its_five_requests(warm, small_wheel, statements):
    assert five_requests(warm, small_wheel, statements) == [
        # The token (with its user), the project, the name's reservation; reserve the name,
        # the session. A new session has no files to load.
        {"SELECT": 3, "INSERT": 2},
        # The token, the session, the project, the filename registry, the session's files; the file.
        {"SELECT": 5, "INSERT": 1},
        # The token, the session, the project, the file (and again, locked); what it received.
        {"SELECT": 4 + RELOCK, "UPDATE": 1},
        {"SELECT": 4, "UPDATE": 1},
        # The token, the session, the project, the files, the quota, the release; the filename,
        # the project and its role, the release and its file; the owner's pending trusted
        # publishers of the name become the project's; the reservation ends.
        {"SELECT": 6, "INSERT": 5, "UPDATE": 2, "DELETE": 1},
    ]


def test_a_later_release_of_a_registered_project(warm, small_wheel, dist_dir, statements):
    five_requests(warm, small_wheel, statements)
    later = build_wheel(dist_dir, "foo", "2.0", padding=10 * 1024)
    # The project is registered: each request also asks for the caller's role, and the
    # new-files window for the release's first publication.
    assert five_requests(warm, later, statements, version="2.0") == [
        {"SELECT": 3, "INSERT": 1},
        {"SELECT": 7, "INSERT": 1},
        {"SELECT": 5 + RELOCK, "UPDATE": 1},
        {"SELECT": 5, "UPDATE": 1},
        {"SELECT": 8, "INSERT": 3, "UPDATE": 1, "DELETE": 1},
    ]


def test_a_legacy_upload(warm, small_wheel, dist_dir, statements):
    alice = warm
    body, content_type = encode([*twine_fields(small_wheel), ("content", (small_wheel.name, small_wheel.read_bytes()))])
    with statements() as seen:
        alice.app.post("/legacy/", body, headers={**alice.headers, "Content-Type": content_type}, status=200)
    # The token, the project, the published file, the name's reservation, the filename registry,
    # the quota, the release; and the writes of a first release's publish. The session's files
    # are the one it was given: no query for them.
    assert counts(seen) == {"SELECT": 8, "INSERT": 8, "UPDATE": 3, "DELETE": 1}

