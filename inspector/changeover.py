"""Changeover: switching the line from one product (recipe) to another, one switch at a time, without losing a part.

A switch comes from the PLC (`cmd/recipe`) or the dashboard (`POST /api/recipe`); both end in `Changeover.switch`.
What makes it safe is where the recipe is read: each part is bound to the recipe active when its frame is captured
(`inspector.capture`) and decided with that recipe's model and thresholds, whenever its inference runs. So parts
captured before the switch are decided with the old recipe, parts captured after it with the new one, and no part
is dropped, paused or decided twice: the line never stops for a changeover.

The switch itself is one reference store once the new recipe is loaded. With `pipeline.preload_recipes` (the
default) every recipe's model is loaded at start and a switch takes well under a millisecond; otherwise the first
switch to a recipe loads its model (seconds) while the line goes on inspecting with the old one.

Each switch is reported as a `Switch` (old and new recipe, their models' sha256, the new recipe's thresholds
version, `switch_ms`, `model_loaded`, who asked) to the listeners, e.g. the service, which publishes it as the
`events` message `recipe_switched` and keeps its bookkeeping (store names, score-floor check).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from inspector.recipe_book import RecipeBook

__all__ = ["Changeover", "Switch"]

log = logging.getLogger(__name__)

_HISTORY = 256  # switches kept for `history` (the demo's summary, the dashboard)


@dataclass(frozen=True, slots=True)
class Switch:
    """One changeover, as the `recipe_switched` event reports it.

    switch_ms: from the request to the new recipe being active (a model load included when there was one);
    model_loaded: whether the switch had to load the new recipe's model (False when it was preloaded or used
    before); source: who asked (`plc`, `dashboard`, `api`, ...).
    """

    previous_recipe: str
    recipe: str
    previous_model_sha256: str
    model_sha256: str
    thresholds_version: int
    switch_ms: float
    model_loaded: bool
    source: str
    ts: float

    def event(self) -> dict[str, Any]:
        """The `events` message body (schema `event.json`, event `recipe_switched`)."""
        body = asdict(self)
        body.pop("ts")
        return {"event": "recipe_switched", **body, "switch_ms": round(self.switch_ms, 3)}


class Changeover:
    """Switches `book`'s active recipe, one switch at a time (a second request waits for the first to end).

    listeners: called with each `Switch` after it is in force, on the switching thread and in switch order (keep
    them quick); one that raises is logged and the others still run (the switch stands).
    """

    def __init__(self, book: RecipeBook) -> None:
        self._book = book
        self._lock = threading.Lock()
        self.listeners: list[Callable[[Switch], None]] = []
        self.history: deque[Switch] = deque(maxlen=_HISTORY)

    def switch(self, name: str, source: str = "api") -> Switch:
        """Make `name` the active recipe; raises KeyError for an unknown recipe (nothing changes then)."""
        with self._lock:
            start = time.perf_counter_ns()
            previous = self._book.active
            loads = self._book.loads
            recipe = self._book.switch(name)
            switch_ms = (time.perf_counter_ns() - start) / 1e6
            done = Switch(
                previous_recipe=previous.name,
                recipe=recipe.name,
                previous_model_sha256=previous.sha256,
                model_sha256=recipe.sha256,
                thresholds_version=recipe.thresholds.get().version,
                switch_ms=switch_ms,
                model_loaded=self._book.loads > loads,
                source=source,
                ts=time.time(),
            )
            self.history.append(done)
            self._announce(done)  # under the lock: listeners see switches in the order they took effect
        return done

    def _announce(self, done: Switch) -> None:
        log.info(
            "recipe %s -> %s (model %s) in %.3f ms%s, asked by %s",
            done.previous_recipe,
            done.recipe,
            done.model_sha256[:12],
            done.switch_ms,
            " with a model load" if done.model_loaded else "",
            done.source,
        )
        for listener in list(self.listeners):
            try:
                listener(done)
            except Exception:
                log.exception("a recipe switch listener failed")
