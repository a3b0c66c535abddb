"""The legacy upload API with the real clients (twine, uv) against a real server process,
then installed with pip from the simple index; a staged legacy upload installed from its
stage, then published through 2.0; and legacy uploads racing a 2.0 publish."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading

import httpx
import pytest
import sqlalchemy as sa

from pypi_upload2.models import FileUploadSession
from pypi_upload2.builtin.models import ReleaseFile
from pypi_upload2.states import FileStatus
from tests.conftest import CT, META, basic, build_sdist, build_wheel
from tests.e2e.test_pip import Venv

BIN = os.path.dirname(sys.executable)


def run(*command, cwd, env=None) -> subprocess.CompletedProcess:
    # Clients read no user configuration and reach nothing but the test server.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1", "UV_NO_CONFIG": "1",
           "UV_CACHE_DIR": str(cwd / "uv-cache"), **(env or {})}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def twine(base, token, *paths, cwd):
    return run(os.path.join(BIN, "twine"), "upload", "--repository-url", f"{base}/legacy/", "-u", "__token__",
               "-p", token, "--non-interactive", "--disable-progress-bar", *map(str, paths), cwd=cwd)


def uv_publish(base, token, *paths, cwd, check=False):
    check_url = ["--check-url", f"{base}/simple/"] if check else []
    return run(os.path.join(BIN, "uv"), "publish", "--publish-url", f"{base}/legacy/", "--username", "__token__",
               "--password", token, "--trusted-publishing", "never", *check_url, *map(str, paths), cwd=cwd)


def pip_install(base, requirement, tmp_path) -> str:
    """Install ``requirement`` from the server's index into a fresh target; return its VALUE."""
    target = tmp_path / "site"
    done = run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--disable-pip-version-check",
               "--index-url", f"{base}/simple/", "--target", str(target), requirement, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    module = requirement.split("==")[0].replace("-", "_")
    value = run(sys.executable, "-c", f"import {module}; print({module}.VALUE)", cwd=tmp_path,
                env={"PYTHONPATH": str(target)})
    assert value.returncode == 0, value.stderr
    return value.stdout.strip()


def test_twine_uploads_and_pip_installs(server, make_user, dist_dir, tmp_path):
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "legacy-demo", "1.0", module_source="VALUE = 'from twine'\n")
    sdist = build_sdist(dist_dir, "legacy-demo", "1.0")
    done = twine(server, token, wheel, sdist, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pip_install(server, "legacy-demo==1.0", tmp_path) == "from twine"
    index = httpx.get(f"{server}/simple/legacy-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert sorted(f["filename"] for f in index.json()["files"]) == sorted([wheel.name, sdist.name])

    # The same bytes again: nothing to do, and twine is content.
    assert twine(server, token, wheel, cwd=tmp_path).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    changed = build_wheel(other, "legacy-demo", "1.0", module_source="VALUE = 'changed'\n")
    refused = twine(server, token, changed, cwd=tmp_path)
    assert refused.returncode == 1
    assert "400 Bad Request" in refused.stdout + refused.stderr
    assert "File already exists" in " ".join((refused.stdout + refused.stderr).split())


def test_twines_skip_existing_recognizes_the_refusal(server, make_user, dist_dir, tmp_path):
    """twine 7 accepts --skip-existing on its command line only for PyPI's URLs, so its
    decision is exercised as the CLI makes it: twine's own upload, then its skip_upload()."""
    from twine.commands.upload import skip_upload
    from twine.package import PackageFile
    from twine.repository import Repository

    token = make_user("alice")
    wheel = build_wheel(dist_dir, "legacy-demo", "1.0")
    assert twine(server, token, wheel, cwd=tmp_path).returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    package = PackageFile.from_filename(str(build_wheel(other, "legacy-demo", "1.0", module_source="VALUE = 2\n")),
                                        comment=None)
    repository = Repository(f"{server}/legacy/", "__token__", token, disable_progress_bar=True)
    try:
        response = repository.upload(package)
    finally:
        repository.close()
    assert response.status_code == 400 and response.reason.startswith("File already exists")
    assert skip_upload(response, True, package)


def test_uv_publishes_and_pip_installs(server, make_user, dist_dir, tmp_path):
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "uv-demo", "2.0", module_source="VALUE = 'from uv'\n")
    sdist = build_sdist(dist_dir, "uv-demo", "2.0")
    done = uv_publish(server, token, wheel, sdist, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert pip_install(server, "uv-demo==2.0", tmp_path) == "from uv"

    # With --check-url, uv asks the index first and skips what is there byte for byte.
    again = uv_publish(server, token, wheel, cwd=tmp_path, check=True)
    assert again.returncode == 0 and "already exists, skipping" in again.stderr
    other = tmp_path / "other"
    other.mkdir()
    changed = build_wheel(other, "uv-demo", "2.0", module_source="VALUE = 'changed'\n")
    refused = uv_publish(server, token, changed, cwd=tmp_path)
    assert refused.returncode != 0 and "File already exists" in refused.stderr


def test_a_staged_legacy_upload_installs_from_the_stage_then_publishes_through_2_0(server, testapp, make_user,
                                                                                  dist_dir, tmp_path):
    """twine's command line cannot send ``staged=true``: a raw multipart form through WebTest
    (the same database and storage as the server, and the server's host, so the links it
    answers point there) stages the wheel, httpx stages the sdist on the real server with the
    header, pip installs from the stage in a fresh virtualenv, and a 2.0 publish makes it public."""
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "staged-demo", "1.0", module_source="VALUE = 'staged'\n")
    sdist = build_sdist(dist_dir, "staged-demo", "1.0")
    data = wheel.read_bytes()
    form = [(":action", "file_upload"), ("protocol_version", "1"), ("name", "staged-demo"), ("version", "1.0"),
            ("filetype", "bdist_wheel"), ("pyversion", "py3"), ("metadata_version", "2.1"),
            ("sha256_digest", hashlib.sha256(data).hexdigest()), ("staged", "true")]
    created = testapp.post("/legacy/", form, upload_files=[("content", wheel.name, data)], headers=basic(token),
                           extra_environ={"HTTP_HOST": server.removeprefix("http://")}, status=201)
    assert created.request.content_type == "multipart/form-data"
    body = created.json
    links = body["links"]
    assert created.headers["Location"] == links["session"]
    assert links["session"].startswith(f"{server}/2.0/sessions/") and links["stage"].startswith(f"{server}/2.0/stage/")
    assert (body["status"], body["files"][wheel.name]["status"]) == ("open", "completed")

    http = httpx.Client(auth=("__token__", token), timeout=60)
    sdist_data = sdist.read_bytes()
    joined = http.post(f"{server}/legacy/", headers={"X-Upload-Staged": "true"},
                       data={":action": "file_upload", "protocol_version": "1", "name": "staged-demo",
                             "version": "1.0", "sha256_digest": hashlib.sha256(sdist_data).hexdigest()},
                       files={"content": (sdist.name, sdist_data, "application/octet-stream")})
    assert joined.status_code == 200, joined.text
    assert joined.headers["Location"] == links["session"] and joined.json()["links"] == links
    assert httpx.get(f"{server}/simple/staged-demo/").status_code == 404  # staged, not public

    venv = Venv(tmp_path / "venv")
    venv.install(links["stage"], "staged-demo==1.0")
    assert venv.run("import staged_demo; print(staged_demo.VALUE)").stdout.strip() == "staged"
    venv.uninstall("staged-demo")

    published = http.post(links["publish"], json={"meta": META}, headers={"Content-Type": CT})
    assert (published.status_code, published.json()["status"]) == (201, "published"), published.text
    http.close()
    assert httpx.get(links["stage"]).status_code == 404  # the stage went away with the publish
    index = httpx.get(f"{server}/simple/staged-demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert sorted(f["filename"] for f in index.json()["files"]) == sorted([wheel.name, sdist.name])
    venv.install(f"{server}/simple/", "staged-demo==1.0")
    assert venv.run("import staged_demo; print(staged_demo.VALUE)").stdout.strip() == "staged"


def test_legacy_uploads_racing_a_2_0_publish(server, make_user, dbsession, is_postgresql, stored_keys, tmp_path):
    """Legacy uploads of one filename, each with other bytes, race the publish of a session
    holding it: the live session makes them 409 (or, once published, 400 File already exists).
    Then, with no session live, legacy uploads race each other for a new filename: the filename
    registry picks one. Nothing is published twice, no bytes are left over."""
    if not is_postgresql:
        pytest.skip("needs PostgreSQL (UPLOAD2_TEST_DATABASE_URL)")
    token = make_user("alice")
    client = httpx.Client(auth=("__token__", token), timeout=60)

    def call(url, body=None):
        return client.post(url, content=json.dumps({"meta": META, **(body or {})}),
                           headers={"Content-Type": CT})

    def contenders(round_, version, tag) -> list:
        paths = []
        for n in range(4):
            folder = tmp_path / f"r{round_}-{tag}-{n}"
            folder.mkdir()
            paths.append(build_wheel(folder, "race", version, tag=tag, module_source=f"VALUE = {n}\n"))
        return paths

    def race(version, legacy_paths, publish_url=None) -> dict:
        results, barrier = {}, threading.Barrier(len(legacy_paths) + (publish_url is not None))

        def legacy(n, path):
            data = path.read_bytes()
            files = {"content": (path.name, data, "application/octet-stream")}
            form = {":action": "file_upload", "protocol_version": "1", "name": "race", "version": version,
                    "sha256_digest": hashlib.sha256(data).hexdigest()}
            barrier.wait()
            results[n] = client.post(f"{server}/legacy/", data=form, files=files)

        def publish():
            barrier.wait()
            results[0] = call(publish_url)

        threads = [threading.Thread(target=legacy, args=(n, path)) for n, path in legacy_paths.items()]
        threads += [threading.Thread(target=publish)] if publish_url else []
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def published_sha256(filename) -> list[str]:
        index = client.get(f"{server}/simple/race/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        return [f["hashes"]["sha256"] for f in index.json()["files"] if f["filename"] == filename]

    for round_ in range(6):
        version = f"1.{round_}"
        paths = contenders(round_, version, "py3-none-any")
        staged = paths[0].read_bytes()
        session = call(f"{server}/2.0/", {"name": "race", "version": version}).json()
        file_session = call(session["links"]["upload"], {
            "filename": paths[0].name, "size": len(staged), "hashes": {"sha256": hashlib.sha256(staged).hexdigest()},
            "mechanism": "http-post-bytes"}).json()
        client.post(file_session["mechanism"]["file_url"], content=staged,
                    headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        assert call(file_session["links"]["complete"]).status_code == 201

        results = race(version, {n: paths[n] for n in range(1, 4)}, session["links"]["publish"])
        # The session was live before any legacy upload began: the publish wins, always.
        assert results[0].status_code == 201, {n: (r.status_code, r.text) for n, r in results.items()}
        for n in range(1, 4):
            expected = f"race {version} is being staged" if results[n].status_code == 409 else "File already exists"
            assert results[n].reason_phrase.startswith(expected), (results[n].status_code, results[n].text)
        assert published_sha256(paths[0].name) == [hashlib.sha256(staged).hexdigest()]

        # No session is live now: legacy uploads race each other for a new filename.
        others = contenders(round_, version, "py2-none-any")
        results = race(version, dict(enumerate(others)))
        won = [n for n, r in results.items() if r.status_code == 200]
        assert len(won) == 1, {n: (r.status_code, r.text) for n, r in results.items()}
        assert all(r.status_code == 400 and r.reason_phrase.startswith("File already exists")
                   for n, r in results.items() if n not in won), {n: (r.status_code, r.text) for n, r in results.items()}
        assert published_sha256(others[0].name) == [hashlib.sha256(others[won[0]].read_bytes()).hexdigest()]
    client.close()

    # Every stored blob belongs to a published file or to a live staged file.
    rows = dbsession.scalars(sa.select(ReleaseFile)).all()
    assert len(rows) == len({r.filename for r in rows}) == 12
    staged = dbsession.scalars(sa.select(FileUploadSession).where(FileUploadSession.status != FileStatus.CANCELED))
    keys = {k for obj in [*rows, *staged] for k in (obj.blob_key, obj.metadata_key)}
    blobs = stored_keys()
    assert blobs <= keys
    assert {r.blob_key for r in rows} <= blobs


def test_twine_and_uv_are_told_how_to_end_a_live_session_then_a_rerun_passes(server, make_user, dist_dir, tmp_path):
    """A release staged with the release client: twine and uv, which cannot stage, are told
    to publish or cancel the session with the command they print; after the advised
    ``pypi-upload2 session publish`` the same upload re-run is a no-op and passes."""
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "live-demo", "1.0")
    staged = run(os.path.join(BIN, "pypi-upload2"), "upload", "--repository-url", f"{server}/legacy/", "--token",
                 token, "--stage", "--json", str(wheel), cwd=tmp_path)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    url = json.loads(staged.stdout)["sessions"][0]["session"]

    # twine's console wraps at 80 columns, in the middle of a URL too: COLUMNS widens it.
    refused = run(os.path.join(BIN, "twine"), "upload", "--repository-url", f"{server}/legacy/", "-u", "__token__",
                  "-p", token, "--non-interactive", "--disable-progress-bar", str(wheel), cwd=tmp_path,
                  env={"COLUMNS": "500"})
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1 and f"409 Conflict from {server}/legacy/" in output
    assert "twine cannot stage files in it" in output and f"pypi-upload2 session publish {url}" in output
    told = uv_publish(server, token, wheel, cwd=tmp_path)
    assert told.returncode != 0 and "uv cannot stage files in it" in told.stderr
    assert f"pypi-upload2 session publish {url}" in told.stderr

    published = run(os.path.join(BIN, "pypi-upload2"), "session", "publish", url, "--token", token, cwd=tmp_path)
    assert published.returncode == 0, published.stdout + published.stderr
    assert twine(server, token, wheel, cwd=tmp_path).returncode == 0  # the published bytes: a no-op
    assert uv_publish(server, token, wheel, cwd=tmp_path).returncode == 0
