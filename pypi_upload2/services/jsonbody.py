"""JSON as the API reads it: UTF-8 only, no key twice in one object, bounded nesting."""

from __future__ import annotations

import json

from ..problems import BadRequest

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


def malformed(detail: str) -> BadRequest:
    return BadRequest("Malformed JSON", detail, source="body")


def parse_json(raw: bytes):
    """``raw`` as JSON under the API's rules: UTF-8, no repeated keys, bounded nesting."""
    try:
        # UTF-8 only (RFC 8259): json.loads would guess UTF-16 and UTF-32 from bytes.
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_object, parse_constant=_constant)
    except UnicodeDecodeError:
        raise malformed("The request body is not UTF-8.")
    except ValueError as exc:
        raise malformed(f"The request body is not valid JSON: {exc}.")
    except RecursionError:  # hostile nesting, e.g. 100,000 "["
        raise malformed("The request body is nested too deeply.")
    if _depth(body) > MAX_JSON_DEPTH:
        raise malformed(f"The request body nests more than {MAX_JSON_DEPTH} levels deep.")
    return body
