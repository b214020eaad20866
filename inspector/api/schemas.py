"""The dashboard API's request and response models (pydantic), and the error answers routes declare.

The verdict, audit and thresholds-history answers are generated from the store's records (`StoredVerdict`,
`AuditRecord`, `ThresholdRecord`), so a field added to a record reaches the API without being copied here.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from inspector.store import AuditRecord, StoredVerdict, ThresholdRecord
from inspector.types import Decision, Thresholds

__all__ = [
    "E400",
    "E401",
    "E403",
    "E404",
    "E409",
    "E422",
    "MAX_ID",
    "AuditOut",
    "AuditPage",
    "ChangeOut",
    "DetectionOut",
    "ErrorOut",
    "HealthOut",
    "LoginOut",
    "LoginRequest",
    "MeOut",
    "PreviewFlip",
    "PreviewOut",
    "PreviewRequest",
    "StatsOut",
    "ThresholdVersionOut",
    "ThresholdsIn",
    "ThresholdsState",
    "ThresholdsUpdate",
    "VerdictDetailOut",
    "VerdictOut",
    "VerdictPage",
]

MAX_ID = 2**53 - 1  # ids and versions: exact in JSON numbers (float64) and in the browser


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

    ledger: dict[str, int | float] = Field(
        default_factory=dict, description="part counters of this run (this start of the inspector)"
    )
    run: int | None = Field(None, description="this start of the inspector (`run` in the verdicts); null: not known")
    cumulative: dict[str, int] = Field(
        default_factory=dict,
        description="the store's verdicts of every run (within retention): decided, passed, rejected, runs",
    )
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


def record_fields(
    record: type, *, drop: Collection[str] = (), descriptions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A record's (dataclass') fields as pydantic field definitions, in its order: their types, all required, with
    the description a field carries (`metadata["description"]`) unless `descriptions` gives the API's own."""
    hints = typing.get_type_hints(record)
    descriptions = descriptions or {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        if f.name not in drop:
            description = descriptions.get(f.name, f.metadata.get("description"))
            out[f.name] = (hints[f.name], Field(description=description) if description else ...)
    return out


_stored = record_fields(
    StoredVerdict, drop={"image", "detections"}, descriptions={"id": "store id (use as `before` to page back)"}
)
# A stored verdict as listed: the store id first, the record's fields, then where its image is served.
VerdictOut: type[BaseModel] = create_model(
    "VerdictOut",
    id=_stored.pop("id"),
    **_stored,
    image_url=(str | None, Field(description="annotated JPEG, when the image was kept")),
)
VerdictDetailOut: type[BaseModel] = create_model(
    "VerdictDetailOut", __base__=VerdictOut, detections=(list[DetectionOut], ...)
)


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


_audit = record_fields(AuditRecord)
_before_after = {name: _audit.pop(name) for name in ("old", "new")}
# An audit record with the leaf fields its change touched, listed before the full JSON before and after.
AuditOut: type[BaseModel] = create_model(
    "AuditOut",
    **_audit,
    changes=(list[ChangeOut], Field(description="leaf fields that differ between old and new")),
    **_before_after,
)


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before: int | None


# A thresholds version as the store keeps it (every field required in the answer, `recipe` included).
ThresholdVersionOut: type[BaseModel] = create_model("ThresholdVersionOut", **record_fields(ThresholdRecord))


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


E400 = {400: {"model": ErrorOut, "description": "body is not JSON text"}}
E401 = {401: {"model": ErrorOut, "description": "not logged in"}}
E403 = {403: {"model": ErrorOut, "description": "logged in without the editor role"}}
E404 = {404: {"model": ErrorOut, "description": "not found"}}
E409 = {409: {"model": ErrorOut, "description": "edited version is stale"}}
E422 = {422: {"model": ErrorOut, "description": "invalid request"}}
