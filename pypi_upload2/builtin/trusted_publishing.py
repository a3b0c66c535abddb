"""The token exchange of Trusted Publishing, at PyPI's URLs and in PyPI's words, so that uv,
twine and pypa/gh-action-pypi-publish talk to it unchanged: ``GET /_/oidc/audience`` names
the audience a CI job requests its OIDC token for, ``POST /_/oidc/mint-token`` with
``{"token": JWT}`` answers ``{"success": true, "token": ..., "expires": ...}``."""

from __future__ import annotations

import json

from pyramid.response import Response

from . import issuers, oidc

AUDIENCE_ROUTE = "upload2.oidc.audience"
MINT_ROUTE = "upload2.oidc.mint"
# A JWT is a few KiB; nothing bigger is read.
MAX_BODY = 64 * 1024


def _answer(status: int, body: dict) -> Response:
    response = Response(json.dumps(body), status=status, content_type="application/json", charset="utf-8")
    response.cache_control = "no-store"
    return response


def _refused(code: str, description: str, status: int = 422) -> Response:
    return _answer(status, {"message": "Token request failed", "errors": [{"code": code, "description": description}]})


DISABLED = {"message": "Trusted publishing functionality not enabled"}


def audience(request):
    settings = request.registry["upload2.oidc"]
    if not settings.enabled:
        return _answer(403, DISABLED)
    return _answer(200, {"audience": settings.audience})


def mint_token(request):
    settings = request.registry["upload2.oidc"]
    if not settings.enabled:
        return _answer(403, DISABLED)
    if request.content_length is None or request.content_length > MAX_BODY:
        return _refused("invalid-payload", f"send the token as a JSON body of at most {MAX_BODY} bytes")
    try:
        token = json.loads(request.body).get("token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        return _refused("invalid-payload", 'the body must be a JSON object {"token": "<OIDC token>"}')
    try:
        minted, expires_at = oidc.exchange(request, settings, request.registry["upload2.oidc_keys"], token)
    except oidc.TokenRefused as refused:
        return _refused(refused.code, refused.description)
    return _answer(200, {"success": True, "token": minted, "expires": int(expires_at.timestamp())})


def includeme(config):
    settings = issuers.parse(config.get_settings())
    config.registry["upload2.oidc"] = settings
    config.registry["upload2.oidc_keys"] = issuers.JWKSCache(settings.jwks_lifetime)
    config.add_route(AUDIENCE_ROUTE, "/_/oidc/audience")
    config.add_route(MINT_ROUTE, "/_/oidc/mint-token")
    config.add_view(audience, route_name=AUDIENCE_ROUTE, request_method="GET")
    config.add_view(mint_token, route_name=MINT_ROUTE, request_method="POST")
