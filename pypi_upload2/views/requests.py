"""The 2.0 API's JSON requests: media type, size, and the PEP's ``meta`` checks."""

from __future__ import annotations

import json

from ..problems import BadRequest, ContentTooLarge, UnsupportedMediaType

CONTENT_TYPE = "application/vnd.pypi.upload.v2+json"
# The API's bodies are an object of objects (meta, hashes, an index's own meta keys); any
# deeper is not one of its requests.
MAX_JSON_DEPTH = 32


class _Refused(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    # Parsers disagree on which of two equal keys wins: a proxy could check one, the index use the other.
    body = {}
    for key, value in pairs:
        if key in body:
            raise _Refused(f"the key {key!r} appears twice in one object")
        body[key] = value
    return body


def _constant(name: str):
    raise _Refused(f"{name} is not a JSON value")


def _depth(value) -> int:
    """How deeply ``value`` nests, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack += [(item, depth + 1) for item in (value.values() if isinstance(value, dict) else value)]
    return deepest


def _malformed(detail: str) -> BadRequest:
    return BadRequest("Malformed JSON", detail, source="body")


def check_content_length(request) -> None:
    """Refuse a Content-Length that is not a number of bytes (RFC 9110: digits only). webob
    reads a negative one as a length, so that a read of it reads the whole body, and a
    non-numeric one as none, so that the body reads as empty."""
    value = request.environ.get("CONTENT_LENGTH", "")
    if value and not (value.isascii() and value.isdigit()):
        raise BadRequest("Invalid Content-Length", "Content-Length must be a non-negative integer.",
                         source="Content-Length")


def json_body(request) -> dict:
    """The request's JSON object, after the PEP's Content-Type and api-version checks."""
    check_content_length(request)
    if request.content_type.lower() != CONTENT_TYPE:  # media types are case-insensitive
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send {CONTENT_TYPE}, not {request.content_type or 'nothing'}.",
                                   source="Content-Type")
    limit = request.registry["upload2.settings"].max_json_body
    # Read at most the limit ourselves: ``request.body`` would spool a large body to an
    # unclosed temporary file first.
    raw = request.body_file.read(limit + 1)
    if len(raw) > limit:
        raise ContentTooLarge("Request too large", f"A JSON request body may be at most {limit} bytes.",
                              source="body")
    try:
        # UTF-8 only (RFC 8259): json.loads would guess UTF-16 and UTF-32 from bytes.
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_object, parse_constant=_constant)
    except UnicodeDecodeError:
        raise _malformed("The request body is not UTF-8.")
    except ValueError as exc:
        raise _malformed(f"The request body is not valid JSON: {exc}.")
    except RecursionError:  # hostile nesting, e.g. 100,000 "["
        raise _malformed("The request body is nested too deeply.")
    if _depth(body) > MAX_JSON_DEPTH:
        raise _malformed(f"The request body nests more than {MAX_JSON_DEPTH} levels deep.")
    if not isinstance(body, dict):
        raise _malformed("The request body must be a JSON object.")
    meta = body.get("meta")
    if not isinstance(meta, dict) or "api-version" not in meta:
        raise BadRequest("Missing key", "The request has no 'meta.api-version' key.", source="meta.api-version")
    if meta["api-version"] != "2.0":
        raise BadRequest("Unsupported API version",
                         f"'meta.api-version' is {meta['api-version']!r}; this server speaks '2.0'.",
                         source="meta.api-version")
    return body
