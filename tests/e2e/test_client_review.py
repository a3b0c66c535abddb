"""``pypi-upload2 session preflight`` and ``session diff`` against a real server process."""

from __future__ import annotations

import datetime

from pypi_upload2.builtin.models import Filename
from tests.conftest import build_sdist, build_wheel
from tests.e2e.test_client_upload import client_env, make_server, run_client, run_json  # noqa: F401


def _stage(server, env, paths) -> str:
    staged = run_json(["upload", "--repository-url", f"{server}/2.0/", "--stage", *paths], env)
    return staged["sessions"][0]["session"]


def test_preflight_then_diff_then_publish(server, make_user, dist_dir, tmp_path, dbsession):
    env = client_env(tmp_path, make_user("alice"))
    first = _stage(server, env, [build_sdist(dist_dir, "foo", "1.0"),
                                 build_wheel(dist_dir, "foo", "1.0", requires_dist=["click"])])
    ok = run_client(["session", "preflight", first], env)
    assert ok.returncode == 0 and ok.stdout.strip() == "a publish now would succeed", ok.stdout + ok.stderr
    assert run_client(["session", "publish", first], env).returncode == 0

    new = tmp_path / "new"
    new.mkdir()
    second = _stage(server, env, [build_wheel(new, "foo", "2.0", requires_dist=["click>=8", "rich"])])
    diff = run_client(["session", "diff", second], env)
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines() == [
        "against:    1.0", "files:", "  - foo-1.0.tar.gz", "requires-dist:", "  + rich", "  ~ click -> click>=8"]
    as_json = run_json(["session", "diff", second], env)
    assert as_json["ok"] and as_json["diff"]["requires-dist"]["added"] == ["rich"]

    # The 2.0 wheel's name is taken meanwhile, as by another door of the index.
    dbsession.add(Filename(filename="foo-2.0-py3-none-any.whl"))
    dbsession.commit()
    refused = run_client(["session", "preflight", second], env)
    assert refused.returncode == 1
    assert "foo-2.0-py3-none-any.whl: this filename is already used in the index" in refused.stdout + refused.stderr
    problem = run_json(["session", "preflight", second], env, expect=1)["error"]
    assert problem["status"] == 409 and problem["title"] == "Publish would fail"
    assert problem["errors"] == [{"source": "foo-2.0-py3-none-any.whl",
                                  "message": "this filename is already used in the index"}]


def test_upload_schedules_the_publish_and_session_unschedule_undoes_it(make_server, make_user, dist_dir, tmp_path):
    server = make_server({"upload2.scheduled_publish": "true"})
    env = client_env(tmp_path, make_user("alice"))
    when = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    done = run_client(["upload", "--repository-url", f"{server}/2.0/", "--publish-after", when,
                       build_wheel(dist_dir, "foo", "1.0")], env)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if "scheduled" in line)
    assert line.startswith(f"foo 1.0: scheduled to publish 1 file at {when}")
    session = line.rsplit(" ", 1)[1]
    status = run_client(["session", "status", session], env).stdout.splitlines()
    assert "status:     processing" in status and any(s.startswith(f"publishes:  {when}") for s in status)

    assert "status:     open" in run_client(["session", "unschedule", session], env).stdout.splitlines()
    again = run_client(["session", "unschedule", session], env)
    assert again.returncode == 1 and "not waiting for a scheduled publish" in again.stdout + again.stderr
