"""The line pipeline: one verdict per part, fail-safe on overload and deadlines, reconnects, thresholds swaps,
failing sinks, triggers, recipes, draining.

Headline tests run the real YOLOv8n ONNX test model (`yolov8n_onnx`); the rest use `ScriptedDetector`, a
stand-in with the detector's three stages whose speed and output the test controls.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.config import PipelineConfig, TriggerConfig
from inspector.decide import decide
from inspector.detector import OnnxDetector
from inspector.pipeline import Ledger, Pipeline, Recipe
from inspector.sources import MemorySource, Paced
from inspector.thresholds import ThresholdsHolder
from inspector.types import ClassThresholds, Decision, Detections, SourceError, Thresholds, Verdict
from tests.model_factory import draw_scene

NAMES = {0: "short", 1: "open"}


class ScriptedDetector:
    """Detector double: one box per image, confidence = the image's mean value / 255, class 0.

    delay_s: time `infer` takes (sleeping, so other threads run). fail: `infer` raises while this is set.
    Records each batch size in `batches`.
    """

    def __init__(self, delay_s: float = 0.0, sha256: str = "scripted", max_batch: int = 4) -> None:
        self.delay_s = delay_s
        self.sha256 = sha256
        self.names = dict(NAMES)
        self.max_batch = max_batch
        self.fail = threading.Event()
        self.batches: list[int] = []

    def preprocess(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return list(images)

    def infer(self, prepared: list[np.ndarray]) -> np.ndarray:
        self.batches.append(len(prepared))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail.is_set():
            raise RuntimeError("model exploded")
        return np.array([float(img.mean()) / 255.0 for img in prepared], np.float32)

    def postprocess(self, raw: np.ndarray, prepared: Any, conf: float | None = None, iou: float | None = None):
        return [Detections(np.array([[10, 10, 30, 30]], np.float32), np.array([c]), np.array([0])) for c in raw]


class CollectingSink:
    """Keeps every verdict it is handed (thread-safe); `closed` once the pipeline closes it."""

    def __init__(self, name: str = "collect") -> None:
        self.name = name
        self.verdicts: list[Verdict] = []
        self.closed = False
        self._lock = threading.Lock()

    def handle(self, verdict: Verdict) -> None:
        with self._lock:
            self.verdicts.append(verdict)

    def close(self) -> None:
        self.closed = True

    def by_part(self) -> Counter[int]:
        return Counter(v.part_id for v in self.verdicts)


class RaisingSink:
    name = "broken"

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    def handle(self, verdict: Verdict) -> None:
        self.calls += 1
        raise OSError("disk full")

    def close(self) -> None:
        self.closed = True


def grey(value: int, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def recipe_of(detectors: list[Any], thresholds: Thresholds | None = None, name: str = "default") -> Recipe:
    return Recipe(name, detectors, ThresholdsHolder(thresholds or Thresholds()))


class LiveMemory(MemorySource):
    """An unpaced in-memory camera: it does not wait for the pipeline (its surplus must fail safe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live = True


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll `condition()` until true (fails the test after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def run_to_end(pipeline: Pipeline, timeout: float = 60.0) -> None:
    pipeline.start()
    assert pipeline.wait(timeout), "pipeline did not finish"


def assert_one_verdict_each(sink: CollectingSink, expected_ids: list[int], pipeline: Pipeline) -> None:
    counts = sink.by_part()
    assert sorted(counts) == sorted(expected_ids)
    assert set(counts.values()) == {1}, [pid for pid, n in counts.items() if n != 1]
    ledger = pipeline.stats()["ledger"]
    assert ledger["seen"] == ledger["decided"] == len(expected_ids)
    assert ledger["in_flight"] == 0
    assert ledger["passed"] + ledger["rejected"] == ledger["decided"]


# ---------------------------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [draw_scene(rng, 240, 320)[0] for _ in range(12)]


@pytest.fixture(scope="module")
def onnx_detector(yolov8n_onnx: Path) -> OnnxDetector:
    return OnnxDetector(yolov8n_onnx, threads=1, conf=0.05, max_batch=4)


@pytest.mark.parametrize("gate_ms", [None, 40.0])
def test_source_faster_than_real_model_every_part_one_verdict(onnx_detector: OnnxDetector, scenes, gate_ms) -> None:
    """A live camera far faster than the model: the surplus parts fail safe (`uninspected`: buffer overflow, and
    with a gate deadline also the watchdog and the too-late-to-start check), none is lost or answered twice."""
    n = 120
    sink = CollectingSink()
    config = PipelineConfig(queue_size=2, gate_ms=gate_ms, margin_ms=10)
    pipeline = Pipeline(
        LiveMemory(scenes, count=n), {"default": recipe_of([onnx_detector])}, config=config, sinks=[sink]
    )
    run_to_end(pipeline)
    assert_one_verdict_each(sink, list(range(1, n + 1)), pipeline)
    failsafe = [v for v in sink.verdicts if v.failsafe]
    inspected = [v for v in sink.verdicts if not v.failsafe]
    assert failsafe and (inspected or gate_ms)  # without a deadline the model surely finishes some
    assert all(v.reasons == ["uninspected"] and v.decision == Decision.REJECT for v in failsafe)
    assert all(v.image is not None for v in failsafe)  # the store can still archive what was not inspected
    stats = pipeline.stats()
    assert stats["ledger"]["failsafe"] == len(failsafe)
    assert 0 < stats["ledger"]["frames_dropped"] <= len(failsafe)
    if gate_ms is None:
        assert stats["ledger"]["frames_dropped"] == len(failsafe)
    assert any(a["name"] == "overload" for a in stats["alarms"])
    assert sink.closed


def test_real_model_verdicts_carry_model_timings_and_detections(onnx_detector: OnnxDetector, scenes) -> None:
    n = 16
    sink = CollectingSink()
    pipeline = Pipeline(
        MemorySource(scenes, count=n, truths=list(range(len(scenes)))),
        {"default": recipe_of([onnx_detector])},
        sinks=[sink],
        camera_id="camA",
    )
    run_to_end(pipeline)
    assert_one_verdict_each(sink, list(range(1, n + 1)), pipeline)
    assert [v.seq for v in sorted(sink.verdicts, key=lambda v: v.part_id)] == list(range(1, n + 1))
    found = 0
    for v in sink.verdicts:
        assert not v.failsafe
        t = v.timings
        assert 0 < t.captured_ns <= t.preprocessed_ns <= t.inferred_ns <= t.decided_ns
        assert v.model_sha256 == onnx_detector.sha256 and v.camera_id == "camA" and v.recipe == "default"
        assert v.truth == (v.part_id - 1) % len(scenes)
        assert v.image is scenes[(v.part_id - 1) % len(scenes)]  # the frame itself, not a copy
        expected = onnx_detector.detect([v.image])[0]
        np.testing.assert_allclose(v.detections.xyxy, expected.xyxy, atol=1e-3)
        assert v.decision == decide(expected, Thresholds(), onnx_detector.names).decision
        found += len(v.detections)
    assert found > 0
    stats = pipeline.stats()
    assert stats["latency_ms"]["count"] == n and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"] > 0
    assert stats["stage_ms"]["inference"]["p50"] > 0


def test_thresholds_swapped_mid_run_apply_to_whole_parts(onnx_detector: OnnxDetector, scenes) -> None:
    """Another thread swaps thresholds while the real model runs: every verdict is exactly `decide()` under the
    version it names, and that version was the current one at some instant while the part was being decided."""
    strict = Thresholds(default=ClassThresholds(min_confidence=0.05))  # any box rejects
    lenient = Thresholds(default=ClassThresholds(min_confidence=0.05, enabled=False))  # nothing rejects
    holder = ThresholdsHolder(strict)
    installed: dict[int, tuple[Thresholds, int]] = {1: (strict, 0)}  # version -> (thresholds, installed at ns)
    sink = CollectingSink()
    source = Paced(MemorySource(scenes, count=60), fps=200)
    pipeline = Pipeline(
        source,
        {"default": Recipe("default", [onnx_detector], holder)},
        sinks=[sink],
        config=PipelineConfig(gate_ms=None, queue_size=64),
    )
    stop = threading.Event()

    def swapper() -> None:
        i = 0
        while not stop.is_set():
            new = holder.swap(lenient if i % 2 == 0 else strict)
            installed[new.version] = (new, time.monotonic_ns())
            i += 1
            time.sleep(0.003)

    thread = threading.Thread(target=swapper)
    pipeline.start()
    thread.start()
    assert pipeline.wait(60)
    stop.set()
    thread.join()
    assert_one_verdict_each(sink, list(range(1, 61)), pipeline)
    versions = {v.thresholds_version for v in sink.verdicts}
    assert len(versions) > 3  # the swaps really landed mid-run
    for v in sink.verdicts:
        thresholds, since = installed[v.thresholds_version]
        until = installed.get(v.thresholds_version + 1, (None, 2**63))[1]
        assert since <= v.timings.decided_ns and until >= v.timings.inferred_ns
        again = decide(v.detections, thresholds, onnx_detector.names)
        assert v.decision == again.decision and v.reasons == again.reasons
        np.testing.assert_array_equal(v.kept, again.kept)


# ---------------------------------------------------------------------------------------------- ledger
def test_ledger_balances_at_every_moment() -> None:
    sink = CollectingSink()
    pipeline = Pipeline(
        Paced(MemorySource([grey(v) for v in range(0, 250, 25)], count=400), fps=1000),
        {"default": recipe_of([ScriptedDetector(0.004), ScriptedDetector(0.004)])},
        sinks=[sink],
        config=PipelineConfig(mode="throughput", queue_size=3, gate_ms=None),
    )
    pipeline.start()
    snapshots = []
    while not pipeline.done:
        snapshots.append(pipeline.stats()["ledger"])
    assert pipeline.wait(30)
    assert len(snapshots) > 5
    for s in snapshots:
        assert s["seen"] == s["decided"] + s["in_flight"]
    assert_one_verdict_each(sink, list(range(1, 401)), pipeline)


def test_ledger_claim_is_single() -> None:
    ledger = Ledger()
    part = ledger.open_part(7, 0, None)
    v = Verdict(7, Decision.PASS)
    assert ledger.close(part.seq, v) is True
    assert ledger.close(part.seq, v) is False
    assert ledger.snapshot()["late"] == 1 and ledger.snapshot()["decided"] == 1


# ---------------------------------------------------------------------------------------------- deadlines
def test_slow_model_parts_fail_safe_before_their_deadline() -> None:
    """A model slower than the gate: the watchdog answers `uninspected` ahead of each deadline, and the model's
    late verdicts are dropped (counted), never sent as a second answer."""
    sink = CollectingSink()
    detector = ScriptedDetector(delay_s=0.4)
    config = PipelineConfig(gate_ms=150, margin_ms=60, queue_size=16)
    pipeline = Pipeline(
        Paced(MemorySource([grey(200)], count=6), fps=50),
        {"default": recipe_of([detector])},
        config=config,
        sinks=[sink],
    )
    run_to_end(pipeline)
    assert_one_verdict_each(sink, list(range(1, 7)), pipeline)
    for v in sink.verdicts:
        assert v.reasons == ["uninspected"] and v.rejected
        assert v.timings.decided_ns <= v.deadline_ns  # answered before the part reached the gate
    assert pipeline.stats()["ledger"]["late"] >= 1


def test_failsafe_decision_is_configurable() -> None:
    sink = CollectingSink()
    config = PipelineConfig(gate_ms=30, margin_ms=5, failsafe_decision="pass")
    pipeline = Pipeline(
        Paced(MemorySource([grey(0)], count=3), fps=100),
        {"default": recipe_of([ScriptedDetector(delay_s=0.2)])},
        config=config,
        sinks=[sink],
    )
    run_to_end(pipeline)
    assert {(v.decision, tuple(v.reasons)) for v in sink.verdicts} == {(Decision.PASS, ("uninspected",))}


def test_inference_error_gives_error_verdicts_and_line_goes_on() -> None:
    sink = CollectingSink()
    detector = ScriptedDetector()
    detector.fail.set()
    pipeline = Pipeline(
        MemorySource([grey(10)], count=5),
        {"default": recipe_of([detector])},
        sinks=[sink],
        config=PipelineConfig(gate_ms=None),
    )
    run_to_end(pipeline)
    assert_one_verdict_each(sink, [1, 2, 3, 4, 5], pipeline)
    assert all(v.reasons == ["error"] and v.rejected for v in sink.verdicts)
    stats = pipeline.stats()
    assert stats["ledger"]["errors"] == 5 and stats["ledger"]["failsafe"] == 5
    assert any(a["name"] == "inference" for a in stats["alarms"])


# ---------------------------------------------------------------------------------------------- sinks
def test_a_raising_sink_does_not_stop_the_others() -> None:
    good, bad, good2 = CollectingSink("first"), RaisingSink(), CollectingSink("last")
    pipeline = Pipeline(
        MemorySource([grey(1), grey(250)], count=20),
        {"default": recipe_of([ScriptedDetector()])},
        sinks=[good, bad, good2],
        config=PipelineConfig(gate_ms=None),
    )
    run_to_end(pipeline)
    assert len(good.verdicts) == len(good2.verdicts) == bad.calls == 20
    stats = pipeline.stats()
    assert stats["sinks"] == {"first": {"errors": 0}, "broken": {"errors": 20}, "last": {"errors": 0}}
    assert any(a["name"] == "sink:broken" for a in stats["alarms"])
    assert good.closed and bad.closed and good2.closed


# ---------------------------------------------------------------------------------------------- camera
class FlakySource:
    """A camera that delivers `burst` frames, then is lost; the first `refuse` reopen attempts fail."""

    description = "flaky test camera"

    def __init__(self, burst: int, losses: int, refuse: int) -> None:
        self.burst, self.losses_left, self.refuse_left = burst, losses, refuse
        self.opens = self.failed_opens = 0
        self._left = 0
        self.is_open = False

    def open(self) -> None:
        if self.opens > 0 and self.refuse_left > 0:
            self.refuse_left -= 1
            self.failed_opens += 1
            raise SourceError("connection refused")
        self.opens += 1
        self._left = self.burst
        self.is_open = True

    def read(self) -> tuple[np.ndarray, None] | None:
        assert self.is_open
        if self._left == 0:
            if self.losses_left == 0:
                return None
            self.losses_left -= 1
            raise SourceError("cable pulled")
        self._left -= 1
        time.sleep(0.002)
        return grey(128), None

    def close(self) -> None:
        self.is_open = False


def test_lost_camera_is_reopened_with_backoff_and_counted() -> None:
    source = FlakySource(burst=5, losses=3, refuse=2)
    sink = CollectingSink()
    pipeline = Pipeline(
        source,
        {"default": recipe_of([ScriptedDetector()])},
        sinks=[sink],
        reconnect=(0.01, 0.04),
        config=PipelineConfig(gate_ms=None),
    )
    run_to_end(pipeline)
    camera = pipeline.stats()["camera"]
    assert camera["lost"] == 3 and camera["reconnects"] == 3 and camera["open_failures"] == 2
    assert source.opens == 4
    assert_one_verdict_each(sink, list(range(1, 21)), pipeline)  # 4 bursts of 5 frames, none lost
    assert not source.is_open


def test_camera_that_never_opens_raises_an_alarm_and_stops_cleanly() -> None:
    class Refusing:
        description = "refusing camera"

        def __init__(self) -> None:
            self.attempts = 0

        def open(self) -> None:
            self.attempts += 1
            raise SourceError("connection refused")

        def read(self):  # pragma: no cover - never opened
            raise AssertionError

        def close(self) -> None:
            pass

    source = Refusing()
    pipeline = Pipeline(source, {"default": recipe_of([ScriptedDetector()])}, reconnect=(0.01, 0.02))
    pipeline.start()
    deadline = time.monotonic() + 10
    while source.attempts < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = pipeline.stats()
    assert source.attempts >= 3 and stats["camera"]["connected"] is False and stats["ready"] is False
    assert [a["name"] for a in stats["alarms"]] == ["camera"]
    assert pipeline.stop(timeout=10)


# ---------------------------------------------------------------------------------------------- triggers
def test_triggered_mode_takes_the_next_frame_after_each_trigger() -> None:
    sink = CollectingSink()
    frames = [grey(v) for v in range(0, 200, 10)]
    config = PipelineConfig(gate_ms=5000)
    pipeline = Pipeline(
        Paced(MemorySource(frames), fps=200),
        {"default": recipe_of([ScriptedDetector()])},
        trigger=TriggerConfig(mode="triggered", max_pending=2),
        config=config,
        sinks=[sink],
    )
    with pytest.raises(RuntimeError):
        Pipeline(MemorySource(frames), {"default": recipe_of([ScriptedDetector()])}).trigger(1)
    pipeline.start()
    time.sleep(0.05)
    triggered_at = {}
    for part_id in (1001, 1002, 1003):
        triggered_at[part_id] = time.monotonic_ns()
        pipeline.trigger(part_id)
        wait_for(lambda: pipeline.stats()["queue"]["triggers_pending"] == 0)  # its frame came
    for part_id in (2001, 2002, 2003):  # three at once, two may wait: the oldest fails safe
        pipeline.trigger(part_id)
    time.sleep(0.1)
    assert pipeline.stop(timeout=10)
    by_id = {v.part_id: v for v in sink.verdicts}
    assert sorted(by_id) == [1001, 1002, 1003, 2001, 2002, 2003] and len(sink.verdicts) == 6
    for part_id, at in triggered_at.items():
        assert not by_id[part_id].failsafe and by_id[part_id].timings.captured_ns > at
    assert by_id[2001].reasons == ["uninspected"]
    assert not by_id[2002].failsafe and not by_id[2003].failsafe
    ledger = pipeline.stats()["ledger"]
    assert ledger["frames_idle"] > 0 and ledger["seen"] == 6 == ledger["decided"]


def test_trigger_without_a_frame_fails_safe_by_its_deadline() -> None:
    sink = CollectingSink()

    class Stalled:  # connected, but no frame ever comes
        description = "stalled camera"

        def __init__(self) -> None:
            self.stop = threading.Event()

        def open(self) -> None:
            pass

        def read(self):
            self.stop.wait(0.02)
            return None if self.stop.is_set() else self.read()

        def close(self) -> None:
            self.stop.set()

    source = Stalled()
    pipeline = Pipeline(
        source,
        {"default": recipe_of([ScriptedDetector()])},
        sinks=[sink],
        trigger=TriggerConfig(mode="triggered"),
        config=PipelineConfig(gate_ms=150, margin_ms=60),
    )
    pipeline.start()
    pipeline.trigger(5)
    deadline = time.monotonic() + 5
    while not sink.verdicts and time.monotonic() < deadline:
        time.sleep(0.01)
    source.stop.set()
    assert pipeline.stop(timeout=10)
    assert [(v.part_id, v.reasons) for v in sink.verdicts] == [(5, ["uninspected"])]
    assert sink.verdicts[0].timings.decided_ns <= sink.verdicts[0].deadline_ns


# ---------------------------------------------------------------------------------------------- control
def test_pause_makes_no_parts_and_resume_continues() -> None:
    sink = CollectingSink()
    pipeline = Pipeline(
        Paced(MemorySource([grey(5)]), fps=200),
        {"default": recipe_of([ScriptedDetector()])},
        sinks=[sink],
        config=PipelineConfig(gate_ms=None),
    )
    pipeline.start()
    pipeline.pause()
    time.sleep(0.1)  # let a part already past the pause check finish
    seen = pipeline.stats()["ledger"]["seen"]
    time.sleep(0.1)
    paused_stats = pipeline.stats()
    assert paused_stats["paused"] is True and paused_stats["ready"] is False
    assert paused_stats["ledger"]["seen"] == seen and paused_stats["ledger"]["frames_idle"] > 0
    pipeline.resume()
    time.sleep(0.1)
    assert pipeline.stats()["ledger"]["seen"] > seen
    assert pipeline.stop(timeout=10)
    assert_one_verdict_each(sink, list(range(1, pipeline.stats()["ledger"]["seen"] + 1)), pipeline)


def test_set_recipe_switches_model_and_thresholds_between_parts() -> None:
    loads = []

    def loader(name: str) -> Recipe:
        loads.append(name)
        return recipe_of(
            [ScriptedDetector(sha256="model-b")], Thresholds(default=ClassThresholds(enabled=False)), name=name
        )

    sink = CollectingSink()
    pipeline = Pipeline(
        Paced(MemorySource([grey(255)]), fps=300),
        {"default": recipe_of([ScriptedDetector()])},
        recipe_loader=loader,
        recipe_names=["b"],
        sinks=[sink],
        config=PipelineConfig(gate_ms=None),
    )
    with pytest.raises(KeyError):
        pipeline.set_recipe("unknown")
    pipeline.start()
    time.sleep(0.05)
    pipeline.set_recipe("b")
    assert pipeline.recipe == "b" and pipeline.thresholds.get().default.enabled is False
    time.sleep(0.05)
    pipeline.set_recipe("default")
    pipeline.set_recipe("b")
    assert loads == ["b"]  # loaded once, then cached
    assert pipeline.stop(timeout=10)
    for v in sink.verdicts:
        assert (v.recipe, v.model_sha256, v.decision) in {
            ("default", "scripted", Decision.REJECT),  # bright image, default thresholds: rejects
            ("b", "model-b", Decision.PASS),  # recipe b disables every class
        }
    assert {v.recipe for v in sink.verdicts} == {"default", "b"}
    assert pipeline.stats()["recipe"] == "b"


def test_throughput_mode_runs_parallel_workers_and_batches() -> None:
    a, b = ScriptedDetector(delay_s=0.005), ScriptedDetector(delay_s=0.005)
    sink = CollectingSink()
    pipeline = Pipeline(
        MemorySource([grey(3)], count=80),
        {"default": recipe_of([a, b])},
        sinks=[sink],
        config=PipelineConfig(mode="throughput", max_batch=4, queue_size=16, gate_ms=None),
    )
    assert pipeline.n_workers == 2
    run_to_end(pipeline)
    assert_one_verdict_each(sink, list(range(1, 81)), pipeline)
    assert a.batches and b.batches  # both sessions worked
    assert max(a.batches + b.batches) > 1 and max(a.batches + b.batches) <= 4
    assert pipeline.stats()["mode"] == "throughput"


def test_stop_drains_parts_in_flight() -> None:
    sink = CollectingSink()
    pipeline = Pipeline(
        Paced(MemorySource([grey(9)]), fps=200),
        {"default": recipe_of([ScriptedDetector(delay_s=0.01)])},
        sinks=[sink],
        config=PipelineConfig(gate_ms=None, queue_size=1000),
    )
    pipeline.start()
    time.sleep(0.15)
    assert pipeline.stats()["ledger"]["in_flight"] > 1  # the model is behind: parts are waiting
    assert pipeline.stop(timeout=20)
    stats = pipeline.stats()
    assert stats["running"] is False and sink.closed
    seen = stats["ledger"]["seen"]
    assert seen > 0 and len(sink.verdicts) == seen
    assert stats["ledger"]["failsafe"] == 0  # drained: every part waiting at stop was inspected


def test_stats_are_plain_json() -> None:
    import json

    pipeline = Pipeline(
        MemorySource([grey(200)], count=3),
        {"default": recipe_of([ScriptedDetector()])},
        config=PipelineConfig(gate_ms=None),
    )
    run_to_end(pipeline)
    stats = json.loads(json.dumps(pipeline.stats()))
    for key in (
        "ledger",
        "rates",
        "latency_ms",
        "stage_ms",
        "per_class_rejects",
        "alarms",
        "camera",
        "sinks",
        "mode",
        "recipe",
        "thresholds_version",
        "model_sha256",
        "paused",
        "ready",
    ):
        assert key in stats
    assert stats["per_class_rejects"] == {"short": 3}
    assert set(stats["latency_ms"]) >= {"p50", "p95", "p99", "min", "avg", "max"}


def test_prometheus_text_exposes_the_ledger_and_latency() -> None:
    from inspector.prometheus import LineCollector, line_registry, render

    pipeline = Pipeline(
        MemorySource([grey(200)], count=4),
        {"default": recipe_of([ScriptedDetector()])},
        sinks=[RaisingSink()],
        config=PipelineConfig(gate_ms=None),
    )
    run_to_end(pipeline)
    text = render(line_registry(LineCollector(pipeline.stats, labels={"line": "L1", "camera": 'cam"0'})))
    lines = text.splitlines()
    assert "# TYPE inspector_parts_seen_total counter" in lines  # labels come sorted by name, values as floats
    assert 'inspector_parts_seen_total{camera="cam\\"0",line="L1"} 4.0' in lines
    assert 'inspector_sink_errors_total{camera="cam\\"0",line="L1",sink="broken"} 4.0' in lines
    assert any(line.startswith('inspector_latency_ms{camera="cam\\"0",line="L1",quantile="0.99"} ') for line in lines)
    assert 'inspector_rejects_by_class_total{camera="cam\\"0",class="short",line="L1"} 4.0' in lines
