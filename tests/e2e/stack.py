"""What the fault tests run beside the app: a Redis of their own (the machine's is never
stopped), and the ini that gunicorn and the worker share."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.conftest import free_port


class RedisServer:
    """``redis-server`` on a free port, without persistence: stopping it loses its messages,
    as a crashed broker would."""

    def __init__(self, tmp_path):
        self.port, self.dir, self.proc = free_port(), tmp_path, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                             check=False).stdout.strip() != b"PONG":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path, is_postgresql):
    if not is_postgresql:
        pytest.skip("needs PostgreSQL (UPLOAD2_TEST_DATABASE_URL)")
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def stack_ini(path, database_url, storage_dir, broker_url: str = "", **settings) -> str:
    """An ini for gunicorn and the worker; ``settings`` are ``upload2.*`` ones."""
    lines = ["[app:main]", "use = egg:pypi-upload2", f"sqlalchemy.url = {database_url}",
             f"upload2.storage = {storage_dir}", f"celery.broker_url = {broker_url}",
             *(f"upload2.{key} = {value}" for key, value in settings.items())]
    path.write_text("\n".join(lines) + "\n")
    return path
