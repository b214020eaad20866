"""The QA dashboard's HTTP side: `create_app(deps)` builds a FastAPI app that reads the pipeline's stats and the
store, edits the thresholds (versioned, validated, audited, previewed), streams live updates by Server-Sent
Events, exposes Prometheus metrics, and serves the page in `inspector/web/`.

Run it with uvicorn inside the edge process. Long-lived `/api/events` streams keep uvicorn's graceful shutdown
waiting, so give the server a short `timeout_graceful_shutdown` (a couple of seconds): browsers reconnect anyway.

Modules: `app` (create_app: routers, page, errors), `deps` (AppDeps, the routes' dependency on it), `schemas`
(request and response models), `security` (accounts, sessions, roles), `routes/` (status, auth, verdicts,
thresholds), `stream` (the live event stream), `convert` (store and stats objects as answers), `images`
(annotated JPEGs), `json_strict` (JSON type checks of bodies), `openapi` (the
served schema's completion). `/metrics` comes from `inspector.prometheus`'s collector, one registry per app.
"""

from inspector.api.app import create_app
from inspector.api.deps import AppDeps
from inspector.api.images import annotate
from inspector.api.security import SESSION_COOKIE

__all__ = ["SESSION_COOKIE", "AppDeps", "annotate", "create_app"]
