"""docs/host-app.md's example, as written: its files are taken from the page, served with
``pserve host.ini`` in a real process, and driven with the page's own commands (the plugin's
client CLI and pip), on the test database server when there is one."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import httpx
import pytest

from tests.conftest import build_sdist, build_wheel, free_port, wait_for
from tests.e2e.test_pip import Venv, greeting

ROOT = pathlib.Path(__file__).parents[2]
DOC = (ROOT / "docs" / "host-app.md").read_text()
BIN = pathlib.Path(sys.executable).parent
FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[\w./]+) -->\n```\w*\n(?P<text>.*?)```\n", re.S)

# The page's commands this test runs, each as the page spells it.
RUN = ["pypi-upload2 -c host.ini db upgrade --core",
       "python -m my_index.accounts host.ini alice > alice.token",
       "pserve host.ini"]
TRY = ["pypi-upload2 upload --repository-url http://127.0.0.1:6544/upload/2.0/ \\\n"
       '    --token "$(cat alice.token)" --stage dist/*',
       'pypi-upload2 session publish SESSION-URL --token "$(cat alice.token)"']


def test_the_page_spells_the_commands_this_test_runs():
    for command in RUN + TRY:
        assert command in DOC, command


def _write_example(folder: pathlib.Path, database_url: str, port: int) -> None:
    files = {m["path"]: m["text"] for m in FILE_BLOCK.finditer(DOC)}
    assert {"host.ini", "my_index/__init__.py", "my_index/adapters.py"} <= set(files)
    for path, text in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    ini = (folder / "host.ini").read_text()
    # Only where it runs changes: the test's database server, and a free port.
    if not database_url.startswith("sqlite"):
        ini = re.sub(r"(?m)^sqlalchemy\.url = .*$", f"sqlalchemy.url = {database_url}", ini)
    ini = ini.replace("listen = 127.0.0.1:6544", f"listen = 127.0.0.1:{port}")
    (folder / "host.ini").write_text(ini)


@pytest.fixture
def example(tmp_path, fresh_url):
    folder = tmp_path / "example"
    port = free_port()
    _write_example(folder, fresh_url, port)
    env = {**os.environ, "PYTHONPATH": str(folder)}

    def run(*argv: str) -> str:
        result = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=folder, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run("pypi-upload2", "-c", "host.ini", "db", "upgrade", "--core")
    tokens = {login: run("python", "-m", "my_index.accounts", "host.ini", login).strip() for login in ("alice", "bob")}
    log = open(tmp_path / "pserve.log", "wb")
    proc = subprocess.Popen([str(BIN / "pserve"), "host.ini"], cwd=folder, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/simple/")
        yield base, run, tokens, folder
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_the_example_stages_installs_and_publishes(example, dist_dir, tmp_path):
    base, run, tokens, folder = example
    dists = [str(build_sdist(dist_dir, "hello-index", "1.0")),
             str(build_wheel(dist_dir, "hello-index", "1.0", module="foo", module_source=greeting("hello")))]
    staged = run("pypi-upload2", "upload", "--repository-url", f"{base}/upload/2.0/", "--token", tokens["alice"],
                 "--stage", *dists)
    session_url = re.search(r"session: (\S+)", staged)[1]
    stage_url = re.search(r"stage: +(\S+)", staged)[1]
    venv = Venv(tmp_path / "venv")

    venv.install(stage_url, "hello-index==1.0")
    assert venv.greet() == "hello"
    venv.uninstall("hello-index")
    refused = venv.install(f"{base}/simple/", "hello-index==1.0", check=False)
    assert refused.returncode != 0 and "No matching distribution found" in refused.stderr

    run("pypi-upload2", "session", "publish", session_url, "--token", tokens["alice"])
    installed = venv.install(f"{base}/simple/", "hello-index==1.0")
    assert f"{base}/files/hello_index-1.0" in installed.stdout and venv.greet() == "hello"
    assert sorted(p.name for p in (folder / "var" / "files").iterdir()) == sorted(os.path.basename(d) for d in dists)

    # The project is alice's now: the index's own ACL refuses bob, through the 2.0 API.
    refused = httpx.post(f"{base}/upload/2.0/", auth=("__token__", tokens["bob"]),
                         headers={"Content-Type": "application/vnd.pypi.upload.v2+json"},
                         json={"meta": {"api-version": "2.0"}, "name": "hello-index", "version": "2.0"})
    assert refused.status_code == 403 and refused.headers["Content-Type"] == "application/problem+json"
    unknown = httpx.post(f"{base}/upload/2.0/", auth=("__token__", "not-a-token"),
                         headers={"Content-Type": "application/vnd.pypi.upload.v2+json"},
                         json={"meta": {"api-version": "2.0"}, "name": "hello-index", "version": "2.0"})
    assert unknown.status_code == 401 and unknown.headers["WWW-Authenticate"] == 'Basic realm="my_index"'
