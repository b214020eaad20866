"""The fleet page in real headless Chromium over two real lines: two `inspector run` processes (synthetic camera,
the shipped 320 px model, store, dashboard, PLC link) on one real Mosquitto, and `inspector fleet` as a process.

The page shows both lines with a link to each line's own dashboard and updates live; a line that freezes
(SIGSTOP: its socket stays open, it just goes silent) turns stale within two heartbeats while the other stays
online; `kill -9` then closes its socket, the broker publishes its last will and the page shows it offline.
Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from inspector.broker import EmbeddedBroker
from inspector.demo_fleet import PlantLine, line_config
from tests.mqtt_helpers import mosquitto
from tests.web_helpers import ARTIFACTS, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "deeppcb-v8n-320-int8.onnx"  # the smallest shipped model: two lines on two busy cores
WAIT_S = 90.0  # model load and self-test on two shared cores
WAIT_MS = 30_000


class Proc:
    """A child process whose output lines are collected by a thread (`expect` waits for a pattern)."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
        env.update(YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "inspector", *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect(self, pattern: str, timeout_s: float = WAIT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None:
                    break
                continue
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} from {self.popen.args}: {''.join(self.output)[-3000:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)  # a stopped process must be able to die cleanly
            self.popen.kill()
        self.popen.wait(15)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(executable).exists(), "Debian's chromium is needed (scripts/test installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def start_line(name: str, seed: int, url: str, tmp_path: Path) -> tuple[Proc, str]:
    """`inspector run` for line `name`; returns the process and its dashboard URL."""
    config = line_config(PlantLine(name, seed, 3.0), url, tmp_path / name, MODEL, heartbeat_s=1.0, keepalive_s=5)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
    proc = Proc("run", "--config", str(path), "--log-level", "INFO", "--stats-every", "0")
    return proc, proc.expect(r"dashboard (http://\S+)").group(1)


PARTS_ABOVE = "([id, n]) => Number(document.querySelector(`[data-testid='${id}']`).textContent.replace(/,/g, '')) > n"


def parts_on_page(page: Page, key: str) -> int:
    text = page.get_by_test_id(f"parts-{key}").inner_text().replace(",", "")
    return int(text) if text.isdigit() else -1


def test_fleet_page_shows_two_lines_live_then_stale_then_offline(
    browser: Browser, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    procs: list[Proc] = []
    errors: list[str] = []
    try:
        fleet = Proc("fleet", "--mqtt", broker.url, "--port", "0")
        procs.append(fleet)
        fleet_url = fleet.expect(r"inspector fleet: (http://\S+)").group(1)
        (line_a, dash_a), (line_b, dash_b) = (
            start_line(n, s, broker.url, tmp_path) for n, s in (("east", 1), ("west", 2))
        )
        procs += [line_a, line_b]
        assert httpx.get(dash_a).status_code == 200  # the announced dashboard is the line's own

        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.goto(fleet_url)
        expect(page.get_by_test_id("live")).to_have_text("live")

        # Both lines, online, each with a link to its own dashboard.
        for key, dash in (("east/cam0", dash_a), ("west/cam0", dash_b)):
            expect(page.get_by_test_id(f"state-{key}")).to_have_text("online")
            expect(page.get_by_test_id(f"link-{key}")).to_have_attribute("href", dash)
        row = page.get_by_test_id("row-east/cam0")
        expect(row).to_contain_text("default")  # recipe
        expect(row).to_contain_text("deeppcb-v8n-320-int8.onnx")  # model
        expect(page.get_by_test_id("count-online")).to_have_text("online 2")

        # Live: parts keep rising on both rows; the plant total by recipe follows.
        start = {key: parts_on_page(page, key) for key in ("east/cam0", "west/cam0")}
        for key, n in start.items():
            page.wait_for_function(PARTS_ABOVE, arg=[f"parts-{key}", max(n, 0) + 3])
        expect(page.get_by_test_id("recipe-default")).to_be_visible()
        expect(page.get_by_test_id("shift-current")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "fleet-two-lines.png"))

        # West freezes: silent, socket still open, so no will yet: stale within two heartbeats; east stays online.
        line_b.popen.send_signal(signal.SIGSTOP)
        expect(page.get_by_test_id("state-west/cam0")).to_have_text("stale")
        expect(page.get_by_test_id("state-east/cam0")).to_have_text("online")
        expect(page.get_by_test_id("count-stale")).to_have_text("stale 1")
        page.screenshot(path=str(ARTIFACTS / "fleet-stale.png"))

        # kill -9: the socket closes, the broker publishes west's last will: offline; east still counts parts.
        line_b.popen.kill()
        expect(page.get_by_test_id("state-west/cam0")).to_have_text("offline")
        expect(page.get_by_test_id("row-west/cam0")).to_have_attribute("data-state", "offline")
        east = parts_on_page(page, "east/cam0")
        page.wait_for_function(PARTS_ABOVE, arg=["parts-east/cam0", east])
        expect(page.get_by_test_id("state-east/cam0")).to_have_text("online")
        page.screenshot(path=str(ARTIFACTS / "fleet-offline.png"))
        assert not errors, errors
    finally:
        for proc in reversed(procs):
            proc.kill()
