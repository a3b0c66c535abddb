"""``pypi-upload2``: the release client's commands (``upload``, ``session``, ``group``), and those of any
installed distribution that registers an ``add_commands(parser, commands, sessions)`` in the
entry-point group ``pypi_upload2.commands`` (the server adds ``db``, ``user``, ``token``,
``project`` and ``session list`` this way), so one command name serves both installs."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points

from .commands import add_commands

COMMANDS = "pypi_upload2.commands"
DESCRIPTION = ("Upload releases to a Python package index: Upload 2.0 (PEP 694), or the legacy upload API "
               "where the index has no 2.0 endpoint. With the pypi-upload2 server installed, also its "
               "administration commands (-c CONFIG).")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pypi-upload2", description=DESCRIPTION)
    commands = p.add_subparsers(dest="command", required=True)
    sessions = add_commands(commands)
    for plugin in sorted(entry_points(group=COMMANDS), key=lambda e: e.name):
        plugin.load()(p, commands, sessions)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.client(args)
