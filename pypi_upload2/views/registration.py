"""``upload2_view``: ``view_config`` for the plugin's views, adding the host's own view
options. A host whose view derivers need options on every view (Warehouse: the methods a view
takes, CSRF off for token-authenticated APIs) sets ``registry["upload2.view_options"]``, a
function of the view's request method returning them."""

from __future__ import annotations

import venusian


def view_options(registry, request_method: str | None) -> dict:
    options = registry.get("upload2.view_options")
    return options(request_method) if options else {}


def upload2_view(**settings):
    def attach(wrapped):
        def callback(context, name, ob):
            config = context.config.with_package(info.module)
            config.add_view(view=ob, **settings, **view_options(config.registry, settings.get("request_method")))

        info = venusian.attach(wrapped, callback, category="pyramid")
        return wrapped

    return attach
