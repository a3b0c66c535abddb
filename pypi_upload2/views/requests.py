"""The 2.0 API's JSON requests: media type, size, and the PEP's ``meta`` checks."""

from __future__ import annotations

import json

from ..problems import BadRequest, ContentTooLarge, UnsupportedMediaType

CONTENT_TYPE = "application/vnd.pypi.upload.v2+json"
# The API's JSON requests are a few hundred bytes; anything near this is not one.
MAX_JSON_BODY = 64 * 1024


def json_body(request) -> dict:
    """The request's JSON object, after the PEP's Content-Type and api-version checks."""
    if request.content_type.lower() != CONTENT_TYPE:  # media types are case-insensitive
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send {CONTENT_TYPE}, not {request.content_type or 'nothing'}.",
                                   source="Content-Type")
    # Read at most the limit ourselves: ``request.body`` would spool a large body to an
    # unclosed temporary file first.
    raw = request.body_file.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise ContentTooLarge("Request too large", f"A JSON request body may be at most {MAX_JSON_BODY} bytes.",
                              source="body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Malformed JSON", f"The request body is not valid JSON: {exc}.", source="body")
    except RecursionError:  # hostile nesting, e.g. 100,000 "["
        raise BadRequest("Malformed JSON", "The request body is nested too deeply.", source="body")
    if not isinstance(body, dict):
        raise BadRequest("Malformed JSON", "The request body must be a JSON object.", source="body")
    meta = body.get("meta")
    if not isinstance(meta, dict) or "api-version" not in meta:
        raise BadRequest("Missing key", "The request has no 'meta.api-version' key.", source="meta.api-version")
    if meta["api-version"] != "2.0":
        raise BadRequest("Unsupported API version",
                         f"'meta.api-version' is {meta['api-version']!r}; this server speaks '2.0'.",
                         source="meta.api-version")
    return body
