"""The QA dashboard's HTTP side: `create_app(deps)` builds a FastAPI app that reads the pipeline's stats and the
store, edits the thresholds (versioned, validated, audited, previewed), streams live updates by Server-Sent
Events, exposes Prometheus metrics, and serves the page in `inspector/web/`.

Run it with uvicorn inside the edge process. Long-lived `/api/events` streams keep uvicorn's graceful shutdown
waiting, so give the server a short `timeout_graceful_shutdown` (a couple of seconds): browsers reconnect anyway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import math
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from inspector.auth import Authenticator, Session, bootstrap_users
from inspector.config import DashboardConfig, UserConfig
from inspector.decide import ThresholdsHolder, decide
from inspector.stats import prometheus_text
from inspector.store import AuditRecord, Store, StoredDetection, StoredVerdict
from inspector.types import Decision, Thresholds

__all__ = ["SESSION_COOKIE", "AppDeps", "annotate", "create_app", "render_metrics"]

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
SESSION_COOKIE = "inspector_session"
MAX_ID = 2**53 - 1  # ids and versions: exact in JSON numbers (float64) and in the browser


@dataclass
class AppDeps:
    """What the dashboard needs from the running line.

    store: the verdict store (also a pipeline sink).
    thresholds: the line's holder, where edits are swapped in; or a function returning the holder in use, for a
        line whose recipe (and so holder) can change: `lambda: pipeline.thresholds`.
    stats: the pipeline's stats dict, passed through (`ledger`, `rates`, `latency_ms`, `per_class_rejects`,
        `alarms`, ...); missing keys are fine.
    names: class id -> name of the running model; or a function returning them, for a line whose recipe (and so
        model) can change: `lambda: pipeline.names`. Read on each request, so edits are checked against the
        classes of the model in use now.
    config: the dashboard section of the line config.
    on_thresholds_changed: called as (old, new, user) after an edit is installed (the MQTT link announces it).
    users: accounts to use; None means `config.users`, and when that is empty too a first-start editor account
        is created (see `inspector.auth.bootstrap_users`; call it yourself first to print the password nicely).
    health: extra facts for `/api/health` (broker connected, camera open, ...).
    metrics: extra Prometheus exposition text appended to `/metrics` (e.g. histograms kept by the stats module).
    preview_parts: how many stored parts a preview re-decides unless the request says otherwise.
    events_interval_s: how often the event stream sends stats.
    session_ttl_s: login lifetime.
    """

    store: Store
    thresholds: ThresholdsHolder | Callable[[], ThresholdsHolder]
    stats: Callable[[], dict[str, Any]]
    names: dict[int, str] | Callable[[], dict[int, str]]
    config: DashboardConfig = field(default_factory=DashboardConfig)
    on_thresholds_changed: Callable[[Thresholds, Thresholds, str], None] | None = None
    users: dict[str, UserConfig] | None = None
    health: Callable[[], dict[str, Any]] | None = None
    metrics: Callable[[], str] | None = None
    preview_parts: int = 200
    events_interval_s: float = 1.0
    session_ttl_s: float = 8 * 3600.0

    def holder(self) -> ThresholdsHolder:
        """The thresholds holder in use now."""
        return self.thresholds if isinstance(self.thresholds, ThresholdsHolder) else self.thresholds()

    def current_names(self) -> dict[int, str]:
        """Class id -> name of the model in use now, in id order."""
        names = self.names() if callable(self.names) else self.names
        return dict(sorted(names.items()))


# --------------------------------------------------------------------------------------------------- models
class ErrorOut(BaseModel):
    detail: Any = Field(description="what was wrong")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: the store writer has stopped")
    version: str
    uptime_s: float
    thresholds_version: int
    store: dict[str, Any] = Field(description="store writer counters (rows/images written, dropped, queue)")
    details: dict[str, Any] = Field(default_factory=dict, description="facts the line adds (broker, camera)")


class StatsOut(BaseModel):
    """The pipeline's stats, passed through (other keys are kept), plus yield, thresholds version and store."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    ledger: dict[str, int | float] = Field(default_factory=dict, description="part counters")
    rates: dict[str, Any] = Field(default_factory=dict)
    latency_ms: dict[str, float | None] = Field(default_factory=dict, description="p50, p95, p99, min, avg, max")
    per_class_rejects: dict[str, int | float] = Field(default_factory=dict)
    alarms: list[Any] = Field(default_factory=list)
    yield_: float | None = Field(None, alias="yield", description="passed / decided, null before the first part")
    thresholds_version: int
    store: dict[str, Any] = Field(default_factory=dict)


class DetectionOut(BaseModel):
    class_id: int
    class_name: str
    confidence: float
    xyxy: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in image pixels")
    kept: bool = Field(description="counted as a defect under the thresholds of the time")


class VerdictOut(BaseModel):
    id: int = Field(description="store id (use as `before` to page back)")
    part_id: int
    seq: int
    camera_id: str
    ts: float = Field(description="capture time, seconds since the epoch")
    decision: Decision
    reasons: list[str]
    thresholds_version: int
    recipe: str
    model_sha256: str
    latency_ms: float | None
    n_detections: int
    n_kept: int
    image_url: str | None = Field(description="annotated JPEG, when the image was kept")


class VerdictDetailOut(VerdictOut):
    detections: list[DetectionOut]


class VerdictPage(BaseModel):
    items: list[VerdictOut]
    next_before: int | None = Field(description="pass as `before` for the next page; null at the end")


class ThresholdsState(BaseModel):
    thresholds: Thresholds
    class_names: list[str] = Field(description="the model's classes, in id order")


def _roi_schema(schema: dict[str, Any]) -> None:
    """State in the schema what the validator checks: a region of interest has at least 3 points."""
    for option in schema.get("properties", {}).get("roi", {}).get("anyOf", []):
        if option.get("type") == "array":
            option["minItems"] = 3


class ThresholdsIn(Thresholds):
    """Thresholds as a client sends them: `Thresholds`, limited to the model's class names (checked on arrival,
    and listed in the served schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="ThresholdsIn", json_schema_extra=_roi_schema)

    def plain(self) -> Thresholds:
        """As a plain `Thresholds` (what the holder, the store and `decide` get)."""
        return Thresholds.model_validate(self.model_dump())


class ThresholdsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_ID, description="the version this edit was made on; stale -> 409")
    thresholds: ThresholdsIn = Field(description="the new rules; their own `version` field is ignored")
    comment: str = Field("", max_length=500)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thresholds: ThresholdsIn
    parts: int | None = Field(None, ge=1, le=5000, description="how many recent parts to re-decide")


class PreviewFlip(BaseModel):
    id: int
    part_id: int
    ts: float
    was: Decision = Field(description="decision under the current thresholds")
    now: Decision = Field(description="decision under the proposed thresholds")
    reasons_was: list[str]
    reasons_now: list[str]
    image_url: str | None


class PreviewOut(BaseModel):
    current_version: int
    parts: int = Field(description="parts re-decided")
    skipped_failsafe: int = Field(description="parts decided without inspection (nothing to re-decide)")
    current: dict[str, int] = Field(description="pass / reject counts under the current thresholds")
    proposed: dict[str, int] = Field(description="pass / reject counts under the proposed thresholds")
    to_reject: int = Field(description="parts that would now be rejected")
    to_pass: int = Field(description="parts that would now pass")
    flips: list[PreviewFlip] = Field(description="the flipped parts, newest first (at most 100)")


class ChangeOut(BaseModel):
    field: str
    old: Any
    new: Any


class AuditOut(BaseModel):
    id: int
    ts: float
    user: str
    action: str
    old_version: int | None
    new_version: int | None
    comment: str
    changes: list[ChangeOut] = Field(description="leaf fields that differ between old and new")
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before: int | None


class ThresholdVersionOut(BaseModel):
    id: int
    version: int
    ts: float
    user: str
    comment: str
    thresholds: dict[str, Any]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class LoginOut(BaseModel):
    token: str = Field(description="also set as the session cookie; send as `Authorization: Bearer <token>`")
    username: str
    role: Literal["viewer", "editor"]
    expires_in_s: float


class MeOut(BaseModel):
    authenticated: bool
    username: str | None = None
    role: Literal["viewer", "editor"] | None = None
    can_edit: bool = False
    login_to_view: bool


_E400 = {400: {"model": ErrorOut, "description": "body is not JSON text"}}
_E401 = {401: {"model": ErrorOut, "description": "not logged in"}}
_E403 = {403: {"model": ErrorOut, "description": "logged in without the editor role"}}
_E404 = {404: {"model": ErrorOut, "description": "not found"}}
_E409 = {409: {"model": ErrorOut, "description": "edited version is stale"}}
_E422 = {422: {"model": ErrorOut, "description": "invalid request"}}


# ----------------------------------------------------------------------------------------------- helpers
def _plain(value: Any) -> Any:
    """JSON-safe copy of a stats structure: numpy scalars to Python, NaN/inf to None, unknown objects to str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _numbers(value: Any, *, keep_none: bool = False) -> dict[str, Any]:
    """The numeric entries of a dict (bools and non-numbers dropped; None kept only when asked)."""
    if not isinstance(value, dict):
        return {}
    return {
        k: v
        for k, v in value.items()
        if (isinstance(v, int | float) and not isinstance(v, bool)) or (keep_none and v is None)
    }


def _diff(old: Any, new: Any, prefix: str = "") -> list[ChangeOut]:
    """Leaf-level differences between two JSON values, with dotted field names."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[ChangeOut] = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(ChangeOut(field=name, old=None, new=new[key]))
            elif key not in new:
                out.append(ChangeOut(field=name, old=old[key], new=None))
            else:
                out.extend(_diff(old[key], new[key], name))
        return out
    return [] if old == new else [ChangeOut(field=prefix or "value", old=old, new=new)]


def _finite_thresholds(t: Thresholds) -> bool:
    """JSON from Python may carry NaN / Infinity: rules made of them mean nothing (and cannot be sent back)."""
    numbers = [r.min_area_px for r in [t.default, *t.classes.values()]]
    numbers += [r.min_confidence for r in [t.default, *t.classes.values()]]
    numbers += [c for point in t.roi or [] for c in point]
    return all(math.isfinite(x) for x in numbers)


def annotate(image: np.ndarray, detections: list[StoredDetection]) -> np.ndarray:
    """Draw the boxes on a copy of `image`: defects (kept) thick red with class and score, others thin grey."""
    out = image.copy()
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, round(2 * scale))
    font = max(0.4, 0.5 * scale)
    for d in sorted(detections, key=lambda d: d.kept):  # defects drawn last, on top
        x1, y1, x2, y2 = (round(v) for v in d.xyxy)
        color = (40, 40, 230) if d.kept else (170, 170, 170)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick if d.kept else 1)
        if d.kept:
            label = f"{d.class_name} {d.confidence:.2f}"
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            ty = y1 - 4 if y1 - th - base - 4 >= 0 else y2 + th + 4
            cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 4, ty + base - 1), color, -1)
            cv2.putText(out, label, (x1 + 2, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1, cv2.LINE_AA)
    return out


# ------------------------------------------------------------------------------------------------ metrics
_STORE_METRICS = {
    "rows_written": ("inspector_store_rows_written_total", "counter", "Verdicts written to the store."),
    "rows_dropped": ("inspector_store_rows_dropped_total", "counter", "Verdicts the store queue had no room for."),
    "write_errors": ("inspector_store_write_errors_total", "counter", "Verdicts lost to database errors."),
    "images_written": ("inspector_store_images_written_total", "counter", "JPEG images archived."),
    "images_skipped": ("inspector_store_images_skipped_total", "counter", "Images not archived (encoder busy)."),
    "images_pruned": ("inspector_store_images_pruned_total", "counter", "Images deleted by quota or retention."),
    "image_bytes": ("inspector_store_image_bytes", "gauge", "Bytes in the image archive."),
    "quota_bytes": ("inspector_store_quota_bytes", "gauge", "Image archive quota."),
    "queue": ("inspector_store_queue_depth", "gauge", "Verdicts waiting for the store writer."),
}


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf") if math.isinf(value) else repr(value)


def render_metrics(stats: dict[str, Any], store_stats: dict[str, Any], thresholds_version: int) -> str:
    """Prometheus text exposition (format 0.0.4): the pipeline's stats (rendered by `inspector.stats`), then the
    store's counters and the thresholds version. Written by hand, so the edge image needs no prometheus_client."""
    lines: list[str] = []
    try:
        lines.append(prometheus_text(stats).rstrip("\n"))
    except Exception as exc:  # an odd stats dict must not take the other metrics down with it
        log.exception("rendering the pipeline stats as metrics failed")
        lines.append(f"# pipeline stats not rendered: {type(exc).__name__}")

    def family(name: str, kind: str, help_: str, value: float) -> None:
        lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {_fmt(value)}"])

    family("inspector_up", "gauge", "The inspector process answers.", 1)
    family("inspector_thresholds_version", "gauge", "Version of the thresholds in use.", thresholds_version)
    for key, (name, kind, help_) in _STORE_METRICS.items():
        value = store_stats.get(key)
        if isinstance(value, int | float):
            family(name, kind, help_, value)
    return "\n".join(line for line in lines if line) + "\n"


# ------------------------------------------------------------------------------------------ authentication
_bearer = HTTPBearer(auto_error=False, description="token from POST /api/login")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="set by POST /api/login")


def _current_session(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie_token: Annotated[str | None, Depends(_cookie)],
) -> Session | None:
    """The session of the bearer token, else of the cookie; None when neither is a live session."""
    token = credentials.credentials if credentials is not None else cookie_token
    return request.app.state.auth.session(token)


SessionDep = Annotated[Session | None, Depends(_current_session)]


def _viewer(request: Request, session: SessionDep) -> Session | None:
    """Viewing is open unless the config asks for a login."""
    if request.app.state.deps.config.login_to_view and session is None:
        raise HTTPException(401, "log in to view", headers={"WWW-Authenticate": "Bearer"})
    return session


def _editor(session: SessionDep) -> Session:
    """401 without a session, 403 for a viewer."""
    if session is None:
        raise HTTPException(401, "log in as an editor to change thresholds", headers={"WWW-Authenticate": "Bearer"})
    if session.role != "editor":
        raise HTTPException(403, f"user {session.username!r} is a viewer; thresholds need the editor role")
    return session


EditorDep = Annotated[Session, Depends(_editor)]


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _type_errors(value: Any, schema: dict[str, Any], defs: dict[str, Any], loc: tuple[Any, ...]) -> list[dict]:
    """Where `value` has a JSON type its JSON schema does not allow (types only: pydantic checks the rest)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        options = [_type_errors(value, option, defs, loc) for option in schema["anyOf"]]
        return [] if any(not errors for errors in options) else min(options, key=len)
    kind = schema.get("type")
    if kind is not None and not _JSON_TYPES[kind](value):
        return [{"type": f"{kind}_type", "loc": loc, "msg": f"Input should be of JSON type {kind}", "input": value}]
    errors: list[dict] = []
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                errors += _type_errors(item, sub, defs, (*loc, key))
    elif isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if isinstance(sub, dict):
                errors += _type_errors(item, sub, defs, (*loc, i))
    return errors


def _strict(model: type[BaseModel]) -> Any:
    """A dependency that checks the raw JSON body's types against `model`'s JSON schema.

    FastAPI validates bodies in pydantic's lax mode, which turns `false` into 0.0 and `"0.5"` into 0.5: a client
    sending those has a bug, and the schema does not allow them, so they get 422 like any invalid body. (Pydantic's
    strict mode would also refuse 3.0 for an integer, which JSON Schema allows.)
    """
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    async def check(request: Request) -> None:
        try:
            value = json.loads(await request.body())
        except ValueError:
            return  # FastAPI answers malformed JSON itself
        errors = _type_errors(value, schema, defs, ("body",))
        if errors:
            raise RequestValidationError(errors)

    return Annotated[None, Depends(check)]


StrictUpdate = _strict(ThresholdsUpdate)
StrictPreview = _strict(PreviewRequest)
StrictLogin = _strict(LoginRequest)


# ------------------------------------------------------------------------------------------------- the app
def create_app(deps: AppDeps) -> FastAPI:
    """Build the dashboard app. The caller runs it (uvicorn) and owns the store, holder and pipeline."""
    started = time.monotonic()
    users = dict(deps.users) if deps.users is not None else dict(deps.config.users)
    if not users:
        users, password = bootstrap_users({}, deps.store)
        if password is not None:
            # Printed exactly once: later starts find the account in the store (see bootstrap_users).
            print(f"inspector dashboard: created user 'admin' (editor), password: {password}", file=sys.stderr)
            deps.store.audit_event(user="system", action="user.create", comment="first-start editor account 'admin'")
    auth = Authenticator(users, session_ttl_s=deps.session_ttl_s)
    edit_lock = threading.Lock()  # get + swap + audit as one step for edits made here
    _record_start_thresholds(deps)

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
    app.state.auth = auth

    view = [Depends(_viewer)]
    view_errors = _E401 if deps.config.login_to_view else {}

    def verdict_out(v: StoredVerdict, cls: type[VerdictOut] = VerdictOut, **extra: Any) -> Any:
        return cls(
            id=v.id,
            part_id=v.part_id,
            seq=v.seq,
            camera_id=v.camera_id,
            ts=v.ts,
            decision=Decision(v.decision),
            reasons=v.reasons,
            thresholds_version=v.thresholds_version,
            recipe=v.recipe,
            model_sha256=v.model_sha256,
            latency_ms=v.latency_ms,
            n_detections=v.n_detections,
            n_kept=v.n_kept,
            image_url=f"/api/verdicts/{v.part_id}/image.jpg" if v.image else None,
            **extra,
        )

    def stats_payload() -> dict[str, Any]:
        raw = deps.stats()
        stats = _plain(raw) if isinstance(raw, dict) else {}
        ledger = _numbers(stats.get("ledger"))
        out = dict(stats)
        out["ledger"] = ledger
        out["latency_ms"] = _numbers(stats.get("latency_ms"), keep_none=True)
        out["per_class_rejects"] = _numbers(stats.get("per_class_rejects"))
        out["rates"] = stats.get("rates") if isinstance(stats.get("rates"), dict) else {}
        out["alarms"] = stats.get("alarms") if isinstance(stats.get("alarms"), list) else []
        if not isinstance(out.get("yield"), int | float):
            decided, passed = ledger.get("decided"), ledger.get("passed")
            out["yield"] = passed / decided if decided and passed is not None else None
        out["thresholds_version"] = deps.holder().get().version
        out["store"] = deps.store.stats()
        return out

    # ---------------------------------------------------------------------------------------- open routes
    @app.get("/api/health", response_model=HealthOut, tags=["status"])
    def health() -> HealthOut:
        """Liveness: answers while the process runs, with the store writer's counters and what the line adds."""
        details = _plain(deps.health()) if deps.health is not None else {}
        store = deps.store.stats()
        return HealthOut(
            status="ok" if store["writer_alive"] else "degraded",
            version=app_version,
            uptime_s=time.monotonic() - started,
            thresholds_version=deps.holder().get().version,
            store=store,
            details=details if isinstance(details, dict) else {"value": details},
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["status"],
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}},
    )
    def metrics() -> PlainTextResponse:
        """Prometheus text format; every metric name starts with `inspector_`. Open, like most exporters."""
        text = render_metrics(deps.stats(), deps.store.stats(), deps.holder().get().version)
        if deps.metrics is not None:
            text += deps.metrics().rstrip("\n") + "\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/api/login", response_model=LoginOut, tags=["auth"], responses={**_E400, **_E401})
    def login(_: StrictLogin, body: LoginRequest, response: Response) -> LoginOut:
        """Check the credentials; returns a token and sets it as an HttpOnly, SameSite=Strict cookie."""
        session = auth.login(body.username, body.password)  # PBKDF2: a sync route, so it runs in the thread pool
        if session is None:
            raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            max_age=int(deps.session_ttl_s),
            httponly=True,
            samesite="strict",
            path="/",
        )
        return LoginOut(
            token=session.token, username=session.username, role=session.role, expires_in_s=deps.session_ttl_s
        )

    @app.post("/api/logout", response_model=MeOut, tags=["auth"])
    def logout(
        response: Response,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        cookie_token: Annotated[str | None, Depends(_cookie)],
    ) -> MeOut:
        """End the session (token or cookie) and clear the cookie."""
        auth.logout(credentials.credentials if credentials is not None else cookie_token)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return MeOut(authenticated=False, login_to_view=deps.config.login_to_view)

    @app.get("/api/me", response_model=MeOut, tags=["auth"])
    def me(session: SessionDep) -> MeOut:
        """Who is logged in (if anyone) and whether viewing needs a login."""
        if session is None:
            return MeOut(authenticated=False, login_to_view=deps.config.login_to_view)
        return MeOut(
            authenticated=True,
            username=session.username,
            role=session.role,
            can_edit=session.role == "editor",
            login_to_view=deps.config.login_to_view,
        )

    # -------------------------------------------------------------------------------------- viewer routes
    @app.get("/api/stats", response_model=StatsOut, dependencies=view, tags=["status"], responses={**view_errors})
    def get_stats() -> dict[str, Any]:
        """Ledger counters, rates, yield, per-class reject counts, latency percentiles and alarms."""
        return stats_payload()

    @app.get(
        "/api/verdicts", response_model=VerdictPage, dependencies=view, tags=["verdicts"], responses={**view_errors}
    )
    def list_verdicts(
        decision: Annotated[Decision | None, Query(description="only passes or only rejects")] = None,
        reason: Annotated[str | None, Query(max_length=100, description="only parts with this reason")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="a store id: older than this")] = None,
    ) -> VerdictPage:
        """Recent verdicts, newest first, one page at a time."""
        items = deps.store.recent_verdicts(
            decision=decision.value if decision else None, reason=reason, limit=limit + 1, before=before
        )
        more = len(items) > limit
        items = items[:limit]
        return VerdictPage(items=[verdict_out(v) for v in items], next_before=items[-1].id if more else None)

    @app.get(
        "/api/verdicts/{part_id}",
        response_model=VerdictDetailOut,
        dependencies=view,
        tags=["verdicts"],
        responses={**view_errors, **_E404},
    )
    def get_verdict(part_id: Annotated[int, PathParam(ge=0, le=MAX_ID)]) -> VerdictDetailOut:
        """One part's newest verdict with all its detections."""
        v = deps.store.get_verdict(part_id)
        if v is None:
            raise HTTPException(404, f"no verdict for part {part_id}")
        dets = [
            DetectionOut(
                class_id=d.class_id, class_name=d.class_name, confidence=d.confidence, xyxy=list(d.xyxy), kept=d.kept
            )
            for d in v.detections or []
        ]
        return verdict_out(v, VerdictDetailOut, detections=dets)

    @app.get(
        "/api/verdicts/{part_id}/image.jpg",
        response_class=Response,
        dependencies=view,
        tags=["verdicts"],
        responses={
            200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "JPEG"},
            **view_errors,
            **_E404,
        },
    )
    def get_image(
        part_id: Annotated[int, PathParam(ge=0, le=MAX_ID)],
        annotated: Annotated[bool, Query(description="draw the boxes and class names")] = True,
        width: Annotated[int | None, Query(ge=16, le=4096, description="scale down to this width")] = None,
    ) -> Response:
        """The part's stored image (rejects, and a sampled share of passes), with its boxes drawn."""
        v = deps.store.get_verdict(part_id)
        path = deps.store.image_file(v) if v is not None else None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path is not None else None
        if v is None or image is None:
            raise HTTPException(404, f"no image kept for part {part_id}")
        if annotated:
            image = annotate(image, v.detections or [])
        if width is not None and width < image.shape[1]:
            height = max(1, round(image.shape[0] * width / image.shape[1]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise HTTPException(404, f"image for part {part_id} cannot be encoded")
        return Response(buf.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.get(
        "/api/thresholds",
        response_model=ThresholdsState,
        dependencies=view,
        tags=["thresholds"],
        responses={**view_errors},
    )
    def get_thresholds() -> ThresholdsState:
        """The thresholds in use and the model's class names."""
        return ThresholdsState(thresholds=deps.holder().get(), class_names=list(deps.current_names().values()))

    @app.get(
        "/api/thresholds/history",
        response_model=list[ThresholdVersionOut],
        dependencies=view,
        tags=["thresholds"],
        responses={**view_errors},
    )
    def thresholds_history(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ThresholdVersionOut]:
        """Installed versions, newest first."""
        return [ThresholdVersionOut(**dataclasses.asdict(r)) for r in deps.store.threshold_history(limit)]

    @app.get("/api/audit", response_model=AuditPage, dependencies=view, tags=["thresholds"], responses={**view_errors})
    def get_audit(
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="an audit id: older than this")] = None,
    ) -> AuditPage:
        """Every change (who, when, old, new, comment), newest first."""
        rows = deps.store.audit(limit=limit + 1, before=before)
        more = len(rows) > limit
        rows = rows[:limit]
        class_names = list(deps.current_names().values())
        return AuditPage(items=[_audit_out(r, class_names) for r in rows], next_before=rows[-1].id if more else None)

    @app.post(
        "/api/thresholds/preview",
        response_model=PreviewOut,
        dependencies=view,
        tags=["thresholds"],
        responses={**_E400, **view_errors, **_E422},
    )
    def preview(_: StrictPreview, body: PreviewRequest) -> PreviewOut:
        """Re-decide the last N stored parts under the proposed thresholds; nothing is changed.

        Compared with the current thresholds re-applied to the same detections, so only the edit's effect shows.
        The store holds what the detector found above its own score floor: a `min_confidence` below that floor
        cannot bring back boxes the detector never reported.
        """
        names = deps.current_names()
        _validate(body.thresholds, list(names.values()))
        current = deps.holder().get()
        proposed = body.thresholds.plain()
        parts = deps.store.recent_parts(body.parts or deps.preview_parts)
        counts_now = {d.value: 0 for d in Decision}
        counts_new = {d.value: 0 for d in Decision}
        flips: list[PreviewFlip] = []
        to_reject = to_pass = skipped = 0
        for v in parts:
            if v.failsafe:
                skipped += 1
                continue
            dets = v.to_detections()
            was = decide(dets, current, names, v.part_id)
            now = decide(dets, proposed, names, v.part_id)
            counts_now[was.decision.value] += 1
            counts_new[now.decision.value] += 1
            if was.decision != now.decision:
                if now.decision == Decision.REJECT:
                    to_reject += 1
                else:
                    to_pass += 1
                if len(flips) < 100:
                    flips.append(
                        PreviewFlip(
                            id=v.id,
                            part_id=v.part_id,
                            ts=v.ts,
                            was=was.decision,
                            now=now.decision,
                            reasons_was=was.reasons,
                            reasons_now=now.reasons,
                            image_url=f"/api/verdicts/{v.part_id}/image.jpg" if v.image else None,
                        )
                    )
        return PreviewOut(
            current_version=current.version,
            parts=len(parts) - skipped,
            skipped_failsafe=skipped,
            current=counts_now,
            proposed=counts_new,
            to_reject=to_reject,
            to_pass=to_pass,
            flips=flips,
        )

    # -------------------------------------------------------------------------------------- editor routes
    @app.put(
        "/api/thresholds",
        response_model=ThresholdsState,
        tags=["thresholds"],
        responses={**_E400, **_E401, **_E403, **_E409, **_E422},
    )
    def put_thresholds(
        session: EditorDep, _: StrictUpdate, body: Annotated[ThresholdsUpdate, Body()]
    ) -> ThresholdsState:
        """Install new thresholds (editor role). `version` is the version the edit was made on: if the line has
        moved on since, nothing changes and the answer is 409. The change is audited with the user and comment."""
        class_names = list(deps.current_names().values())
        _validate(body.thresholds, class_names)
        with edit_lock:
            old = deps.holder().get()
            if body.version != old.version:
                raise HTTPException(
                    409, f"thresholds are at version {old.version}, the edit was made on {body.version}"
                )
            try:
                installed = deps.holder().swap(body.thresholds.plain(), expected_version=old.version)
            except ThresholdsHolder.StaleVersionError as exc:  # changed by the line itself (e.g. a recipe)
                raise HTTPException(409, str(exc)) from exc
            deps.store.record_thresholds(installed, user=session.username, comment=body.comment, old=old)
        log.info("thresholds v%d -> v%d by %s: %s", old.version, installed.version, session.username, body.comment)
        if deps.on_thresholds_changed is not None:
            try:
                deps.on_thresholds_changed(old, installed, session.username)
            except Exception:  # the change is in force and audited; a failed announcement must not undo it
                log.exception("on_thresholds_changed failed")
        return ThresholdsState(thresholds=installed, class_names=class_names)

    # ---------------------------------------------------------------------------------------------- events
    @app.get(
        "/api/events",
        dependencies=view,
        tags=["status"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "SSE stream"},
            **view_errors,
        },
    )
    async def events(request: Request) -> StreamingResponse:
        """Server-Sent Events: `stats` every interval, `verdict` for each new part (at most 20 an interval,
        the newest), `thresholds` when the version changes."""
        return StreamingResponse(
            _event_stream(request, deps, stats_payload, verdict_out),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # ------------------------------------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette answers 405 with the methods of the first route matching the path only; list them all."""
        if exc.status_code == 405:
            methods = set()
            for route in app.router.routes:
                if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
                    methods |= route.methods
            exc = StarletteHTTPException(
                405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
            )
        return await http_exception_handler(request, exc)

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    _finish_schema(
        app, deps.current_names, required={("put", "/api/thresholds")}, all_required=deps.config.login_to_view
    )
    return app


def _finish_schema(
    app: FastAPI,
    names: Callable[[], dict[int, str]],
    *,
    required: set[tuple[str, str]],
    all_required: bool,
) -> None:
    """Say in the schema what FastAPI cannot infer, so that it matches what the app does:

    - the session is optional (`{}` among the security requirements, per OpenAPI) where it is: FastAPI lists the
      bearer / cookie schemes on every route that looks at the session, even with `auto_error=False`;
    - the class names a client may put under `classes` are those of the model in use (`names()`); the cached
      schema is rebuilt when they change (a recipe switch to a model with other classes).
    """
    build = app.openapi
    built_for: list[list[str]] = []  # the class names the cached schema lists

    def openapi() -> dict[str, Any]:
        class_names = list(names().values())
        if app.openapi_schema is None or built_for != [class_names]:
            app.openapi_schema = None  # FastAPI's own openapi() returns its cached schema otherwise
            spec = build()
            for path, ops in spec.get("paths", {}).items():
                for method, op in ops.items():
                    security = op.get("security")
                    if security and not all_required and (method, path) not in required and {} not in security:
                        security.append({})
            incoming = spec.get("components", {}).get("schemas", {}).get("ThresholdsIn", {})
            classes = incoming.get("properties", {}).get("classes")
            if classes is not None:
                classes.update({"propertyNames": {"enum": class_names}} if class_names else {"maxProperties": 0})
            app.openapi_schema = spec
            built_for[:] = [class_names]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _validate(thresholds: Thresholds, class_names: list[str]) -> None:
    """422 for rules the model cannot use: unknown class names, non-finite numbers."""
    unknown = sorted(set(thresholds.classes) - set(class_names))
    if unknown:
        raise HTTPException(422, f"unknown classes {unknown}; the model's classes are {class_names}")
    if not _finite_thresholds(thresholds):
        raise HTTPException(422, "thresholds must be finite numbers")


def _record_start_thresholds(deps: AppDeps) -> None:
    """Put the thresholds in use at start into the history, unless they are what was installed last."""
    current = deps.holder().get()
    latest = deps.store.latest_thresholds()
    if latest is None or latest != current:
        deps.store.record_thresholds(
            current, user="system", comment="thresholds in use at start", old=latest, action="thresholds.start"
        )


def _effective(thresholds: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """The rules each class actually gets (its own or the default), for a diff that reads like the change made."""
    default = thresholds.get("default", {})
    own = thresholds.get("classes", {})
    return {
        "default": default,
        "classes": {name: own.get(name, default) for name in [*class_names, *sorted(set(own) - set(class_names))]},
        "roi": thresholds.get("roi"),
        "on_error": thresholds.get("on_error"),
    }


def _audit_out(r: AuditRecord, class_names: list[str]) -> AuditOut:
    changes = _diff(_effective(r.old, class_names), _effective(r.new, class_names)) if r.old and r.new else []
    return AuditOut(
        id=r.id,
        ts=r.ts,
        user=r.user,
        action=r.action,
        old_version=r.old_version,
        new_version=r.new_version,
        comment=r.comment,
        changes=changes,
        old=r.old,
        new=r.new,
    )


async def _event_stream(
    request: Request,
    deps: AppDeps,
    stats_payload: Callable[[], dict[str, Any]],
    verdict_out: Callable[[StoredVerdict], VerdictOut],
) -> AsyncIterator[str]:
    """The SSE body: polls the stats and the store; ends when the client goes away."""
    last_id = await run_in_threadpool(deps.store.last_id)
    last_version: int | None = None
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        stats = await run_in_threadpool(stats_payload)
        yield f"event: stats\ndata: {json.dumps(stats)}\n\n"
        new = await run_in_threadpool(lambda after=last_id: deps.store.recent_verdicts(after=after, limit=20))
        for v in reversed(new):
            yield f"event: verdict\ndata: {verdict_out(v).model_dump_json()}\n\n"
        if new:
            last_id = new[0].id
        current = deps.holder().get()
        if current.version != last_version:
            last_version = current.version
            yield f"event: thresholds\ndata: {current.model_dump_json()}\n\n"
        await asyncio.sleep(deps.events_interval_s)
