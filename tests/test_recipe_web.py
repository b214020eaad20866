"""The dashboard follows the recipe (Chromium, the real service): a switch by PLC command (`cmd/recipe`) and one
from the page (editor) both show the new recipe's name, class names and colours, and its thresholds rows."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, expect

from inspector.auth import hash_password
from inspector.config import LineConfig
from inspector.service import EdgeService
from tests.mqtt_helpers import publish
from tests.test_web_e2e import browser, open_page  # the Chromium fixture, shared
from tests.web_helpers import ARTIFACTS

__all__ = ["browser"]


def test_dashboard_follows_recipe_switches_by_plc_and_from_the_page(
    browser: Browser,
    tmp_path: Path,
    yolov8n_onnx: Path,
) -> None:
    """Recipes: the shipped reference-free PCB package and a `shapes` recipe of the test model (classes rect,
    circle, own colours). The PLC switches to `shapes`: the page shows its name and classes (and thresholds rows);
    the editor switches back to `pcb-no-reference` from the page: the PCB classes come back; a viewer sees no
    switch control."""
    config = LineConfig.model_validate(
        {
            "camera": {"id": "camW", "source": "synthetic", "fps": 4, "synthetic": {"seed": 2, "size": 320}},
            "recipe_packages": ["pcb-no-reference"],
            "recipes": {
                "shapes": {
                    "model": {"path": str(yolov8n_onnx), "conf": 0.1},
                    "description": "test shapes",
                    "classes": [{"name": "rect", "colour": "#00ff00"}, {"name": "circle", "colour": "#0000ff"}],
                }
            },
            "recipe": "pcb-no-reference",
            "mqtt": {"line": "lineW"},
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
    errors: list[str] = []
    service = EdgeService(config)
    try:
        service.start()
        assert service.broker is not None and service.dashboard_url
        page = open_page(browser, service.dashboard_url, errors)
        expect(page.get_by_test_id("recipe-name")).to_have_text("pcb-no-reference")
        classes = page.get_by_test_id("recipe-classes")
        expect(classes).to_contain_text("mousebite")
        expect(page.locator("#recipe-switch")).to_be_hidden()  # not logged in

        publish(service.broker.url, "inspector/lineW/camW/cmd/recipe", "shapes")
        expect(page.get_by_test_id("recipe-name")).to_have_text("shapes")
        expect(classes.locator("li")).to_have_count(2)
        expect(classes).to_contain_text("rect")
        expect(classes).not_to_contain_text("mousebite")
        swatch = classes.locator("li[data-class=rect] .sw")
        assert swatch.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(0, 255, 0)"
        expect(page.get_by_test_id("slider-circle")).to_be_visible()  # the thresholds rows are the recipe's
        expect(page.get_by_test_id("th-rows")).not_to_contain_text("pin-hole")

        page.fill("#login-user", "op")
        page.fill("#login-pass", "op-pass")
        page.click("#login-button")
        expect(page.get_by_test_id("who")).to_contain_text("viewer")
        expect(page.locator("#recipe-switch")).to_be_hidden()
        page.click("#logout-button")
        page.fill("#login-user", "qa")
        page.fill("#login-pass", "qa-pass")
        page.click("#login-button")
        expect(page.locator("#recipe-switch")).to_be_visible()
        page.get_by_test_id("recipe-select").select_option("pcb-no-reference")
        page.get_by_test_id("recipe-apply").click()
        expect(page.get_by_test_id("recipe-message")).to_contain_text("Switched shapes → pcb")
        expect(page.get_by_test_id("recipe-name")).to_have_text("pcb-no-reference")
        expect(classes).to_contain_text("pin-hole")
        expect(page.get_by_test_id("slider-pin-hole")).to_be_visible()
        assert service.pipeline is not None and service.pipeline.recipe == "pcb-no-reference"
        last = service.pipeline.changeover.history[-1]
        assert (last.previous_recipe, last.recipe, last.source) == ("shapes", "pcb-no-reference", "dashboard:qa")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "recipe-switch.png"), full_page=True)
        assert not errors, errors
    finally:
        service.stop(drain=False)
