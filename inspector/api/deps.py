"""What the dashboard needs from the running line (`AppDeps`), kept on `app.state` and handed to routes as a
FastAPI dependency (`Deps`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from inspector.config import DashboardConfig, UserConfig
from inspector.store import Store
from inspector.thresholds import LineThresholds, ThresholdsHolder

__all__ = ["AppDeps", "Deps", "app_deps"]


@dataclass
class AppDeps:
    """What the dashboard needs from the running line.

    store: the verdict store (also a pipeline sink).
    thresholds: the line's thresholds (every recipe's holder); edits go through its `edit`, which saves, audits
        and announces them.
    stats: the pipeline's stats dict, passed through (`ledger`, `rates`, `latency_ms`, `per_class_rejects`,
        `alarms`, ...); missing keys are fine.
    names: class id -> name of the running model; or a function returning them, for a line whose recipe (and so
        model) can change: `lambda: pipeline.names`. Read on each request, so edits are checked against the
        classes of the model in use now.
    recipe: the active recipe's name; or a function returning it, for a line whose recipe can change:
        `lambda: pipeline.recipe`. The thresholds shown and edited are that recipe's.
    config: the dashboard section of the line config.
    users: accounts to use; None means `config.users`, and when that is empty too a first-start editor account
        is created (see `inspector.auth.bootstrap_users`; call it yourself first to print the password nicely).
    recipes: the `/api/recipe` answer (`routes.recipe.RecipeState` as a dict: active recipe, its classes and
        colours, every recipe, the last switch); None: the active recipe's name and classes only.
    switch_recipe: `(name, source) -> switch` (a `changeover.Switch` as a dict), raising KeyError for an unknown
        recipe; None: the line cannot switch (404).
    health: extra facts for `/api/health` (broker connected, camera open, ...).
    metrics: extra Prometheus exposition text appended to `/metrics` (e.g. histograms kept by the stats module).
    preview_parts: how many stored parts a preview re-decides unless the request says otherwise.
    events_interval_s: how often the event stream sends stats.
    session_ttl_s: login lifetime.
    """

    store: Store
    thresholds: LineThresholds
    stats: Callable[[], dict[str, Any]]
    names: dict[int, str] | Callable[[], dict[int, str]]
    recipe: str | Callable[[], str] = "default"
    config: DashboardConfig = field(default_factory=DashboardConfig)
    users: dict[str, UserConfig] | None = None
    recipes: Callable[[], dict[str, Any]] | None = None
    switch_recipe: Callable[[str, str], dict[str, Any]] | None = None
    health: Callable[[], dict[str, Any]] | None = None
    metrics: Callable[[], str] | None = None
    preview_parts: int = 200
    events_interval_s: float = 1.0
    session_ttl_s: float = 8 * 3600.0

    def current_recipe(self) -> str:
        """The name of the recipe in use now."""
        return self.recipe() if callable(self.recipe) else self.recipe

    def holder(self) -> ThresholdsHolder:
        """The thresholds holder of the recipe in use now."""
        return self.thresholds.holder(self.current_recipe())

    def current_names(self) -> dict[int, str]:
        """Class id -> name of the model in use now, in id order."""
        names = self.names() if callable(self.names) else self.names
        return dict(sorted(names.items()))


async def app_deps(request: Request) -> AppDeps:
    """The `AppDeps` the app was built with."""
    return request.app.state.deps


Deps = Annotated[AppDeps, Depends(app_deps)]
