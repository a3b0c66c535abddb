"""``pypi-upload2 upload``, ``pypi-upload2 session`` and ``pypi-upload2 group``: the options and the report.

Exit status: 0 done; 1 the upload, the test install or the publish failed; 2 bad options or
credentials; 3 the index was still processing when --wait-timeout ran out; 130 interrupted (Ctrl+C).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import urllib.parse
from pathlib import Path

from . import config, dists as dists_module, groups, review, trusted
from .api import Api, Cancelled, ProblemError, TransientError, problem_json
from .flow import FAILED, INTERRUPTED, OK, TIMED_OUT, USAGE, Flow, resume_commands
from .progress import Reporter, make_console
from .upload import (ENDED, PUBLISH_AFTER, WAIT_TIMEOUT, FileFailed, Options, Release, Uploader, WaitTimeout,
                     usable_links)
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


def byte_size(value: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+)\s*([kmg]?)i?b?\s*", value.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (e.g. 8M, 512K, 1048576)")
    return int(match[1]) * 1024 ** " kmg".index(match[2] or " ")


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def _wait_option(group) -> None:
    group.add_argument("--wait-timeout", type=non_negative, default=WAIT_TIMEOUT, metavar="SECONDS",
                       help=f"how long to wait for the index to finish verifying a file or publishing while it "
                            f"answers 'processing'; then stop with exit status {TIMED_OUT} and print how to "
                            f"resume (default {WAIT_TIMEOUT:.0f}; 0: no limit)")


def _publish_after_option(group) -> None:
    group.add_argument("--publish-after", metavar="TIME",
                       help="schedule the publish for TIME, RFC 3339 in UTC (e.g. 2026-12-08T14:00:00Z), where the "
                            "index offers it; `session unschedule` undoes it before then")


def _output_options(parser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--json", action="store_true", help="print a machine-readable result on stdout "
                       "(messages go to stderr)")
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and results")
    group.add_argument("--retries", type=int, default=5, metavar="N",
                       help="retries of a request after a network error or 5xx (default 5)")
    group.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="network timeout per request (default 60)")


def add_commands(subparsers):
    """Add ``upload``, ``session`` and ``group``; returns the ``session`` actions, for the server's own."""
    up = subparsers.add_parser(
        "upload", help="upload distributions to an index (Upload 2.0, legacy fallback)",
        description="Upload FILES: one publishing session per release (name and version), files in parallel, "
                    "then publish (or --stage). Falls back to the legacy upload API when the index has no "
                    "Upload 2.0 endpoint.")
    # "*", not "+": ``--test-install dist/foo.whl`` takes the file first (upload_command gives it back).
    up.add_argument("files", nargs="*", metavar="FILE", help="distributions (.whl, .tar.gz, .zip) or folders of them")
    up.add_argument("--repository-url", metavar="URL",
                    help="the upload endpoint, e.g. https://upload.example.org/legacy/ "
                         "(env UPLOAD2_REPOSITORY_URL or TWINE_REPOSITORY_URL)")
    config.add_options(up)
    up.add_argument("--trusted-publishing", choices=trusted.MODES,
                    default=os.environ.get("UPLOAD2_TRUSTED_PUBLISHING", "auto"),
                    help="exchange the CI job's OIDC token (GitHub Actions, GitLab CI) for a short-lived token of "
                         "the project: auto (default), without other credentials in such a job; always; never "
                         "(env UPLOAD2_TRUSTED_PUBLISHING)")
    up.add_argument("--attestations", action="store_true",
                    help="upload each file's PEP 740 attestations, the <file>.*.attestation files beside it "
                         "(as twine --attestations; the index verifies them against the trusted publisher)")
    flow = up.add_argument_group("release")
    flow.add_argument("--stage", action="store_true", help="upload but do not publish; print the stage URL and "
                      "the commands to test, publish or cancel")
    flow.add_argument("--test-install", nargs="?", const="", default=None, metavar="COMMAND",
                      help="after staging, install the release from the stage in a fresh virtualenv and run "
                           "COMMAND (default: import the wheels' top-level modules); publish only if it succeeds. "
                           "Write --test-install=COMMAND when files follow")
    flow.add_argument("--cancel-on-failure", action="store_true",
                      help="cancel the sessions when the test install fails (default: leave them staged)")
    flow.add_argument("--public-index-url", metavar="URL",
                      help="the public simple index, for dependencies in --test-install and the printed pip "
                           "command (default: <repository origin>/simple/)")
    _publish_after_option(flow)
    flow.add_argument("--group", action=argparse.BooleanOptionalAction, default=None,
                      help="publish the releases together, all or none, in one release group where the index "
                           "offers them (default: when files of several projects are given)")
    flow.add_argument("--join", action="store_true",
                      help="add the files to an already open session of the release instead of failing")
    flow.add_argument("--protocol", choices=("auto", "2.0", "legacy"), default="auto",
                      help="auto: Upload 2.0, or the legacy API when the index has no 2.0 endpoint (default)")
    _wait_option(flow)
    transfer = up.add_argument_group("transfer")
    transfer.add_argument("--parallel", type=positive, default=4, metavar="N",
                          help="files uploaded at once (default 4)")
    transfer.add_argument("--resumable", action="store_true",
                          help="use the resumable mechanism for every file when the index offers it")
    transfer.add_argument("--resumable-threshold", type=byte_size, default="16M", metavar="SIZE",
                          help="files larger than this use the resumable mechanism when offered (default 16M)")
    transfer.add_argument("--chunk-size", type=byte_size, default="8M", metavar="SIZE",
                          help="bytes per resumable append, within the server's limits (default 8M)")
    _output_options(up)
    up.set_defaults(client=upload_command)

    session = subparsers.add_parser("session", help="show, publish, cancel or extend a publishing session",
                                    description="Act on a publishing session by its URL (as `upload --stage` "
                                                "prints it).")
    actions = session.add_subparsers(dest="action", required=True)
    helps = {"status": "show the session's state, files and notices",
             "publish": "publish the session and wait until it is published",
             "cancel": "cancel the session and discard its files",
             "extend": "ask the server to extend the session's lifetime",
             "preflight": "report every problem a publish would hit now, changing nothing (exit 1 if any)",
             "diff": "compare the stage with the project's latest published release",
             "unschedule": "undo a scheduled publish before its time: the session is open again"}
    for action, text in helps.items():
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("session_url", metavar="SESSION_URL")
        if action == "extend":
            sub.add_argument("--extend-for", type=positive, default=3600, metavar="SECONDS",
                             help="seconds to extend by (default 3600)")
        if action == "publish":
            _wait_option(sub)
            _publish_after_option(sub)
        config.add_options(sub)
        _output_options(sub)
        sub.set_defaults(client=session_command)

    group = subparsers.add_parser("group", help="show, publish or cancel a release group",
                                  description="Act on a release group (the index's extension) by its URL, as "
                                              "`upload --stage` prints it.")
    group_actions = group.add_subparsers(dest="action", required=True)
    for action, text in {"status": "show the group's state and sessions",
                         "publish": "publish every session of the group, or none, and wait until published",
                         "cancel": "cancel the group and every session in it"}.items():
        sub = group_actions.add_parser(action, help=text, description=text)
        sub.add_argument("group_url", metavar="GROUP_URL")
        if action == "publish":
            _wait_option(sub)
            _publish_after_option(sub)
        config.add_options(sub)
        _output_options(sub)
        sub.set_defaults(client=group_command)
    return actions


# -- shared --------------------------------------------------------------------------------------

def _reporter(args) -> Reporter:
    stream = sys.stderr if args.json else sys.stdout
    console = make_console(stream)
    return Reporter(console, bars=not args.json, quiet=args.quiet)


def _api(args, repository, reporter, cancel=None, *, connections=8) -> Api:
    if urllib.parse.urlsplit(repository.url).scheme == "http" and repository.credentials is not None:
        host = urllib.parse.urlsplit(repository.url).hostname or ""
        if host not in ("localhost", "127.0.0.1", "::1"):
            reporter.warn(f"sending credentials over plain HTTP to {host}")
    return Api(repository.url, repository.credentials, retries=max(args.retries, 0), timeout=args.timeout,
               connections=connections, cancel=cancel, on_retry=reporter.warn)


def _emit(args, report: dict) -> None:
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=_jsonable) + "\n")
        sys.stdout.flush()


def _jsonable(value):
    return value.as_json()


def _collect(paths: list[str], *, attestations: bool = False) -> list[dists_module.Dist]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(DIST_SUFFIXES))
        elif not path.name.endswith(dists_module.ATTESTATION_SUFFIX):  # dist/* names them too, as for twine
            found.append(path)
    seen: dict[str, Path] = {}
    for path in found:
        if path.name in seen and seen[path.name].resolve() != path.resolve():
            raise dists_module.DistError(f"two files named {path.name}: {seen[path.name]} and {path}")
        seen[path.name] = path
    if not seen:
        raise dists_module.DistError("no distributions to upload")
    dists = [dists_module.inspect(p) for p in seen.values()]
    if attestations:
        for dist in dists:
            dist.attestations = dists_module.find_attestations(dist.path)
    return dists


# -- upload --------------------------------------------------------------------------------------

def upload_command(args) -> int:
    reporter = _reporter(args)
    report = {"protocol": None, "repository": None, "ok": False, "stage": args.stage, "sessions": [],
              "group": None, "files": [], "test-install": None, "error": None, "timed-out": False}
    # ``--test-install dist/foo.whl``: argparse took a file for the command.
    if args.test_install and os.path.isfile(args.test_install) and args.test_install.endswith(DIST_SUFFIXES):
        args.files.insert(0, args.test_install)
        args.test_install = ""
    try:
        dists = _collect(args.files, attestations=args.attestations)
        repository = trusted.apply(args.trusted_publishing, config.resolve(args), reporter.warn)
    except (dists_module.DistError, config.ConfigError, trusted.TrustedPublishingError) as exc:
        return _fail(args, reporter, report, str(exc), USAGE)
    report["repository"] = repository.url
    if repository.credentials is None:
        return _fail(args, reporter, report, "no credentials: pass --token or -u/-p, set UPLOAD2_TOKEN or "
                     "TWINE_USERNAME/TWINE_PASSWORD, or add them to the repository's .pypirc section", USAGE)
    if args.protocol == "legacy" and (args.stage or args.test_install is not None):
        return _fail(args, reporter, report, "--stage and --test-install need Upload 2.0", USAGE)
    public = args.public_index_url or urllib.parse.urljoin(repository.url, "/simple/")
    cancel = threading.Event()
    api = _api(args, repository, reporter, cancel, connections=args.parallel + 2)
    flow = Flow(args, api, reporter, repository, public, report)
    # A CI runner stops a job with SIGTERM: clean up as for Ctrl+C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with reporter:
            code = flow.run(dists)
    except (KeyboardInterrupt, Cancelled):
        cancel.set()
        reporter.stop()
        code = flow.interrupted()
    finally:
        signal.signal(signal.SIGTERM, previous)
        api.close()
    report["ok"] = code == OK
    report["sessions"] = [r.as_json() for r in flow.releases]
    report["group"] = flow.group.as_json() if flow.group else None
    _emit(args, report)
    return code


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def _fail(args, reporter, report, message: str, code: int) -> int:
    reporter.error(message.splitlines())
    report["error"] = problem_json(message)
    _emit(args, report)
    return code


# -- session -------------------------------------------------------------------------------------

UNSCHEDULE = "vnd-upload2-unschedule"


def _open(args, reporter: Reporter, report: dict, url: str):
    """For a ``session`` or ``group`` action on ``url``: its repository, an Api and an Uploader;
    or the exit status of a usage error, reported."""
    try:
        repository = config.resolve(args, url=url)
    except config.ConfigError as exc:
        return _fail(args, reporter, report, str(exc), USAGE)
    if repository.credentials is None:
        return _fail(args, reporter, report, "no credentials: pass --token or -u/-p, or set UPLOAD2_TOKEN", USAGE)
    api = _api(args, repository, reporter)
    return repository, api, Uploader(api, reporter, Options(wait_timeout=getattr(args, "wait_timeout", WAIT_TIMEOUT),
                                                            publish_after=getattr(args, "publish_after", None)))


def session_command(args) -> int:
    reporter = _reporter(args)
    report = {"action": args.action, "session": None, "ok": False, "error": None, "timed-out": False}
    opened = _open(args, reporter, report, args.session_url)
    if isinstance(opened, int):
        return opened
    repository, api, uploader = opened
    release = Release("the session", "", [], session={"links": {"session": repository.url}})
    code = OK
    try:
        uploader.refresh(release)
        if args.action == "cancel":
            uploader.cancel(release)
            uploader.refresh(release)
        elif args.action == "publish" and release.status != "published":  # a re-run (of a CI job) is no error
            uploader.publish(release)
        elif args.action == "extend":
            if "extend" not in release.links:
                raise FileFailed("the server does not offer extensions of this session")
            api.post(release.links["extend"], {"extend-for": args.extend_for})
            uploader.refresh(release)
        elif args.action == "unschedule":
            if UNSCHEDULE not in release.links:
                raise FileFailed("the session is not waiting for a scheduled publish")
            api.post(release.links[UNSCHEDULE])
            uploader.refresh(release)
        elif args.action in ("preflight", "diff"):
            report[args.action] = _review(api, reporter, release, args.action)
    except FAILURES as exc:
        code = _failed(exc, reporter, report, "session", resume_commands(release.label, repository.url))
    finally:
        api.close()
    body = release.session if release.session.get("status") else None
    if body is not None:
        body = {**body, "links": usable_links(body)}
        if code in (OK, FAILED, TIMED_OUT) and args.action not in ("preflight", "diff"):
            _show_session(reporter, body, repository.url)
    report["session"] = body
    report["ok"] = code == OK
    _emit(args, report)
    return code


FAILURES = (ProblemError, TransientError, FileFailed, WaitTimeout, KeyboardInterrupt)


def _failed(exc, reporter: Reporter, report: dict, what: str, resume: str) -> int:
    """Report a failed ``session`` or ``group`` action; its exit status. ``resume``: the
    commands that pick up a publish --wait-timeout stopped waiting for."""
    reason = exc.reason if isinstance(exc, FileFailed) else exc
    code = FAILED
    if isinstance(exc, KeyboardInterrupt):
        lines, code = ["interrupted"], INTERRUPTED
    elif isinstance(exc, WaitTimeout):
        lines = [str(exc), *resume.splitlines()]
        code, report["timed-out"] = TIMED_OUT, True
    elif isinstance(exc, ProblemError) and exc.status == 404:
        lines = [f"no such {what} (it may have ended and been purged)", *exc.lines()]
    else:
        lines = reason.lines() if isinstance(reason, ProblemError) else str(reason).splitlines()
    reporter.error(lines[:1] if code == TIMED_OUT else lines)
    if code == TIMED_OUT:  # the commands, unindented, for copying
        reporter.result("\n".join(lines[1:]))
    report["error"] = problem_json(reason if isinstance(reason, ProblemError) else lines)
    return code


def _review(api, reporter: Reporter, release: Release, action: str) -> dict:
    """The preflight (a problem raised when a publish would fail) or the diff, reported."""
    url = release.links.get(review.PREFLIGHT if action == "preflight" else review.DIFF)
    if url is None:
        raise FileFailed(f"the server does not offer a {action} of this session")
    body = api.get(url).body
    reporter.result("a publish now would succeed" if action == "preflight" else "\n".join(review.diff_lines(body)))
    return body


def _show_session(reporter: Reporter, body: dict, url: str) -> None:
    links = body.get("links", {})
    lines = [f"session:    {links.get('session', url)}", f"status:     {body.get('status')}",
             f"expires-at: {body.get('expires-at')}"]
    if body.get(PUBLISH_AFTER):
        lines.insert(2, f"publishes:  {body[PUBLISH_AFTER]} (scheduled; `session unschedule` undoes it)")
    if links.get("stage"):
        lines.append(f"stage:      {links['stage']}")
    elif body.get("status") in ENDED:
        lines.append(f"stage:      none (the session is {body['status']}; its stage is gone)")
    files = body.get("files") or {}
    lines.append(f"files:      {len(files)}")
    for filename, entry in sorted(files.items()):
        lines.append(f"  {filename}  {entry.get('status')}")
        lines += [f"    notice: {n}" for n in entry.get("notices") or ()]
    lines += [f"notice: {n}" for n in body.get("notices") or ()]
    reporter.result("\n".join(lines))


# -- group ---------------------------------------------------------------------------------------

def group_command(args) -> int:
    reporter = _reporter(args)
    report = {"action": args.action, "group": None, "ok": False, "error": None, "timed-out": False}
    opened = _open(args, reporter, report, args.group_url)
    if isinstance(opened, int):
        return opened
    repository, api, uploader = opened
    group, code = None, OK
    try:
        group = groups.refresh(api, groups.Group({"links": {"group": repository.url}}))
        if args.action == "cancel":
            groups.cancel(api, group)
        elif args.action == "publish" and group.status != "published":  # a re-run is no error
            groups.publish(uploader, group)
    except FAILURES as exc:
        code = _failed(exc, reporter, report, "release group", groups.resume_commands(repository.url))
    finally:
        api.close()
    if group is not None and group.status:
        if code in (OK, FAILED, TIMED_OUT):
            reporter.result("\n".join(groups.lines(group.body, repository.url)))
        report["group"] = group.body
    report["ok"] = code == OK
    _emit(args, report)
    return code
