"""Real pip against the UUID host app (tests/hostapp) in a real waitress process: from the
plugin's stage first, then from the host's own /simple/ once published."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.conftest import build_sdist, build_wheel, free_port, wait_for
from tests.e2e.test_pip import Upload2, Venv, greeting
from tests.hostapp.testing import host_files, host_settings, host_tables, make_account  # noqa: F401

ROOT = __file__.rsplit("/tests/", 1)[0]


@pytest.fixture
def host_server(host_settings, tmp_path):
    port = free_port()
    log = open(tmp_path / "host-server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tests.hostapp.serve", str(port),
                             *(f"{key}={value}" for key, value in host_settings.items())],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


class BearerUpload2(Upload2):
    def __init__(self, base: str, key: str):
        super().__init__(base, "unused")
        self.http.close()
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_pip_installs_from_the_stage_then_from_the_hosts_own_index(host_server, make_account, dist_dir, tmp_path):
    upload2 = BearerUpload2(host_server, make_account("alice")[1])
    venv = Venv(tmp_path / "venv")
    try:
        session = upload2.create_session("foo", "1.0")
        for path in (build_sdist(dist_dir, "foo", "1.0"),
                     build_wheel(dist_dir, "foo", "1.0", module_source=greeting("hello from the host"))):
            upload2.upload(session, path)
        host_index = f"{host_server}/simple/"

        venv.install(session["links"]["stage"], "foo==1.0")
        assert venv.greet() == "hello from the host"
        venv.uninstall("foo")
        refused = venv.install(host_index, "foo==1.0", check=False)
        assert refused.returncode != 0 and "No matching distribution found for foo==1.0" in refused.stderr

        upload2.publish(session)
        installed = venv.install(host_index, "foo==1.0")
        assert venv.greet() == "hello from the host"
        assert f"{host_server}/packages/" in installed.stdout  # the host's own file route served it
    finally:
        upload2.close()
