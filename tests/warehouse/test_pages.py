"""Warehouse's own pages answer as they do without the plugin."""

from __future__ import annotations

import webtest

from tests.conftest import build_wheel
from tests.warehouse.test_forklift import forklift_upload


def _normalize(text: str) -> str:
    # Per-response nonces and CSRF tokens differ between two renderings.
    import re

    return re.sub(r'(nonce|csrf_token|value)="[^"]*"', r'\1=""', text)


def test_warehouse_pages_unaffected_by_the_include(owner, wh_app, wh_plain_app, dist_dir):
    name = owner.project
    forklift_upload(owner.app, owner.headers, build_wheel(dist_dir, name, "1.0"))
    plain = webtest.TestApp(wh_plain_app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    for url in ("/simple/", f"/simple/{name}/", f"/pypi/{name}/json", f"/pypi/{name}/1.0/json"):
        with_plugin, without = owner.app.get(url, status=200), plain.get(url, status=200)
        assert with_plugin.content_type == without.content_type, url
        if url.endswith("json"):
            assert with_plugin.json == without.json, url
        else:
            assert with_plugin.text == without.text, url
    page = owner.app.get(f"/project/{name}/", status=200)
    assert page.content_type == "text/html"
    assert name in page.text and "1.0" in page.text
    assert page.status == plain.get(f"/project/{name}/", status=200).status
    assert owner.app.get(f"/pypi/{name}/json").json["info"]["version"] == "1.0"
