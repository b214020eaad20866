"""`ShutdownGuard`: while the line stops, the API answers 503 with `Retry-After` instead of reaching a store or a
pipeline that is closing under it (a 500 and a traceback before this).

`EdgeService.stop` calls `begin_shutdown(app)` before it drains the pipeline: from then on every `/api/...` and
`/metrics` request gets `503 {"detail": "the line is shutting down"}`; the page and its static files still load (a
browser then shows the API's state through its own polling). Requests already inside a route finish as they are.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RETRY_AFTER_S", "ShutdownGuard", "begin_shutdown", "shutting_down"]

RETRY_AFTER_S = 5  # a restarted line (systemd's RestartSec) answers again within a few seconds
_BODY = {"detail": "the line is shutting down"}
_GUARDED = ("/api/", "/metrics")


def begin_shutdown(app: object) -> None:
    """Mark `app` (a FastAPI app built by `create_app`) as shutting down."""
    app.state.shutting_down = True  # type: ignore[attr-defined]


def shutting_down(app: object) -> bool:
    return bool(getattr(getattr(app, "state", None), "shutting_down", False))


class ShutdownGuard:
    """ASGI middleware: 503 + Retry-After on the API once `begin_shutdown` was called on the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_GUARDED) or not shutting_down(scope.get("app")):
            await self.app(scope, receive, send)
            return
        answer = JSONResponse(_BODY, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        await answer(scope, receive, send)
