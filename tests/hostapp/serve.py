"""Serve the host app with waitress: ``python -m tests.hostapp.serve PORT KEY=VALUE...``
(the settings), from the repository root."""

import sys

import waitress

from . import make_app

if __name__ == "__main__":
    port, *pairs = sys.argv[1:]
    settings = dict(pair.split("=", 1) for pair in pairs)
    waitress.serve(make_app(settings), listen=f"127.0.0.1:{port}", max_request_body_size=1 << 30,
                   _quiet=True)
