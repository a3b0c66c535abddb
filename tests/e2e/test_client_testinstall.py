"""``--test-install``: stage, install the release from the stage into a fresh virtualenv
(its dependency from the public index), run a smoke command, publish only if it passes.
Everything comes from the local server: no other index is consulted."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import build_wheel
from tests.e2e.test_client_upload import client_env, published, run_client, run_json

SOURCE = "import helper\n\ndef answer():\n    return helper.VALUE * 42\n"


@pytest.fixture
def release(server, make_user, dist_dir, tmp_path):
    """A published dependency ``helper`` and a wheel of ``foo`` that needs it."""
    env = client_env(tmp_path, make_user("alice"))
    helper = build_wheel(dist_dir, "helper", "1.0")
    assert run_client(["upload", "--repository-url", f"{server}/legacy/", helper], env).returncode == 0
    dist_info = "foo-1.0.dist-info/METADATA"
    metadata = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\nRequires-Dist: helper>=1.0\n\n"
    wheel = build_wheel(dist_dir, "foo", "1.0", module_source=SOURCE, extra_members={dist_info: metadata})
    return env, wheel


def test_a_passing_smoke_command_publishes(server, release):
    env, wheel = release

    report = run_json(["upload", "--repository-url", f"{server}/legacy/", wheel,
                       "--test-install=python -c 'import foo; assert foo.answer() == 42; print(\"smoke ok\")'"], env)

    (session,) = report["sessions"]
    check = report["test-install"]
    assert check["ok"] is True and "smoke ok" in check["output"]
    stage = session["session"].replace("/sessions/", "/stage/")
    assert check["pip"] == f"pip install --index-url {stage} --extra-index-url {server}/simple/ foo==1.0"
    assert session["status"] == "published" and session["stage"] is None  # published: its stage is gone
    assert published(server, "foo") == {wheel.name: wheel.read_bytes()}


def test_a_failing_smoke_command_leaves_the_session_staged(server, release):
    env, wheel = release

    done = run_client(["upload", "--repository-url", f"{server}/legacy/", wheel,
                       "--test-install=python -c 'import foo; raise SystemExit(foo.answer() - 41)'"], env)

    assert done.returncode == 1
    assert "error: test install failed: python -c 'import foo; raise SystemExit(foo.answer() - 41)'" in done.stdout
    assert "smoke command failed (exit status 1)" in done.stdout
    session = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("  session: "))
    state = httpx.get(session, auth=("__token__", env["UPLOAD2_TOKEN"])).json()
    assert state["status"] == "open" and list(state["files"]) == [wheel.name]
    assert published(server, "foo") == {}


def test_the_default_test_imports_the_wheels_modules_and_can_cancel_on_failure(server, make_user, dist_dir,
                                                                               tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    broken = build_wheel(dist_dir, "foo", "1.0", module_source="raise ImportError('broken on import')\n")

    report = run_json(["upload", "--repository-url", f"{server}/legacy/", "--cancel-on-failure", "--test-install",
                       broken], env, expect=1)

    check = report["test-install"]
    assert check["ok"] is False and check["command"] == "python -c 'import foo'"
    assert "broken on import" in check["output"]
    assert report["sessions"][0]["status"] == "canceled"
    assert published(server, "foo") == {}
