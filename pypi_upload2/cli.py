"""``pypi-upload2 [-c CONFIG] db upgrade | user add NAME | project grant|revoke USER PROJECT``,
and the release client, which needs no CONFIG: ``pypi-upload2 upload | session ...``."""

from __future__ import annotations

import argparse

from .client.commands import add_commands as add_client_commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pypi-upload2", description=__doc__)
    p.add_argument("-c", "--config", default="development.ini", help="PasteDeploy ini file")
    commands = p.add_subparsers(dest="command", required=True)
    dbp = commands.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    upgrade = dbp.add_parser("upgrade", help="apply all migrations")
    upgrade.add_argument("--core", action="store_true",
                         help="only the plugin's session tables (a host index keeps its own projects and users)")
    upgrade.set_defaults(admin="upgrade")
    users = commands.add_parser("user", help="users and API tokens").add_subparsers(dest="action", required=True)
    add = users.add_parser("add", help="create the user if absent; print a new API token last")
    add.add_argument("name")
    add.set_defaults(admin="user_add")
    projects = commands.add_parser("project", help="upload permissions").add_subparsers(dest="action",
                                                                                         required=True)
    for name in ("grant", "revoke"):
        sub = projects.add_parser(name, help=f"{name} upload permission on an existing project")
        sub.add_argument("user")
        sub.add_argument("project")
        sub.set_defaults(admin=f"project_{name}")
    add_client_commands(commands)  # upload, session: they talk to an index over HTTP
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "client", None):
        return args.client(args)
    from . import admin  # the server's dependencies load only for server commands

    return admin.run(args)
