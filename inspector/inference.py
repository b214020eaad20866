"""The inference workers: take waiting parts, run the detector on them (`detect_batch`), decide each part.

Each worker owns one detector (onnxruntime releases the GIL in `run`, so workers overlap capture, pre- and
postprocessing and inference). A part that can no longer make its deadline fails safe before it is inspected;
a failed inspection fails its parts safe with `error`. When the recipe has a golden reference, each frame is
first registered to it (`register_batch`; the `register` stage) and the detector gets the composite of the frame and
the registered reference; a frame that does not register fails safe with `unregistered`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from inspector.config import PipelineConfig
from inspector.decide import decide
from inspector.ledger import Ledger, Part, stamp
from inspector.part_buffer import PartBuffer
from inspector.protocols import Detector, FrameRegistrar, Recipe
from inspector.reference import reference_composite
from inspector.registration import Unregistered
from inspector.stats import Stats
from inspector.throttled_log import ThrottledLog
from inspector.types import Detections, Timings, Verdict

__all__ = ["Inference", "detect_batch", "register_batch"]

log = logging.getLogger("inspector.pipeline")  # one logger for the whole line


def detect_batch(
    detector: Detector, images: Sequence[np.ndarray], conf: float | None, iou: float | None
) -> list[tuple[Detections, int, int]]:
    """Detections for each image, with the monotonic ns at which its preprocess and inference ended.

    Images go through in batches of at most `detector.max_batch` (a model with a fixed batch of 1 takes them
    one by one). Raises whatever the detector raises, and RuntimeError on a wrong count of results.
    """
    batch = min(len(images), max(1, detector.max_batch))
    results: list[tuple[Detections, int, int]] = []
    for i in range(0, len(images), batch):
        chunk = list(images[i : i + batch])
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
        dets = detector.postprocess(raw, prepared, conf=conf, iou=iou)
        if len(dets) != len(chunk):
            raise RuntimeError(f"detector returned {len(dets)} results for {len(chunk)} images")
        results += [(d, t_pre, t_inf) for d in dets]
    return results


def register_batch(reference: FrameRegistrar, images: Sequence[np.ndarray]) -> list[np.ndarray | Unregistered]:
    """Each image's detector input: the composite of the image and the reference registered to it, or why the
    image did not register."""
    out: list[np.ndarray | Unregistered] = []
    for image in images:
        result = reference.register(image)
        out.append(reference_composite(result.frame, result.reference) if result.ok else result)
    return out


class Inference:
    """The inference workers' loop (`run(index)`, one thread each) and the per-part service time they measure.

    active: the active recipe, for a part not bound to one at capture (each part is decided with the recipe it
        was captured under, so a recipe switch lands between parts, never inside one);
    ended: set when capture has ended (a worker returns once the buffer is empty); fail: closes a part fail-safe;
    emit: hands a verdict to the dispatch thread.
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        camera_id: str,
        throughput: bool,
        conf: float | None,
        iou: float | None,
        margin_ns: int,
        buffer: PartBuffer,
        ledger: Ledger,
        stats: Stats,
        log_every: ThrottledLog,
        active: Callable[[], Recipe],
        ended: threading.Event,
        fail: Callable[..., None],
        emit: Callable[[Verdict, int], None],
    ) -> None:
        self.config = config
        self.camera_id = camera_id
        self.limit = config.max_batch if throughput else 1
        self.conf, self.iou = conf, iou
        self.margin_ns = margin_ns
        self._buffer = buffer
        self._ledger = ledger
        self._stats = stats
        self._log_every = log_every
        self._active = active
        self._ended = ended
        self._fail = fail
        self._emit = emit
        # Processing time per part (EMA, ns) for `Pipeline.ready()` and the "can it still make its deadline" check.
        self.service_ns = 0.0

    def run(self, index: int) -> None:
        """Inference worker `index` (it uses detector `index` of the active recipe)."""
        while True:
            parts = self._buffer.take(self.limit, self._ended)
            if parts is None:
                return
            try:
                self._work(index, parts)
            except Exception as exc:  # a bug must not kill the worker nor leave its parts without verdicts
                log.exception("inference worker %d failed", index)
                self._stats.set_alarm("inference", f"worker failed: {exc!r}")
                for part in parts:
                    self._fail(part, "error")

    def _work(self, index: int, parts: list[Part]) -> None:
        now = time.monotonic_ns()
        live = []
        for part in parts:
            part.dequeued_ns = now
            if not self._ledger.is_open(part.seq):
                continue  # already failed safe by the watchdog
            if part.deadline_ns is not None and now + self.service_ns > part.deadline_ns - self.margin_ns:
                self._fail(part, "uninspected", why="cannot be inspected before its deadline")
                continue
            live.append(part)
        # A batch that spans a changeover is inspected in runs of one recipe each, in capture order.
        for _, run in itertools.groupby(live, key=lambda p: id(p.recipe)):
            parts_of_run = list(run)
            self._inspect(index, parts_of_run[0].recipe or self._active(), parts_of_run)

    def _inspect(self, index: int, recipe: Recipe, parts: list[Part]) -> None:
        detector = recipe.detectors[index % len(recipe.detectors)]
        start = time.monotonic_ns()
        images = [p.frame.image for p in parts if p.frame is not None]
        t_reg = 0
        if recipe.reference is not None:
            parts, images = self._registered(recipe, parts, images)
            t_reg = time.monotonic_ns()
            if not parts:
                return
        try:
            results = detect_batch(detector, images, self.conf, self.iou)
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
            stamp(verdict, part, recipe, self.camera_id, self.config.keep_images)
            verdict.timings = Timings(part.frame.captured_ns, t_pre, t_inf, time.monotonic_ns(), registered_ns=t_reg)
            if self._ledger.close(part.seq, verdict):
                self._emit(verdict, part.dequeued_ns)
        self._account(start, len(parts))

    def _registered(
        self, recipe: Recipe, parts: list[Part], images: list[np.ndarray]
    ) -> tuple[list[Part], list[np.ndarray]]:
        """The parts whose frames registered to the recipe's reference, with their composites; the others fail
        safe (`unregistered`)."""
        assert recipe.reference is not None
        kept: list[tuple[Part, np.ndarray]] = []
        for part, result in zip(parts, register_batch(recipe.reference, images), strict=True):
            if isinstance(result, Unregistered):
                self._fail(part, "unregistered", recipe=recipe, why=f"{result.reason}: {result.detail}")
            else:
                kept.append((part, result))
        return [p for p, _ in kept], [c for _, c in kept]

    def _account(self, start: int, n: int) -> None:
        per_part = (time.monotonic_ns() - start) / max(n, 1)
        # Per-part service time as a worker sees it; a batch of k costs about k parts (EMA, weight 1/8).
        self.service_ns = per_part if self.service_ns == 0 else 0.875 * self.service_ns + 0.125 * per_part
