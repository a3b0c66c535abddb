"""twine's own command line against forklift's /legacy/ in a real server process of the
Warehouse app with the plugin: it still publishes, and it shares one filename namespace with
the 2.0 API in both directions."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import assert_problem, build_sdist, build_wheel

SIMPLE_JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def twine(served, tmp_path):
    if importlib.util.find_spec("twine") is None or importlib.util.find_spec("keyring") is None:
        pytest.skip("twine's command line (twine and keyring) is not installed beside Warehouse")

    def upload(token: str, *paths) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
        return subprocess.run([sys.executable, "-m", "twine", "upload", "--repository-url", f"{served}/legacy/",
                               "-u", "__token__", "-p", token, "--non-interactive", "--disable-progress-bar",
                               *map(str, paths)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return upload


def listed(owner) -> dict[str, str]:
    files = owner.app.get(f"/simple/{owner.project}/", headers=SIMPLE_JSON).json["files"]
    return {f["filename"]: f["hashes"]["sha256"] for f in files}


def test_twine_publishes_through_forklift_beside_the_plugin(owner, twine, dist_dir):
    import hashlib

    name = owner.project
    wheel, sdist = build_wheel(dist_dir, name, "1.0"), build_sdist(dist_dir, name, "1.0")
    done = twine(owner.token, wheel, sdist)
    assert done.returncode == 0, done.stdout + done.stderr
    assert listed(owner) == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (wheel, sdist)}

    # Forklift's filename, refused by 2.0; and forklift refuses other bytes under it.
    session = owner.create_session(name, "1.0").json
    assert_problem(owner.start_file(session, wheel, status=409), 409, "filename")
    other = dist_dir / "other"
    other.mkdir()
    changed = build_wheel(other, name, "1.0", module_source="VALUE = 2\n")
    # While the session is live, its release is the session's to publish: twine is told so.
    refused = twine(owner.token, changed)
    assert refused.returncode != 0 and f"{name} 1.0 is being staged" in " ".join(refused.stdout.split())
    owner.delete(session["links"]["session"])
    refused = twine(owner.token, changed)
    assert refused.returncode != 0 and "File already exists" in refused.stdout + refused.stderr


def test_twine_is_refused_a_filename_that_2_0_published(owner, twine, dist_dir):
    name = owner.project
    wheel = build_wheel(dist_dir, name, "2.0")
    session = owner.create_session(name, "2.0").json
    owner.upload(session, wheel)
    owner.publish(session, status=201)
    other = dist_dir / "other"
    other.mkdir()
    changed = build_wheel(other, name, "2.0", module_source="VALUE = 2\n")
    refused = twine(owner.token, changed)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "File already exists" in output, output
    assert list(listed(owner)) == [wheel.name]
