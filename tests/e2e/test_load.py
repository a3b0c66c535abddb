"""benchmarks/load.py, shortened: concurrent sessions with both mechanisms on real servers,
then its checks (no 5xx, no "database is locked", every file downloaded with its sha256, no
orphan blob or row). No timing is asserted: the figures are the benchmark's."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def load():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import load
    finally:
        sys.path.remove(str(BENCHMARKS))
    return load


def run(load, tmp_path, *options) -> dict:
    output = tmp_path / "load.json"
    code = load.main(["--sessions", "6", "--files", "3", "--size-kib", "96", "--chunk-mib", "1", "--projects", "2",
                      "--tmpdir", str(tmp_path), "--output", str(output), *options])
    document = json.loads(output.read_text())
    assert document["problems"] == [] and code == 0
    result = document["result"]
    assert result["published_files"] == result["files"] == 18
    assert set(result["steps"]) == set(load.STEPS)
    return result


def test_load_on_the_embedded_default_sqlite(load, tmp_path):
    run(load, tmp_path)


def test_load_on_waitress_and_sqlite(load, tmp_path):
    run(load, tmp_path, "--server", "waitress")


def test_load_on_postgresql_with_a_celery_worker(load, tmp_path):
    database, broker = os.environ.get("UPLOAD2_TEST_DATABASE_URL"), os.environ.get("UPLOAD2_TEST_REDIS_URL")
    if not database or not broker:
        pytest.skip("needs Redis and PostgreSQL (UPLOAD2_TEST_REDIS_URL, UPLOAD2_TEST_DATABASE_URL)")
    result = run(load, tmp_path, "--database-url", database, "--broker-url", broker)
    assert result["statuses"]["202"] > result["files"]  # create file, and resumable completes deferred
