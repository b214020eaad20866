"""`create_fleet_app(fleet)`: the fleet view's web app. Read-only and without logins: it shows what every line
already tells its broker, and never a password (the broker URL is shown redacted).

    GET /              the page (static files in `inspector/fleet/web/`, with the line dashboard's stylesheet)
    GET /api/fleet     `Fleet.snapshot()`: rows, plant totals per recipe, shifts
    GET /api/health    `{"ok": true, "broker_connected": ...}`
    GET /metrics       Prometheus text, labels `line` and `camera` (`inspector.fleet.metrics`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from inspector.fleet.metrics import fleet_registry
from inspector.fleet.state import Fleet
from inspector.prometheus import CONTENT_TYPE, render

__all__ = ["FLEET_WEB_DIR", "create_fleet_app"]

FLEET_WEB_DIR = Path(__file__).resolve().parent / "web"
LINE_STYLE = Path(__file__).resolve().parent.parent / "web" / "style.css"  # the same look as a line's dashboard


def create_fleet_app(fleet: Fleet, *, broker_url: str = "") -> FastAPI:
    """The app over `fleet`; `broker_url` (redacted) is shown on the page."""
    app = FastAPI(title="inspector fleet", docs_url=None, redoc_url=None, openapi_url=None)
    registry = fleet_registry(fleet.snapshot)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(FLEET_WEB_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/static/line.css", include_in_schema=False)
    def line_style() -> FileResponse:
        return FileResponse(LINE_STYLE, media_type="text/css")

    @app.get("/api/fleet")
    def fleet_json() -> dict[str, Any]:
        return {**fleet.snapshot(), "broker": broker_url}

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "broker_connected": fleet.connected}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(render(registry), media_type=CONTENT_TYPE)

    app.mount("/static", StaticFiles(directory=FLEET_WEB_DIR), name="static")
    return app
