"""A client that stops sending its body must not hold a server thread for ever.

gunicorn's threaded workers read a request body from a blocking socket with no timeout, and
its ``--timeout`` does not apply to them (a sync worker is killed after it instead). So each
request to one of the plugin's routes bounds the reads of its own socket, which gunicorn
hands over as ``gunicorn.socket``: a stalled read then fails after ``upload2.body_timeout``
seconds, as a client that went away does. gunicorn resets the socket for the next request
on a kept-alive connection. Other servers are left as they are (waitress reads the whole
body before the app sees it, under its own ``channel_timeout``).
"""

from __future__ import annotations

from pyramid.events import ContextFound


def bound_body_reads(event) -> None:
    request = event.request
    route = request.matched_route
    sock = request.environ.get("gunicorn.socket")
    timeout = request.registry["upload2.settings"].body_timeout
    if sock is not None and timeout and route is not None and route.name.startswith("upload2."):
        sock.settimeout(timeout)


def includeme(config):
    config.add_subscriber(bound_body_reads, ContextFound)
