"""Release groups, an index's extension (the ``vnd-upload2-groups`` link of its Upload 2.0
root): the sessions of several projects, published together or not at all. ``upload`` makes
one when files of several projects are given (or with ``--group``); ``group status|publish|
cancel`` act on one by its URL."""

from __future__ import annotations

import dataclasses
import urllib.parse

from .api import Api, ProblemError
from .upload import ENDED, PUBLISH_AFTER, FileFailed, Release, Uploader

GROUPS = "vnd-upload2-groups"


class NoGroups(Exception):
    """The index offers no release groups."""


@dataclasses.dataclass
class Group:
    body: dict
    created: bool = False

    @property
    def url(self) -> str:
        return self.body["links"]["group"]

    @property
    def status(self) -> str | None:
        return self.body.get("status")

    @property
    def stage(self) -> str | None:
        return None if self.status in ENDED else self.body["links"].get("stage")

    def as_json(self) -> dict:
        return {**self.body, "created": self.created}


def check(body, url: str) -> dict:
    links = body.get("links") if isinstance(body, dict) else None
    if not isinstance(links, dict) or not all(isinstance(links.get(k), str) for k in ("group", "publish")):
        raise ProblemError(502, "Invalid release group response", f"{url} answered without the group's links.")
    body["links"] = {k: urllib.parse.urljoin(url, v) for k, v in links.items() if isinstance(v, str)}
    if body.get("status") in ENDED:
        body["links"].pop("stage", None)  # it answers 404 once the group has ended
    return body


def _groups_link(api: Api, url: str) -> str | None:
    try:
        body = api.get(url).body
    except ProblemError:
        return None  # an index without the extension: its root answers 405
    link = (body.get("links") or {}).get(GROUPS) if isinstance(body, dict) else None
    return urllib.parse.urljoin(url, link) if isinstance(link, str) else None


def create(api: Api, root: str, releases: list[Release]) -> Group:
    """A group of ``releases``' sessions, created at the link their sessions give (the client
    may have been given the legacy URL, which takes 2.0 requests too), or at the 2.0 root's."""
    link = releases[0].links.get(GROUPS)
    url = link or _groups_link(api, root)
    if url is None:
        raise NoGroups(f"{root} offers no release groups (no {GROUPS} link at its root or of its sessions)")
    reply = api.post(url, {"sessions": [r.session["session-token"] for r in releases]})
    return Group(check(reply.body, url), created=True)


def refresh(api: Api, group: Group) -> Group:
    group.body = check(api.get(group.url).body, group.url)
    return group


def publish(uploader: Uploader, group: Group) -> None:
    """Publish the group and wait for ``published`` (unless scheduled: the uploader's
    ``publish_after``); FileFailed with the group's notices otherwise, or WaitTimeout. A group
    already processing is only waited for."""
    def keep(body):
        group.body = body

    uploader.publish_and_wait("the release group", group.url, group.body, check, keep)
    if group.body.get(PUBLISH_AFTER):
        return
    if group.status != "published":
        raise FileFailed(f"the release group's status is {group.status}"
                         + "".join(f"\n{n}" for n in group.body.get("notices") or ()))


def cancel(api: Api, group: Group) -> None:
    group.body = check(api.delete(group.url).body, group.url)


def resume_commands(url: str) -> str:
    return "\n".join(["the release group is not published yet:", f"  group:   {url}",
                      f"  status:  pypi-upload2 group status {url}",
                      f"  resume:  pypi-upload2 group publish {url}   (waits, then publishes)"])


def lines(body: dict, url: str) -> list[str]:
    """The group as a release manager reads it."""
    links = body.get("links", {})
    shown = [f"group:      {links.get('group', url)}", f"status:     {body.get('status')}",
             f"expires-at: {body.get('expires-at')}"]
    if body.get(PUBLISH_AFTER):
        shown.insert(2, f"publishes:  {body[PUBLISH_AFTER]} (scheduled)")
    if links.get("stage"):
        shown.append(f"stage:      {links['stage']}")
    sessions = body.get("sessions") or []
    shown.append(f"sessions:   {len(sessions)}")
    shown += [f"  {s.get('name')} {s.get('version')}  {s.get('status')}  {s.get('link')}" for s in sessions]
    shown += [f"notice: {n}" for n in body.get("notices") or ()]
    return shown
