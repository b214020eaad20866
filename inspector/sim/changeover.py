"""A mixed production day for the demo (`inspector demo --product NAME --changeover N`): the synthetic line makes
the product the simulated PLC schedules, and the PLC switches the inspector's recipe at each changeover.

Products are recipe packages (`recipes/<name>/`, `inspector.recipes`) whose `synthetic:` field names the
synthetic line that makes them (`pcb`: `inspector.sim.SyntheticLine`, `mooncake`: `inspector.sim.mooncake`), so a
mooncake package drops in with its model. A pcb package with `synthetic_board: K` is one board design placed with
jitter, whose golden reference (the package's `reference.png`) is that board's defect-free render. The plan cycles
through the products every `every` parts, starting with the chosen one.

At a changeover the line does what a real one does: before the first part of the new product reaches the camera,
the PLC sends `cmd/recipe` and waits for the inspector's `recipe_switched` event (the conveyor holds the new
product meanwhile); parts of the old product already past the camera are still decided with the old recipe. Each
part's truth carries its product (`ProductTruth`), and `RecipeCheck` counts the verdicts whose recipe is not the
product the line carried (the demo's summary reports them, and the switch times).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.config import LineConfig, RecipeConfig, SyntheticConfig
from inspector.plc import Topics, new_client, parse_mqtt_url
from inspector.recipes import load_package
from inspector.resources import recipe_packages
from inspector.sim.line import PartMaker, PartTruth
from inspector.types import SourceError, Verdict

__all__ = [
    "DemoDay",
    "ProductPlan",
    "ProductSource",
    "ProductTruth",
    "RecipeCheck",
    "RecipeCommander",
    "plan_products",
    "product_config",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProductTruth:
    """Ground truth of one part of a mixed line: its product (a recipe name) and the product line's own truth."""

    product: str
    index: int
    truth: PartTruth

    @property
    def defective(self) -> bool:
        return self.truth.defective


@dataclass(frozen=True, slots=True)
class ProductPlan:
    """The products of the day, in order (the first starts), their recipes, and the parts between changeovers
    (`every`; None: the first product all day)."""

    products: tuple[str, ...]
    recipes: Mapping[str, RecipeConfig]
    every: int | None = None

    def product(self, index: int) -> str:
        """The product of part `index` (0-based)."""
        if not self.every:
            return self.products[0]
        return self.products[(index // self.every) % len(self.products)]


def plan_products(start: str, every: int | None, products: list[str] | None = None) -> ProductPlan:
    """The plan: `start` first, then `products` (default: every package on the data search path that names a
    synthetic line, sorted). Raises ValueError for a package that does not load or has no synthetic line."""
    names = list(products) if products else [start]
    if every and not products:
        names = [start] + [name for name in recipe_packages() if name != start]
    recipes: dict[str, RecipeConfig] = {}
    for ref in dict.fromkeys(names):
        try:
            name, recipe = load_package(ref)
        except Exception as exc:
            if ref == start or products:
                raise ValueError(f"recipe package {ref}: {exc}") from None
            log.warning("recipe package %s left out of the changeover plan: %s", ref, exc)
            continue
        if recipe.synthetic is None:
            if ref == start or products:
                raise ValueError(f"recipe package {ref} names no synthetic line (synthetic: pcb or mooncake)")
            continue
        recipes[name] = recipe
    if every and len(recipes) < 2:
        raise ValueError(f"--changeover needs two products with a synthetic line; found {sorted(recipes)}")
    return ProductPlan(tuple(recipes), recipes, every)


def product_config(base: LineConfig, plan: ProductPlan) -> LineConfig:
    """`base` running the plan's recipe packages, the first one active; its `model`/`thresholds`/`reference`
    (recipe `default`) become the first product's, so the two share one loaded model."""
    data = base.model_dump(mode="json", exclude={"recipes", "recipe_packages", "recipe"})
    first = plan.recipes[plan.products[0]]
    data.update(
        model=first.model.model_dump(mode="json"),
        thresholds=first.thresholds.model_dump(mode="json"),
        reference=first.reference.model_dump(mode="json"),
        recipe_packages=[str(r.package) for r in plan.recipes.values()],
        recipe=plan.products[0],
    )
    return LineConfig.model_validate(data)


def _line_for(recipe: RecipeConfig, synthetic: SyntheticConfig) -> PartMaker:
    if recipe.synthetic == "mooncake":
        from inspector.sim.mooncake import MooncakeLine

        return MooncakeLine(seed=synthetic.seed, defect_rate=synthetic.defect_rate)
    from inspector.sim.jitter import Jitter
    from inspector.sim.line import SyntheticLine

    if recipe.synthetic_board is not None:  # one board design placed with jitter: its golden render is the reference
        return SyntheticLine.from_config(synthetic, board_seed=recipe.synthetic_board, jitter=Jitter())
    return SyntheticLine.from_config(synthetic)


class ProductSource:
    """The synthetic line of a `ProductPlan` as a frame source (unpaced: wrap it in `inspector.sources.Paced`).

    Part k is part k of its product's synthetic line, with a `ProductTruth`. Before the first part of a new
    product it calls `switch(product)` (which returns once the inspector runs that recipe), as a PLC holds the
    new product at a changeover. limit: parts in all (None: forever).
    """

    live = True

    def __init__(
        self,
        plan: ProductPlan,
        synthetic: SyntheticConfig,
        limit: int | None = None,
        switch: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.lines = {name: _line_for(recipe, synthetic) for name, recipe in plan.recipes.items()}
        self.limit = limit
        self.switch = switch
        self.index = 0
        self.product = plan.products[0]
        self._open = False
        every = f", changeover every {plan.every} parts" if plan.every else ""
        self.description = f"synthetic line of {', '.join(plan.products)}{every} (seed {synthetic.seed})"

    def open(self) -> None:
        self._open = True

    def read(self) -> tuple[np.ndarray, ProductTruth] | None:
        if not self._open:
            raise SourceError("product source read before open()")
        if self.limit is not None and self.index >= self.limit:
            return None
        product = self.plan.product(self.index)
        if product != self.product:
            if self.switch is not None:
                self.switch(product)
            self.product = product
        part = self.lines[product].make_part(self.index)
        truth = ProductTruth(product, self.index, part.truth())
        self.index += 1
        return part.image, truth

    def close(self) -> None:
        self._open = False


class RecipeCheck:
    """A sink: each verdict's recipe against the product its part was (`ProductTruth.product`)."""

    name = "recipe-check"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.checked = 0
        self.mismatches: list[tuple[int, str, str]] = []  # (part id, product, recipe)
        self.by_recipe: Counter[str] = Counter()

    def handle(self, verdict: Verdict) -> None:
        truth = verdict.truth
        if not isinstance(truth, ProductTruth):
            return
        with self._lock:
            self.checked += 1
            self.by_recipe[verdict.recipe] += 1
            if verdict.recipe != truth.product:
                self.mismatches.append((verdict.part_id, truth.product, verdict.recipe))

    def close(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "checked": self.checked,
                "recipe_mismatches": len(self.mismatches),
                "mismatch_parts": [p for p, _, _ in self.mismatches[:20]],
                "parts_by_recipe": dict(sorted(self.by_recipe.items())),
            }


class RecipeCommander:
    """The PLC's changeover over MQTT: `switch(product)` publishes `cmd/recipe` and waits for the inspector's
    `recipe_switched` event for that recipe (`timeout_s`; a missing answer raises TimeoutError and the part waits
    no longer). `switches` keeps every event received."""

    def __init__(self, url: str, line: str, camera: str, prefix: str = "inspector", timeout_s: float = 30.0) -> None:
        self.topics = Topics.of(prefix, line, camera)
        self.url = url
        self.timeout_s = timeout_s
        self.switches: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self._subscribed = threading.Event()
        address = parse_mqtt_url(url)
        # 3.1.1: every broker the demo may use speaks it (amqtt only that)
        self._client = new_client(protocol="3.1.1", client_id=f"plcsim-changeover-{line}-{camera}", address=address)
        self._client.on_connect = lambda c, *_: c.subscribe(self.topics.events, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._address = address

    def start(self) -> None:
        self._client.connect_async(self._address.host, self._address.port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(self.timeout_s):
            raise ConnectionError(f"changeover PLC: no subscription on {self.url}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            event = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("event") == "recipe_switched":
            with self._cv:
                self.switches.append(event)
                self._cv.notify_all()

    def switch(self, product: str) -> None:
        with self._cv:
            seen = len(self.switches)
        asked = time.monotonic()
        self._client.publish(self.topics.cmd + "recipe", json.dumps({"recipe": product}), qos=1)
        with self._cv:
            answered = self._cv.wait_for(
                lambda: any(e.get("recipe") == product for e in self.switches[seen:]), self.timeout_s
            )
        if not answered:
            raise TimeoutError(f"changeover PLC: no recipe_switched for {product} in {self.timeout_s:g} s")
        log.info("changeover to %s acknowledged in %.1f ms", product, (time.monotonic() - asked) * 1e3)

    def summary(self) -> dict[str, Any]:
        """Switch count, the inspector's switch times (ms: median, max) and how many loaded a model."""
        with self._cv:
            times = sorted(float(e.get("switch_ms", 0.0)) for e in self.switches)
            loaded = sum(bool(e.get("model_loaded")) for e in self.switches)
        return {
            "switches": len(times),
            "switch_ms_median": round(times[len(times) // 2], 3) if times else None,
            "switch_ms_max": round(times[-1], 3) if times else None,
            "model_loads": loaded,
        }


class DemoDay:
    """What `inspector demo --product/--changeover` adds to the demo, in one place: the line config running the
    plan's packages, the paced product source, the changeover PLC (started once the broker is up), the recipe check
    sink, and the summary for the demo's JSON line."""

    def __init__(self, plan: ProductPlan) -> None:
        self.plan = plan
        self.check = RecipeCheck()
        self.commander: RecipeCommander | None = None

    def config(self, base: LineConfig) -> LineConfig:
        return product_config(base, self.plan)

    def source(self, config: LineConfig, rate: float, limit: int | None) -> Any:
        from inspector.sources import Paced

        return Paced(ProductSource(self.plan, config.camera.synthetic, limit, self._switch), rate, read_first=True)

    def start(self, url: str, config: LineConfig) -> None:
        """Connect the changeover PLC to the broker at `url` (before the line makes its first part)."""
        if self.plan.every:
            self.commander = RecipeCommander(url, config.mqtt.line, config.camera.id, config.mqtt.prefix)
            self.commander.start()

    def _switch(self, product: str) -> None:
        if self.commander is None:
            raise RuntimeError("the changeover PLC was not started")
        self.commander.switch(product)

    def stop(self) -> None:
        if self.commander is not None:
            self.commander.stop()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"products": list(self.plan.products), "every": self.plan.every, **self.check.snapshot()}
        if self.commander is not None:
            out.update(self.commander.summary())
        return out
