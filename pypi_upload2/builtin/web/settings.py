"""The web pages' settings, ``upload2.web.*``, parsed once when the pages are included."""

from __future__ import annotations

import dataclasses

from pyramid.exceptions import ConfigurationError
from pyramid.settings import asbool


def enabled(settings: dict) -> bool:
    """``upload2.web``: off unless asked for, so an index that never set a secret keeps starting."""
    return asbool(settings.get("upload2.web", False))


@dataclasses.dataclass(frozen=True)
class WebSettings:
    secret: str
    # A signed-in browser is signed out after this many seconds without a request.
    idle_timeout: int = 3600
    # Send the cookie over HTTPS only: on wherever the index is served over TLS.
    secure_cookie: bool = False
    # After this many consecutive failed sign-ins an account is locked for lockout_seconds,
    # doubling with each further failure up to max_lockout; a success resets the count.
    lockout_after: int = 5
    lockout_seconds: int = 60
    max_lockout: int = 24 * 3600


def parse(settings: dict) -> WebSettings:
    secret = settings.get("upload2.web.secret", "").strip()
    # A default secret would let anyone who read the source forge a signed-in cookie.
    if len(secret) < 32:
        raise ConfigurationError("upload2.web = true needs upload2.web.secret, a random string of at least "
                                 "32 characters (python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                                 "or set upload2.web = false")
    defaults = WebSettings(secret="")
    ints = {field.name: int(settings.get(f"upload2.web.{field.name}", getattr(defaults, field.name)))
            for field in dataclasses.fields(WebSettings) if field.type == "int"}
    return WebSettings(secret=secret, secure_cookie=asbool(settings.get("upload2.web.secure_cookie", False)),
                       **ints)
