"""The browser demo (``web/``) at ``/demo``, on the API's own origin.

Not part of the emulated API Gateway: these few fixed paths are answered before routing, so
the page is same-origin with the API and the refresh cookie (``Path=/auth``) and the
fingerprint cookie (``Path=/``) flow to it without CORS. Only GET and HEAD of the paths in
``FILES``; anything else goes on to the gateway (and is a 404 there, as before). Files are
read at every request, so edits show on reload.

The page gets its own Content-Security-Policy: the API's ``default-src 'none'`` would forbid
its scripts and its fetches. This one allows same-origin scripts, styles and connections
only: no inline script, no third-party anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from devserver.gateway import HttpRequest, HttpResponse

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"

_HTML: Final = "text/html; charset=utf-8"
_JS: Final = "text/javascript; charset=utf-8"
_CSS: Final = "text/css; charset=utf-8"

# URL path -> (file under web/, media type). A fixed table: no path is ever built from input.
FILES: Final[dict[str, tuple[str, str]]] = {
    "/demo": ("demo/index.html", _HTML),
    "/demo/": ("demo/index.html", _HTML),
    "/demo/demo.js": ("demo/demo.js", _JS),
    "/demo/demo.css": ("demo/demo.css", _CSS),
    "/demo/tokencore.js": ("tokencore.js", _JS),
}

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def static_response(request: HttpRequest) -> HttpResponse | None:
    """The demo's answer to ``request``, or None when the request is the API's."""
    if request.method not in ("GET", "HEAD"):
        return None
    entry = FILES.get(request.raw_path)
    if entry is None:
        return None
    name, media_type = entry
    try:
        body = (WEB_DIR / name).read_bytes()
    except OSError:
        return None
    return HttpResponse(
        200,
        [
            ("Content-Type", media_type),
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ],
        body,
    )
