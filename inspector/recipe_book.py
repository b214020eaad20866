"""The line's recipes by name: the active one, and switching (loading a recipe on first use)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from inspector.protocols import Recipe

__all__ = ["RecipeBook"]


class RecipeBook:
    """Recipes by name; `active` is the one inspecting now.

    `loader(name)` builds a recipe on demand for names in `names` that are not in `recipes` yet (loading models
    takes seconds; it happens in the caller of `switch`, the line keeps running meanwhile).
    """

    def __init__(
        self,
        recipes: dict[str, Recipe],
        active: str,
        loader: Callable[[str], Recipe] | None = None,
        names: Sequence[str] = (),
    ) -> None:
        if active not in recipes:
            raise KeyError(f"unknown recipe {active!r}")
        self._recipes = dict(recipes)
        self._names = set(names) | set(recipes)
        self._loader = loader
        self._lock = threading.Lock()
        self.active = recipes[active]

    def switch(self, name: str) -> Recipe:
        """Make `name` the active recipe and return it. Raises KeyError for an unknown recipe.

        Workers read `active` once per batch, so each part is inspected wholly under one recipe.
        """
        if name not in self._names:
            raise KeyError(f"unknown recipe {name!r}; known: {sorted(self._names)}")
        with self._lock:
            recipe = self._recipes.get(name)
            if recipe is None:
                if self._loader is None:
                    raise KeyError(f"recipe {name!r} cannot be loaded")
                recipe = self._loader(name)
                self._recipes[name] = recipe
            self.active = recipe  # one reference store: atomic
        return recipe
