"""What the client says when something is wrong: every ``--json`` failure carries a whole
problem object, a URL that is no upload endpoint is named with the URLs to use instead
(never with the HTML it answered), and an ended session's stage is not offered as usable."""

from __future__ import annotations

import httpx

from tests.conftest import CT, META, build_wheel
from tests.e2e.test_client_upload import client_env, run_client, run_json

PROBLEM_KEYS = {"status", "title", "detail", "errors"}


def server_problem(url: str, token: str, body: dict) -> dict:
    """The problem the server itself answers, in the shape the client reports it."""
    answer = httpx.post(url, json={"meta": META, **body}, auth=("__token__", token), headers={"Content-Type": CT})
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    return {k: answer.json()[k] for k in PROBLEM_KEYS}


def test_a_refused_session_creation_reports_the_whole_problem(server, make_user, dist_dir, tmp_path):
    make_user("alice")
    wheel = build_wheel(dist_dir, "foo", "1.0")

    report = run_json(["upload", "--repository-url", f"{server}/legacy/", "--token", "pypi-not-a-token", wheel],
                      client_env(tmp_path), expect=1)

    expected = server_problem(f"{server}/2.0/", "pypi-not-a-token", {"name": "foo", "version": "1.0"})
    assert expected["status"] == 401 and expected["errors"]
    assert report["error"] == expected and report["ok"] is False


def test_an_open_session_and_a_session_action_report_the_whole_problem(server, make_user, dist_dir, tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    staged = run_json(["upload", "--repository-url", f"{server}/2.0/", "--stage", build_wheel(dist_dir, "foo", "1.0")],
                      env)
    url = staged["sessions"][0]["session"]

    wheel = build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any")
    again = run_json(["upload", "--repository-url", f"{server}/2.0/", wheel], env, expect=1)
    assert again["error"] == server_problem(f"{server}/2.0/", env["UPLOAD2_TOKEN"], {"name": "foo", "version": "1.0"})
    assert again["error"]["status"] == 409

    purged = run_json(["session", "status", url + "nothing/"], env, expect=1)
    assert set(purged["error"]) == PROBLEM_KEYS and purged["error"]["status"] == 404
    assert purged["error"]["title"] and purged["error"]["errors"]

    usage = run_json(["session", "status", url], client_env(tmp_path), expect=2)  # no credentials
    assert usage["error"] == {"status": None, "title": usage["error"]["title"], "detail": "", "errors": []}
    assert usage["error"]["title"].startswith("no credentials")


def test_failed_files_are_summed_up_with_one_error_each(server, make_user, dist_dir, tmp_path):
    broken = dist_dir / "foo-1.2-py3-none-any.whl"
    broken.write_bytes(b"not a zip file at all")

    report = run_json(["upload", "--repository-url", f"{server}/legacy/", broken],
                      client_env(tmp_path, make_user("alice")), expect=1)

    assert report["error"]["status"] is None
    assert report["error"]["title"] == f"1 of 1 file failed: {broken.name}"
    (error,) = report["error"]["errors"]
    assert error["source"] == broken.name and "(HTTP 400)" in error["message"]
    (entry,) = report["sessions"][0]["files"]
    assert set(entry["error"]) == PROBLEM_KEYS and entry["error"]["status"] == 400


def test_a_url_that_is_no_upload_endpoint_is_named_with_the_urls_to_use(server, make_user, dist_dir, tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0")
    simple = f"{server}/simple/"
    neither = httpx.post(simple, content=b"")  # what it answers a form: 404, a page
    assert neither.status_code == 404 and neither.headers["Content-Type"].startswith("text/html")

    done = run_client(["upload", "--repository-url", simple, wheel], env)

    assert done.returncode == 1
    assert "<" not in done.stdout + done.stderr
    (paragraph,) = [line for line in done.stdout.splitlines() if line.startswith("error: ")]
    assert paragraph.startswith(f"error: {simple} is not an upload endpoint: it answered HTTP 404 (")
    assert "to an Upload 2.0 request and HTTP 404 (text/html) to a legacy upload." in paragraph
    assert paragraph.endswith(f"its Upload 2.0 root (e.g. {server}/2.0/) or its legacy upload endpoint "
                              f"(e.g. {server}/legacy/).")

    report = run_json(["upload", "--repository-url", simple, wheel], env, expect=1)
    assert report["error"] == {"status": 404, "title": "Not an upload endpoint",
                               "detail": paragraph.removeprefix("error: "), "errors": []}
    assert report["files"][0]["error"]["detail"] == "The server answered with an HTML page (text/html)."

    forced = run_client(["upload", "--repository-url", simple, "--protocol", "2.0", wheel], env)
    assert forced.returncode == 1 and "<" not in forced.stdout
    assert f"error: {simple} is not an upload endpoint: it answered HTTP 404 (" in forced.stdout
    assert f"its Upload 2.0 root (e.g. {server}/2.0/); --protocol 2.0 needs Upload 2.0." in forced.stdout

    legacy = run_client(["upload", "--repository-url", simple, "--protocol", "legacy", wheel], env)
    assert legacy.returncode == 1
    assert "it answered HTTP 404 (text/html) to a legacy upload. Pass the index's upload URL" in legacy.stdout


def test_an_ended_sessions_stage_is_not_offered(server, make_user, dist_dir, tmp_path):
    env = client_env(tmp_path, make_user("alice"))
    staged = run_json(["upload", "--repository-url", f"{server}/legacy/", "--stage",
                       build_wheel(dist_dir, "foo", "1.0")], env)
    url, stage = staged["sessions"][0]["session"], staged["sessions"][0]["stage"]
    assert f"stage:      {stage}" in run_client(["session", "status", url], env).stdout.splitlines()

    published = run_json(["session", "publish", url], env)
    assert "stage" not in published["session"]["links"]
    assert httpx.get(stage).status_code == 404  # the server's answer once published
    status = run_client(["session", "status", url], env)
    assert status.returncode == 0
    assert stage not in status.stdout
    assert "stage:      none (the session is published; its stage is gone)" in status.stdout.splitlines()

    other = run_json(["upload", "--repository-url", f"{server}/legacy/", "--stage",
                      build_wheel(dist_dir, "bar", "1.0")], env)["sessions"][0]
    canceled = run_json(["session", "cancel", other["session"]], env)
    assert canceled["session"]["status"] == "canceled" and "stage" not in canceled["session"]["links"]
    assert other["stage"] not in run_client(["session", "status", other["session"]], env).stdout
