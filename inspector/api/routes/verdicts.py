"""Verdict routes (viewers): recent verdicts page by page (or those of one part id and run), one verdict with its
detections, its image. A verdict is addressed by its store id (`id` in every answer): part ids repeat across
inspector restarts on a triggered line, and only (`run`, `part_id`) or the store id names one part."""

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
    part_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="only this part id")] = None,
    run: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="only verdicts of this start of the inspector")
    ] = None,
) -> VerdictPage:
    """Recent verdicts, newest first, one page at a time. `part_id` with `run` finds one part's verdict (a part
    id alone may match parts of several runs); its `id` then addresses it."""
    items = deps.store.recent_verdicts(
        decision=decision.value if decision else None,
        reason=reason,
        limit=limit + 1,
        before=before,
        part_id=part_id,
        run=run,
    )
    more = len(items) > limit
    items = items[:limit]
    return VerdictPage(items=[verdict_out(v) for v in items], next_before=items[-1].id if more else None)


_VERDICT_ID = PathParam(ge=1, le=MAX_ID, description="the verdict's store id (`id` in the lists and the stream)")


@router.get("/api/verdicts/{verdict_id}", response_model=VerdictDetailOut, tags=["verdicts"], responses={**E404})
def get_verdict(deps: Deps, verdict_id: Annotated[int, _VERDICT_ID]) -> VerdictDetailOut:
    """One verdict, by its store id, with all its detections."""
    v = deps.store.get_verdict_by_id(verdict_id)
    if v is None:
        raise HTTPException(404, f"no verdict {verdict_id}")
    return verdict_detail(v)


@router.get(
    "/api/verdicts/{verdict_id}/image.jpg",
    response_class=Response,
    tags=["verdicts"],
    responses={
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "JPEG"},
        **E404,
    },
)
def get_image(
    deps: Deps,
    verdict_id: Annotated[int, _VERDICT_ID],
    annotated: Annotated[bool, Query(description="draw the boxes and class names")] = True,
    width: Annotated[int | None, Query(ge=16, le=4096, description="scale down to this width")] = None,
) -> Response:
    """The stored image of a verdict's part (rejects, and a sampled share of passes), with its boxes drawn."""
    v = deps.store.get_verdict_by_id(verdict_id)
    path = deps.store.image_file(v) if v is not None else None
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path is not None else None
    if v is None or image is None:
        raise HTTPException(404, f"no image kept for verdict {verdict_id}")
    if annotated:
        image = annotate(image, v.detections or [], _class_colours(deps, v.recipe))
    data = jpeg(image, width=width)
    if data is None:
        raise HTTPException(404, f"image of verdict {verdict_id} cannot be encoded")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


def _class_colours(deps: Deps, recipe: str) -> dict[str, str]:
    """Class name -> #rrggbb of `recipe` (the recipe that decided the part), for its boxes; none when unknown."""
    if deps.recipes is None:
        return {}
    cards = deps.recipes().get("recipes", [])
    card = next((c for c in cards if c.get("name") == recipe), None)
    return {c["name"]: c["colour"] for c in card["classes"]} if card else {}
