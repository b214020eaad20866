"""Verdict routes (viewers): recent verdicts page by page, one part's verdict with its detections, its image."""

from __future__ import annotations

from typing import Annotated

import cv2
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi import Path as PathParam

from inspector.api.convert import verdict_detail, verdict_out
from inspector.api.deps import Deps
from inspector.api.images import annotate, jpeg
from inspector.api.schemas import E404, MAX_ID, VerdictDetailOut, VerdictPage
from inspector.api.security import viewer
from inspector.types import Decision

__all__ = ["router"]

router = APIRouter(dependencies=[Depends(viewer)])


@router.get("/api/verdicts", response_model=VerdictPage, tags=["verdicts"])
def list_verdicts(
    deps: Deps,
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


@router.get("/api/verdicts/{part_id}", response_model=VerdictDetailOut, tags=["verdicts"], responses={**E404})
def get_verdict(deps: Deps, part_id: Annotated[int, PathParam(ge=0, le=MAX_ID)]) -> VerdictDetailOut:
    """One part's newest verdict with all its detections."""
    v = deps.store.get_verdict(part_id)
    if v is None:
        raise HTTPException(404, f"no verdict for part {part_id}")
    return verdict_detail(v)


@router.get(
    "/api/verdicts/{part_id}/image.jpg",
    response_class=Response,
    tags=["verdicts"],
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "JPEG"},
        **E404,
    },
)
def get_image(
    deps: Deps,
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
        image = annotate(image, v.detections or [], _class_colours(deps, v.recipe))
    data = jpeg(image, width=width)
    if data is None:
        raise HTTPException(404, f"image for part {part_id} cannot be encoded")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


def _class_colours(deps: Deps, recipe: str) -> dict[str, str]:
    """Class name -> #rrggbb of `recipe` (the recipe that decided the part), for its boxes; none when unknown."""
    if deps.recipes is None:
        return {}
    cards = deps.recipes().get("recipes", [])
    card = next((c for c in cards if c.get("name") == recipe), None)
    return {c["name"]: c["colour"] for c in card["classes"]} if card else {}
