"""The page in real headless Chromium (Debian's, driven by Playwright): counters rise while parts flow, an editor
logs in, moves a slider, sees the preview, applies, the next parts carry the new version, the audit row shows the
change. Screenshots go to `test-artifacts/`, and the main one to `docs/dashboard.png` only when
`INSPECTOR_UPDATE_DOCS=1`. The README's picture is the demo's (`INSPECTOR_UPDATE_DOCS=1 pytest tests/test_demo.py`):
with the variable set for the whole suite, this later test would replace it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.web_helpers import ARTIFACTS, CHROMIUM_ARGS, EDITOR, VIEWER, dashboard

ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 30_000  # generous: two shared cores


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(executable).exists(), "Debian's chromium is needed (scripts/test installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, url: str, errors: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    # A Content-Security-Policy violation (an inline script or style, a file from elsewhere) is a console error.
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    response = page.goto(url)
    assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    return page


def counter(page: Page, testid: str) -> int:
    text = page.get_by_test_id(testid).inner_text().replace(",", "")
    return int(text) if text.isdigit() else -1


def test_editor_changes_a_threshold_from_the_page(browser: Browser, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with dashboard(tmp_path, parts=60, run_line=True, rate_hz=8) as d:
        page = open_page(browser, d.base_url, errors)
        expect(page.get_by_test_id("live")).to_have_text("live")
        expect(page.get_by_test_id("version-pill")).to_have_text("thresholds v1")

        # Counters rise while parts flow.
        page.wait_for_function("() => Number(document.getElementById('c-decided').textContent.replace(/,/g, '')) > 60")
        first = counter(page, "c-decided")
        page.wait_for_function(
            f"() => Number(document.getElementById('c-decided').textContent.replace(/,/g, '')) >= {first + 5}"
        )
        assert counter(page, "c-seen") >= counter(page, "c-decided") > first

        # Stage timings: p50 and p99 of each stage in pipeline order; no register stage without a golden reference.
        stages = page.get_by_test_id("stages")
        expect(stages.locator("tbody tr")).to_have_count(5)
        assert stage_names(page) == ["wait", "preprocess", "inference", "postprocess", "dispatch"]
        expect(page.get_by_test_id("stage-inference")).to_have_text(re.compile(r"^inference\s*8\.00\s*8\.00$"))

        # The reject gallery shows annotated images with class names.
        gallery = page.get_by_test_id("gallery")
        expect(gallery.locator("figure")).to_have_count(12)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#gallery img')].some((i) => i.complete && i.naturalWidth > 0)"
        )
        expect(gallery.locator(".reasons").first).to_have_text(re.compile(r"^(rect|circle)(, (rect|circle))?$"))
        # The counters say they are this run's; the store's totals of every run are shown apart.
        expect(page.get_by_test_id("c-scope")).to_have_text("this run (run 1)")
        expect(page.get_by_test_id("c-cumulative")).to_contain_text("All runs (stored): ")
        # A tile opens its own verdict, addressed by its store id (part ids may repeat across runs).
        tile = gallery.locator("figure").first
        part = tile.get_attribute("data-part")
        tile.click()
        expect(page.locator("#viewer-text")).to_contain_text(f"Part #{part} (run 1): REJECT")
        page.keyboard.press("Escape")

        # Before login nothing can be applied.
        apply = page.get_by_test_id("apply")
        expect(apply).to_be_disabled()
        expect(page.get_by_test_id("slider-rect")).to_be_disabled()

        # An editor logs in.
        page.fill("#login-user", EDITOR[0])
        page.fill("#login-pass", EDITOR[1])
        page.click("#login-button")
        expect(page.get_by_test_id("who")).to_contain_text("qa · editor")
        slider = page.get_by_test_id("slider-rect")
        expect(slider).to_be_enabled()

        # Moves a slider and sees the preview before Apply is possible.
        slider.fill("0.9")
        preview = page.get_by_test_id("preview")
        expect(preview).to_contain_text(re.compile(r"Last \d+ parts: 0 would now be rejected, [1-9]\d* would now pass"))
        to_pass = int(re.search(r"(\d+) would now pass", preview.inner_text()).group(1))  # type: ignore[union-attr]
        expect(preview.locator(".flips li").first).to_contain_text("reject → pass")
        expect(apply).to_be_enabled()
        page.screenshot(path=str(ARTIFACTS / "dashboard-preview.png"))

        # Applies.
        page.fill("#th-comment", "rect false rejects on the new boards")
        apply.click()
        expect(page.locator("#th-message")).to_have_text("Applied: the line now uses v2.")
        expect(page.get_by_test_id("version-pill")).to_have_text("thresholds v2")
        assert d.holder.get().version == 2 and d.holder.get().for_class("rect").min_confidence == 0.9
        assert to_pass > 0

        # The next parts are decided with the new version: new rejects in the gallery say v2.
        expect(gallery.locator(".meta", has_text=" · v2 · ").first).to_be_visible()
        newest = httpx.get(f"{d.base_url}/api/verdicts", params={"limit": 5}, timeout=30).json()["items"]
        assert newest[0]["thresholds_version"] == 2

        # The audit row shows the change.
        row = page.get_by_test_id("audit-row").first
        expect(row).to_contain_text("qa")
        expect(row).to_contain_text("v1→v2")
        expect(row).to_contain_text("classes.rect")
        expect(row).to_contain_text("rect false rejects on the new boards")

        page.wait_for_timeout(1500)  # let the chart draw a few more points for the picture
        shot = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(shot))
        if os.environ.get("INSPECTOR_UPDATE_DOCS") == "1":
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
        page.close()
    assert errors == []


def stage_names(page: Page) -> list[str]:
    return [cell.inner_text() for cell in page.get_by_test_id("stages").locator("tbody td:first-child").all()]


def test_stage_timings_show_registration_when_the_recipe_has_a_reference(browser: Browser, tmp_path: Path) -> None:
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with dashboard(tmp_path, parts=20, reference=True) as d:
        page = open_page(browser, d.base_url, errors)
        expect(page.get_by_test_id("stage-register")).to_have_text(re.compile(r"^register\s*2\.00\s*2\.00$"))
        assert stage_names(page) == ["wait", "register", "preprocess", "inference", "postprocess", "dispatch"]
        expect(page.get_by_test_id("stage-preprocess")).to_have_text(re.compile(r"^preprocess\s*3\.00\s*3\.00$"))
        page.get_by_test_id("stages").screenshot(path=str(ARTIFACTS / "dashboard-stages.png"))
        page.close()
    assert errors == []


def test_login_to_view_and_viewer_cannot_apply(browser: Browser, tmp_path: Path) -> None:
    errors: list[str] = []
    with dashboard(tmp_path, parts=20, login_to_view=True) as d:
        page = open_page(browser, d.base_url, errors)
        expect(page.locator("#locked")).to_be_visible()
        expect(page.locator("#main")).to_be_hidden()
        page.fill("#login-user", VIEWER[0])
        page.fill("#login-pass", "wrong")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_have_text("wrong user or password")
        page.fill("#login-pass", VIEWER[1])
        page.click("#login-button")
        expect(page.get_by_test_id("who")).to_contain_text("op · viewer")
        expect(page.locator("#main")).to_be_visible()
        expect(page.get_by_test_id("c-decided")).to_have_text("20")
        expect(page.get_by_test_id("slider-rect")).to_be_disabled()
        expect(page.get_by_test_id("apply")).to_be_disabled()
        page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].every((i) => i.complete)")
        page.screenshot(path=str(ARTIFACTS / "dashboard-viewer.png"))
        page.close()
    # The page's first requests before login are refused (401) and logged by Chromium as failed loads.
    assert [e for e in errors if "401" not in e] == []
