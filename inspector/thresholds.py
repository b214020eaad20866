"""The line's thresholds, with one owner: `LineThresholds`.

One holder per recipe (`ThresholdsHolder`, swapped atomically: the pipeline reads it once per part), saved per
recipe in the store's `thresholds` table. A dashboard edit goes api -> `LineThresholds.edit` -> store: checked
against the model's classes, swapped in, saved and audited once (one transaction), announced once (the MQTT
`events` topic), and checked against the detector's score floor. Nothing calls back into the caller.

Across restarts: a recipe starts from its newest saved thresholds, version number included, when their version is
higher than the config's; otherwise the config's apply (an integrator who changes them in the YAML raises their
`version` above QA's last one for the change to win) and are saved as the thresholds in use at start.

The detector's score floor (`model.conf`) drops detections before the decision rules see them, so a class
`min_confidence` below it has no effect: `floor_alarm` says so (logged once per change, shown as a dashboard alarm).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from inspector.types import Thresholds

if TYPE_CHECKING:
    from inspector.config import LineConfig

__all__ = [
    "FLOOR_ALARM",
    "LineThresholds",
    "StaleVersionError",
    "ThresholdsError",
    "ThresholdsHolder",
    "ThresholdsLog",
    "below_floor",
    "validate",
]

log = logging.getLogger(__name__)

FLOOR_ALARM = "thresholds_below_floor"  # the alarm's name in the dashboard's stats


class ThresholdsError(ValueError):
    """Thresholds the model cannot use (unknown class names, numbers that are not finite)."""


class StaleVersionError(Exception):
    """An edit made on a version that is no longer the one in force."""


class ThresholdsHolder:
    """One recipe's current `Thresholds`, swapped atomically.

    Readers call `get()` once per part and use that object for the whole decision, so no part sees half of an
    update. Writers call `swap(new, expected_version)`: a stale expected version raises `StaleVersionError`.
    """

    StaleVersionError = StaleVersionError  # kept reachable as `ThresholdsHolder.StaleVersionError`

    def __init__(self, thresholds: Thresholds) -> None:
        self._current = thresholds
        self._lock = threading.Lock()

    def get(self) -> Thresholds:
        return self._current  # one reference read: atomic under the GIL

    def swap(self, new: Thresholds, expected_version: int | None = None) -> Thresholds:
        """Install `new` as version current+1 and return it. Its own `version` field is ignored."""
        with self._lock:
            current = self._current
            if expected_version is not None:
                _check_version(current, expected_version)
            installed = new.model_copy(update={"version": current.version + 1})
            self._current = installed
            return installed


def _check_version(current: Thresholds, expected_version: int) -> None:
    if expected_version != current.version:
        raise StaleVersionError(
            f"thresholds are at version {current.version}, the change was made on {expected_version}"
        )


class ThresholdsLog(Protocol):
    """Where thresholds are saved and audited: `inspector.store.Store`."""

    def record_thresholds(
        self,
        new: Thresholds,
        *,
        recipe: str = "default",
        user: str,
        comment: str = "",
        old: Thresholds | None = None,
        action: str = "thresholds.update",
    ) -> int: ...

    def latest_thresholds(self, recipe: str = "default") -> Thresholds | None: ...


def validate(thresholds: Thresholds, class_names: list[str]) -> None:
    """Raise `ThresholdsError` for rules the model cannot use: unknown class names, non-finite numbers."""
    unknown = sorted(set(thresholds.classes) - set(class_names))
    if unknown:
        raise ThresholdsError(f"unknown classes {unknown}; the model's classes are {class_names}")
    # JSON from Python may carry NaN / Infinity: rules made of them mean nothing (and cannot be sent back).
    rules = [thresholds.default, *thresholds.classes.values()]
    numbers = [r.min_area_px for r in rules] + [r.min_confidence for r in rules]
    numbers += [c for point in thresholds.roi or [] for c in point]
    if not all(math.isfinite(x) for x in numbers):
        raise ThresholdsError("thresholds must be finite numbers")


def below_floor(thresholds: Thresholds, names: Mapping[int, str], floor: float) -> list[str]:
    """Enabled classes of the model (`names`) whose `min_confidence` is below the detector's score floor `floor`:
    detections scored between the two are dropped by the detector, so those thresholds cannot act as set."""
    return sorted(
        {
            name
            for name in names.values()
            if (rule := thresholds.for_class(name)).enabled and rule.min_confidence < floor
        }
    )


class LineThresholds:
    """Every recipe's thresholds holder, their saving, edits and the score-floor check.

    Args:
        configured: recipe name -> the thresholds its config gives.
        floors: recipe name -> the detector's score floor (`model.conf`); a recipe without one is not checked.
        store: where versions are saved and audited (None: kept in memory only). Given one, each recipe is
            restored from it at once (see the module's docstring).
        announce: called with one `events` message per edit (the PLC link's `publish_event`); settable later.
    """

    def __init__(
        self,
        configured: Mapping[str, Thresholds],
        *,
        floors: Mapping[str, float] | None = None,
        store: ThresholdsLog | None = None,
        announce: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._store = store
        self._floors = dict(floors or {})
        self.announce = announce
        self._edit_lock = threading.Lock()  # swap + save as one step, so saved versions follow installed ones
        self._warned: dict[str, str | None] = {}  # recipe -> the floor alarm last logged
        self._holders = {name: ThresholdsHolder(self._restored(name, t)) for name, t in configured.items()}

    @classmethod
    def from_config(cls, config: LineConfig, store: ThresholdsLog | None = None) -> LineThresholds:
        """From a `LineConfig`: the default recipe and every named one, with their models' score floors."""
        configured = {"default": config.thresholds, **{n: r.thresholds for n, r in config.recipes.items()}}
        floors = {"default": config.model.conf, **{n: r.model.conf for n, r in config.recipes.items()}}
        return cls(configured, floors=floors, store=store)

    def holder(self, recipe: str) -> ThresholdsHolder:
        """The holder the pipeline reads for `recipe`. Raises KeyError for an unknown recipe."""
        try:
            return self._holders[recipe]
        except KeyError:
            raise KeyError(f"unknown recipe {recipe!r}; known: {sorted(self._holders)}") from None

    def current(self, recipe: str) -> Thresholds:
        return self.holder(recipe).get()

    def edit(
        self,
        recipe: str,
        new: Thresholds,
        *,
        expected_version: int,
        user: str,
        comment: str = "",
        names: Mapping[int, str],
    ) -> tuple[Thresholds, Thresholds]:
        """Install `new` for `recipe` as the next version: (old, installed).

        Raises `ThresholdsError` when `new` names classes that `names` (the recipe's model) lacks or is not finite,
        `StaleVersionError` when the thresholds in force are not at `expected_version`. Saved and audited once,
        announced once; the announcement failing does not undo the edit.
        """
        validate(new, list(names.values()))
        holder = self.holder(recipe)
        with self._edit_lock:
            old = holder.get()
            _check_version(old, expected_version)
            if self._store is not None:  # saved and audited before it is in force: a failed write changes nothing
                saved = new.model_copy(update={"version": old.version + 1})
                self._store.record_thresholds(saved, recipe=recipe, user=user, comment=comment, old=old)
            installed = holder.swap(new, expected_version=old.version)
        log.info("recipe %s: thresholds v%d -> v%d by %s: %s", recipe, old.version, installed.version, user, comment)
        self.floor_alarm(recipe, names)
        if self.announce is not None:
            event = {"event": "thresholds", "old_version": old.version, "version": installed.version}
            try:
                self.announce({**event, "user": user, "recipe": recipe})
            except Exception:  # the change is in force and audited; a failed announcement must not undo it
                log.exception("announcing thresholds v%d failed", installed.version)
        return old, installed

    def floor_alarm(self, recipe: str, names: Mapping[int, str]) -> str | None:
        """The alarm text when `recipe`'s thresholds ask for less than its detector's score floor, else None.
        Logged as a warning when it changes (at start, after an edit, after a recipe switch), not on every call."""
        floor = self._floors.get(recipe)
        thresholds = self.current(recipe)
        low = below_floor(thresholds, names, floor) if floor is not None else []
        alarm = None
        if low:
            lowest = min(thresholds.for_class(n).min_confidence for n in low)
            alarm = (
                f"recipe {recipe}, thresholds v{thresholds.version}: min_confidence of {', '.join(low)} is below "
                f"the detector's score floor model.conf {floor:g}, so detections scored under {floor:g} never reach "
                f"the decision; set model.conf to {lowest:g} or lower for those thresholds to act"
            )
        if alarm != self._warned.get(recipe):
            self._warned[recipe] = alarm
            if alarm is not None:
                log.warning("%s", alarm)
        return alarm

    def _restored(self, recipe: str, configured: Thresholds) -> Thresholds:
        """What `recipe` starts with: its newest saved thresholds when newer than `configured`, else `configured`
        (saved as the thresholds in use at start when they differ from the newest saved)."""
        if self._store is None:
            return configured
        try:
            saved = self._store.latest_thresholds(recipe)
        except ValidationError as exc:  # written by hand, or by an inspector with other rules
            log.warning("recipe %s: ignoring the stored thresholds, they no longer validate: %s", recipe, exc)
            saved = None
        if saved is not None and saved.version > configured.version:
            log.info(
                "recipe %s: thresholds v%d restored from the store (config: v%d)",
                recipe,
                saved.version,
                configured.version,
            )
            return saved
        if saved != configured:
            if saved is not None:
                log.warning(
                    "recipe %s: the config's thresholds v%d replace the stored v%d%s",
                    recipe,
                    configured.version,
                    saved.version,
                    " (same version, other values: raise `version` when editing thresholds in the config)"
                    if saved.version == configured.version
                    else "",
                )
            self._store.record_thresholds(
                configured,
                recipe=recipe,
                user="system",
                comment="thresholds in use at start",
                old=saved,
                action="thresholds.start",
            )
        return configured
