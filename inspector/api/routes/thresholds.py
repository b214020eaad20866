"""Threshold routes: the rules in use, their history and audit, a preview of an edit on recent parts (viewers),
and the edit itself (editors), handed to `LineThresholds.edit` (versioned, validated, saved, audited, announced)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query

from inspector.api.convert import audit_out, image_url
from inspector.api.deps import Deps
from inspector.api.json_strict import strict
from inspector.api.schemas import (
    E400,
    E401,
    E403,
    E409,
    E422,
    MAX_ID,
    AuditPage,
    PreviewFlip,
    PreviewOut,
    PreviewRequest,
    ThresholdsState,
    ThresholdsUpdate,
    ThresholdVersionOut,
)
from inspector.api.security import EditorDep, viewer
from inspector.decide import decide
from inspector.store import StoredVerdict
from inspector.thresholds import StaleVersionError, ThresholdsError, validate
from inspector.types import Decision, Thresholds

__all__ = ["editor_router", "router"]

router = APIRouter(dependencies=[Depends(viewer)])
editor_router = APIRouter()

StrictUpdate = strict(ThresholdsUpdate)
StrictPreview = strict(PreviewRequest)

_MAX_FLIPS = 100  # flipped parts a preview lists


@router.get("/api/thresholds", response_model=ThresholdsState, tags=["thresholds"])
def get_thresholds(deps: Deps) -> ThresholdsState:
    """The thresholds in use and the model's class names."""
    return ThresholdsState(thresholds=deps.holder().get(), class_names=list(deps.current_names().values()))


@router.get("/api/thresholds/history", response_model=list[ThresholdVersionOut], tags=["thresholds"])
def thresholds_history(
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    recipe: Annotated[
        str | None, Query(max_length=200, description="whose versions; default: the active recipe's")
    ] = None,
) -> list[ThresholdVersionOut]:
    """Installed versions of a recipe, newest first."""
    rows = deps.store.threshold_history(limit, recipe if recipe is not None else deps.current_recipe())
    return [ThresholdVersionOut(**dataclasses.asdict(r)) for r in rows]


@router.get("/api/audit", response_model=AuditPage, tags=["thresholds"])
def get_audit(
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="an audit id: older than this")] = None,
) -> AuditPage:
    """Every change (who, when, old, new, comment), newest first."""
    rows = deps.store.audit(limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    class_names = list(deps.current_names().values())
    return AuditPage(items=[audit_out(r, class_names) for r in rows], next_before=rows[-1].id if more else None)


@router.post("/api/thresholds/preview", response_model=PreviewOut, tags=["thresholds"], responses={**E400, **E422})
def preview(deps: Deps, _: StrictPreview, body: PreviewRequest) -> PreviewOut:
    """Re-decide the last N stored parts under the proposed thresholds; nothing is changed.

    Compared with the current thresholds re-applied to the same detections, so only the edit's effect shows.
    The store holds what the detector found above its own score floor: a `min_confidence` below that floor
    cannot bring back boxes the detector never reported.
    """
    names = deps.current_names()
    _validated(body.thresholds, list(names.values()))
    current = deps.holder().get()
    parts = deps.store.recent_parts(body.parts or deps.preview_parts)
    return _redecide(parts, current, body.thresholds.plain(), names)


@editor_router.put(
    "/api/thresholds",
    response_model=ThresholdsState,
    tags=["thresholds"],
    responses={**E400, **E401, **E403, **E409, **E422},
)
def put_thresholds(
    deps: Deps, session: EditorDep, _: StrictUpdate, body: Annotated[ThresholdsUpdate, Body()]
) -> ThresholdsState:
    """Install new thresholds for the active recipe (editor role). `version` is the version the edit was made on:
    if the line has moved on since, nothing changes and the answer is 409. The change is audited with the user
    and comment."""
    names = deps.current_names()
    try:
        _, installed = deps.thresholds.edit(
            deps.current_recipe(),
            body.thresholds.plain(),
            expected_version=body.version,
            user=session.username,
            comment=body.comment,
            names=names,
        )
    except ThresholdsError as exc:
        raise HTTPException(422, str(exc)) from exc
    except StaleVersionError as exc:
        raise HTTPException(409, str(exc)) from exc
    return ThresholdsState(thresholds=installed, class_names=list(names.values()))


def _validated(thresholds: Thresholds, class_names: list[str]) -> None:
    """422 for rules the model cannot use: unknown class names, non-finite numbers."""
    try:
        validate(thresholds, class_names)
    except ThresholdsError as exc:
        raise HTTPException(422, str(exc)) from exc


def _redecide(
    parts: list[StoredVerdict], current: Thresholds, proposed: Thresholds, names: dict[int, str]
) -> PreviewOut:
    """Each part's stored detections decided under `current` and under `proposed`: counts and the flipped parts."""
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
        if was.decision == now.decision:
            continue
        if now.decision == Decision.REJECT:
            to_reject += 1
        else:
            to_pass += 1
        if len(flips) < _MAX_FLIPS:
            flips.append(
                PreviewFlip(
                    id=v.id,
                    part_id=v.part_id,
                    ts=v.ts,
                    was=was.decision,
                    now=now.decision,
                    reasons_was=was.reasons,
                    reasons_now=now.reasons,
                    image_url=image_url(v),
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
