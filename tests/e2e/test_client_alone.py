"""The release client is a distribution of its own (client/): built and installed alone in a
fresh virtualenv, it brings httpx, rich and packaging and none of the server's dependencies,
and its ``pypi-upload2`` stages and publishes a release on a real server process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import build_wheel
from tests.e2e.test_client_upload import ROOT, client_env, published
from tests.e2e.test_pip import Venv

SERVER_ONLY = ("pyramid", "sqlalchemy", "celery", "alembic", "pypi_upload2")


def test_the_client_alone_stages_and_publishes(server, make_user, dist_dir, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(wheels), os.path.join(ROOT, "client")], check=True, timeout=300)
    venv = Venv(tmp_path / "venv")
    venv.pip("install", "--quiet", *map(str, wheels.glob("pypi_upload2_client-*.whl")))  # its dependencies from PyPI
    found = venv.run(f"import importlib.util as u; print([m for m in {SERVER_ONLY!r} if u.find_spec(m)])")
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr

    command = str(tmp_path / "venv" / "bin" / "pypi-upload2")
    env = client_env(tmp_path, make_user("alice"))
    wheel = build_wheel(dist_dir, "foo", "1.0")
    staged = subprocess.run([command, "upload", "--repository-url", f"{server}/legacy/", "--stage", str(wheel)],
                            env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    session = next(line.split(": ", 1)[1] for line in staged.stdout.splitlines()
                   if line.strip().startswith("session:"))
    assert published(server, "foo") == {}
    done = subprocess.run([command, "session", "publish", session], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert published(server, "foo") == {wheel.name: wheel.read_bytes()}

    # The server's commands are not there.
    admin = subprocess.run([command, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
    assert admin.returncode == 2 and "invalid choice: 'db'" in admin.stderr
