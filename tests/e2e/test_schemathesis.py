"""Schemathesis against a real server process: property-based requests to every operation
of the OpenAPI document, checking that the server answers no 5xx, only documented statuses,
media types and headers, and bodies valid against the document."""

from __future__ import annotations

import hashlib
import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import CT, META

ROOT = Path(__file__).resolve().parents[2]
# Deterministic and bounded: a fixed seed, a few examples per operation, one worker.
EXAMPLES = 10
SEED = 694
DOCUMENT = ROOT / "pypi_upload2" / "openapi.json"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the checks, and where the file operations go


def _file(http, session, filename, mechanism) -> str:
    created = http.post(session["links"]["upload"], headers={"Content-Type": CT}, json={
        "meta": META, "filename": filename, "size": 4096, "mechanism": mechanism,
        "hashes": {"sha256": hashlib.sha256(b"x").hexdigest()}})
    assert created.status_code == 202, created.text
    return created.json()["links"]["file-upload-session"].rstrip("/").rsplit("/", 1)[1]


def _targets(base, token) -> dict[str, str]:
    """A session with one file upload session per mechanism, for the file operations, and a
    release group."""
    with httpx.Client(auth=("__token__", token), timeout=30) as http:
        created = http.post(f"{base}/2.0/", headers={"Content-Type": CT},
                            json={"meta": META, "name": "st-probe", "version": "1.0"})
        assert created.status_code == 201, created.text
        session = created.json()
        # A release group of a session of its own, for the group operations.
        grouped = http.post(f"{base}/2.0/", headers={"Content-Type": CT},
                            json={"meta": META, "name": "st-group-probe", "version": "1.0"}).json()
        group = http.post(f"{base}/2.0/groups/", headers={"Content-Type": CT},
                          json={"meta": META, "sessions": [grouped["session-token"]]})
        assert group.status_code == 201, group.text
        return {"ST_TOKEN": session["session-token"], "ST_GROUP": group.json()["group-token"],
                "ST_GROUPED": grouped["session-token"],
                "ST_WHEEL": _file(http, session, "st_probe-1.0-py3-none-any.whl", "http-post-bytes"),
                "ST_SDIST": _file(http, session, "st_probe-1.0.tar.gz", "vnd-upload2-resumable-v1")}


def test_schemathesis_finds_nothing(server, make_user, tmp_path):
    token = make_user("fuzzer")
    targets = _targets(server, token)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    started = time.monotonic()
    # Run in tmp_path: schemathesis keeps a cache (.schemathesis/) where it runs.
    run = subprocess.run(
        [str(schemathesis), "--config-file", str(CONFIG), "run", f"{server}/2.0/openapi.json",
         "--auth", f"__token__:{token}", "--max-examples", str(EXAMPLES), "--seed", str(SEED),
         "--workers", "1", "--generation-database", "none", "--no-color"],
        cwd=tmp_path, env={**os.environ, **targets, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks", "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    # Every operation was run: none filtered out, at least one per path of the document.
    selected, total = map(int, re.search(r"(\d+) selected / (\d+) total", run.stdout).groups())
    assert selected == total >= len(json.loads(DOCUMENT.read_text())["paths"]), run.stdout
    assert time.monotonic() - started < 180
