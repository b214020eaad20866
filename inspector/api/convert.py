"""The line's and the store's objects as API answers: JSON-safe stats, verdicts and audit records with the
changes they made."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import numpy as np
from pydantic import BaseModel

from inspector.api.deps import AppDeps
from inspector.api.schemas import AuditOut, ChangeOut, DetectionOut, VerdictDetailOut, VerdictOut
from inspector.redact import redact_obj
from inspector.store import AuditRecord, StoredVerdict

__all__ = ["audit_out", "image_url", "plain", "stats_payload", "verdict_detail", "verdict_out"]


def plain(value: Any) -> Any:
    """JSON-safe copy of a stats structure: numpy scalars to Python, NaN/inf to None, unknown objects to str."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, enum.Enum):
        return plain(value.value)
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


def stats_payload(deps: AppDeps) -> dict[str, Any]:
    """The pipeline's stats made JSON-safe and complete (`StatsOut`): yield, thresholds version, store counters."""
    raw = deps.stats()
    stats = plain(raw) if isinstance(raw, dict) else {}
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
    out["run"] = stats["run"] if isinstance(stats.get("run"), int) and not isinstance(stats["run"], bool) else None
    out["cumulative"] = deps.store.cumulative()  # this run's counts are `ledger`'s
    return redact_obj(out)  # a camera URI's password never leaves the process (descriptions, alarm messages)


def image_url(v: StoredVerdict) -> str | None:
    """Where the part's annotated image is served, when the store kept one (by the verdict's store id: part ids
    repeat across runs)."""
    return f"/api/verdicts/{v.id}/image.jpg" if v.image else None


def _verdict_fields(v: StoredVerdict) -> dict[str, Any]:
    """The answer's fields of a stored verdict: the record's own, and where its image is served."""
    fields = {name: getattr(v, name) for name in VerdictOut.model_fields if name != "image_url"}
    return {**fields, "image_url": image_url(v)}


def verdict_out(v: StoredVerdict) -> BaseModel:
    """A stored verdict as listed and streamed (`VerdictOut`)."""
    return VerdictOut(**_verdict_fields(v))


def verdict_detail(v: StoredVerdict) -> BaseModel:
    """A stored verdict with all its detections (`VerdictDetailOut`)."""
    detections = [DetectionOut(**dataclasses.asdict(d)) for d in v.detections or []]
    return VerdictDetailOut(**_verdict_fields(v), detections=detections)


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


def audit_out(r: AuditRecord, class_names: list[str]) -> BaseModel:
    """An audit record with the leaf fields its change touched, as each class saw them."""
    changes = _diff(_effective(r.old, class_names), _effective(r.new, class_names)) if r.old and r.new else []
    return AuditOut(**dataclasses.asdict(r), changes=changes)
