"""Streaming ``multipart/form-data``: the body is parsed as it arrives, never held whole.

``multipart``'s sans-IO parser turns the request body into parts in order; a caller streams
a file part's bytes where they belong and reads the short fields it needs, bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser, parse_options_header

from ..problems import BadRequest, ContentTooLarge, UnsupportedMediaType

CHUNK = 1024 * 1024
# twine and uv send one part per classifier and requirement; no real upload has this many.
MAX_PARTS = 2000


class Part:
    """One part of the form. Its bytes can be read once, in order, before the next part."""

    def __init__(self, segment: MultipartSegment, events: Iterator):
        self.name = segment.name
        self.filename = segment.filename
        self._events = events
        self._done = False

    def chunks(self) -> Iterator[bytes]:
        while not self._done:
            event = next(self._events)
            if event is None:  # the parser's end-of-part event
                self._done = True
            else:
                yield event

    def text(self, limit: int) -> str:
        data = bytearray()
        for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise ContentTooLarge("Form field too large", f"The {self.name!r} field is longer than {limit} bytes.",
                                      source=self.name)
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise BadRequest("Invalid form field", f"The {self.name!r} field is not UTF-8 text.", source=self.name)


def parts(request) -> Iterator[Part]:
    """The parts of the request's form in order; what a caller leaves unread is skipped."""
    kind, options = parse_options_header(request.headers.get("Content-Type", ""))
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise UnsupportedMediaType("Unsupported Content-Type",
                                   f"Send multipart/form-data, not {kind or 'nothing'}.", source="Content-Type")
    events = _events(request.body_file, PushMultipartParser(options["boundary"], max_segment_count=MAX_PARTS))
    for event in events:
        if isinstance(event, MultipartSegment):
            part = Part(event, events)
            yield part
            for _ in part.chunks():
                pass


def _events(body, parser: PushMultipartParser) -> Iterator:
    try:
        with parser:  # leaving it checks the form ended with its closing boundary
            while chunk := body.read(CHUNK):
                yield from parser.parse(chunk)
    except ParserLimitReached as exc:
        raise ContentTooLarge("Form too large", f"The form exceeds a limit: {exc}.", source="body")
    except MultipartError as exc:
        raise BadRequest("Malformed form", f"The body is not valid multipart/form-data: {exc}.", source="body")
