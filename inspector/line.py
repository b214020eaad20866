"""Build a line's pipeline from a `LineConfig`: source, detectors (one per inference session), recipes, sinks.
`inspector run` and the demo use it (through `inspector.service`); the MQTT link, the store and the dashboard plug
in as sinks of the pipeline and as its readers. `JsonlSink` writes verdicts as JSON lines.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import IO, Any, Literal

import cv2

from inspector.config import LineConfig, ModelConfig, ReferenceConfig
from inspector.part_ids import PartIds
from inspector.pipeline import Pipeline, Recipe, Sink
from inspector.plc.contract import verdict_payload
from inspector.registration import Limits, Registrar
from inspector.sources import open_source
from inspector.thresholds import LineThresholds, ThresholdsHolder
from inspector.types import FrameSource, Thresholds, Verdict

__all__ = ["JsonlSink", "build_line", "cpu_cores", "load_recipe", "load_reference", "session_plan"]

log = logging.getLogger(__name__)


def cpu_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_plan(
    mode: Literal["latency", "throughput"], model: ModelConfig, cores: int | None = None
) -> tuple[int, int]:
    """(sessions, intra-op threads per session) for a pipeline mode; explicit `model.sessions` / `model.threads`
    win over the automatic choice.

    latency: one session, onnxruntime's default threads (all physical cores work on each frame: the shortest
    time per frame). throughput: one single-thread session per core, run in parallel (measured faster in
    total than one session over all cores on the 2-core edge box: DESIGN.md, bench/pipeline-results.md).
    """
    cores = cores or cpu_cores()
    if mode == "latency":
        return model.sessions or 1, model.threads
    sessions = model.sessions or cores
    return sessions, model.threads or max(1, cores // sessions)


def load_reference(name: str, reference: ReferenceConfig) -> Registrar | None:
    """Recipe `name`'s golden reference, ready to register frames to (None: the recipe has none). Raises
    `inspector.detector.ModelError` naming the image when it cannot be read or has nothing to register against."""
    from inspector.detector import ModelError

    if reference.image is None:
        return None
    image = cv2.imread(str(reference.image), cv2.IMREAD_COLOR)
    if image is None:
        raise ModelError(f"recipe {name}: reference.image {reference.image}: missing or not an image")
    limits = Limits(
        reference.min_correlation, reference.max_shift_px, reference.max_angle_deg, reference.max_scale_change
    )
    try:
        return Registrar(image, model=reference.motion, limits=limits)
    except ValueError as exc:
        raise ModelError(f"recipe {name}: reference.image {reference.image}: {exc}") from exc


def load_recipe(
    name: str,
    model: ModelConfig,
    thresholds: Thresholds | ThresholdsHolder,
    mode: Literal["latency", "throughput"],
    max_batch: int = 1,
    sessions: int | None = None,
    reference: ReferenceConfig | None = None,
    reference_supplied: bool = False,
) -> Recipe:
    """Load a recipe's model as `sessions` detectors (each its own onnxruntime session) with its thresholds and
    its golden reference (`reference.image`, optional).

    The first session self-tests the file on this host before any part sees it (`inspector.selftest`); a file
    that fails is replaced by `model.fallback` (self-tested too, and reported as the recipe's alarm), or the load
    fails with `SelfTestError` naming the file, the CPU's instruction sets, onnxruntime and the provider.
    A reference model without a reference image, or a plain model with one, fails with `ModelError`.
    reference_supplied: the caller gives the reference another way (frames that are composites already, or its own
    `Recipe.reference` set after loading, as `inspector bench` does): the model must be a reference model.
    """
    from inspector.detector import load_detector  # onnxruntime loads here, not at import
    from inspector.selftest import checked_detector

    registrar = load_reference(name, reference or ReferenceConfig())
    planned, threads = session_plan(mode, model)
    count = sessions or planned
    batch = max_batch if mode == "throughput" else 1
    fallback_cfg = model.model_copy(update={"path": model.fallback, "fallback": None}) if model.fallback else None
    kwargs: dict[str, Any] = {
        "threads": threads,
        "max_batch": batch,
        "reference": registrar is not None or reference_supplied,
    }
    first, selftest, alarm = checked_detector(
        lambda: load_detector(model, **kwargs),
        (lambda: load_detector(fallback_cfg, **kwargs)) if fallback_cfg else None,
    )
    chosen = fallback_cfg if alarm is not None and fallback_cfg is not None else model
    detectors = [first] + [load_detector(chosen, **kwargs) for _ in range(count - 1)]
    if alarm is not None:
        log.error("recipe %s: %s", name, alarm)
    log.info(
        "recipe %s: %s (%s, %s), %d session(s) x %s thread(s), batch <= %d; self-test %s",
        name,
        first.path,
        first.precision,
        first.providers[0],
        count,
        threads or "auto",
        first.max_batch,
        selftest.status,
    )
    report = {
        "file": first.path.name,
        "path": str(first.path),
        "precision": first.precision,
        "provider": first.providers[0],
        "providers": first.providers,
        "requested_providers": first.requested_providers,
        "provider_fallback": first.providers[0] != first.requested_providers[0],
        "selftest": selftest.to_dict(),
        "fallback": alarm is not None,
        "input": first.input_kind,
    }
    if reference is not None and reference.image is not None:
        report["reference"] = {"image": str(reference.image), "motion": reference.motion}
    holder = thresholds if isinstance(thresholds, ThresholdsHolder) else ThresholdsHolder(thresholds)
    return Recipe(name, list(detectors), holder, model=report, alarm=alarm, reference=registrar)


class JsonlSink:
    """Writes one JSON line per verdict to a text stream: the MQTT `verdict` message's part (id, seq, run), decision,
    reasons, defects (named by the verdict's recipe), thresholds version, recipe and latency."""

    name = "jsonl"
    fields = (
        "part_id",
        "seq",
        "run",
        "camera",
        "decision",
        "reasons",
        "defects",
        "thresholds_version",
        "recipe",
        "latency_ms",
    )

    def __init__(self, stream: IO[str], close_stream: bool = False) -> None:
        self.stream = stream
        self.close_stream = close_stream
        self._lock = threading.Lock()

    def handle(self, verdict: Verdict) -> None:
        message = verdict_payload(verdict.to_record(), line="")
        line = json.dumps({name: message[name] for name in self.fields})
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.close_stream:
            self.stream.close()


def build_line(
    config: LineConfig,
    *,
    sinks: Sequence[Sink] = (),
    source: FrameSource | None = None,
    thresholds: LineThresholds | None = None,
    ids: PartIds | None = None,
) -> Pipeline:
    """Load the recipes' models, open nothing yet (the pipeline's capture thread opens the camera), and return the
    line's pipeline ready to `start()`. With `pipeline.preload_recipes` every recipe loads now, else the active one
    only and the others on their first `set_recipe`. Recipes with the same model settings share its sessions.

    sinks: where verdicts go, in order. source: overrides the camera config (tests, benchmarks).
    thresholds: every recipe's thresholds holder (the service's, restored from the store); default: the config's.
    ids: the part numbers (the service's, kept in the store across restarts); default: counting from 1.
    Raises `inspector.detector.ModelError` when the model or its reference cannot be loaded, or they do not fit.
    """
    pc = config.pipeline
    models: dict[str, ModelConfig] = {"default": config.model, **{n: r.model for n, r in config.recipes.items()}}
    references = {"default": config.reference, **{n: r.reference for n, r in config.recipes.items()}}
    gates = {n: r.gate_ms for n, r in config.recipes.items()}
    holders = thresholds or LineThresholds.from_config(config)
    sessions, _ = session_plan(pc.mode, config.model)
    loaded: dict[str, Recipe] = {}  # by model settings: two recipes of one model share its sessions

    def loader(name: str) -> Recipe:
        # Every recipe gets the line's session count: the pipeline's workers are fixed at start.
        key = models[name].model_dump_json() + references[name].model_dump_json()
        if key not in loaded:
            loaded[key] = load_recipe(
                name,
                models[name],
                holders.holder(name),
                pc.mode,
                pc.max_batch,
                sessions=sessions,
                reference=references[name],
            )
        same = loaded[key]
        return Recipe(
            name,
            same.detectors,
            holders.holder(name),
            model=same.model,
            alarm=same.alarm,
            reference=same.reference,
            gate_ms=gates.get(name),
        )

    active = loader(config.recipe)
    return Pipeline(
        source or open_source(config.camera),
        {config.recipe: active},
        config=pc,
        trigger=config.trigger,
        recipe=config.recipe,
        sinks=sinks,
        camera_id=config.camera.id,
        reconnect=(config.camera.reconnect_initial_s, config.camera.reconnect_max_s),
        recipe_loader=loader,
        recipe_names=list(models),
        ids=ids,
    )
