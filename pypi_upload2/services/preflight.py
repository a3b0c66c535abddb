"""Preflight: every rule a publish of the session would apply now, applied without changing
anything, so a release manager learns all of what would fail before pressing publish.

Unlike a publish, it does not stop at the first failed rule: each rule adds its problems.
It only reads. The filename reservation a publish takes becomes a look-up of each filename in
the host's namespace, and no publisher runs. A race it cannot see (another door taking a
filename meanwhile) is still settled by the publish itself.
"""

from __future__ import annotations

from ..interfaces import IAuthorization, IFilenames, IProjects, IReleases
from ..problems import Problem
from ..states import FileStatus
from .. import states
from . import checks, loading
from .publication import IN_GROUP, STAGE_ONLY, may_publish, new_files_window_closed
from .publishing import live_files


def problems(request, session, project, *, grouped: bool = False) -> list[dict]:
    """The PEP's ``errors`` entries a publish of ``session`` would fail with now ([] if none);
    ``grouped``: published by its release group, not alone."""
    errors: list[dict] = []
    try:
        states.publishing(session, "publish", dry_run=True)
    except Problem as refusal:
        errors += refusal.errors
    if not grouped and session.group_id is not None:
        errors.append({"source": "vnd-upload2-group", "message": IN_GROUP})
    if not may_publish(request, session, project):
        errors.append({"source": "authorization", "message": STAGE_ONLY})
    files = live_files(session)
    if files and (closed := new_files_window_closed(request, session, project)):
        errors.append({"source": "session", "message": closed})
    errors += [{"source": f.filename, "message": f"status is {f.status}, not completed"}
               for f in files if f.status != FileStatus.COMPLETED]
    completed = [f for f in files if f.status == FileStatus.COMPLETED]
    filenames = request.find_service(IFilenames)
    errors += [{"source": f.filename, "message": "this filename is already used in the index"}
               for f in completed if filenames.used(request, f.filename)]
    if project is not None and any(f.packagetype == "sdist" for f in completed) and (
            request.find_service(IReleases).has_sdist(request, project, session.version)):
        errors.append({"source": next(f.filename for f in completed if f.packagetype == "sdist"),
                       "message": "the release already has an sdist"})
    if project is None:
        errors += _new_name_problems(request, session)
    errors += checks.run(request, session, completed)
    return errors


def _new_name_problems(request, session) -> list[dict]:
    """A first publish registers the reserved name: the host's naming rules and its
    permission to register apply as they would then."""
    who = loading.principal(request)
    try:
        request.find_service(IProjects).check_new_name(request, who, session.name)
    except Problem as refusal:
        return refusal.errors
    if not request.find_service(IAuthorization).may_register(request, who, session.name):
        return [{"source": "name", "message": f"you may not register {session.name!r}"}]
    return []
