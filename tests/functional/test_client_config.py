"""The client's repository and credentials, resolved as twine does, from real option lists,
environments and .pypirc files; and the distribution files it is given."""

from __future__ import annotations

import argparse
import hashlib

import pytest

from pypi_upload2_client import config, dists
from pypi_upload2_client.commands import add_commands
from pypi_upload2_client.legacy import form_fields
from tests.conftest import build_sdist, build_wheel

PYPIRC = """\
[distutils]
index-servers = corp pypi

[corp]
repository = https://upload.corp.example/legacy/
username = __token__
password = pypi-corp%secret

[pypi]
password = pypi-real-token
"""


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def pypirc(tmp_path):
    path = tmp_path / ".pypirc"
    path.write_text(PYPIRC)
    return str(path)


def test_a_pypirc_section_gives_the_url_and_credentials(pypirc):
    repo = config.resolve(parse("upload", "-r", "corp", "--config-file", pypirc, "x.whl"), env={})
    assert repo.url == "https://upload.corp.example/legacy/"
    assert repo.credentials == config.Credentials("__token__", "pypi-corp%secret")
    # The built-in name needs no repository line; the password never shows in a repr.
    repo = config.resolve(parse("upload", "-r", "pypi", "--config-file", pypirc, "x.whl"), env={})
    assert repo.url == "https://upload.pypi.org/legacy/"
    assert "pypi-real-token" not in repr(repo)


def test_options_beat_the_environment_which_beats_the_pypirc(pypirc):
    args = ("upload", "-r", "corp", "--config-file", pypirc, "x.whl")
    env = {"TWINE_USERNAME": "env-user", "TWINE_PASSWORD": "env-pass"}
    assert config.resolve(parse(*args), env=env).credentials == config.Credentials("env-user", "env-pass")
    env["UPLOAD2_TOKEN"] = "pypi-env-token"
    assert config.resolve(parse(*args), env=env).credentials == config.Credentials("__token__", "pypi-env-token")
    assert config.resolve(parse(*args, "-u", "me", "-p", "pw"), env=env).credentials == config.Credentials("me", "pw")
    assert config.resolve(parse(*args, "--token", "pypi-cli"), env=env).credentials.password == "pypi-cli"
    url = config.resolve(parse(*args, "--repository-url", "https://other.example/up/"), env=env).url
    assert url == "https://other.example/up/"


def test_credentials_in_the_url_are_used_and_removed_from_it():
    args = parse("upload", "--repository-url", "https://me:s%40cret@upload.example:8443/legacy/", "x.whl")
    repo = config.resolve(args, env={})
    assert repo.url == "https://upload.example:8443/legacy/"
    assert repo.credentials == config.Credentials("me", "s@cret")


def test_a_session_url_finds_its_pypirc_section_by_origin(pypirc):
    url = "https://upload.corp.example/2.0/sessions/abc/"
    repo = config.resolve(parse("session", "status", url, "--config-file", pypirc), env={}, url=url)
    assert (repo.url, repo.pypirc_name, repo.credentials.password) == (url, "corp", "pypi-corp%secret")


def test_what_is_missing_is_said(pypirc):
    with pytest.raises(config.ConfigError, match="no repository: pass --repository-url"):
        config.resolve(parse("upload", "x.whl"), env={})
    with pytest.raises(config.ConfigError, match="no repository named 'nope'"):
        config.resolve(parse("upload", "-r", "nope", "--config-file", pypirc, "x.whl"), env={})
    with pytest.raises(config.ConfigError, match="not an http"):
        config.resolve(parse("upload", "--repository-url", "ftp://example/", "x.whl"), env={})
    args = parse("upload", "--repository-url", "https://example/legacy/", "x.whl")
    assert config.resolve(args, env={}, interactive=False).credentials is None


def test_files_are_grouped_by_release_with_the_sdist_first(dist_dir):
    paths = [build_wheel(dist_dir, "Foo_Bar", "1.0"), build_wheel(dist_dir, "baz", "2.0"),
             build_sdist(dist_dir, "foo-bar", "1.0.0")]
    groups = dists.group([dists.inspect(p) for p in paths])
    # Foo_Bar and foo-bar, 1.0 and 1.0.0: one release, as the index sees it.
    assert {key: [d.filename for d in files] for key, files in groups.items()} == {
        ("foo-bar", "1.0.0"): [paths[2].name, paths[0].name], ("baz", "2.0"): [paths[1].name]}
    wheel = groups["foo-bar", "1.0.0"][1]
    assert (wheel.packagetype, wheel.python_tag, wheel.size) == ("bdist_wheel", "py3", paths[0].stat().st_size)
    assert wheel.digests()["sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert dists.top_level_modules(wheel) == ["foo_bar"]
    (dist_dir / "notes.txt").write_text("not a distribution")
    with pytest.raises(dists.DistError, match="not a distribution"):
        dists.inspect(dist_dir / "notes.txt")


def test_the_legacy_form_carries_the_core_metadata_and_digests(dist_dir):
    sdist = dists.inspect(build_sdist(dist_dir, "foo", "1.0"))
    fields = dict(form_fields(sdist))
    assert fields[":action"] == "file_upload" and fields["protocol_version"] == "1"
    assert [fields[k] for k in ("name", "version", "filetype", "pyversion")] == ["foo", "1.0", "sdist", "source"]
    assert fields["summary"] == "Test distribution foo."
    assert fields["sha256_digest"] == sdist.digests()["sha256"]
    assert len(fields["blake2_256_digest"]) == 64
