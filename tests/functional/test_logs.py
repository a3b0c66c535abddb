"""The request log (one line per request to the plugin's routes) and the audit log (publish,
cancel) through standard logging; never a token."""

from __future__ import annotations

import logging
import re

import pytest

from tests.conftest import Uploader, basic, build_wheel
from tests.functional.test_legacy import Legacy

LINE = re.compile(r"(?P<method>[A-Z]+) (?P<path>\S+) route=(?P<route>\S+) status=(?P<status>\d+) ms=[0-9.]+"
                  r"(?: user=(?P<user>\S+))?(?: project=(?P<project>\S+))?(?: session=(?P<session>\d+))?$")


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.INFO, logger="pypi_upload2")

    def lines(logger: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == logger]

    return lines


def test_every_request_is_logged_with_who_and_what_never_the_token(testapp, make_user, dist_dir, logged, caplog):
    token, other = make_user("alice"), make_user("bob")
    alice = Uploader(testapp, token)
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    alice.publish(session)
    Uploader(testapp, other).create_session("foo", "2.0", status=403)
    testapp.post("/2.0/", "{}", headers={"Content-Type": "application/vnd.pypi.upload.v2+json"}, status=401)
    Legacy(testapp, token).upload(build_wheel(dist_dir, "foo", "1.1"))

    entries = [LINE.match(line) for line in logged("pypi_upload2.requests")]
    assert all(entries), logged("pypi_upload2.requests")
    seen = [(e["method"], e["route"], e["status"], e["user"], e["project"]) for e in entries]
    assert seen[0] == ("POST", "upload2.root", "201", "alice", "foo")
    assert ("POST", "upload2.publish", "201", "alice", "foo") in seen
    assert ("POST", "upload2.root", "403", "bob", "foo") in seen
    assert ("POST", "upload2.root", "401", None, None) in seen
    assert seen[-1] == ("POST", "upload2.legacy", "200", "alice", "foo")
    sessions = {e["session"] for e in entries[:-3]}
    assert len(sessions) == 1 and None not in sessions
    # Every step of the upload: create, file, bytes, complete, publish.
    assert len(entries) == 5 + 3
    secrets = {token, other, token.rsplit("-", 1)[-1], session["session-token"]}
    assert not any(s in r.getMessage() or s in str(r.args) for r in caplog.records for s in secrets)


def test_publish_and_cancel_are_audited_after_commit(alice, dist_dir, logged):
    session = alice.create_session("foo", "1.0").json
    wheel = build_wheel(dist_dir, "foo", "1.0")
    alice.upload(session, wheel)
    alice.publish(session)
    other = alice.create_session("foo", "2.0").json
    alice.delete(other["links"]["session"])
    audit = logged("pypi_upload2.audit")
    assert len(audit) == 2
    assert audit[0].startswith(f"published foo 1.0: 1 file(s) {wheel.name}; session ")
    assert audit[1].startswith("canceled foo 2.0: session ") and audit[1].endswith("by alice")


def test_a_refused_publish_is_not_audited(alice, testapp, make_user, dist_dir, logged):
    session = alice.create_session("foo", "1.0").json
    alice.upload(session, build_wheel(dist_dir, "foo", "1.0"))
    intruder = basic(make_user("mallory"))
    testapp.post(session["links"]["publish"], "{}", headers={**intruder, "Content-Type":
                 "application/vnd.pypi.upload.v2+json"}, status=403)
    assert logged("pypi_upload2.audit") == []
