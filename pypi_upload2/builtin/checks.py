"""The built-in index's publish check: a project's files stay within its quota."""

from __future__ import annotations

import sqlalchemy as sa

from .models import Project, Release, ReleaseFile


def project_quota(request, session, files):
    """The project's published files and the session's stay within ``upload2.project_quota``."""
    quota = request.registry["upload2.settings"].project_quota
    held = request.db.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(ReleaseFile.size), 0))
        .join(Release).join(Project).where(Project.normalized_name == session.normalized_name))
    total = held + sum(f.received_size or 0 for f in files)
    if total > quota:
        yield None, (f"the project would hold {total} bytes of files, over its quota of {quota} bytes; "
                     "delete files or ask the index for a larger quota")
