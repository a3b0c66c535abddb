"""docs/deployment.md's systemd units and nginx server block, as written: the units pass
``systemd-analyze verify``, and the server block, with a test certificate, runs in front of
gunicorn started with the web unit's own command line."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import ssl
import subprocess
import sys

import httpx
import pytest

from pypi_upload2.settings import Settings
from tests.conftest import build_wheel, free_port, stop_group, wait_for

DOC = (pathlib.Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
BIN = pathlib.Path(sys.executable).parent
CT = "application/vnd.pypi.upload.v2+json"
META = {"api-version": "2.0"}
UNITS = {m["name"]: m["text"] for m in re.finditer(
    r"```ini\n# /etc/systemd/system/(?P<name>[\w-]+\.service)[^\n]*\n(?P<text>.*?)```", DOC, re.S)}
NGINX = re.search(r"```nginx\n# /etc/nginx/\S+\n(.*?)```", DOC, re.S)[1]


def test_the_page_has_the_three_units_and_a_server_block():
    assert set(UNITS) == {"upload2-web.service", "upload2-worker.service", "upload2-beat.service"}
    for text in UNITS.values():
        assert "User=upload2" in text and "Restart=on-failure" in text
    assert "proxy_request_buffering off;" in NGINX


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_verify(tmp_path):
    paths = []
    for name, text in UNITS.items():
        # The venv this test runs in stands for /srv/upload2/venv.
        (tmp_path / name).write_text(text.replace("/srv/upload2/venv/bin", str(BIN)))
        paths.append(str(tmp_path / name))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _web_command(ini, port: int) -> list[str]:
    """The web unit's ExecStart, on this test's ini and port."""
    line = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", UNITS["upload2-web.service"], re.M)[1]
    argv = shlex.split(line.replace("\\\n", " "))
    assert argv[0] == "/srv/upload2/venv/bin/gunicorn" and "--forwarded-allow-ips" in argv
    replace = {"/srv/upload2/venv/bin/gunicorn": str(BIN / "gunicorn"), "/srv/upload2/production.ini": str(ini),
               "127.0.0.1:8000": f"127.0.0.1:{port}"}
    return [replace.get(arg, arg) for arg in argv]


def _certificate(folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _nginx_conf(folder, block: str, upstream: int, https: int, http: int, cert, key) -> pathlib.Path:
    for old, new in (("127.0.0.1:8000", f"127.0.0.1:{upstream}"), ("listen 443 ssl", f"listen 127.0.0.1:{https} ssl"),
                     ("listen 80;", f"listen 127.0.0.1:{http};"),
                     ("/etc/letsencrypt/live/upload.example.org/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/upload.example.org/privkey.pem", str(key))):
        assert old in block, old
        block = block.replace(old, new)
    temp = folder / "temp"
    temp.mkdir(exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log warn;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {temp}/body;\nproxy_temp_path {temp}/proxy;\n"
        f"fastcgi_temp_path {temp}/f;\nuwsgi_temp_path {temp}/u;\nscgi_temp_path {temp}/s;\n{block}\n}}\n")
    return conf


@pytest.fixture
def behind_nginx(tmp_path, database_url, storage_dir, dbsession):
    """``start(block)``: gunicorn as the web unit runs it, behind nginx serving ``block``."""
    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        pytest.skip("nginx is not installed")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ini = tmp_path / "production.ini"
    ini.write_text(f"[app:main]\nuse = egg:pypi-upload2\nsqlalchemy.url = {database_url}\n"
                   f"upload2.storage = {storage_dir}\n")
    upstream = free_port()
    web = subprocess.Popen(_web_command(ini, upstream), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    cert, key = _certificate(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    proxies = []

    def start(block: str, name: str) -> tuple[str, pathlib.Path]:
        folder = tmp_path / name
        folder.mkdir()
        https = free_port()
        conf = _nginx_conf(folder, block, upstream, https, free_port(), cert, key)
        proxies.append(subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
        base = f"https://127.0.0.1:{https}"
        wait_for(f"http://127.0.0.1:{upstream}/simple/")
        for _ in range(100):
            try:
                httpx.get(base + "/simple/", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                proxies[-1].poll()
                assert proxies[-1].returncode is None, (folder / "error.log").read_text()
                subprocess.run(["sleep", "0.1"])
        return base, folder / "error.log"

    try:
        yield start, trust
    finally:
        for proc in proxies:
            proc.terminate()
            proc.wait(timeout=10)
        stop_group(web)


def _upload(base: str, cert: ssl.SSLContext, token: str, wheel: pathlib.Path) -> dict:
    with httpx.Client(auth=("__token__", token), verify=cert, timeout=60, headers={"Content-Type": CT}) as http:
        created = http.post(f"{base}/2.0/", json={"meta": META, "name": "foo", "version": "1.0"})
        assert created.status_code == 201, created.text
        session = created.json()
        data = wheel.read_bytes()
        file_session = http.post(session["links"]["upload"], json={
            "meta": META, "filename": wheel.name, "size": len(data), "mechanism": "http-post-bytes",
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()}})
        assert file_session.status_code == 202, file_session.text
        chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))  # sent as it is read: chunked
        sent = http.post(file_session.json()["mechanism"]["file_url"], content=chunks,
                         headers={"Content-Type": "application/octet-stream"})
        assert sent.status_code == 204, sent.text
        http.delete(session["links"]["session"]).raise_for_status()  # canceled: the next run starts anew
        return {"session": session, "file": file_session.json()}


def test_uploads_stream_through_the_proxy_and_links_say_https(behind_nginx, make_user, dist_dir):
    start, cert = behind_nginx
    token = make_user("alice")
    wheel = build_wheel(dist_dir, "foo", "1.0", padding=8 * 1024 * 1024)
    base, error_log = start(NGINX, "documented")

    seen = _upload(base, cert, token, wheel)
    links = [*seen["session"]["links"].values(), seen["file"]["mechanism"]["file_url"]]
    assert all(link.startswith(base + "/") for link in links), links
    assert "buffered to a temporary file" not in error_log.read_text()

    # The same block with buffering on writes the body to nginx's own disk first: the check
    # above can tell the two apart.
    buffered, buffered_log = start(NGINX.replace("proxy_request_buffering off;", "proxy_request_buffering on;"),
                                   "buffered")
    _upload(buffered, cert, token, build_wheel(_mkdir(dist_dir / "again"), "foo", "1.0", padding=8 * 1024 * 1024))
    assert "buffered to a temporary file" in buffered_log.read_text()


def _mkdir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir()
    return path


BUCKET_DOCUMENTS = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)]


def test_the_bucket_policy_and_the_lifecycle_rule_are_what_the_s3_api_takes(s3_api, s3_bucket):
    [policy] = [d for d in BUCKET_DOCUMENTS if "Statement" in d]
    [lifecycle] = [d for d in BUCKET_DOCUMENTS if "Rules" in d]
    # The app's calls, each allowed to the role on the resource it acts on.
    allowed = {action: statement["Resource"] for statement in policy["Statement"] if statement["Effect"] == "Allow"
               for action in statement["Action"]}
    assert allowed == {
        "s3:ListBucket": "arn:aws:s3:::upload2-staged", "s3:ListBucketMultipartUploads": "arn:aws:s3:::upload2-staged",
        **{f"s3:{action}": "arn:aws:s3:::upload2-staged/*" for action in (
            "GetObject", "PutObject", "DeleteObject", "AbortMultipartUpload", "ListMultipartUploadParts")}}
    text = json.dumps(policy).replace("upload2-staged", s3_bucket)
    s3_api.put_bucket_policy(Bucket=s3_bucket, Policy=text)
    assert json.loads(s3_api.get_bucket_policy(Bucket=s3_bucket)["Policy"]) == json.loads(text)
    s3_api.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration=lifecycle)
    [rule] = s3_api.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 31} and rule["Status"] == "Enabled"
    # Longer than a session may live: no upload still resumable is aborted by the rule.
    assert 31 * 24 * 3600 > Settings(storage="").max_session_lifetime
