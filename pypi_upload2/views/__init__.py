"""Routes and views: the Upload 2.0 API and its mechanisms, release groups, the stage preview, the legacy
upload API."""


def includeme(config):
    from .registration import view_options
    from .upload2 import ALLOWED_METHODS, method_not_allowed

    root = config.registry["upload2.settings"].root_path
    session = root + "sessions/{token}/"
    file = session + "files/{file_id}/"
    config.add_route("upload2.root", root)
    config.add_route("upload2.session", session)
    config.add_route("upload2.publish", session + "publish")
    config.add_route("upload2.extend", session + "extend")
    config.add_route("upload2.preflight", session + "preflight")
    config.add_route("upload2.diff", session + "diff")
    config.add_route("upload2.unschedule", session + "unschedule")
    config.add_route("upload2.upload", session + "files/")
    config.add_route("upload2.file", file)
    config.add_route("upload2.file.complete", file + "complete")
    config.add_route("upload2.file.extend", file + "extend")
    config.add_route("upload2.file.bytes", file + "bytes")
    config.add_route("upload2.file.attestations", file + "attestations")
    group = root + "groups/{token}/"
    config.add_route("upload2.groups", root + "groups/")
    config.add_route("upload2.group", group)
    config.add_route("upload2.group.sessions", group + "sessions/")
    config.add_route("upload2.group.session", group + "sessions/{session_token}/")
    config.add_route("upload2.group.publish", group + "publish")
    config.add_route("upload2.group.extend", group + "extend")
    config.add_route("upload2.group.preflight", group + "preflight")
    config.add_route("upload2.group.diff", group + "diff")
    config.add_route("upload2.group.unschedule", group + "unschedule")
    group_stage = root + "group-stage/{token}/"
    config.add_route("upload2.group.stage", group_stage)
    config.add_route("upload2.group.stage.file", group_stage + "files/{file_id}/{filename}")
    config.add_route("upload2.group.stage.project", group_stage + "{name}/")
    stage = root + "stage/{token}/"
    config.add_route("upload2.stage", stage)
    config.add_route("upload2.stage.file", stage + "files/{file_id}/{filename}")
    config.add_route("upload2.stage.provenance", stage + "integrity/{file_id}/{filename}/provenance")
    config.add_route("upload2.stage.project", stage + "{name}/")
    config.scan(".upload2")
    for route in ALLOWED_METHODS:  # the fallback of each route: a method it takes matches first
        config.add_view(method_not_allowed, route_name=route, **view_options(config.registry, None))
    config.scan(".mechanisms")
    config.scan(".resumable")
    config.scan(".attestations")
    config.scan(".stage")
    config.scan(".review")
    config.scan(".groups")
    config.include(".openapi")  # <root>openapi.json
    config.include(".errors")
    config.include(".stalls")
    config.include(".legacy")  # the legacy upload route (upload2.legacy_path), and add_upload2_dispatch
