"""``session preflight`` and ``session diff``: the server's review links of a session (its
``vnd-upload2-*`` extensions), and the diff as text."""

from __future__ import annotations

PREFLIGHT = "vnd-upload2-preflight"
DIFF = "vnd-upload2-diff"


def diff_lines(body: dict) -> list[str]:
    """The stage diff as a release manager reads it: one line per change, ``+`` added, ``-`` removed."""
    base = body.get("base-version")
    lines = [f"against:    {base}" if base else "against:    nothing published yet"]

    def section(title: str, added=(), removed=(), changed=()):
        entries = [f"  + {a}" for a in added] + [f"  - {r}" for r in removed] + [f"  ~ {c}" for c in changed]
        if entries:
            lines.extend([f"{title}:", *entries])

    section("files", body.get("files", {}).get("added", ()), body.get("files", {}).get("removed", ()))
    section("wheel tags", body.get("wheel-tags", {}).get("added", ()), body.get("wheel-tags", {}).get("removed", ()))
    if python := body.get("requires-python"):
        section("requires-python", changed=[f"{python['old'] or '(none)'} -> {python['new'] or '(none)'}"])
    dist = body.get("requires-dist") or {}
    section("requires-dist", dist.get("added", ()), dist.get("removed", ()),
            [f"{c['old']} -> {c['new']}" for c in dist.get("changed", ())])
    for key, title in (("entry-points", "entry points"), ("top-level-modules", "top-level modules"),
                       ("pth-files", ".pth files")):
        section(title, (body.get(key) or {}).get("added", ()), (body.get(key) or {}).get("removed", ()))
    section("sizes", changed=[f"{c['old']['filename']} {c['old']['size']} -> "
                              f"{c['new']['filename']} {c['new']['size']} bytes" for c in body.get("size-changes", ())])
    if len(lines) == 1 and base:
        lines.append("no changes")
    lines += [f"notice: {n}" for n in body.get("notices", ())]
    return lines
