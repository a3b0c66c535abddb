"""On a terminal the client draws a progress bar per file and one overall: run it on a
pseudo-terminal and read what it rendered."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios

from tests.conftest import build_sdist, build_wheel
from tests.e2e.test_client_upload import BIN, client_env, published

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_terminal(args, env, columns: int = 160) -> tuple[int, str]:
    """Run the client with a pseudo-terminal as its stdin, stdout and stderr; return its exit
    status and the text it rendered (escape sequences removed, redrawn lines kept)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([os.path.join(BIN, "pypi-upload2"), *map(str, args)], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        code = proc.wait(timeout=120)
    text = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))
    return code, text.replace("\r\n", "\n").replace("\r", "\n")


def test_a_terminal_shows_a_progress_bar_per_file_and_overall(server, make_user, dist_dir, tmp_path):
    paths = [build_sdist(dist_dir, "foo", "1.0"), build_wheel(dist_dir, "foo", "1.0", padding=3_000_000),
             build_wheel(dist_dir, "foo", "1.0", tag="py2-none-any", padding=1_000_000)]
    env = client_env(tmp_path, make_user("alice"), TERM="xterm-256color")
    env.pop("NO_COLOR", None)

    code, text = run_on_terminal(["upload", "--repository-url", f"{server}/legacy/", *paths], env)

    assert code == 0, text
    lines = [line.strip() for line in text.split("\n")]
    for path in paths:
        size = path.stat().st_size
        total = f"{size}/{size} bytes" if size < 1000 else f"{size / 1e6:.1f}/{size / 1e6:.1f} MB"
        bars = [line for line in lines if line.startswith(path.name) and "━" in line]
        assert bars, text
        assert any(total in line and line.endswith("completed") for line in bars), (total, bars)
    overall = sum(p.stat().st_size for p in paths) / 1e6
    assert any(line.startswith("total") and "━" in line and f"{overall:.1f}/{overall:.1f} MB" in line
               for line in lines), text
    assert "foo 1.0: published 3 files" in text
    assert published(server, "foo") == {p.name: p.read_bytes() for p in paths}
