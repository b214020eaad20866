"""The real-time line: capture thread -> bounded buffer -> inference workers -> dispatch thread -> sinks.

One part, one verdict. Every part is opened in the `Ledger` when it is seen (a frame in free-run, a trigger in
triggered mode) and closed exactly once, by whoever decides it first:
- an inference worker (the model's verdict, or `error` when inspection failed),
- the capture thread when the buffer overflows (the oldest waiting frame fails safe: `uninspected`),
- the watchdog when the part's gate deadline is near and it is still undecided (`uninspected`),
- the drain on stop (parts that could not be finished in time: `uninspected`).
A late model verdict for a part that already failed safe is discarded and counted (`late`), so the PLC never gets
two answers. At any moment `seen == decided + in_flight`.

Threads: the capture thread never waits on inference (a live camera's surplus fails safe); each inference worker
owns one detector (onnxruntime releases the GIL in `run`, measured in DESIGN.md's figures and bench/, so
threads overlap capture, pre/postprocessing and inference); the dispatch thread feeds the sinks, so a slow or
failing sink never stalls inference (a sink that raises is logged and counted, the others go on).

Modes (`PipelineConfig.mode`): `latency` runs one worker, one part at a time (its detector may use all cores);
`throughput` runs one worker per detector (e.g. two single-thread sessions) and batches waiting parts.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inspector.config import PipelineConfig, TriggerConfig
from inspector.decide import ThresholdsHolder, decide
from inspector.sources import Backoff
from inspector.stats import Stats
from inspector.types import Decision, Detections, Frame, FrameSource, SourceError, Timings, Verdict

__all__ = ["Detector", "Ledger", "Pipeline", "Recipe", "Sink"]

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.5  # longest sleep of a thread waiting for work (it re-checks for stop)


@runtime_checkable
class Sink(Protocol):
    """Where verdicts go (MQTT link, store, ...). `handle` runs on the dispatch thread: keep it quick."""

    name: str

    def handle(self, verdict: Verdict) -> None: ...

    def close(self) -> None: ...


class Detector(Protocol):
    """What the pipeline needs of `inspector.detector.OnnxDetector` (a test double may stand in)."""

    sha256: str
    names: dict[int, str]
    max_batch: int

    def preprocess(self, images: Sequence[np.ndarray]) -> Any: ...

    def infer(self, prepared: Any) -> np.ndarray: ...

    def postprocess(
        self, raw: np.ndarray, prepared: Any, conf: float | None = None, iou: float | None = None
    ) -> list[Detections]: ...


@dataclass
class Recipe:
    """One product: its detectors (one per inference worker; they may be the same object) and thresholds.

    model: what the line reports about the model in use (file, precision, execution providers, self-test; see
    `inspector.line.load_recipe`); alarm: set when the recipe runs on its fallback model.
    """

    name: str
    detectors: list[Detector]
    thresholds: ThresholdsHolder
    model: dict[str, Any] = field(default_factory=dict)
    alarm: str | None = None

    @property
    def names(self) -> dict[int, str]:
        return self.detectors[0].names

    @property
    def sha256(self) -> str:
        return self.detectors[0].sha256


@dataclass(slots=True)
class _Part:
    """A part between being seen and being decided."""

    seq: int
    part_id: int
    seen_ns: int
    deadline_ns: int | None
    frame: Frame | None = None
    dequeued_ns: int = 0


class Ledger:
    """Parts seen, decided and in flight, under one lock so that `seen == decided + in_flight` always holds.

    `close()` is the single claim: the first caller for a part gets True and must emit its verdict; later
    callers get False (their result is late and dropped, counted in `late`).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[int, _Part] = {}
        self.seen = self.decided = self.passed = self.rejected = 0
        self.failsafe = self.errors = self.frames_dropped = self.frames_idle = self.late = 0
        self._seq = 0

    def open_part(self, part_id: int, now_ns: int, gate_ns: int | None) -> _Part:
        with self.lock:
            self._seq += 1
            part = _Part(self._seq, part_id, now_ns, now_ns + gate_ns if gate_ns is not None else None)
            self.open[part.seq] = part
            self.seen += 1
            return part

    def is_open(self, seq: int) -> bool:
        with self.lock:
            return seq in self.open

    def close(self, seq: int, verdict: Verdict, count_late: bool = True) -> bool:
        """Claim part `seq` with `verdict`; False when it was already decided (then, with `count_late`, the
        verdict counts as late)."""
        with self.lock:
            if self.open.pop(seq, None) is None:
                self.late += count_late
                return False
            self.decided += 1
            if verdict.rejected:
                self.rejected += 1
            else:
                self.passed += 1
            if "error" in verdict.reasons:
                self.errors += 1
            if verdict.failsafe:
                self.failsafe += 1
            return True

    def count_frame(self, dropped: bool) -> None:
        with self.lock:
            if dropped:
                self.frames_dropped += 1
            else:
                self.frames_idle += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "seen": self.seen,
                "decided": self.decided,
                "in_flight": len(self.open),
                "passed": self.passed,
                "rejected": self.rejected,
                "failsafe": self.failsafe,
                "errors": self.errors,
                "frames_dropped": self.frames_dropped,
                "frames_idle": self.frames_idle,
                "late": self.late,
            }


class Pipeline:
    """One camera's line. Build it, `start()`, and `stop()` (drains) or let a finite source end (`wait()`).

    source: opened (and reopened with back-off when lost) by the capture thread.
    recipes: the products; `recipe` names the active one. `recipe_loader(name)` builds a recipe on demand
    for names in `recipe_names` that are not in `recipes` yet (loading models takes seconds; it happens in the
    caller of `set_recipe`, the line keeps running meanwhile).
    Each inference worker uses `detectors[i]` of the active recipe; `workers` defaults to the count of the
    active recipe's detectors in throughput mode and to 1 in latency mode.
    wait_when_full: when the buffer is full, make the capture thread wait instead of failing the oldest part safe;
    default: wait for sources that say they are not live (`source.live is False`: folders, files, memory).
    conf / iou: passed to the detector's postprocess (None: its own). stats_window: parts in the latency window.
    """

    def __init__(
        self,
        source: FrameSource,
        recipes: dict[str, Recipe],
        *,
        config: PipelineConfig | None = None,
        trigger: TriggerConfig | None = None,
        recipe: str = "default",
        sinks: Sequence[Sink] = (),
        camera_id: str = "cam0",
        reconnect: tuple[float, float] = (0.5, 10.0),
        recipe_loader: Callable[[str], Recipe] | None = None,
        recipe_names: Sequence[str] = (),
        workers: int | None = None,
        wait_when_full: bool | None = None,
        conf: float | None = None,
        iou: float | None = None,
        stats_window: int = 2048,
    ) -> None:
        if recipe not in recipes:
            raise KeyError(f"unknown recipe {recipe!r}")
        self.config = config or PipelineConfig()
        self.trigger_config = trigger or TriggerConfig()
        self.source = source
        self.camera_id = camera_id
        self.sinks: list[Sink] = list(sinks)
        self.mode = self.config.mode
        self.conf, self.iou = conf, iou
        self._recipes = dict(recipes)
        self._recipe_names = set(recipe_names) | set(recipes)
        self._recipe_loader = recipe_loader
        self._recipe_lock = threading.Lock()
        self._active = recipes[recipe]
        n_det = len(self._active.detectors)
        self.n_workers = workers or (n_det if self.mode == "throughput" else 1)
        # A live camera's surplus must fail safe (the part moves on); a finite, unpaced source (folder, file,
        # benchmark) can simply wait, and losing nothing is then right.
        self.wait_when_full = (not getattr(source, "live", True)) if wait_when_full is None else wait_when_full
        self.gate_ns = int(self.config.gate_ms * 1e6) if self.config.gate_ms else None
        self.margin_ns = int(self.config.margin_ms * 1e6)

        self.ledger = Ledger()
        self._stats = Stats(window=stats_window)
        self._backoff = Backoff(*reconnect)
        self.camera: dict[str, Any] = {
            "description": getattr(source, "description", type(source).__name__),
            "connected": False,
            "reconnects": 0,
            "lost": 0,
            "open_failures": 0,
        }

        # The bounded buffer between capture and inference, and the triggers waiting for a frame.
        self._buffer: deque[_Part] = deque()
        self._buffer_cv = threading.Condition()
        self._idle_workers = 0
        self._pending: deque[_Part] = deque()
        self._pending_lock = threading.Lock()
        self._free_run_id = 0
        # Verdicts on their way to the sinks: bounded; producers wait rather than drop.
        self._dispatch: deque[tuple[Verdict, int]] = deque()
        self._dispatch_cv = threading.Condition()
        # Deadlines the watchdog watches: (deadline_ns - margin, seq, part), a heap.
        self._deadlines: list[tuple[int, int, _Part]] = []
        self._watch_cv = threading.Condition()
        # Processing time per part (EMA, ns) for `ready()` and the "can it still make its deadline" check.
        self._service_ns = 0.0
        self._last_failsafe_ns = 0
        self._stop_at = 0.0  # time.monotonic() of the first stop() call

        self._paused = threading.Event()
        self._stop = threading.Event()  # stop capturing
        self._capture_done = threading.Event()
        self._workers_done = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._log_times: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ control API
    @property
    def thresholds(self) -> ThresholdsHolder:
        """The active recipe's thresholds (swap new ones in with `thresholds.swap`)."""
        return self._active.thresholds

    @property
    def names(self) -> dict[int, str]:
        return self._active.names

    @property
    def recipe(self) -> str:
        return self._active.name

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def start(self) -> None:
        if self._started:
            raise RuntimeError("pipeline already started")
        self._started = True
        targets: list[tuple[str, Callable[[], None]]] = [("capture", self._capture_loop)]
        targets += [(f"infer-{i}", lambda i=i: self._worker_loop(i)) for i in range(self.n_workers)]
        targets += [("watchdog", self._watchdog_loop), ("dispatch", self._dispatch_loop)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"{self.camera_id}-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        threading.Thread(target=self._supervise, name=f"{self.camera_id}-supervise", daemon=True).start()

    def trigger(self, part_id: int) -> None:
        """Triggered mode: part `part_id` is at the camera; the next frame captured after this call is its frame.

        Raises RuntimeError in free-run mode. Once the line is stopping or paused the part fails safe at once.
        """
        if self.trigger_config.mode != "triggered":
            raise RuntimeError("trigger() needs trigger.mode 'triggered'")
        if self._workers_done.is_set():
            raise RuntimeError("the pipeline has stopped")
        part = self.ledger.open_part(int(part_id), time.monotonic_ns(), self.gate_ns)
        if self._stop.is_set() or self.paused:
            self._fail(part, "uninspected", why="line paused" if self.paused else "line stopping")
            return
        self._watch(part)
        overflow: _Part | None = None
        with self._pending_lock:
            self._pending.append(part)
            if len(self._pending) > self.trigger_config.max_pending:
                overflow = self._pending.popleft()
        if overflow is not None:
            self._fail(overflow, "uninspected", why="too many triggers waiting for a frame")

    def pause(self) -> None:
        """Stop making parts (frames are still read, so the camera stays fresh); parts in flight finish."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def set_recipe(self, name: str) -> None:
        """Switch model and thresholds together. Raises KeyError for an unknown recipe.

        Workers read the active recipe once per batch, so each part is inspected wholly under one recipe.
        """
        if name not in self._recipe_names:
            raise KeyError(f"unknown recipe {name!r}; known: {sorted(self._recipe_names)}")
        with self._recipe_lock:
            recipe = self._recipes.get(name)
            if recipe is None:
                if self._recipe_loader is None:
                    raise KeyError(f"recipe {name!r} cannot be loaded")
                recipe = self._recipe_loader(name)
                self._recipes[name] = recipe
            self._active = recipe  # one reference store: atomic
        log.info("recipe %s active (model %s)", name, recipe.sha256[:12])

    def ready(self) -> bool:
        """True when a part seen now would get a model verdict before its gate deadline."""
        if not self._started or self._stop.is_set() or self.paused or not self.camera["connected"]:
            return False
        with self._buffer_cv:
            waiting = len(self._buffer)
        if self.gate_ns is None:
            return waiting < self.config.queue_size
        rounds = math.ceil((waiting + 1) / self.n_workers)
        return rounds * self._service_ns + self.margin_ns < self.gate_ns

    @property
    def model(self) -> dict[str, Any]:
        """The active recipe's model report: file, sha256, precision, providers, self-test (cheap)."""
        active = self._active
        return {"sha256": active.sha256, **active.model}

    def add_sink(self, sink: Sink) -> None:
        """Add a sink (before `start()` for it to see every verdict)."""
        self.sinks.append(sink)

    def stats(self) -> dict[str, Any]:
        """Plain JSON-able counters, rates, latencies, alarms and state (see the module docstring)."""
        out = self._stats.snapshot([s.name for s in self.sinks])
        with self._buffer_cv:
            queued = len(self._buffer)
        with self._pending_lock:
            pending = len(self._pending)
        active = self._active
        if active.alarm is not None:
            out["alarms"].append({"name": "model_fallback", "message": active.alarm})
        out.update(
            ledger=self.ledger.snapshot(),
            camera=dict(self.camera),
            mode=self.mode,
            trigger_mode=self.trigger_config.mode,
            workers=self.n_workers,
            queue={"frames": queued, "size": self.config.queue_size, "triggers_pending": pending},
            recipe=active.name,
            thresholds_version=active.thresholds.get().version,
            model_sha256=active.sha256,
            model={"sha256": active.sha256, **active.model},
            paused=self.paused,
            ready=self.ready(),
            running=self._started and not self._done.is_set(),
        )
        return out

    def stop(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stop capturing; with `drain`, finish the parts in flight (up to `timeout`, default
        `config.drain_timeout_s`); whatever is left then fails safe. Returns True when every part got a verdict
        and every sink was closed in time."""
        if not self._stop.is_set():
            self._stop_at = time.monotonic()
        self._stop.set()
        if not self._started:
            self._done.set()
            return True
        if not drain:
            self._flush_all("line stopped without draining")
        return self.wait(self.config.drain_timeout_s + 5.0 if timeout is None else timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pipeline has finished (a finite source ended, or `stop()`); True when it has."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -------------------------------------------------------------------------------------------- capture
    def _capture_loop(self) -> None:
        try:
            self._capture()
        except Exception:  # a bug here must not leave parts without verdicts: drain and say so
            log.exception("capture thread failed")
            self._stats.set_alarm("capture", "capture thread failed; see the log")
        finally:
            try:
                self.source.close()
            except Exception:
                log.exception("closing %s failed", self.camera["description"])
            self.camera["connected"] = False
            self._stop.set()  # no new parts from here on (a trigger now fails safe at once)
            self._capture_done.set()
            with self._buffer_cv:
                self._buffer_cv.notify_all()

    def _open_source(self) -> bool:
        """Open (or reopen) the source, waiting with back-off between attempts; False when stopping."""
        while not self._stop.is_set():
            try:
                self.source.open()
            except SourceError as exc:
                self.camera["open_failures"] += 1
                delay = self._backoff.next_delay()
                self._stats.set_alarm("camera", f"cannot open camera: {exc}; retrying in {delay:.1f} s")
                self._log_every("open", 10.0, logging.WARNING, "cannot open %s: %s", self.camera["description"], exc)
                self._stop.wait(delay)
                continue
            self._backoff.reset()
            self.camera["connected"] = True
            self._stats.clear_alarm("camera")
            return True
        return False

    def _capture(self) -> None:
        first = True
        while not self._stop.is_set():
            if not self.camera["connected"]:
                if not first:
                    # Lost earlier: wait before reopening so a flapping camera does not spin.
                    self._stop.wait(self._backoff.next_delay())
                if not self._open_source():
                    return
                if not first:
                    self.camera["reconnects"] += 1
                    log.info("reopened %s", self.camera["description"])
                first = False
            try:
                item = self.source.read()
            except SourceError as exc:
                self.camera["connected"] = False
                self.camera["lost"] += 1
                self._stats.set_alarm("camera", f"camera lost: {exc}; reopening")
                log.warning("lost %s: %s", self.camera["description"], exc)
                try:
                    self.source.close()
                except Exception:
                    log.exception("closing %s failed", self.camera["description"])
                continue
            captured_ns = time.monotonic_ns()
            if item is None:
                log.info("%s ended", self.camera["description"])
                return
            self._on_frame(item[0], item[1], captured_ns)

    def _on_frame(self, image: np.ndarray, truth: Any, captured_ns: int) -> None:
        if self.paused or self._stop.is_set():
            self.ledger.count_frame(dropped=False)
            return
        if self.trigger_config.mode == "triggered":
            part = None
            with self._pending_lock:
                while self._pending:
                    candidate = self._pending.popleft()
                    if candidate.seen_ns < captured_ns and self.ledger.is_open(candidate.seq):
                        part = candidate
                        break
                    if candidate.seen_ns >= captured_ns:  # triggered after this frame: wait for the next one
                        self._pending.appendleft(candidate)
                        break
            if part is None:
                self.ledger.count_frame(dropped=False)
                return
        else:
            self._free_run_id += 1
            part = self.ledger.open_part(self._free_run_id, captured_ns, self.gate_ns)
            self._watch(part)
        part.frame = Frame(image, part.part_id, self.camera_id, captured_ns, part.deadline_ns, truth)
        self._enqueue(part)

    def _enqueue(self, part: _Part) -> None:
        dropped: _Part | None = None
        with self._buffer_cv:
            if self.wait_when_full:
                while len(self._buffer) >= self.config.queue_size and not self._stop.is_set():
                    self._buffer_cv.wait(_IDLE_POLL_S)
            else:
                while len(self._buffer) >= self.config.queue_size:
                    oldest = self._buffer.popleft()
                    if self.ledger.is_open(oldest.seq):  # else the watchdog already answered for it
                        dropped = oldest
                        break
            self._buffer.append(part)
            self._buffer_cv.notify()
        if dropped is not None:
            self.ledger.count_frame(dropped=True)
            self._fail(dropped, "uninspected", why="inference cannot keep up (buffer full)")

    # ------------------------------------------------------------------------------------------ inference
    def _take(self, limit: int) -> list[_Part] | None:
        """Up to `limit` waiting parts, sharing them among idle workers; None when there will be no more."""
        with self._buffer_cv:
            self._idle_workers += 1
            try:
                while not self._buffer:
                    if self._capture_done.is_set():
                        return None
                    self._buffer_cv.wait(_IDLE_POLL_S)
                share = math.ceil(len(self._buffer) / max(self._idle_workers, 1))
                n = max(1, min(limit, share))
                parts = [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]
                self._buffer_cv.notify_all()  # room for a waiting capture thread
                return parts
            finally:
                self._idle_workers -= 1

    def _worker_loop(self, index: int) -> None:
        limit = self.config.max_batch if self.mode == "throughput" else 1
        while True:
            parts = self._take(limit)
            if parts is None:
                return
            try:
                self._work(index, parts)
            except Exception as exc:  # a bug must not kill the worker nor leave its parts without verdicts
                log.exception("inference worker %d failed", index)
                self._stats.set_alarm("inference", f"worker failed: {exc!r}")
                for part in parts:
                    self._fail(part, "error")

    def _work(self, index: int, parts: list[_Part]) -> None:
        now = time.monotonic_ns()
        live = []
        for part in parts:
            part.dequeued_ns = now
            if not self.ledger.is_open(part.seq):
                continue  # already failed safe by the watchdog
            if part.deadline_ns is not None and now + self._service_ns > part.deadline_ns - self.margin_ns:
                self._fail(part, "uninspected", why="cannot be inspected before its deadline")
                continue
            live.append(part)
        if live:
            self._inspect(index, live)

    def _inspect(self, index: int, parts: list[_Part]) -> None:
        recipe = self._active  # one read per batch: a recipe switch lands between parts, never inside one
        detector = recipe.detectors[index % len(recipe.detectors)]
        frames = [p.frame for p in parts if p.frame is not None]
        start = time.monotonic_ns()
        try:
            batch = min(len(frames), max(1, detector.max_batch))
            results: list[tuple[Detections, int, int]] = []
            for i in range(0, len(frames), batch):  # a model with a fixed batch of 1 takes them one by one
                chunk = [f.image for f in frames[i : i + batch]]
                prepared = detector.preprocess(chunk)
                t_pre = time.monotonic_ns()
                try:
                    raw = detector.infer(prepared)
                except BaseException:
                    release = getattr(prepared, "release", None)  # hand the input buffer back to its pool
                    if release is not None:
                        release()
                    raise
                t_inf = time.monotonic_ns()
                dets = detector.postprocess(raw, prepared, conf=self.conf, iou=self.iou)
                if len(dets) != len(chunk):
                    raise RuntimeError(f"detector returned {len(dets)} results for {len(chunk)} images")
                results += [(d, t_pre, t_inf) for d in dets]
        except Exception as exc:
            self._log_every("inspect", 5.0, logging.ERROR, "inspection failed: %r", exc, exc_info=True)
            self._stats.set_alarm("inference", f"inspection failed: {exc!r}")
            for part in parts:
                self._fail(part, "error", recipe=recipe, why=None)
            return
        self._stats.clear_alarm("inference")
        names = recipe.names
        for part, (dets, t_pre, t_inf) in zip(parts, results, strict=True):
            thresholds = recipe.thresholds.get()  # one read per part: never half an update
            verdict = decide(dets, thresholds, names, part.part_id)
            self._finish(part, verdict, recipe)
            verdict.timings = Timings(part.frame.captured_ns, t_pre, t_inf, time.monotonic_ns())
            if self.ledger.close(part.seq, verdict):
                self._emit(verdict, part.dequeued_ns)
        per_part = (time.monotonic_ns() - start) / max(len(parts), 1)
        # Per-part service time as a worker sees it; a batch of k costs about k parts (EMA, weight 1/8).
        self._service_ns = per_part if self._service_ns == 0 else 0.875 * self._service_ns + 0.125 * per_part

    def _finish(self, part: _Part, verdict: Verdict, recipe: Recipe) -> None:
        """Fill in what every verdict carries besides the decision."""
        verdict.part_id = part.part_id
        verdict.seq = part.seq
        verdict.camera_id = self.camera_id
        verdict.deadline_ns = part.deadline_ns
        verdict.recipe = recipe.name
        verdict.model_sha256 = recipe.sha256
        verdict.names = recipe.names  # whoever writes the verdict out names its defects as this recipe's model does
        if part.frame is not None:
            verdict.truth = part.frame.truth
            if self.config.keep_images:
                verdict.image = part.frame.image

    def _fail(self, part: _Part, reason: str, recipe: Recipe | None = None, why: str | None = None) -> None:
        """Close `part` with a fail-safe verdict (`uninspected` or `error`) unless it was already decided."""
        recipe = recipe or self._active
        thresholds = recipe.thresholds.get()
        decision = self.config.failsafe_decision if reason == "uninspected" else thresholds.on_error
        verdict = Verdict(part.part_id, Decision(decision), [reason], thresholds_version=thresholds.version)
        self._finish(part, verdict, recipe)
        now = time.monotonic_ns()
        verdict.timings = Timings(captured_ns=part.frame.captured_ns if part.frame else part.seen_ns, decided_ns=now)
        if self.ledger.close(part.seq, verdict, count_late=False):
            if why and reason == "uninspected":
                self._stats.set_alarm("overload", f"parts failing safe: {why}")
                self._last_failsafe_ns = now
                self._log_every("failsafe", 5.0, logging.WARNING, "part %s fails safe: %s", part.part_id, why)
            self._emit(verdict, part.dequeued_ns)

    # ------------------------------------------------------------------------------------------- watchdog
    def _watch(self, part: _Part) -> None:
        if part.deadline_ns is None:
            return
        with self._watch_cv:
            heapq.heappush(self._deadlines, (part.deadline_ns - self.margin_ns, part.seq, part))
            if self._deadlines[0][1] == part.seq:
                self._watch_cv.notify()

    def _watchdog_loop(self) -> None:
        """Fail safe any part still undecided `margin_ms` before its deadline, so the PLC gets an answer in time."""
        while not self._done.is_set():
            expired: list[_Part] = []
            with self._watch_cv:
                now = time.monotonic_ns()
                while self._deadlines and self._deadlines[0][0] <= now:
                    expired.append(heapq.heappop(self._deadlines)[2])
                if not expired:
                    wait = (self._deadlines[0][0] - now) / 1e9 if self._deadlines else _IDLE_POLL_S
                    self._watch_cv.wait(min(wait, _IDLE_POLL_S))
            for part in expired:
                if self.ledger.is_open(part.seq):
                    self._fail(part, "uninspected", why="not decided before its gate deadline")
            if self._stats_overload_stale():
                self._stats.clear_alarm("overload")

    def _stats_overload_stale(self) -> bool:
        return bool(self._last_failsafe_ns) and time.monotonic_ns() - self._last_failsafe_ns > 10e9

    # ------------------------------------------------------------------------------------------- dispatch
    def _emit(self, verdict: Verdict, dequeued_ns: int) -> None:
        with self._dispatch_cv:
            while len(self._dispatch) >= self.config.dispatch_queue_size and not self._done.is_set():
                self._dispatch_cv.wait(_IDLE_POLL_S)  # sinks behind: wait, never drop
            self._dispatch.append((verdict, dequeued_ns))
            self._dispatch_cv.notify_all()

    def _dispatch_loop(self) -> None:
        while True:
            with self._dispatch_cv:
                while not self._dispatch:
                    if self._workers_done.is_set():
                        return
                    self._dispatch_cv.wait(_IDLE_POLL_S)
                verdict, dequeued_ns = self._dispatch.popleft()
                self._dispatch_cv.notify_all()
            self._stats.record(verdict, dequeued_ns)
            for sink in self.sinks:
                try:
                    sink.handle(verdict)
                except Exception as exc:
                    self._stats.sink_error(sink.name)
                    self._stats.set_alarm(f"sink:{sink.name}", f"sink {sink.name} failed: {exc!r}")
                    self._log_every(f"sink:{sink.name}", 5.0, logging.ERROR, "sink %s failed: %r", sink.name, exc)

    # --------------------------------------------------------------------------------------- stop & drain
    def _supervise(self) -> None:
        """Wait for capture and workers to finish, fail safe what is left, then flush the sinks and close them."""
        while not self._capture_done.wait(_IDLE_POLL_S):
            if self._stop_at and time.monotonic() - self._stop_at > self.config.drain_timeout_s:
                # A camera read that never returns must not hold the line open; frames it may still deliver
                # are ignored (stop is set), so no part is made after the drain.
                log.error("the capture thread did not stop (camera read blocked?); draining without it")
                self._capture_done.set()
                break
        self._fail_pending("line stopped before the part's frame arrived")
        deadline = time.monotonic() + self.config.drain_timeout_s
        workers = [t for t in self._threads if "-infer-" in t.name]
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in workers):
            log.error("inference did not finish within %.1f s; failing the rest safe", self.config.drain_timeout_s)
        self._flush_all("not inspected before the line stopped")
        self._workers_done.set()
        with self._dispatch_cv:
            self._dispatch_cv.notify_all()
        dispatch = next(t for t in self._threads if t.name.endswith("-dispatch"))
        dispatch.join()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", sink.name)
        self._done.set()
        with self._watch_cv:
            self._watch_cv.notify_all()

    def _fail_pending(self, why: str) -> None:
        with self._pending_lock:
            pending, self._pending = list(self._pending), deque()
        for part in pending:
            self._fail(part, "uninspected", why=why)

    def _flush_all(self, why: str) -> None:
        """Fail safe every part still open (buffered, pending, or stuck in a worker)."""
        with self._buffer_cv:
            self._buffer.clear()
            self._buffer_cv.notify_all()
        self._fail_pending(why)
        with self.ledger.lock:
            left = list(self.ledger.open.values())
        for part in left:
            self._fail(part, "uninspected", why=why)

    def _log_every(self, key: str, period_s: float, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log at most once per `period_s` per key (a dead camera or a failing sink must not flood the log)."""
        now = time.monotonic()
        if now - self._log_times.get(key, -math.inf) >= period_s:
            self._log_times[key] = now
            log.log(level, msg, *args, **kwargs)
