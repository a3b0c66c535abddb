"""The server's administration commands: schema migrations, users and tokens, roles, and
listings of users, tokens, projects and publishing sessions.

Kept apart from the command line so the release client starts without loading them.
"""

from __future__ import annotations

import configparser
import datetime
import getpass
import os
import sys
from importlib import resources

import alembic.command
import alembic.config
import alembic.util
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
import sqlalchemy as sa
from packaging.utils import canonicalize_name
from pyramid.paster import get_appsettings, setup_logging

from . import db
from .logs import audit_log
from .builtin.auth import new_token
from .builtin import passwords
from .builtin.models import ApiToken, Project, Release, Role, TrustedPublisher, User
from .models import PublishingSession
from .states import LIVE_PUBLISHING


def alembic_config(engine) -> alembic.config.Config:
    # The scripts ship inside the package, so this works from any working directory.
    cfg = alembic.config.Config()
    cfg.set_main_option("script_location", str(resources.files("pypi_upload2.migrations")))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine, *, core_only: bool = False) -> None:
    """Migrate the plugin's tables (``core_only``: only the sessions, for a host index's
    database; else the built-in index's too)."""
    adopt_unprefixed_history(engine)
    alembic.command.upgrade(alembic_config(engine), "core@head" if core_only else "heads")


def adopt_unprefixed_history(engine) -> None:
    """Before revision 0004 the plugin's history lived in ``alembic_version``; move it to
    the plugin's own version table (a host's ``alembic_version`` is left alone)."""
    inspector = sa.inspect(engine)
    if not inspector.has_table("alembic_version") or inspector.has_table(db.VERSION_TABLE):
        return
    with engine.begin() as conn:
        revisions = set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
        if not revisions or not revisions <= UNPREFIXED_REVISIONS:
            return
        conn.execute(sa.text(f"CREATE TABLE {db.VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                             f"CONSTRAINT {db.VERSION_TABLE}_pkc PRIMARY KEY (version_num))"))
        for revision in revisions:
            conn.execute(sa.text(f"INSERT INTO {db.VERSION_TABLE} (version_num) VALUES (:r)"), {"r": revision})
        conn.execute(sa.text("DROP TABLE alembic_version"))


UNPREFIXED_REVISIONS = {"0001", "0002", "0003"}


def current(engine) -> list[str]:
    """The revisions the database is at, one per branch, with ``(head)`` where it is the newest."""
    script = ScriptDirectory.from_config(alembic_config(engine))
    heads = set(script.get_heads())
    with engine.connect() as conn:
        revisions = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE}).get_current_heads()
    return [f"{r} (head)" if r in heads else r for r in sorted(revisions)]


def downgrade(engine, target: str) -> None:
    """Undo migrations down to ``target`` (a revision, e.g. ``index@0004``): the step before
    going back to an older release of the code, whose scripts do not know the newer ones."""
    try:
        alembic.command.downgrade(alembic_config(engine), target)
    except alembic.util.CommandError as exc:
        raise Failure(f"cannot downgrade to {target}: {exc}")
    except RuntimeError as exc:  # a migration that cannot be undone says why
        raise Failure(str(exc))


class Failure(Exception):
    pass


def _user(session, username: str) -> User:
    user = session.scalar(sa.select(User).where(User.username == username))
    if user is None:
        raise Failure(f"no such user: {username!r}")
    return user


def _project(session, name: str) -> Project:
    project = session.scalar(sa.select(Project).where(Project.normalized_name == canonicalize_name(name)))
    if project is None:
        raise Failure(f"no such project: {name!r}")
    return project


def _expiry(days: int | None) -> datetime.datetime | None:
    if days is None:
        return None
    if days <= 0:
        raise Failure("--expires-in must be a positive number of days")
    return db.utcnow() + datetime.timedelta(days=days)


def user_add(session, args) -> None:
    if session.scalar(sa.select(User).where(User.username == args.name)) is not None:
        raise Failure(f"user {args.name!r} exists; `token add {args.name}` makes another token, "
                      f"`token list {args.name}` shows them")
    user = User(username=args.name)
    session.add(user)
    print(f"created user {args.name}")
    print(new_token(session, user, args.description, _expiry(args.expires_in), may_publish=not args.stage_only))


def user_list(session, args) -> None:
    tokens = sa.select(sa.func.count(ApiToken.id)).where(ApiToken.user_id == User.id).scalar_subquery()
    roles = sa.select(sa.func.count(Role.id)).where(Role.user_id == User.id).scalar_subquery()
    _table(["user", "created", "tokens", "projects"],
           [(u.username, _when(u.created), n, r)
            for u, n, r in session.execute(sa.select(User, tokens, roles).order_by(User.username))])


def read_password() -> str:
    """The new password: the first line of stdin when it is not a terminal (scripts), else
    typed twice without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise Failure("the passwords differ; nothing changed")
    return first


def user_passwd(session, args) -> None:
    user = _user(session, args.name)
    try:
        user.password_hash = passwords.make_hash(read_password())
    except ValueError as exc:
        raise Failure(f"{exc}; nothing changed")
    # A new password lifts a lockout.
    user.failed_logins, user.locked_until = 0, None
    print(f"set the password of {user.username}")
    audit_log.info("set the password of %s", user.username)


def token_add(session, args) -> None:
    user = _user(session, args.user)
    print(new_token(session, user, args.description, _expiry(args.expires_in), may_publish=not args.stage_only))
    audit_log.info("added a %stoken for %s (%s)", "stage-only " if args.stage_only else "", user.username,
                   args.description or "no description")


def token_list(session, args) -> None:
    query = sa.select(ApiToken, User.username).join(User).order_by(ApiToken.id)
    if args.user:
        query = query.where(ApiToken.user_id == _user(session, args.user).id)
    _table(["id", "user", "may", "description", "created", "last used", "expires"],
           [(t.id, name, "publish" if t.may_publish else "stage", t.description, _when(t.created),
             _when(t.last_used), _when(t.expires_at))
            for t, name in session.execute(query)])


def token_revoke(session, args) -> None:
    token = session.get(ApiToken, args.id)
    if token is None:
        raise Failure(f"no such token: {args.id}")
    session.delete(token)
    print(f"revoked token {args.id} of {token.user.username}; it no longer authenticates")
    audit_log.info("revoked token %s of %s", args.id, token.user.username)


def project_list(session, args) -> None:
    releases = sa.select(sa.func.count(Release.id)).where(Release.project_id == Project.id).scalar_subquery()
    members: dict[int, list[str]] = {}
    for project_id, username in session.execute(sa.select(Role.project_id, User.username).join(User)
                                                .order_by(User.username)):
        members.setdefault(project_id, []).append(username)
    _table(["project", "created", "releases", "may upload"],
           [(p.name, _when(p.created), count, ", ".join(members.get(p.id, [])))
            for p, count in session.execute(sa.select(Project, releases).order_by(Project.normalized_name))])


def session_list(session, args) -> None:
    """Publishing sessions across the index: the live ones, or (--all) every one."""
    query = sa.select(PublishingSession).order_by(PublishingSession.created)
    if not args.all:
        query = query.where(PublishingSession.status.in_(LIVE_PUBLISHING))
    usernames = dict(session.execute(sa.select(sa.cast(User.id, sa.String), User.username)).all())
    _table(["id", "project", "version", "status", "created by", "created", "expires", "files"],
           [(s.id, s.name, s.version, s.status, usernames.get(s.created_by, s.created_by), _when(s.created),
             _when(s.expires_at) if s.status in LIVE_PUBLISHING else "", len(s.files))
            for s in session.scalars(query)])


def _when(value: datetime.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def _table(columns: list[str], rows: list[tuple]) -> None:
    """A plain table on stdout (tab-separated when piped, for scripts)."""
    if not sys.stdout.isatty():
        for row in [columns, *rows]:
            print("\t".join(map(str, row)))
        return
    import rich.console
    import rich.table

    table = rich.table.Table(*columns, box=rich.box.SIMPLE)
    for row in rows:
        table.add_row(*map(str, row))
    rich.console.Console().print(table)


def project_grant(session, args) -> None:
    user, project = _user(session, args.user), _project(session, args.project)
    if session.scalar(sa.select(Role).where(Role.user_id == user.id, Role.project_id == project.id)):
        print(f"{user.username} may already upload to {project.name}")
        return
    session.add(Role(user_id=user.id, project_id=project.id, role_name="Maintainer"))
    print(f"{user.username} may now upload to {project.name}")
    audit_log.info("granted %s upload to %s", user.username, project.name)


def project_revoke(session, args) -> None:
    user, project = _user(session, args.user), _project(session, args.project)
    role = session.scalar(sa.select(Role).where(Role.user_id == user.id, Role.project_id == project.id))
    if role is None:
        raise Failure(f"{user.username} has no role on {project.name}")
    session.delete(role)
    print(f"{user.username} may no longer upload to {project.name}")
    audit_log.info("revoked %s's upload to %s", user.username, project.name)


def publisher_add(session, args) -> None:
    normalized = canonicalize_name(args.project)
    project = session.scalar(sa.select(Project).where(Project.normalized_name == normalized))
    if args.user:
        user = _user(session, args.user)
    elif project is not None:
        user = session.scalar(sa.select(User).join(Role).where(Role.project_id == project.id)
                              .order_by(Role.role_name != "Owner", Role.id))
        if user is None:
            raise Failure(f"{project.name} has no members; name the user its tokens act for with --user")
    else:
        raise Failure(f"no project {args.project!r} yet: a pending publisher needs --user, who will own it")
    repository, workflow = args.repository.strip().strip("/"), args.workflow.strip()
    if repository.count("/") < 1 or (args.kind == "github" and repository.count("/") != 1):
        raise Failure(f"{args.repository!r} is not {'OWNER/NAME' if args.kind == 'github' else 'NAMESPACE/PROJECT'}")
    if args.kind == "github" and ("/" in workflow or not workflow.endswith((".yml", ".yaml"))):
        raise Failure(f"{workflow!r} is not a workflow filename (release.yml, in .github/workflows/)")
    publisher = TrustedPublisher(project_id=project.id if project else None, project_name=normalized, user=user,
                                 kind=args.kind, repository=repository, workflow=workflow,
                                 environment=args.environment.strip())
    if not db.insert(session, publisher):
        raise Failure(f"{args.kind} {repository} {workflow} is already a publisher of {args.project}")
    state = "pending publisher (may register the name)" if project is None else "trusted publisher"
    print(f"added {state} {publisher.id} of {project.name if project else normalized}: {_describe(publisher)}")
    audit_log.info("added %s %s of %s: %s, acting for %s", state, publisher.id, normalized, _describe(publisher),
                   user.username)


def _describe(p: TrustedPublisher) -> str:
    where = f"workflow {p.workflow}" if p.kind == "github" else f"CI file {p.workflow}"
    return f"{p.kind} {p.repository}, {where}" + (f", environment {p.environment}" if p.environment else "")


def publisher_list(session, args) -> None:
    query = sa.select(TrustedPublisher, User.username).join(User).order_by(TrustedPublisher.project_name,
                                                                         TrustedPublisher.id)
    if args.project:
        query = query.where(TrustedPublisher.project_name == canonicalize_name(args.project))
    _table(["id", "project", "pending", "kind", "repository", "workflow", "environment", "acts for", "created"],
           [(p.id, p.project_name, "yes" if p.pending else "no", p.kind, p.repository, p.workflow,
             p.environment or "any", name, _when(p.created)) for p, name in session.execute(query)])


def publisher_remove(session, args) -> None:
    publisher = session.get(TrustedPublisher, args.id)
    if publisher is None:
        raise Failure(f"no such trusted publisher: {args.id}")
    session.delete(publisher)
    session.flush()
    print(f"removed trusted publisher {args.id} of {publisher.project_name}; its tokens no longer authenticate")
    audit_log.info("removed trusted publisher %s of %s: %s", args.id, publisher.project_name, _describe(publisher))


def load_settings(path: str) -> dict:
    """The app's settings from the ini file, or a Failure that says what is wrong with it."""
    if not os.path.isfile(path):
        raise Failure(f"config file not found: {path}")
    try:
        setup_logging(path)
        settings = get_appsettings(path)
    except (LookupError, ImportError, ValueError, configparser.Error) as exc:
        raise Failure(f"cannot load {path}: {exc}")
    if not settings.get("sqlalchemy.url"):
        raise Failure(f"{path} sets no sqlalchemy.url in its [app:main] section")
    return settings


COMMANDS = {"user_add": user_add, "user_list": user_list, "user_passwd": user_passwd, "token_add": token_add, "token_list": token_list,
            "token_revoke": token_revoke, "project_grant": project_grant, "project_revoke": project_revoke,
            "project_list": project_list, "session_list": session_list, "publisher_add": publisher_add,
            "publisher_list": publisher_list, "publisher_remove": publisher_remove}


def run(args) -> int:
    """Run the server command ``args`` names against the database of ``args.config``."""
    try:
        settings = load_settings(args.config)
    except Failure as exc:
        print(f"pypi-upload2: {exc}", file=sys.stderr)
        return 2
    # Relative paths in the ini resolve against its folder, as they do for the app.
    engine = db.make_engine(settings["sqlalchemy.url"], here=os.path.dirname(os.path.abspath(args.config)))
    session = db.session_factory(engine)()
    try:
        if args.admin == "upgrade":
            upgrade(engine, core_only=args.core)
            print("database is up to date")
        elif args.admin == "current":
            print("\n".join(current(engine)) or "no migrations applied")
        elif args.admin == "downgrade":
            downgrade(engine, args.target)
            print("\n".join(current(engine)) or "no migrations applied")
        else:
            COMMANDS[args.admin](session, args)
            session.commit()
    except (Failure, sa.exc.DBAPIError) as exc:
        reason = f"database error: {exc.orig}" if isinstance(exc, sa.exc.DBAPIError) else exc
        print(f"pypi-upload2: {reason}", file=sys.stderr)
        return 1
    finally:
        session.close()  # rolls back whatever a failure left
        engine.dispose()
    return 0
