"""How the local stack serves the demo (devserver/static.py): a fixed set of GET/HEAD paths under
/demo, answered before API routing, with a CSP of their own; everything else is the API's."""

from __future__ import annotations

import pytest

from devserver.static import CONTENT_SECURITY_POLICY, FILES, WEB_DIR
from tests.browser.conftest import BrowserStack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("path", sorted(FILES))
def test_each_demo_file_is_served_with_its_type_and_policy(stack: BrowserStack, path: str) -> None:
    name, media_type = FILES[path]
    response = stack.client().request("GET", path)
    assert response.status == 200
    assert response.body == (WEB_DIR / name).read_bytes()
    assert response.header("Content-Type") == media_type
    assert response.header("Content-Security-Policy") == CONTENT_SECURITY_POLICY
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Cache-Control") == "no-cache"


def test_the_page_policy_allows_only_its_own_origin() -> None:
    directives = dict(part.partition(" ")[::2] for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src"):
        assert directives[directive] == "'self'"  # no inline script, no eval, no third party
    assert directives["frame-ancestors"] == "'none'"


def test_head_answers_without_a_body(stack: BrowserStack) -> None:
    response = stack.client().request("HEAD", "/demo")
    assert response.status == 200
    assert response.body == b""


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/demo"),  # only GET and HEAD are the demo's
        ("GET", "/demo/unknown.js"),
        ("GET", "/demo/../README.md"),
        ("GET", "/demo/%2e%2e/README.md"),
        ("GET", "/demo/tokencore.js/"),
        ("GET", "/web/tokencore.js"),
    ],
)
def test_anything_else_goes_to_the_gateway(stack: BrowserStack, method: str, path: str) -> None:
    response = stack.client().request(method, path)
    assert response.status == 404
    assert response.json() == {"message": "Not Found"}  # API Gateway's own answer


def test_the_api_keeps_its_own_headers(stack: BrowserStack) -> None:
    response = stack.client().request("GET", "/.well-known/openid-configuration")
    assert response.status == 200
    assert response.header("Content-Security-Policy") == (
        "default-src 'none'; frame-ancestors 'none'"
    )
