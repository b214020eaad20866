"""`create_app(deps)`: the dashboard app put together: routers with their access rules, the page and its static
files, the 405 answer, security headers, the 422 for non-finite JSON numbers, the 503 while the line shuts down,
and the completed OpenAPI document."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from inspector.api import stream
from inspector.api.deps import AppDeps
from inspector.api.headers import SecurityHeaders
from inspector.api.json_strict import NonFiniteJsonGuard
from inspector.api.openapi import finish_schema
from inspector.api.routes import auth, recipe, status, thresholds, verdicts
from inspector.api.routes.auth import EDITOR_ROUTES
from inspector.api.schemas import E401
from inspector.api.security import authenticator, login_guard
from inspector.api.shutdown import ShutdownGuard
from inspector.prometheus import LineCollector, line_registry

__all__ = ["WEB_DIR", "create_app", "index"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# In this order (the OpenAPI document lists paths as they come). True: a viewers' router (it depends on
# `security.viewer`), whose routes document the 401 when the config asks for a login to view.
_ROUTERS: tuple[tuple[APIRouter, bool], ...] = (
    (status.router, False),
    (auth.router, False),
    (status.viewer_router, True),
    (verdicts.router, True),
    (thresholds.router, True),
    (thresholds.editor_router, False),
    (recipe.router, True),
    (recipe.editor_router, False),
    (stream.router, True),
)


def create_app(deps: AppDeps) -> FastAPI:
    """Build the dashboard app. The caller runs it (uvicorn) and owns the store, thresholds and pipeline."""
    auth = authenticator(deps)
    try:
        app_version = version("inspector")
    except PackageNotFoundError:  # running from a source tree that was never installed
        app_version = "0+unknown"

    app = FastAPI(
        title="inspector dashboard",
        version=app_version,
        description="Live stats, verdicts and reject images, threshold editing with preview, audit, metrics.",
    )
    app.state.deps = deps
    app.state.metrics = line_registry(LineCollector(deps.stats, deps.store.stats, lambda: deps.holder().get().version))
    app.state.auth = auth
    app.state.login_guard = login_guard(deps, app.state.metrics)
    app.state.started = time.monotonic()
    app.state.shutting_down = False

    view_errors = E401 if deps.config.login_to_view else {}
    for router, for_viewers in _ROUTERS:
        app.include_router(router, responses=view_errors if for_viewers else None)
    app.get("/", include_in_schema=False)(index)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    # Added last = runs first: the headers wrap every answer, the 422 for NaN/Infinity and the 503 while the line
    # stops included.
    app.add_middleware(NonFiniteJsonGuard)
    app.add_middleware(ShutdownGuard)
    docs = tuple(p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p)
    app.add_middleware(SecurityHeaders, docs_paths=docs)
    # The session is optional on the other routes.
    required = {("put", "/api/thresholds"), ("post", "/api/recipe"), *EDITOR_ROUTES}
    finish_schema(app, deps.current_names, required=required, all_required=deps.config.login_to_view)
    return app


def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette answers 405 with the methods of the first route matching the path only; list them all."""
    if exc.status_code == 405:
        routes = [*request.app.router.routes, *(route for router, _ in _ROUTERS for route in router.routes)]
        methods = set()
        for route in routes:
            if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
                methods |= route.methods
        exc = StarletteHTTPException(
            405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        )
    return await http_exception_handler(request, exc)
