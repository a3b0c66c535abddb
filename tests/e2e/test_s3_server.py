"""A real waitress server on the S3 backend (moto's server, S3's 5 MiB parts): a large upload,
its publish and its download keep the server's memory flat, and pip installs from the bucket."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx

from tests.conftest import build_wheel, free_port, running
from tests.e2e.test_pip import Upload2
from tests.s3 import s3_settings

MiB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_a_large_upload_keeps_the_server_flat_and_pip_installs_from_the_bucket(
        tmp_path, database_url, storage_dir, dbsession, make_user, s3_endpoint, s3_bucket):
    port = free_port()
    settings = s3_settings(s3_endpoint, s3_bucket, **{"upload2.s3_part_size": str(5 * MiB)})
    ini = tmp_path / "server.ini"
    ini.write_text("[app:main]\nuse = egg:pypi-upload2\n"
                   f"sqlalchemy.url = {database_url}\nupload2.storage = {storage_dir}\n"
                   "upload2.max_file_size = 209715200\n"
                   + "".join(f"{key} = {value}\n" for key, value in settings.items())
                   + f"\n[server:main]\nuse = egg:waitress#main\nlisten = 127.0.0.1:{port}\n"
                   "max_request_body_size = 1073741824\n")
    base = f"http://127.0.0.1:{port}"
    pserve = os.path.join(os.path.dirname(sys.executable), "pserve")
    with running([pserve, str(ini)], base + "/simple/", stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL) as proc:
        client = Upload2(base, make_user("alice"))
        # moto stores and joins the 128 MiB of parts in Python: minutes on a loaded machine.
        client.http.timeout = httpx.Timeout(300)
        for folder in ("small", "big"):
            (tmp_path / folder).mkdir()
        small = build_wheel(tmp_path / "small", "warm", "1.0")
        warm = client.create_session("warm", "1.0")
        client.upload(warm, small)  # the S3 client, the app's imports: the baseline
        client.publish(warm)
        before = peak_rss(proc.pid)
        big = build_wheel(tmp_path / "big", "big", "1.0", padding=128 * MiB)
        session = client.create_session("big", "1.0")
        client.upload(session, big)
        client.publish(session)
        digest = hashlib.sha256()
        url = httpx.get(f"{base}/simple/big/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()[
            "files"][0]["url"]
        with httpx.stream("GET", url, timeout=60) as response:
            for chunk in response.iter_bytes():
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
        grown = peak_rss(proc.pid) - before
        client.close()
        # A part or two in memory, not the 128 MiB file (12 MiB over a 110 MiB baseline, measured).
        assert grown < 48 * MiB, f"the server grew by {grown / MiB:.1f} MiB for a 128 MiB upload"

        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                        "--no-cache-dir", "--index-url", f"{base}/simple/", "warm"], check=True,
                       capture_output=True)
        out = subprocess.run([str(venv / "bin" / "python"), "-c", "import warm; print(warm.VALUE)"],
                             check=True, capture_output=True, text=True)
        assert out.stdout.strip() == "1"
