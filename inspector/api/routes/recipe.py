"""Recipe routes: the product the line inspects now (name, description, classes with their dashboard colours, the
recipes it may run, the last changeover) for viewers, and the changeover itself (`POST /api/recipe`) for editors.

A switch from here is the same as one from the PLC (`cmd/recipe`): `inspector.changeover` runs it, one at a time,
and the `recipe_switched` event announces it on MQTT.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from inspector.api.deps import Deps
from inspector.api.json_strict import strict
from inspector.api.schemas import E400, E401, E403, E404, E422
from inspector.api.security import EditorDep, viewer

__all__ = ["ClassOut", "RecipeCard", "RecipeState", "RecipeSwitchRequest", "SwitchOut", "editor_router", "router"]

router = APIRouter(dependencies=[Depends(viewer)])
editor_router = APIRouter()

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # as cmd/recipe's


class ClassOut(BaseModel):
    id: int
    name: str
    colour: str = Field(description="#rrggbb: the recipe's own, else the palette's")


class RecipeCard(BaseModel):
    name: str
    description: str = ""
    classes: list[ClassOut] = Field(default_factory=list, description="in class id order; empty when not known yet")
    gate_ms: float | None = Field(None, description="the product's gate budget; null: the line's")
    part: dict[str, Any] | None = Field(None, description="part geometry (shape, width_mm, height_mm, image_px)")


class SwitchOut(BaseModel):
    previous_recipe: str
    recipe: str
    previous_model_sha256: str
    model_sha256: str
    thresholds_version: int
    switch_ms: float = Field(description="from the request to the new recipe in force")
    model_loaded: bool = Field(description="the switch had to load the recipe's model (not preloaded)")
    source: str = Field(description="who asked: plc, dashboard, ...")


class RecipeState(BaseModel):
    recipe: str = Field(description="the active recipe")
    active: RecipeCard
    recipes: list[RecipeCard] = Field(description="every recipe this line may run")
    last_switch: SwitchOut | None = None


class RecipeSwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe: str = Field(pattern=NAME_PATTERN, description="a recipe of this line")


StrictSwitch = strict(RecipeSwitchRequest)


def _state(deps: Deps) -> RecipeState:
    if deps.recipes is None:
        name = deps.current_recipe()
        names = deps.current_names()
        card = RecipeCard(name=name, classes=[ClassOut(id=i, name=n, colour="#888888") for i, n in names.items()])
        return RecipeState(recipe=name, active=card, recipes=[card])
    return RecipeState.model_validate(deps.recipes())


@router.get("/api/recipe", response_model=RecipeState, tags=["recipe"])
def get_recipe(deps: Deps) -> RecipeState:
    """The active recipe (description, classes and colours), every recipe of the line, the last switch."""
    return _state(deps)


@editor_router.post(
    "/api/recipe", response_model=SwitchOut, tags=["recipe"], responses={**E400, **E401, **E403, **E404, **E422}
)
def switch_recipe(
    deps: Deps, session: EditorDep, _: StrictSwitch, body: Annotated[RecipeSwitchRequest, Body()]
) -> SwitchOut:
    """Switch the line to another recipe (editor role), as `cmd/recipe` does: parts captured before the switch are
    decided with the old recipe, after it with the new one. 404 for a recipe the line does not have."""
    if deps.switch_recipe is None:
        raise HTTPException(404, "this line cannot switch recipes")
    try:
        switched = deps.switch_recipe(body.recipe, f"dashboard:{session.username}")
    except KeyError:
        known = [card.name for card in _state(deps).recipes]
        raise HTTPException(404, f"no recipe named {body.recipe!r}; this line runs {known}") from None
    return SwitchOut.model_validate(switched)
