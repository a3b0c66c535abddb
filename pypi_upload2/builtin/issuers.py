"""The OIDC issuers the built-in index trusts for Trusted Publishing, read once from the
``upload2.oidc_*`` settings, and their signing keys (JWKS), fetched over HTTPS and cached
for a bounded time."""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx
import jwt
from pyramid.settings import asbool

# Where each kind of publisher's tokens come from, unless the settings say otherwise.
DEFAULT_ISSUERS = {"github": "https://token.actions.githubusercontent.com", "gitlab": "https://gitlab.com"}
KINDS = tuple(DEFAULT_ISSUERS)
# A key id the cached set lacks is looked up again at most this often (keys rotate).
REFETCH_UNKNOWN_KID = 60


@dataclasses.dataclass(frozen=True)
class Issuer:
    kind: str  # the publishers its tokens may match: "github" or "gitlab"
    url: str  # the ``iss`` claim, exactly
    jwks_url: str = ""  # empty: found through the issuer's OpenID configuration


@dataclasses.dataclass(frozen=True)
class OIDCSettings:
    enabled: bool = True
    issuers: tuple[Issuer, ...] = ()
    audience: str = "pypi-upload2"
    jwks_lifetime: int = 3600
    token_lifetime: int = 900
    # Seconds of clock skew allowed on exp, nbf and iat.
    leeway: int = 30

    def issuer(self, url: str) -> Issuer | None:
        return next((i for i in self.issuers if i.url == url), None)


def parse_issuers(text: str) -> tuple[Issuer, ...]:
    """One issuer a line: ``KIND ISSUER-URL [JWKS-URL]``."""
    issuers = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] not in KINDS or len(words) not in (2, 3):
            raise ValueError(f"upload2.oidc_issuers: {line.strip()!r} is not 'KIND ISSUER-URL [JWKS-URL]' "
                             f"with KIND one of {', '.join(KINDS)}")
        issuers.append(Issuer(*words))
    return tuple(issuers)


def parse(settings: dict) -> OIDCSettings:
    defaults = OIDCSettings()
    text = settings.get("upload2.oidc_issuers")
    return OIDCSettings(
        enabled=asbool(settings.get("upload2.trusted_publishing", True)),
        issuers=parse_issuers(text) if text is not None else tuple(Issuer(k, u) for k, u in DEFAULT_ISSUERS.items()),
        audience=settings.get("upload2.oidc_audience", defaults.audience).strip(),
        **{name: int(settings.get(f"upload2.oidc_{name}", getattr(defaults, name)))
           for name in ("jwks_lifetime", "token_lifetime", "leeway")},
    )


class KeyUnavailable(Exception):
    """The issuer's keys could not be fetched, or have no key of that id."""


class JWKSCache:
    """Each issuer's key set, fetched when first needed and again once ``lifetime`` seconds
    old; an unknown key id fetches it again (rotation), at most once a minute."""

    def __init__(self, lifetime: int, timeout: float = 10.0):
        self.lifetime, self.timeout = lifetime, timeout
        self._sets: dict[str, tuple[float, jwt.PyJWKSet]] = {}
        self._lock = threading.Lock()

    def key(self, issuer: Issuer, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            fetched, keys = self._sets.get(issuer.url, (None, None))
            if keys is None or now - fetched > self.lifetime or self._find(keys, kid) is None and now - fetched > REFETCH_UNKNOWN_KID:
                fetched, keys = now, self._fetch(issuer)
            self._sets[issuer.url] = (fetched, keys)
        if (key := self._find(keys, kid)) is None:
            raise KeyUnavailable(f"the issuer {issuer.url} has no signing key {kid!r}")
        return key

    @staticmethod
    def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return keys.keys[0] if len(keys.keys) == 1 else None
        return next((k for k in keys.keys if k.key_id == kid), None)

    def _fetch(self, issuer: Issuer) -> jwt.PyJWKSet:
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
                url = issuer.jwks_url
                if not url:
                    config = client.get(issuer.url.rstrip("/") + "/.well-known/openid-configuration")
                    config.raise_for_status()
                    url = config.json()["jwks_uri"]
                response = client.get(url)
                response.raise_for_status()
                return jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, jwt.PyJWKError) as exc:
            raise KeyUnavailable(f"the keys of {issuer.url} could not be fetched: {exc}")
