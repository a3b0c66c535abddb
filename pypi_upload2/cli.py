"""``pypi-upload2 [-c CONFIG] db upgrade|current|downgrade | user add|list|passwd | token add|list|revoke |
project grant|revoke|list | publisher add|list|remove | session list``: the server's commands, beside the release client's
(``pypi-upload2 upload | session ...``, distribution pypi-upload2-client), which need no CONFIG."""

from __future__ import annotations

import argparse

KINDS = ("github", "gitlab")  # builtin/issuers.py, which the client's commands do not load


def add_commands(p: argparse.ArgumentParser, commands, sessions) -> None:
    """The server's commands, added to the release client's ``pypi-upload2`` (entry point
    ``pypi_upload2.commands``); ``sessions`` holds the client's ``session`` actions."""
    p.add_argument("-c", "--config", default="development.ini", help="PasteDeploy ini file (server commands)")
    dbp = commands.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    upgrade = dbp.add_parser("upgrade", help="apply all migrations")
    upgrade.add_argument("--core", action="store_true",
                         help="only the plugin's session tables (a host index keeps its own projects and users)")
    upgrade.set_defaults(admin="upgrade", client=run_admin)
    dbp.add_parser("current", help="the revisions applied, one per branch").set_defaults(admin="current", client=run_admin)
    down = dbp.add_parser("downgrade", help="undo migrations down to TARGET, before running older code")
    down.add_argument("target", help="a revision, e.g. index@0004 (db current names them)")
    down.set_defaults(admin="downgrade", client=run_admin)
    users = commands.add_parser("user", help="users and their first API token").add_subparsers(
        dest="action", required=True)
    add = users.add_parser("add", help="create a user and print its first API token last")
    add.add_argument("name")
    _token_options(add)
    add.set_defaults(admin="user_add", client=run_admin)
    users.add_parser("list", help="users, their tokens and projects").set_defaults(admin="user_list", client=run_admin)
    passwd = users.add_parser("passwd", help="set the password a user signs in to the web pages with "
                              "(read from stdin when it is not a terminal)")
    passwd.add_argument("name")
    passwd.set_defaults(admin="user_passwd", client=run_admin)
    tokens = commands.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    add = tokens.add_parser("add", help="print a new API token for an existing user")
    add.add_argument("user")
    _token_options(add)
    add.set_defaults(admin="token_add", client=run_admin)
    listing = tokens.add_parser("list", help="tokens (never their secrets): created, last used, expiry")
    listing.add_argument("user", nargs="?")
    listing.set_defaults(admin="token_list", client=run_admin)
    revoke = tokens.add_parser("revoke", help="revoke a token by its id (token list shows ids)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(admin="token_revoke", client=run_admin)
    projects = commands.add_parser("project", help="projects and upload permissions").add_subparsers(
        dest="action", required=True)
    for name in ("grant", "revoke"):
        sub = projects.add_parser(name, help=f"{name} upload permission on an existing project")
        sub.add_argument("user")
        sub.add_argument("project")
        sub.set_defaults(admin=f"project_{name}", client=run_admin)
    projects.add_parser("list", help="projects, their releases and who may upload").set_defaults(
        admin="project_list", client=run_admin)
    publishers = commands.add_parser("publisher", help="trusted publishers: CI workflows that upload without a "
                                     "stored secret (docs/attestations.md)").add_subparsers(dest="action", required=True)
    add = publishers.add_parser("add", help="let a CI workflow exchange its OIDC token for a token of PROJECT "
                                "(a new name: a pending publisher, which may register it)")
    add.add_argument("project")
    add.add_argument("kind", choices=KINDS, help="where the workflow runs")
    add.add_argument("repository", help="OWNER/NAME on GitHub, NAMESPACE/PROJECT on GitLab")
    add.add_argument("workflow", help="the workflow's filename (release.yml) on GitHub, the CI file's path "
                     "(.gitlab-ci.yml) on GitLab")
    add.add_argument("--environment", default="", help="only jobs in this deployment environment")
    add.add_argument("--user", help="whom its tokens act for: a new project's owner (required for a new name; "
                     "default: the project's owner)")
    add.set_defaults(admin="publisher_add", client=run_admin)
    listing = publishers.add_parser("list", help="trusted publishers, pending ones included")
    listing.add_argument("project", nargs="?")
    listing.set_defaults(admin="publisher_list", client=run_admin)
    remove = publishers.add_parser("remove", help="remove a trusted publisher by its id (publisher list shows "
                                   "ids); the tokens it minted stop working")
    remove.add_argument("id", type=int)
    remove.set_defaults(admin="publisher_remove", client=run_admin)
    # ``session list`` reads the database; the client's session actions talk HTTP.
    listing = sessions.add_parser("list", help="publishing sessions across the index (needs -c CONFIG)")
    listing.add_argument("--all", action="store_true", help="also published and canceled sessions")
    listing.set_defaults(admin="session_list", client=run_admin)


def _token_options(parser) -> None:
    parser.add_argument("--description", default="", help="what the token is for (e.g. 'CI of foo')")
    parser.add_argument("--expires-in", type=int, metavar="DAYS", help="the token stops working after DAYS days")
    parser.add_argument("--stage-only", action="store_true",
                        help="the token may stage and cancel releases but not publish them (for CI)")


def run_admin(args) -> int:
    from . import admin  # the server's dependencies load only for server commands

    return admin.run(args)
