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

Layout, in the order a frame moves: `capture` (source, reconnect, parts) -> `part_buffer` -> `inference`
(`detect_batch`, decide) -> `dispatch` (sinks); beside them `ledger` (part records, pending triggers), `watchdog`
(deadlines, fail-safe verdicts), `recipe_book` (recipes by name, loading), `changeover` (switching: each part is
decided with the recipe it was captured under), `protocols` (`Detector`, `Sink`, `Recipe`) and `throttled_log`.
This module wires them together and holds the control API.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from inspector.camera_watch import CameraListener
from inspector.capture import Capture
from inspector.changeover import Changeover, Switch
from inspector.config import PipelineConfig, TriggerConfig
from inspector.dispatch import Dispatcher
from inspector.inference import Inference
from inspector.ledger import IDLE_POLL_S, Ledger, PendingTriggers
from inspector.part_buffer import PartBuffer
from inspector.part_ids import PartIds
from inspector.protocols import Detector, Recipe, Sink
from inspector.recipe_book import RecipeBook
from inspector.sources import software_trigger
from inspector.stats import Stats
from inspector.thresholds import ThresholdsHolder
from inspector.throttled_log import ThrottledLog
from inspector.types import FrameSource, SourceError
from inspector.watchdog import Watchdog

__all__ = ["Detector", "Ledger", "Pipeline", "Recipe", "Sink"]

log = logging.getLogger(__name__)


class Pipeline:
    """One camera's line. Build it, `start()`, and `stop()` (drains) or let a finite source end (`wait()`).

    source: opened (and reopened with back-off when lost) by the capture thread.
    recipes: the products; `recipe` names the active one. `recipe_loader(name)` builds a recipe on demand
    for names in `recipe_names` that are not in `recipes` yet (loading models takes seconds; it happens in the
    caller of `set_recipe`, the line keeps running meanwhile); with `config.preload_recipes` they all load here.
    Each inference worker uses `detectors[i]` of the active recipe; `workers` defaults to the count of the
    active recipe's detectors in throughput mode and to 1 in latency mode.
    wait_when_full: when the buffer is full, make the capture thread wait instead of failing the oldest part safe;
    default: wait for sources that say they are not live (`source.live is False`: folders, files, memory).
    conf / iou: passed to the detector's postprocess (None: its own). stats_window: parts in the latency window.
    ids: the part numbers (`seq`, free-run part ids) and `run`; the service passes the store's, which never hands
    out a number twice across restarts (`inspector.part_ids`); default: counting from 1. Its owner closes it.
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
        ids: PartIds | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self._recipes = RecipeBook(recipes, recipe, recipe_loader, recipe_names)
        if self.config.preload_recipes:
            self._recipes.preload()  # a switch then loads no model: it takes milliseconds, not a model load
        self.changeover = Changeover(self._recipes)
        self.trigger_config = trigger or TriggerConfig()
        self.source = source
        self.camera_id = camera_id
        self.sinks: list[Sink] = list(sinks)
        self.mode = self.config.mode
        self.conf, self.iou = conf, iou
        n_det = len(self._recipes.active.detectors)
        self.n_workers = workers or (n_det if self.mode == "throughput" else 1)
        # A live camera's surplus must fail safe (the part moves on); a finite, unpaced source (folder, file,
        # benchmark) can simply wait, and losing nothing is then right.
        self.wait_when_full = (not getattr(source, "live", True)) if wait_when_full is None else wait_when_full
        self.gate_ns = int(self.config.gate_ms * 1e6) if self.config.gate_ms else None  # the line's; a recipe's wins
        self.margin_ns = int(self.config.margin_ms * 1e6)
        self._stop_at = 0.0  # time.monotonic() of the first stop() call

        self._paused = threading.Event()
        self._stop = threading.Event()  # stop capturing
        self._workers_done = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

        self.ledger = Ledger(ids)
        self._stats = Stats(window=stats_window)
        log_every = ThrottledLog(log)
        active = lambda: self._recipes.active  # noqa: E731 - read where used: a switch lands between parts
        # Verdicts on their way to the sinks; deadlines and fail-safe; the bounded buffer between capture and
        # inference, and the triggers waiting for a frame.
        self._dispatch = Dispatcher(
            self.sinks, self.config.dispatch_queue_size, self._stats, log_every, self._done, self._workers_done
        )
        self._watchdog = Watchdog(
            self.config, camera_id, self.ledger, self._stats, log_every, active, self._dispatch.emit, self._done
        )
        self._buffer = PartBuffer(self.config.queue_size, self.ledger, self.wait_when_full, self._stop)
        self._pending = PendingTriggers(self.trigger_config.max_pending)
        self._capture = Capture(
            source,
            camera_id=camera_id,
            triggered=self.trigger_config.mode == "triggered",
            active=active,
            gate_ns=self._gate_ns,
            reconnect=reconnect,
            ledger=self.ledger,
            pending=self._pending,
            buffer=self._buffer,
            stats=self._stats,
            log_every=log_every,
            watch=self._watchdog.watch,
            fail=self._watchdog.fail,
            stop=self._stop,
            paused=self._paused,
        )
        self.camera: dict[str, Any] = self._capture.camera
        self._inference = Inference(
            self.config,
            camera_id=camera_id,
            throughput=self.mode == "throughput",
            conf=conf,
            iou=iou,
            margin_ns=self.margin_ns,
            buffer=self._buffer,
            ledger=self.ledger,
            stats=self._stats,
            log_every=log_every,
            active=active,
            ended=self._capture.done,
            fail=self._watchdog.fail,
            emit=self._dispatch.emit,
        )

    # ------------------------------------------------------------------------------------------ control API
    @property
    def thresholds(self) -> ThresholdsHolder:
        """The active recipe's thresholds (swap new ones in with `thresholds.swap`)."""
        return self._recipes.active.thresholds

    @property
    def names(self) -> dict[int, str]:
        return self._recipes.active.names

    @property
    def recipe(self) -> str:
        return self._recipes.active.name

    @property
    def recipes(self) -> list[str]:
        """Every recipe this line may run."""
        return self._recipes.names

    def class_names(self, recipe: str) -> dict[int, str] | None:
        """The class names of `recipe`'s model when it is loaded, else None."""
        loaded = self._recipes.loaded(recipe)
        return loaded.names if loaded is not None else None

    @property
    def recipe_loads(self) -> int:
        """Recipes the pipeline has loaded itself (at start with `preload_recipes`, or on a switch); the recipes
        it was given are not counted."""
        return self._recipes.loads

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def start(self) -> None:
        if self._started:
            raise RuntimeError("pipeline already started")
        self._started = True
        targets: list[tuple[str, Callable[[], None]]] = [("capture", self._capture.run)]
        targets += [(f"infer-{i}", lambda i=i: self._inference.run(i)) for i in range(self.n_workers)]
        targets += [("watchdog", self._watchdog.run), ("dispatch", self._dispatch.run)]
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
        part = self.ledger.open_part(int(part_id), time.monotonic_ns(), self._gate_ns(self._recipes.active))
        if self._stop.is_set() or self.paused:
            self._watchdog.fail(part, "uninspected", why="line paused" if self.paused else "line stopping")
            return
        self._watchdog.watch(part)
        overflow = self._pending.add(part)
        if overflow is not None:
            self._watchdog.fail(overflow, "uninspected", why="too many triggers waiting for a frame")
        self._software_trigger()

    def _software_trigger(self) -> None:
        """A camera that takes a frame on command (GenICam `TriggerSoftware`) takes one now; a failure leaves the
        part to fail safe by its deadline (the capture thread sees the lost camera)."""
        fire = software_trigger(self.source)
        if fire is not None:
            try:
                fire()
            except SourceError as exc:
                log.warning("software trigger failed: %s", exc)

    def pause(self) -> None:
        """Stop making parts (frames are still read, so the camera stays fresh); parts in flight finish."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def set_recipe(self, name: str, source: str = "plc") -> Switch:
        """Switch model and thresholds together (`inspector.changeover`); raises KeyError for an unknown recipe.

        Each part is decided with the recipe it was captured under: parts captured before the switch with the old
        recipe, after it with the new one. `source` says who asked (reported with the switch).
        """
        return self.changeover.switch(name, source)

    def _gate_ns(self, recipe: Recipe) -> int | None:
        """A part's capture-to-gate budget under `recipe`: the recipe's own, else the line's."""
        return int(recipe.gate_ms * 1e6) if recipe.gate_ms else self.gate_ns

    def ready(self) -> bool:
        """True when a part seen now would get a model verdict before its gate deadline."""
        if not self._started or self._stop.is_set() or self.paused or not self.camera["connected"]:
            return False
        waiting = len(self._buffer)
        gate_ns = self._gate_ns(self._recipes.active)
        if gate_ns is None:
            return waiting < self.config.queue_size
        rounds = math.ceil((waiting + 1) / self.n_workers)
        return rounds * self._inference.service_ns + self.margin_ns < gate_ns

    @property
    def model(self) -> dict[str, Any]:
        """The active recipe's model report: file, sha256, precision, providers, self-test (cheap)."""
        active = self._recipes.active
        return {"sha256": active.sha256, **active.model}

    def add_camera_listener(self, listener: CameraListener) -> None:
        """Hear of each camera state change (`inspector.camera_watch`): up, lost with the reason, back."""
        self._capture.watch.add_listener(listener)

    def camera_state(self) -> dict[str, Any]:
        """The camera's state, reason and grabber counts (cheap: heartbeats read it)."""
        return self._capture.watch.snapshot()

    def add_sink(self, sink: Sink) -> None:
        """Add a sink (before `start()` for it to see every verdict)."""
        self.sinks.append(sink)

    def stats(self) -> dict[str, Any]:
        """Plain JSON-able counters, rates, latencies, alarms and state (see the module docstring)."""
        out = self._stats.snapshot([s.name for s in self.sinks])
        queued = len(self._buffer)
        pending = len(self._pending)
        active = self._recipes.active
        if active.alarm is not None:
            out["alarms"].append({"name": "model_fallback", "message": active.alarm})
        out.update(
            ledger=self.ledger.snapshot(),
            run=self.ledger.run,
            camera={**self.camera, **self._capture.watch.snapshot()},
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

    # --------------------------------------------------------------------------------------- stop & drain
    def _supervise(self) -> None:
        """Wait for capture and workers to finish, fail safe what is left, then flush the sinks and close them."""
        capture_done = self._capture.done
        while not capture_done.wait(IDLE_POLL_S):
            if self._stop_at and time.monotonic() - self._stop_at > self.config.drain_timeout_s:
                # A camera read that never returns must not hold the line open; frames it may still deliver
                # are ignored (stop is set), so no part is made after the drain.
                log.error("the capture thread did not stop (camera read blocked?); draining without it")
                capture_done.set()
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
        self._dispatch.wake()
        dispatch = next(t for t in self._threads if t.name.endswith("-dispatch"))
        dispatch.join()
        self._dispatch.close_sinks()
        self._done.set()
        self._watchdog.wake()

    def _fail_pending(self, why: str) -> None:
        for part in self._pending.take_all():
            self._watchdog.fail(part, "uninspected", why=why)

    def _flush_all(self, why: str) -> None:
        """Fail safe every part still open (buffered, pending, or stuck in a worker)."""
        self._buffer.clear()
        self._fail_pending(why)
        for part in self.ledger.open_parts():
            self._watchdog.fail(part, "uninspected", why=why)
