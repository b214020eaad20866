"""The line's recipes by name: the active one, and switching (loading a recipe on first use, or all at start)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from inspector.protocols import Recipe

__all__ = ["RecipeBook"]


class RecipeBook:
    """Recipes by name; `active` is the one inspecting now.

    `loader(name)` builds a recipe on demand for names in `names` that are not in `recipes` yet (loading models
    takes seconds; it happens in the caller of `switch` or `preload`, the line keeps running meanwhile).
    `loads` counts the recipes the loader has built.
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
        self.loads = 0
        self.active = recipes[active]

    @property
    def names(self) -> list[str]:
        """Every recipe this line may run, sorted."""
        return sorted(self._names)

    def loaded(self, name: str) -> Recipe | None:
        """The recipe `name` when it is loaded, else None (nothing is loaded here)."""
        return self._recipes.get(name)

    def preload(self) -> None:
        """Load every recipe not loaded yet, so that no switch loads a model."""
        for name in self.names:
            with self._lock:
                self._get(name)

    def switch(self, name: str) -> Recipe:
        """Make `name` the active recipe and return it. Raises KeyError for an unknown recipe.

        Each part is bound to the recipe active when it is captured, so a switch lands between two parts.
        """
        if name not in self._names:
            raise KeyError(f"unknown recipe {name!r}; known: {sorted(self._names)}")
        with self._lock:
            recipe = self._get(name)
            self.active = recipe  # one reference store: atomic
        return recipe

    def _get(self, name: str) -> Recipe:
        """The recipe `name`, loaded now if it is not yet (the caller holds the lock)."""
        recipe = self._recipes.get(name)
        if recipe is None:
            if self._loader is None:
                raise KeyError(f"recipe {name!r} cannot be loaded")
            recipe = self._loader(name)
            self.loads += 1
            self._recipes[name] = recipe
        return recipe
