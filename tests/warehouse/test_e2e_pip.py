"""End to end: the Warehouse app with the plugin in a real waitress process, and pip installing
a staged release from its stage URL into a fresh virtual environment."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import build_wheel


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
