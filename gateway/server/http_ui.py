"""The web inbox at ``/ui``: static files shipped in the package, under a strict policy.

The page is plain HTML, CSS and ES modules (``gateway/server/ui/``), read once at
start-up and served from memory: only those files exist, so no path can reach
anything else. Every response under ``/`` and ``/ui`` (errors included) carries a
Content-Security-Policy that allows scripts, styles and connections to this origin
only, with no inline code and no eval; the page sets every message body as text,
never as HTML. The page's data comes from the tenant API with the key in an
``Authorization`` header, never in a URL.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.server.http_api import Problem

UI_DIR = Path(__file__).with_name("ui")
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
UI_FILES = web.AppKey("ui_files", dict[str, tuple[bytes, str]])


def load_files(folder: Path = UI_DIR) -> dict[str, tuple[bytes, str]]:
    """Every shippable file of the page: name -> (bytes, content type)."""
    return {
        path.name: (path.read_bytes(), _TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.suffix in _TYPES
    }


def _is_ui(path: str) -> bool:
    return path == "/" or path == "/ui" or path.startswith("/ui/")


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """The policy on every page response, whichever handler (or error) made it."""
    if _is_ui(request.path):
        response.headers.update(SECURITY_HEADERS)


async def to_inbox(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def page(request: web.Request) -> web.Response:
    name = request.match_info.get("file", "index.html")
    found = request.app[UI_FILES].get(name)
    if found is None:
        raise Problem(404, "not_found", "no such file of the web inbox")
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8")


def add_routes(app: web.Application) -> None:
    app[UI_FILES] = load_files()
    app.router.add_get("/", to_inbox)
    app.router.add_get("/ui", to_inbox)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/{file}", page)
    app.on_response_prepare.append(_secure)
