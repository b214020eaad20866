"""Helpers for the dashboard tests: a uvicorn server on a free port in a thread, a stand-in line that decides
generated parts with the real `decide()` and feeds the real `Store` and `Stats`, and ready-made accounts.

The stand-in (`FakeLine`) lets the API and page tests run without the detector; `test_api.py` also has a variant
with the real pipeline and model.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI

from inspector.api import AppDeps, create_app
from inspector.auth import hash_password
from inspector.config import DashboardConfig, StoreConfig, UserConfig
from inspector.decide import decide
from inspector.stats import Stats
from inspector.store import Store
from inspector.thresholds import LineThresholds, ThresholdsHolder
from inspector.types import Detections, Thresholds, Timings, Verdict
from tests.model_factory import draw_scene

NAMES = {0: "rect", 1: "circle"}
EDITOR = ("qa", "qa-editor-pass")
VIEWER = ("op", "op-viewer-pass")


# Headless Debian Chromium as root on a machine with no internet: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What each stage of a `FakeLine` part takes, in ms (register only with a golden reference).
STAGE_MS = {"wait": 1.0, "register": 2.0, "preprocess": 3.0, "inference": 8.0, "postprocess": 1.5}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots kept by the browser tests


def make_users() -> dict[str, UserConfig]:
    """An editor and a viewer; few PBKDF2 iterations so that logins are cheap in tests."""
    return {
        EDITOR[0]: UserConfig(password_hash=hash_password(EDITOR[1], iterations=1000), role="editor"),
        VIEWER[0]: UserConfig(password_hash=hash_password(VIEWER[1], iterations=1000), role="viewer"),
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 (a free port, bound here so nobody can take it) in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # Event streams never end by themselves: a short graceful-shutdown timeout lets the server stop.
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 30, what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class FakeLine:
    """Stand-in for the pipeline: generated scenes, detections = the drawn shapes with random scores, decided by
    `decide()` under `holder.get()` (one read per part, as the pipeline does), fed to the store and `Stats`.

    Each part's stages take fixed times (`STAGE_MS`: wait, preprocess, inference, postprocess; and register when
    the recipe has a golden `reference`, which the stats' model then names, as the real line's do)."""

    def __init__(
        self,
        store: Store,
        holder: ThresholdsHolder,
        names: dict[int, str] = NAMES,
        *,
        rate_hz: float = 20.0,
        seed: int = 0,
        shape: tuple[int, int] = (240, 320),
        clean_share: float = 0.4,
        reference: bool = False,
    ) -> None:
        self.reference = reference
        self.store = store
        self.holder = holder
        self.names = names
        self.rate_hz = rate_hz
        self.shape = shape
        self.clean_share = clean_share
        self.rng = np.random.default_rng(seed)
        self.stats_meter = Stats()
        self.ledger = dict.fromkeys(
            ("seen", "decided", "in_flight", "passed", "rejected", "failsafe", "errors", "frames_dropped"), 0
        )
        self.verdicts: list[Verdict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.part_id = 0
        self.run = 1  # the start of the inspector its verdicts carry

    def _timings(self) -> tuple[Timings, int]:
        """Stamps of a part that has just been decided (its stages in the past) and when it was dequeued."""
        ms = {k: int(v * 1e6) for k, v in STAGE_MS.items()}
        if not self.reference:
            ms["register"] = 0
        decided = time.monotonic_ns()
        inferred = decided - ms["postprocess"]
        preprocessed = inferred - ms["inference"]
        registered = preprocessed - ms["preprocess"]
        dequeued = registered - ms["register"]
        captured = dequeued - ms["wait"]
        timings = Timings(captured, preprocessed, inferred, decided, registered_ns=registered if self.reference else 0)
        return timings, dequeued

    def step(self) -> Verdict:
        """Make, decide and dispatch one part."""
        image, labels = draw_scene(self.rng, *self.shape)
        if self.rng.random() < self.clean_share:
            labels = []  # a good part: the detector finds nothing
        n = len(labels)
        detections = Detections(
            np.array([box for _, *box in labels], np.float32).reshape(n, 4),
            self.rng.uniform(0.15, 0.95, n).astype(np.float32),
            np.array([cls for cls, *_ in labels], np.int64),
        )
        with self._lock:
            self.part_id += 1
            part_id = self.part_id
            self.ledger["seen"] += 1
        verdict = decide(detections, self.holder.get(), self.names, part_id)
        verdict.seq = part_id
        verdict.run = self.run
        verdict.model_sha256 = "0" * 64
        verdict.image = image
        verdict.timings, dequeued = self._timings()
        self.store.handle(verdict)
        self.stats_meter.record(verdict, dequeued)
        with self._lock:
            self.ledger["decided"] += 1
            self.ledger["rejected" if verdict.rejected else "passed"] += 1
            self.verdicts.append(verdict)
        return verdict

    def run_parts(self, n: int) -> list[Verdict]:
        """Decide `n` parts at once, letting the store catch up now and then (its image queue is bounded)."""
        out = []
        for i in range(n):
            out.append(self.step())
            if i % 16 == 15:
                self.store.flush()
        return out

    def stats(self) -> dict[str, Any]:
        """The pipeline-shaped stats dict."""
        with self._lock:
            ledger = dict(self.ledger)
        model: dict[str, Any] = {"file": "fake.onnx", "input": "reference-diff" if self.reference else "image"}
        if self.reference:
            model["reference"] = {"image": "golden.png", "motion": "rigid"}
        return {"ledger": ledger, "run": self.run, **self.stats_meter.snapshot(), "model": model}

    def start(self) -> FakeLine:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fake-line", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        while not self._stop.wait(period):
            self.step()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class Dashboard:
    """A served app and what it is made of."""

    base_url: str
    app: FastAPI
    deps: AppDeps
    store: Store
    holder: ThresholdsHolder
    line: FakeLine


def make_deps(
    tmp_path: Path,
    *,
    login_to_view: bool = False,
    users: dict[str, UserConfig] | None = None,
    pass_sample_rate: float = 0.25,
    thresholds: Thresholds | None = None,
    announce: Callable[[dict[str, Any]], None] | None = None,
    rate_hz: float = 20.0,
    reference: bool = False,
) -> tuple[AppDeps, FakeLine]:
    """Store, the line's thresholds (one recipe, `default`), stand-in line and the `AppDeps` over them; `announce`
    gets each edit's `events` message."""
    store = Store(
        StoreConfig(path=tmp_path / "inspector.db", images_dir=tmp_path / "images", pass_sample_rate=pass_sample_rate),
        NAMES,
    )
    line_thresholds = LineThresholds({"default": thresholds or Thresholds()}, store=store, announce=announce)
    line = FakeLine(store, line_thresholds.holder("default"), rate_hz=rate_hz, reference=reference)
    deps = AppDeps(
        store=store,
        thresholds=line_thresholds,
        stats=line.stats,
        names=NAMES,
        config=DashboardConfig(login_to_view=login_to_view),
        users=make_users() if users is None else users,
        events_interval_s=0.25,
    )
    return deps, line


@contextlib.contextmanager
def dashboard(tmp_path: Path, *, parts: int = 0, run_line: bool = False, **kwargs: Any) -> Iterator[Dashboard]:
    """A served dashboard over a stand-in line that has decided `parts` parts (and keeps going if `run_line`)."""
    deps, line = make_deps(tmp_path, **kwargs)
    line.run_parts(parts)
    assert deps.store.flush(), "store did not flush"
    app = create_app(deps)
    if run_line:
        line.start()
    try:
        with serve(app) as base_url:
            yield Dashboard(base_url, app, deps, deps.store, deps.holder(), line)
    finally:
        line.stop()
        deps.store.close()
