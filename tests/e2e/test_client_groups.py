"""The release client and release groups: ``upload`` of several projects publishes them in one
group, all or none; ``group status|publish|cancel`` act on one by its URL. A real client process
against a real server process."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from pypi_upload2.builtin.models import Filename
from pypi_upload2.models import ReleaseGroup
from tests.conftest import build_sdist, build_wheel
from tests.e2e.test_client_upload import client_env, make_server, published, run_client, run_json  # noqa: F401
from tests.e2e.test_client_waits import TIMED_OUT, broker, no_worker, run_task  # noqa: F401

PROJECTS = ("core", "core-cli", "core-plugins")


def monorepo(dist_dir) -> list:
    return [path for name in PROJECTS for path in (build_sdist(dist_dir, name, "1.0"),
                                                    build_wheel(dist_dir, name, "1.0"))]


def test_files_of_several_projects_are_published_as_one_group(server, make_user, dist_dir, tmp_path):
    paths = monorepo(dist_dir)
    env = client_env(tmp_path, make_user("alice"))

    report = run_json(["upload", "--repository-url", f"{server}/2.0/", *paths], env)

    assert report["ok"] is True and report["error"] is None
    group = report["group"]
    assert group["status"] == "published" and group["created"] is True
    assert [(s["name"], s["status"]) for s in group["sessions"]] == [(n, "published") for n in PROJECTS]
    assert {s["status"] for s in report["sessions"]} == {"published"}
    for name in PROJECTS:
        assert sorted(published(server, name)) == sorted(p.name for p in paths if p.name.startswith(
            name.replace("-", "_") + "-"))
    status = run_json(["group", "status", group["links"]["group"]], env)
    assert status["group"]["status"] == "published" and status["ok"] is True


def test_staged_as_a_group_then_group_status_and_publish(server, make_user, dist_dir, tmp_path):
    paths = monorepo(dist_dir)
    env = client_env(tmp_path, make_user("alice"))

    done = run_client(["upload", "--repository-url", f"{server}/legacy/", "--stage", *paths], env)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("the release group is staged, not published: core 1.0, core-cli 1.0, core-plugins 1.0")
    staged = {key.strip(): value.strip() for key, _, value in (line.partition(": ") for line in lines[start + 1:])}
    group, stage = staged["group"], staged["stage"]
    assert stage.startswith(f"{server}/2.0/group-stage/")
    assert staged["test"] == (f"pip install --index-url {stage} --extra-index-url {server}/simple/ "
                              "core==1.0 core-cli==1.0 core-plugins==1.0")
    assert staged["publish"] == f"pypi-upload2 group publish {group}"
    assert staged["cancel"] == f"pypi-upload2 group cancel {group}"
    index = httpx.get(stage, headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert [p["name"] for p in index["projects"]] == list(PROJECTS)

    status = run_client(["group", "status", group], env)
    assert status.returncode == 0, status.stderr
    assert "status:     open" in status.stdout.splitlines()
    assert "sessions:   3" in status.stdout.splitlines()
    assert published(server, "core") == {}

    publish = run_client(["group", "publish", group], env)
    assert publish.returncode == 0, publish.stdout + publish.stderr
    assert "status:     published" in publish.stdout.splitlines()
    assert all(published(server, name) for name in PROJECTS)
    assert run_client(["group", "publish", group], env).returncode == 0  # a re-run finds it published
    too_late = run_client(["group", "cancel", group], env)
    assert too_late.returncode == 1 and "(HTTP 409)" in too_late.stdout


def test_one_conflicting_file_publishes_nothing_and_leaves_the_group_staged(server, make_user, dist_dir, tmp_path,
                                                                            dbsession):
    env = client_env(tmp_path, make_user("alice"))
    staged = run_json(["upload", "--repository-url", f"{server}/2.0/", "--stage", *monorepo(dist_dir)], env)
    url = staged["group"]["links"]["group"]
    dbsession.add(Filename(filename="core_plugins-1.0-py3-none-any.whl"))  # taken by another door meanwhile
    dbsession.commit()

    report = run_json(["group", "publish", url], env, expect=1)

    assert report["ok"] is False and report["error"]["status"] == 409
    assert [e["source"] for e in report["error"]["errors"]] == ["core_plugins-1.0-py3-none-any.whl"]
    assert report["group"]["status"] == "open"
    assert {s["status"] for s in report["group"]["sessions"]} == {"open"}  # staged, editable, for a retry
    assert all(published(server, name) == {} for name in PROJECTS)
    # Canceled, the group takes its sessions with it.
    canceled = run_json(["group", "cancel", url], env)
    assert canceled["group"]["status"] == "canceled"
    assert {s["status"] for s in canceled["group"]["sessions"]} == {"canceled"}


def test_no_group_publishes_each_release_on_its_own(server, make_user, dist_dir, tmp_path, dbsession):
    env = client_env(tmp_path, make_user("alice"))
    report = run_json(["upload", "--repository-url", f"{server}/2.0/", "--no-group", *monorepo(dist_dir)], env)
    assert report["ok"] is True and report["group"] is None
    assert dbsession.scalar(sa.select(sa.func.count()).select_from(ReleaseGroup)) == 0
    dbsession.commit()
    refused = run_client(["upload", "--repository-url", f"{server}/2.0/", "--group",
                          build_wheel(dist_dir, "solo", "1.0")], env)
    assert refused.returncode == 1 and "--group needs one release of each of several projects" in refused.stdout


def test_a_group_publish_no_worker_runs_stops_after_the_wait_timeout_and_group_publish_resumes(
        no_worker, make_user, dist_dir, tmp_path, wsgi_app, dbsession):
    env = client_env(tmp_path, make_user("alice"))

    done = run_client(["upload", "--repository-url", f"{no_worker}/2.0/", "--wait-timeout", "2",
                       *monorepo(dist_dir)], env, timeout=120)

    assert done.returncode == TIMED_OUT, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    url = lines[lines.index("the release group is not published yet:") + 1].split(": ", 1)[1].strip()
    assert f"  resume:  pypi-upload2 group publish {url}   (waits, then publishes)" in lines
    assert "canceled" not in done.stdout

    report = run_json(["group", "publish", url, "--wait-timeout", "1"], env, expect=TIMED_OUT)
    assert report["timed-out"] is True and report["group"]["status"] == "processing"
    assert f"pypi-upload2 group publish {url}" in report["error"]["detail"]

    group_id = dbsession.scalar(sa.select(ReleaseGroup.id))
    dbsession.commit()
    run_task(wsgi_app, "publish_group", group_id)  # a worker's part
    resumed = run_json(["group", "publish", url], env)
    assert resumed["group"]["status"] == "published"
    assert all(published(no_worker, name) for name in PROJECTS)


def test_a_failed_publish_check_leaves_every_release_of_the_group_staged(make_server, make_user, dist_dir,
                                                                         tmp_path):
    server = make_server({"upload2.project_quota": "4000"})
    paths = [build_wheel(dist_dir, name, "1.0", padding=3000 if name == "core-cli" else 0) for name in PROJECTS]
    env = client_env(tmp_path, make_user("alice"))

    done = run_client(["upload", "--repository-url", f"{server}/2.0/", *paths], env)

    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("error: the release group: publishing failed:") for line in lines), done.stdout
    assert "nothing of it was published" in done.stdout
    start = lines.index("the release group is staged, not published: core 1.0, core-cli 1.0, core-plugins 1.0")
    url = lines[start + 1].split(": ", 1)[1].strip()
    assert f"  publish: pypi-upload2 group publish {url}" in lines
    assert all(published(server, name) == {} for name in PROJECTS)
    assert run_json(["group", "status", url], env)["group"]["status"] == "open"
