"""Changeover (`inspector/changeover.py`): a switch under load loses no part and decides every part with the recipe
it was captured under; switches are one at a time and reported; with `pipeline.preload_recipes` a switch loads no
model (loads counted; a cold switch compared with warm ones in one run); a line of two recipe packages switches."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from jsonschema import Draft202012Validator

from inspector import line as line_module
from inspector.auth import hash_password
from inspector.changeover import Switch
from inspector.config import LineConfig, PipelineConfig
from inspector.line import build_line
from inspector.pipeline import Pipeline, Recipe
from inspector.plc import load_schema
from inspector.service import EdgeService
from inspector.sources import MemorySource
from inspector.thresholds import ThresholdsHolder
from inspector.types import Thresholds
from tests.mqtt_helpers import Recorder, publish
from tests.test_demo import demo, last_json
from tests.test_pipeline import CollectingSink, ScriptedDetector, grey

PCB = "pcb-no-reference"  # the shipped reference-free package: runs on boards that all differ

PRODUCTS = ("alpha", "beta", "gamma")


def recipes_of(delay_s: float) -> dict[str, Recipe]:
    """One recipe per product, each with its own model (sha256 = the product's name) and thresholds version."""
    return {
        name: Recipe(name, [ScriptedDetector(delay_s, sha256=f"model-{name}")], ThresholdsHolder(Thresholds(version=i)))
        for i, name in enumerate(PRODUCTS, start=1)
    }


class ProductLine(MemorySource):
    """An unpaced line whose product changes every `every` parts: before handing out the first part of a new
    product it switches the line (as a PLC does at a changeover), so that part and the ones after it are captured
    under the new recipe. The truth of part k (1-based, as free-run part ids) is the product it is."""

    def __init__(self, count: int, every: int, switch: Any) -> None:
        super().__init__([grey(200)], count=count)
        self.every = every
        self.switch = switch
        self.index = 0

    def read(self) -> tuple[np.ndarray, Any] | None:
        item = super().read()
        if item is None:
            return None
        product = PRODUCTS[(self.index // self.every) % len(PRODUCTS)]
        if self.index % self.every == 0 and self.index:
            self.switch(product)
        self.index += 1
        return item[0], product


def test_a_switch_under_load_loses_no_part_and_each_part_keeps_its_recipe() -> None:
    """Slow inference, a buffer that fills up, a switch every 7 parts: parts still waiting when the switch lands
    were captured under the old recipe and are decided with it; every part gets exactly one verdict."""
    sink = CollectingSink()
    switches: list[tuple[int, Switch]] = []  # (monotonic ns once in force, the switch)
    holder: list[Pipeline] = []

    def switch(name: str) -> None:
        done = holder[0].set_recipe(name, "line")
        switches.append((time.monotonic_ns(), done))

    pipeline = Pipeline(
        ProductLine(count=120, every=7, switch=switch),
        recipes_of(delay_s=0.004),
        recipe="alpha",
        sinks=[sink],
        config=PipelineConfig(gate_ms=None, queue_size=16),
        wait_when_full=True,
    )
    holder.append(pipeline)
    pipeline.start()
    assert pipeline.wait(60)
    ledger = pipeline.stats()["ledger"]
    assert ledger["seen"] == ledger["decided"] == 120 and ledger["failsafe"] == 0 and ledger["late"] == 0
    assert sink.by_part() == Counter(range(1, 121))  # exactly one verdict per part
    for v in sink.verdicts:
        assert v.recipe == v.truth, f"part {v.part_id} is {v.truth} but was decided with {v.recipe}"
        assert v.model_sha256 == f"model-{v.recipe}" and v.thresholds_version == PRODUCTS.index(v.recipe) + 1
    assert len(switches) == 17 and not any(s.model_loaded for _, s in switches)
    # Under load: parts of the old product were still waiting when a switch landed, and were inspected after it
    # with the old recipe (what binding the recipe at capture is for).
    inspected_after = [
        v
        for at, s in switches
        for v in sink.verdicts
        if v.recipe == s.previous_recipe and v.timings.preprocessed_ns > at
    ]
    assert inspected_after


def test_switches_from_another_thread_during_live_capture() -> None:
    """Switches at random moments from another thread (as cmd/recipe and the dashboard do) while a live camera
    runs: no part lost, and the recipes of the parts in capture order follow the order of the switches."""
    sink = CollectingSink()
    pipeline = Pipeline(
        MemorySource([grey(100), grey(220)], count=400),
        recipes_of(delay_s=0.001),
        recipe="alpha",
        sinks=[sink],
        config=PipelineConfig(gate_ms=None),
        wait_when_full=True,
    )
    done: list[Switch] = []
    stop = threading.Event()

    def switcher() -> None:
        rng = np.random.default_rng(7)
        while not stop.is_set() and not pipeline.done:
            done.append(pipeline.set_recipe(str(rng.choice(PRODUCTS)), "test"))
            time.sleep(float(rng.uniform(0.0, 0.01)))

    thread = threading.Thread(target=switcher)
    pipeline.start()
    thread.start()
    assert pipeline.wait(60)
    stop.set()
    thread.join()
    assert sink.by_part() == Counter(range(1, 401))
    runs = [v.recipe for v in sorted(sink.verdicts, key=lambda v: v.seq)]
    runs = [r for i, r in enumerate(runs) if i == 0 or r != runs[i - 1]]
    order = ["alpha", *(s.recipe for s in done)]
    it = iter(order)
    assert all(r in it for r in runs), (runs, order)  # a subsequence of the switches, in order
    assert all(v.model_sha256 == f"model-{v.recipe}" for v in sink.verdicts)
    assert len({s.previous_recipe for s in done}) > 1 and all(s.switch_ms >= 0 for s in done)


def test_one_switch_at_a_time_and_listeners_in_order() -> None:
    """Two callers switch at once while a recipe loads: the second waits for the first; listeners see both in
    order; an unknown recipe changes nothing and is not announced; a failing listener does not undo a switch."""
    release = threading.Event()

    def loader(name: str) -> Recipe:
        release.wait(10)
        return Recipe(name, [ScriptedDetector(sha256=f"model-{name}")], ThresholdsHolder(Thresholds()))

    pipeline = Pipeline(
        MemorySource([grey(1)]),
        {"alpha": recipes_of(0)["alpha"]},
        recipe="alpha",
        recipe_loader=loader,
        recipe_names=["beta", "gamma"],
        config=PipelineConfig(preload_recipes=False),
    )
    seen: list[str] = []
    pipeline.changeover.listeners += [lambda s: seen.append(s.recipe), lambda s: 1 / 0]
    first = threading.Thread(target=pipeline.set_recipe, args=("beta",))
    second = threading.Thread(target=pipeline.set_recipe, args=("gamma",))
    first.start()
    time.sleep(0.1)
    second.start()
    time.sleep(0.1)
    assert pipeline.recipe == "alpha" and seen == []  # the first is still loading, the second waits
    release.set()
    first.join(10)
    second.join(10)
    assert seen == ["beta", "gamma"] and pipeline.recipe == "gamma"
    with pytest.raises(KeyError):
        pipeline.set_recipe("delta")
    assert seen == ["beta", "gamma"] and [s.model_loaded for s in pipeline.changeover.history] == [True, True]
    event = pipeline.changeover.history[-1].event()
    assert event["event"] == "recipe_switched" and event["previous_recipe"] == "beta"
    assert event["model_sha256"] == "model-gamma" and event["previous_model_sha256"] == "model-beta"


def two_model_config(model: Path, preload: bool) -> LineConfig:
    """Three recipes of the test model, two with other model settings (so three separate model loads)."""
    return LineConfig.model_validate(
        {
            "camera": {"source": "synthetic"},
            "model": {"path": str(model)},
            "pipeline": {"preload_recipes": preload},
            "recipes": {
                "b": {"model": {"path": str(model), "conf": 0.2}, "thresholds": {"version": 4}, "gate_ms": 900},
                "c": {"model": {"path": str(model), "conf": 0.3}},
            },
        }
    )


def test_preloaded_recipes_switch_without_a_model_load(yolov8n_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preloaded: every recipe's model loads at start and no switch loads one. Not preloaded: the first switch to a
    recipe loads its model (a cold switch), the later ones do not, and the cold switch takes longer than any warm
    one. Model loads are counted where they happen (`inspector.line.load_recipe`)."""
    loads: list[str] = []
    real_load = line_module.load_recipe

    def counting_load(name: str, *args: Any, **kwargs: Any) -> Recipe:
        loads.append(name)
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(line_module, "load_recipe", counting_load)
    warm = build_line(two_model_config(yolov8n_onnx, preload=True))
    assert sorted(loads) == ["b", "c", "default"] and warm.recipes == ["b", "c", "default"]
    switches = [warm.set_recipe(name) for name in ("b", "c", "default", "b")]
    assert len(loads) == 3 and not any(s.model_loaded for s in switches)
    assert switches[0].thresholds_version == 4 and warm.stats()["thresholds_version"] == 4

    loads.clear()
    cold = build_line(two_model_config(yolov8n_onnx, preload=False))
    assert loads == ["default"]
    first = cold.set_recipe("b")
    again = [cold.set_recipe(name) for name in ("default", "b", "default", "b")]
    assert loads == ["default", "b"] and first.model_loaded and not any(s.model_loaded for s in again)
    assert first.switch_ms > max(s.switch_ms for s in again)


def test_per_recipe_gate_budget_reaches_the_parts() -> None:
    sink = CollectingSink()
    recipes = recipes_of(0.0)
    recipes["beta"].gate_ms = 500.0
    holder: list[Pipeline] = []
    pipeline = Pipeline(
        ProductLine(count=6, every=3, switch=lambda name: holder[0].set_recipe(name)),
        recipes,
        recipe="alpha",
        sinks=[sink],
        config=PipelineConfig(gate_ms=3000),
        wait_when_full=True,
    )
    holder.append(pipeline)
    pipeline.start()
    assert pipeline.wait(30)
    budgets = {(v.recipe, round((v.deadline_ns - v.timings.captured_ns) / 1e6)) for v in sink.verdicts}
    assert budgets == {("alpha", 3000), ("beta", 500)}


# --------------------------------------------------------------------------------------------- the whole service
def test_service_switches_recipe_packages_by_plc_and_dashboard(tmp_path: Path) -> None:
    """A line of two recipe packages (shipped models): `cmd/recipe` switches it, `recipe_switched` comes on
    `events` (schema-valid, the models' sha256, no model load), later verdicts carry the new recipe and model;
    the dashboard shows the recipe's classes and colours and lets an editor (not a viewer) switch back."""
    config = LineConfig.model_validate(
        {
            "camera": {"id": "camR", "source": "synthetic", "fps": 6, "synthetic": {"seed": 5, "size": 320}},
            "recipe_packages": [PCB, "pcb-320"],
            "recipe": PCB,
            "mqtt": {"line": "lineR"},
            "dashboard": {
                "port": 0,
                "users": {
                    "qa": {"password_hash": hash_password("qa-pass", iterations=1000), "role": "editor"},
                    "op": {"password_hash": hash_password("op-pass", iterations=1000), "role": "viewer"},
                },
            },
            "store": {"path": str(tmp_path / "inspector.db"), "images_dir": str(tmp_path / "images")},
        }
    )
    service = EdgeService(config)
    try:
        service.start()
        assert service.broker is not None and service.pipeline is not None and service.dashboard_url
        pipeline = service.pipeline
        sha = {name: pipeline.set_recipe(name, "test").model_sha256 for name in ("pcb-320", PCB)}
        events = Draft202012Validator(load_schema("event"))
        root = "inspector/lineR/camR"
        with (
            Recorder(service.broker.url, [f"{root}/#"]) as rec,
            httpx.Client(base_url=service.dashboard_url, timeout=30) as client,
        ):
            rec.wait_count("verdict", 2, 30)
            publish(service.broker.url, f"{root}/cmd/recipe", "pcb-320")

            # The two switches above may reach the recorder too: the link queues their events until it has
            # connected, which on a busy machine is after the recorder subscribed. Match on the source.
            def switched_by(source: str) -> list[dict[str, Any]]:
                return [
                    p for p in rec.payloads("events") if p.get("event") == "recipe_switched" and p["source"] == source
                ]

            assert rec.wait_for(lambda _: bool(switched_by("plc")), 30), rec.payloads("events")
            event = switched_by("plc")[0]
            events.validate(event)
            assert event | {"ts": 0, "seq": 0, "switch_ms": 0} == {
                "schema": 1,
                "event": "recipe_switched",
                "ts": 0,
                "seq": 0,
                "previous_recipe": PCB,
                "recipe": "pcb-320",
                "previous_model_sha256": sha[PCB],
                "model_sha256": sha["pcb-320"],
                "thresholds_version": 1,
                "switch_ms": 0,
                "model_loaded": False,
                "source": "plc",
            }
            assert 0 <= event["switch_ms"] < 1000
            count = len(rec.payloads("verdict"))
            rec.wait_count("verdict", count + 3, 30)
            later = sorted(rec.payloads("verdict"), key=lambda p: p["seq"])[-2:]
            assert all(p["recipe"] == "pcb-320" and p["model"] == sha["pcb-320"] for p in later)

            state = client.get("/api/recipe").json()
            assert state["recipe"] == "pcb-320" and state["last_switch"]["source"] == "plc"
            assert [c["name"] for c in state["active"]["classes"]][:2] == ["open", "short"]
            assert state["active"]["classes"][0]["colour"] == "#ee8866"  # from recipes/pcb-320/recipe.yaml
            assert {card["name"] for card in state["recipes"]} == {"default", PCB, "pcb-320"}

            assert client.post("/api/recipe", json={"recipe": PCB}).status_code == 401
            viewer = bearer(client, "op", "op-pass")
            assert client.post("/api/recipe", json={"recipe": PCB}, headers=viewer).status_code == 403
            editor = bearer(client, "qa", "qa-pass")
            assert client.post("/api/recipe", json={"recipe": "nope"}, headers=editor).status_code == 404
            assert client.post("/api/recipe", json={"recipe": 5}, headers=editor).status_code == 422
            r = client.post("/api/recipe", json={"recipe": PCB}, headers=editor)
            assert r.status_code == 200 and r.json()["recipe"] == PCB and r.json()["source"] == "dashboard:qa"
            assert rec.wait_for(lambda _: [p["recipe"] for p in switched_by("dashboard:qa")] == [PCB], 30)
            assert pipeline.recipe == PCB and client.get("/api/recipe").json()["active"]["name"] == PCB
        assert service.stop(drain=True)
    finally:
        service.stop(drain=False)


def bearer(client: httpx.Client, user: str, password: str) -> dict[str, str]:
    r = client.post("/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


# ------------------------------------------------------------------------------------------------------- the demo
def test_demo_changeover_switches_products_and_every_verdict_has_the_product_s_recipe() -> None:
    """`inspector demo --changeover 10 --parts 40`: the simulated PLC switches between the PCB and the mooncake
    packages every 10 parts, the synthetic line follows from one product to the other; no part missing or late,
    each verdict's recipe is its part's product, no model loaded on a switch, the switch times reported."""
    proc = demo("--changeover", "10", "--products", "pcb,mooncake", "--parts", "40", "--rate", "8", "--port", "0")
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    result = last_json(stdout)
    plc, day = result["plc"], result["changeover"]
    assert result["parts"] == 40 and plc["parts"] == 40 and plc["missing_answers"] == 0 and plc["late_answers"] == 0
    assert result["product"] == "pcb" and day["products"] == ["pcb", "mooncake"] and day["every"] == 10
    assert day["checked"] == 40 and day["recipe_mismatches"] == 0
    assert day["parts_by_recipe"] == {"pcb": 20, "mooncake": 20}
    assert day["switches"] == 3 and day["model_loads"] == 0 and 0 <= day["switch_ms_max"] < 1000


def test_demo_product_picks_the_starting_package_and_refuses_an_unknown_one() -> None:
    proc = demo("--product", "pcb-320", "--parts", "6", "--rate", "8", "--port", "0")
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    result = last_json(stdout)
    assert result["product"] == "pcb-320" and result["changeover"]["parts_by_recipe"] == {"pcb-320": 6}
    assert "deeppcb-v8n-320-int8.onnx" in stderr
    proc = demo("--product", "no-such-product", "--parts", "6", "--port", "0")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "no-such-product" in stderr and "no recipe package here" in stderr
