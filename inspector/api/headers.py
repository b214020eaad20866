"""Security headers on every answer of the dashboard: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, a
referrer policy, and a Content-Security-Policy.

The page loads only its own files (`/static/app.js`, `/static/style.css`, images and the event stream from the same
origin; no inline script or style, no CDN), so its policy allows `'self'` and nothing else, and no site may frame
it (`frame-ancestors 'none'`, and `X-Frame-Options` for older browsers). FastAPI's API docs (`/docs`, `/redoc`) load
Swagger UI / ReDoc from a CDN with an inline script: they get only `frame-ancestors 'none'`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PAGE_CSP", "SecurityHeaders"]

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_DOCS_CSP = "frame-ancestors 'none'"
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP answer (errors and streams included).

    docs_paths: paths that serve third-party documentation pages (they get the frame rule only)."""

    def __init__(self, app: ASGIApp, docs_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = _DOCS_CSP if scope["path"] in self.docs_paths else PAGE_CSP
        extra = [*_ALWAYS, (b"content-security-policy", csp.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
