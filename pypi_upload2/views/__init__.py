"""Routes and views: the Upload 2.0 API and its mechanisms, the stage preview, the legacy upload API."""


def includeme(config):
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
    stage = root + "stage/{token}/"
    config.add_route("upload2.stage", stage)
    config.add_route("upload2.stage.file", stage + "files/{file_id}/{filename}")
    config.add_route("upload2.stage.project", stage + "{name}/")
    config.scan(".upload2")
    config.scan(".mechanisms")
    config.scan(".resumable")
    config.scan(".stage")
    config.scan(".review")
    config.include(".openapi")  # <root>openapi.json
    config.include(".errors")
    config.include(".stalls")
    config.include(".legacy")  # the legacy upload route (upload2.legacy_path), and add_upload2_dispatch
