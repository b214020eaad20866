"""How parts flow through the line: the trigger and the pipeline (speed trade-off, gate deadline, fail-safe)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inspector.config.section import Section
from inspector.types import Decision

__all__ = ["PipelineConfig", "TriggerConfig"]


class TriggerConfig(Section):
    mode: Literal["free-run", "triggered"] = "free-run"
    max_pending: int = Field(64, ge=1, description="triggers waiting for a frame before the oldest fails safe")


class PipelineConfig(Section):
    """How parts flow: the speed trade-off, the buffer, the reject gate's deadline and the fail-safe."""

    mode: Literal["throughput", "latency"] = Field(
        "latency",
        description="latency: one session on all cores, one part at a time (lowest capture-to-decision time); "
        "throughput: parallel single-thread sessions, waiting parts batched (most parts per second)",
    )
    queue_size: int = Field(8, ge=1, description="frames waiting for inference before the oldest fails safe")
    max_batch: int = Field(
        1,
        ge=1,
        description="largest batch of waiting parts in one run (throughput mode); batches did not help the "
        "parallel single-thread sessions on the 2-core CPU box (bench/pipeline-results.md), they may on a GPU",
    )
    gate_ms: float | None = Field(
        2000.0, gt=0, description="capture to reject gate, in ms: a part not decided by then fails safe"
    )
    margin_ms: float = Field(
        20.0,
        ge=0,
        description="answer this long before the gate deadline (time to publish); the watchdog fails "
        "an undecided part safe then",
    )
    failsafe_decision: Decision = Field(Decision.REJECT, description="decision for an uninspected part")
    drain_timeout_s: float = Field(10.0, gt=0, description="on stop: longest wait for parts in flight")
    dispatch_queue_size: int = Field(
        256, ge=1, description="verdicts waiting for the sinks; when full, inference waits (nothing is dropped)"
    )
    keep_images: bool = Field(True, description="pass each frame's image to the sinks on its verdict (the store)")
    preload_recipes: bool = Field(
        True,
        description="load every recipe's model at start, so that a changeover (cmd/recipe, the dashboard) loads "
        "no model and takes milliseconds; false: a recipe loads on its first switch (seconds, at the cost of memory "
        "saved)",
    )
