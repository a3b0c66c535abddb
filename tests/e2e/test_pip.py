"""Real pip, in a fresh virtualenv, installing from the stage and the public index of a real server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import build_sdist, build_wheel

CT = "application/vnd.pypi.upload.v2+json"
META = {"api-version": "2.0"}


def greeting(text: str) -> str:
    return f"def greet():\n    return {text!r}\n"


class Upload2:
    """The 2.0 flow over real HTTP, following the links the server hands out."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.http = httpx.Client(auth=("__token__", token), timeout=60)

    def post(self, url, body=None, status=None):
        response = self.http.post(url, json={"meta": META, **(body or {})}, headers={"Content-Type": CT})
        if status is not None:
            assert response.status_code == status, response.text
        return response

    def create_session(self, name, version):
        return self.post(f"{self.base}/2.0/", {"name": name, "version": version}, status=201).json()

    def upload(self, session, path):
        data = path.read_bytes()
        file_session = self.post(session["links"]["upload"], {
            "filename": path.name, "size": len(data), "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "mechanism": "http-post-bytes"}, status=202).json()
        sent = self.http.post(file_session["mechanism"]["file_url"], content=data,
                              headers={"Content-Type": "application/octet-stream"})
        assert sent.status_code == 204, sent.text
        completed = self.post(file_session["links"]["complete"], status=201).json()
        assert completed["status"] == "completed"

    def status(self, session):
        response = self.http.get(session["links"]["session"])
        assert response.status_code == 200, response.text
        return response.json()

    def publish(self, session):
        assert self.post(session["links"]["publish"], status=201).json()["status"] == "published"

    def close(self):
        self.http.close()


class Venv:
    """One fresh virtualenv per test (creating one is slow); installs are undone between uses."""

    def __init__(self, path):
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
        self.python = str(path / "bin" / "python")
        # No user or site pip configuration may point pip at another index.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        self.env["PIP_CONFIG_FILE"] = os.devnull

    def pip(self, *args, check=True):
        result = subprocess.run([self.python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                                capture_output=True, text=True, env=self.env, timeout=300)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def install(self, index_url, requirement, check=True):
        return self.pip("install", "--no-cache-dir", "--index-url", index_url, requirement, check=check)

    def uninstall(self, name):
        self.pip("uninstall", "-y", name)

    def run(self, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, "-c", code], capture_output=True, text=True, env=self.env,
                              cwd=os.path.dirname(self.python), timeout=60)

    def greet(self) -> str:
        result = self.run("import foo; print(foo.greet())")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture
def venv(tmp_path):
    return Venv(tmp_path / "venv")


@pytest.fixture
def upload2(server, make_user):
    client = Upload2(server, make_user("alice"))
    yield client
    client.close()


def test_pip_installs_from_the_stage_then_from_the_index_once_published(server, upload2, venv, dist_dir):
    source = greeting("hello from foo 1.0")
    paths = [build_sdist(dist_dir, "foo", "1.0"),
             build_wheel(dist_dir, "foo", "1.0", module_source=source),
             build_wheel(dist_dir, "foo", "1.0", tag="py2.py3-none-any", module_source=source)]
    session = upload2.create_session("foo", "1.0")
    for path in paths:
        upload2.upload(session, path)
    assert sorted(upload2.status(session)["files"]) == sorted(p.name for p in paths)
    public = f"{server}/simple/"

    venv.install(session["links"]["stage"], "foo==1.0")
    assert venv.greet() == "hello from foo 1.0"
    venv.uninstall("foo")
    refused = venv.install(public, "foo==1.0", check=False)
    assert refused.returncode != 0
    assert "No matching distribution found for foo==1.0" in refused.stderr
    assert venv.run("import foo").returncode != 0

    upload2.publish(session)
    venv.install(public, "foo==1.0")
    assert venv.greet() == "hello from foo 1.0"
    # The stage went away with the publish.
    venv.uninstall("foo")
    assert venv.install(session["links"]["stage"], "foo==1.0", check=False).returncode != 0


def test_a_broken_wheel_replaced_in_the_stage_is_what_pip_gets(server, upload2, venv, dist_dir, tmp_path):
    broken_dir, fixed_dir = tmp_path / "broken", tmp_path / "fixed"
    broken_dir.mkdir()
    fixed_dir.mkdir()
    broken = build_wheel(broken_dir, "foo", "1.0",
                         module_source="def greet():\n    raise RuntimeError('broken build')\n")
    fixed = build_wheel(fixed_dir, "foo", "1.0", module_source=greeting("fixed"))
    assert broken.name == fixed.name and broken.read_bytes() != fixed.read_bytes()
    session = upload2.create_session("foo", "1.0")
    stage = session["links"]["stage"]
    upload2.upload(session, broken)

    venv.install(stage, "foo==1.0")
    failed = venv.run("import foo; foo.greet()")
    assert failed.returncode != 0 and "broken build" in failed.stderr
    venv.uninstall("foo")

    # Delete the bad file, upload the good one under the same name.
    link = upload2.status(session)["files"][broken.name]["link"]
    assert upload2.http.delete(link).status_code == 204
    assert upload2.status(session)["files"] == {}
    upload2.upload(session, fixed)
    listing = httpx.get(stage + "foo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert [f["hashes"]["sha256"] for f in listing["files"]] == [hashlib.sha256(fixed.read_bytes()).hexdigest()]

    venv.install(stage, "foo==1.0")
    assert venv.greet() == "fixed"
    venv.uninstall("foo")
    upload2.publish(session)
    venv.install(f"{server}/simple/", "foo==1.0")
    assert venv.greet() == "fixed"


def test_pip_installs_every_project_of_a_release_group_from_its_stage(server, upload2, venv, dist_dir):
    """A monorepo's three projects, one requiring the others: pip resolves all three from the
    group's one stage URL, and from the public index once the group is published."""
    requires = {"core": [], "core-cli": ["core==1.0"], "core-plugins": ["core==1.0", "core-cli==1.0"]}
    sessions = []
    for name, deps in requires.items():
        session = upload2.create_session(name, "1.0")
        upload2.upload(session, build_wheel(dist_dir, name, "1.0", requires_dist=deps,
                                            module_source=greeting(f"hello from {name}")))
        sessions.append(session)
    groups = httpx.get(f"{server}/2.0/").json()["links"]["vnd-upload2-groups"]
    group = upload2.post(groups, {"sessions": [s["session-token"] for s in sessions]}, status=201).json()
    public = f"{server}/simple/"

    venv.install(group["links"]["stage"], "core-plugins==1.0")
    for name in requires:
        module = name.replace("-", "_")
        result = venv.run(f"import {module}; print({module}.greet())")
        assert result.returncode == 0 and result.stdout.strip() == f"hello from {name}", result.stderr
    venv.pip("uninstall", "-y", *requires)
    assert venv.install(public, "core-plugins==1.0", check=False).returncode != 0

    assert upload2.post(group["links"]["publish"], status=201).json()["status"] == "published"
    venv.install(public, "core-plugins==1.0")
    assert venv.run("import core, core_cli, core_plugins").returncode == 0
    venv.pip("uninstall", "-y", *requires)
    assert venv.install(group["links"]["stage"], "core==1.0", check=False).returncode != 0
