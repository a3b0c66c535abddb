"""Where to upload and as whom, resolved as twine does: options first, then the environment,
then the repository's section of ``~/.pypirc``. Secrets never reach a repr or a message."""

from __future__ import annotations

import configparser
import dataclasses
import getpass
import os
import sys
import urllib.parse

# twine's built-in repository names, for ``-r`` without a .pypirc section.
KNOWN_REPOSITORIES = {"pypi": "https://upload.pypi.org/legacy/", "testpypi": "https://test.pypi.org/legacy/"}
TOKEN_USERNAME = "__token__"


class ConfigError(Exception):
    """The options, environment and .pypirc do not say where to upload or as whom."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Repository:
    url: str  # never with userinfo: it is shown to the user
    credentials: Credentials | None
    pypirc_name: str | None = None


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """The URL without ``user:password@``, and the user and password it carried."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    user = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), user, password


def redact(url: str) -> str:
    return split_userinfo(url)[0]


def read_pypirc(path: str | None) -> configparser.RawConfigParser | None:
    path = os.path.expanduser(path or "~/.pypirc")
    if not os.path.isfile(path):
        return None
    # Raw: passwords may hold '%'.
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}")
    return parser


def _section_for(pypirc, url: str) -> tuple[str | None, dict]:
    """The .pypirc section whose repository is on the same origin as ``url``."""
    for name in pypirc.sections() if pypirc else ():
        repository = pypirc[name].get("repository") or KNOWN_REPOSITORIES.get(name)
        if repository and origin(redact(repository)) == origin(url):
            return name, dict(pypirc[name])
    return None, {}


def _first(*values):
    return next((v for v in values if v), None)


def resolve(args, env=None, *, url: str | None = None, interactive: bool | None = None) -> Repository:
    """The repository and credentials for ``args`` (the upload or session options). With
    ``url`` (a session URL) the repository is that URL; otherwise one must be named."""
    env = os.environ if env is None else env
    pypirc = read_pypirc(args.config_file)
    name = args.repository or env.get("TWINE_REPOSITORY")
    section: dict = {}
    if name:
        if pypirc is not None and pypirc.has_section(name):
            section = dict(pypirc[name])
        elif name not in KNOWN_REPOSITORIES:
            raise ConfigError(f"no repository named {name!r} in {args.config_file or '~/.pypirc'}")
    if url is None:
        url = _first(getattr(args, "repository_url", None), env.get("UPLOAD2_REPOSITORY_URL"),
                     env.get("TWINE_REPOSITORY_URL"), section.get("repository"), KNOWN_REPOSITORIES.get(name))
        if not url:
            raise ConfigError("no repository: pass --repository-url URL or -r NAME (a .pypirc section), "
                              "or set UPLOAD2_REPOSITORY_URL")
    if not name:
        name, section = _section_for(pypirc, redact(url))
    url, url_user, url_password = split_userinfo(url)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"not an http(s) URL: {url}")
    return Repository(url=url, credentials=_credentials(args, env, section, url, url_user, url_password,
                                                        interactive), pypirc_name=name)


def _credentials(args, env, section, url, url_user, url_password, interactive) -> Credentials | None:
    if args.token:
        return Credentials(TOKEN_USERNAME, args.token)
    explicit = args.username or args.password
    if not explicit and env.get("UPLOAD2_TOKEN"):
        return Credentials(TOKEN_USERNAME, env["UPLOAD2_TOKEN"])
    username = _first(args.username, env.get("TWINE_USERNAME"), url_user, section.get("username"))
    password = _first(args.password, env.get("TWINE_PASSWORD"), url_password, section.get("password"))
    if password is None:
        if interactive is None:
            interactive = not args.non_interactive and sys.stdin.isatty()
        if not interactive:
            return None
        password = getpass.getpass(f"Password or API token for {username or TOKEN_USERNAME} at {url}: ")
        if not password:
            return None
    return Credentials(username or TOKEN_USERNAME, password)


def add_options(parser) -> None:
    """The repository and credential options both subcommands take."""
    group = parser.add_argument_group("repository and credentials (as twine: options, environment, .pypirc)")
    group.add_argument("-r", "--repository", metavar="NAME",
                       help="a section of the .pypirc file (env TWINE_REPOSITORY)")
    group.add_argument("--config-file", metavar="PATH", default=None, help="the .pypirc file (default ~/.pypirc)")
    group.add_argument("-u", "--username", help="username (env TWINE_USERNAME; default __token__)")
    group.add_argument("-p", "--password", help="password or API token (env TWINE_PASSWORD)")
    group.add_argument("--token", help="an API token: username __token__ (env UPLOAD2_TOKEN)")
    group.add_argument("--non-interactive", action="store_true", help="never prompt for a password")
