"""The 2.0 API's JSON requests: media type, size, and the PEP's ``meta`` checks."""

from __future__ import annotations

from ..problems import BadRequest, ContentTooLarge, UnsupportedMediaType
from ..services.jsonbody import malformed, parse_json

CONTENT_TYPE = "application/vnd.pypi.upload.v2+json"


def check_content_length(request) -> None:
    """Refuse a Content-Length that is not a number of bytes (RFC 9110: digits only). webob
    reads a negative one as a length, so that a read of it reads the whole body, and a
    non-numeric one as none, so that the body reads as empty."""
    value = request.environ.get("CONTENT_LENGTH", "")
    if value and not (value.isascii() and value.isdigit()):
        raise BadRequest("Invalid Content-Length", "Content-Length must be a non-negative integer.",
                         source="Content-Length")


def read_json(request, content_type: str, limit: int):
    """The request's JSON value, of the media type ``content_type`` and at most ``limit`` bytes."""
    check_content_length(request)
    if request.content_type.lower() != content_type:  # media types are case-insensitive
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send {content_type}, not {request.content_type or 'nothing'}.",
                                   source="Content-Type")
    # Read at most the limit ourselves: ``request.body`` would spool a large body to an
    # unclosed temporary file first.
    raw = request.body_file.read(limit + 1)
    if len(raw) > limit:
        raise ContentTooLarge("Request too large", f"This request body may be at most {limit} bytes.",
                              source="body")
    return parse_json(raw)


def json_body(request) -> dict:
    """The request's JSON object, after the PEP's Content-Type and api-version checks."""
    body = read_json(request, CONTENT_TYPE, request.registry["upload2.settings"].max_json_body)
    if not isinstance(body, dict):
        raise malformed("The request body must be a JSON object.")
    meta = body.get("meta")
    if not isinstance(meta, dict) or "api-version" not in meta:
        raise BadRequest("Missing key", "The request has no 'meta.api-version' key.", source="meta.api-version")
    if meta["api-version"] != "2.0":
        raise BadRequest("Unsupported API version",
                         f"'meta.api-version' is {meta['api-version']!r}; this server speaks '2.0'.",
                         source="meta.api-version")
    return body
