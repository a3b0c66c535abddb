"""End to end: the Warehouse app with the plugin in a real waitress process, and pip installing
a staged release from its stage URL into a fresh virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import build_wheel, free_port, wait_for

SERVE = """
import pathlib, sys
from waitress import serve
from tests.warehouse.conftest import build_app
database, files, storage, redis_url, port = sys.argv[1:]
app = build_app(database, pathlib.Path(files), pathlib.Path(storage), redis_url)
serve(app, host="127.0.0.1", port=int(port), threads=4)
"""


@pytest.fixture
def served(wh_database, wh_paths, wh_services, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, wh_database, str(wh_paths[0]), str(wh_paths[1]),
                             wh_services[1], str(port)],
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/simple/", timeout=90)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_pip_installs_a_staged_release_from_the_stage(owner, served, dist_dir, tmp_path):
    name = owner.project
    wheel = build_wheel(dist_dir, name, "1.0", module_source="VALUE = 'staged'\n")
    session = owner.create_session(name, "1.0").json
    owner.upload(session, wheel)
    stage = session["links"]["stage"].replace("http://localhost", served)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
                          "--index-url", stage, f"{name}=={'1.0'}"], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    module = name.replace("-", "_")
    out = subprocess.run([python, "-c", f"import {module}; print({module}.VALUE)"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "staged"
    # Still staged: Warehouse does not show it.
    assert wheel.name not in owner.app.get(f"/simple/{name}/").text
