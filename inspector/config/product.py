"""What a product is inspected with: the model, its golden reference, class styles, part geometry, and the
recipe that bundles them (`inspector.recipes` reads recipe packages into `RecipeConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from inspector.config.section import Section
from inspector.resources import REFERENCE_MODEL_NAME, find_model
from inspector.types import Thresholds

__all__ = [
    "DEFAULT_MODEL",
    "REFERENCE_MODEL",
    "ClassStyle",
    "ModelConfig",
    "PartGeometry",
    "RecipeConfig",
    "ReferenceConfig",
]

DEFAULT_MODEL = find_model()  # the shipped reference-free model, found on inspector.resources' search path
# The shipped golden-reference model (input: each part beside its registered reference): the PCB recipe's and the
# demo's; a line runs it only with a `reference.image`.
REFERENCE_MODEL = find_model(REFERENCE_MODEL_NAME)


class ModelConfig(Section):
    path: Path = DEFAULT_MODEL
    fallback: Path | None = Field(
        None,
        description="model to run when `path` fails its self-test on this host (e.g. the fp32 file of an int8 "
        "model); it is self-tested too, and running on it raises an alarm. None: a failing model stops the start",
    )
    # pydantic copies a mutable default per instance; ruff cannot see that `Section` is a pydantic model.
    providers: list[Literal["cpu", "cuda", "tensorrt", "openvino"]] = ["cpu"]  # noqa: RUF012
    threads: int = Field(
        0, ge=0, description="intra-op threads per session; 0: auto (latency: all cores, throughput: 1)"
    )
    sessions: int = Field(
        0, ge=0, description="parallel inference sessions; 0: auto (latency: 1, throughput: one per core)"
    )
    spinning: bool = Field(
        False,
        description="let onnxruntime's threads busy-wait between operators (its own default): about 20 % more "
        "frames/s from a multi-thread session on the 2-core box, but a p99 latency several ms longer, because the "
        "spinning threads hold the cores the pipeline's own threads need (bench/pipeline-results.md)",
    )
    conf: float = Field(0.25, ge=0.0, le=1.0, description="detector score floor before the decision rules")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU threshold")
    max_det: int = Field(300, ge=1)
    # Fallbacks for a model without Ultralytics metadata.
    names: dict[int, str] | None = None
    imgsz: tuple[int, int] | None = None
    stride: int | None = None


class ClassStyle(Section):
    """How the dashboard shows one defect class of a recipe: its name (as the model's metadata has it) and colour."""

    name: str = Field(min_length=1)
    colour: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$", description="#rrggbb; none: the palette's")


class PartGeometry(Section):
    """The part as the camera sees it, for the dashboard and the integrator (the model does not read it)."""

    shape: Literal["rectangle", "round", "square", "other"] = "rectangle"
    width_mm: float | None = Field(None, gt=0)
    height_mm: float | None = Field(None, gt=0)
    image_px: tuple[int, int] | None = Field(None, description="(width, height) of the camera image in pixels")


class ReferenceConfig(Section):
    """A product's golden reference (issue 15): each frame is registered to it before the detector, which gets the
    frame and the registered reference together (`inspector.reference`); a reference model needs one. A part that
    does not register fails safe (`unregistered`). See `inspector.registration` for the motion models and limits."""

    image: Path | None = Field(
        None,
        description="defect-free part as this camera sees it (e.g. `inspector sim folder --board-seed` writes one)",
    )
    motion: Literal["rigid", "similarity", "affine"] = Field(
        "rigid", description="how a part may move against the reference: rigid (fixture, conveyor), +scale, affine"
    )
    min_correlation: float = Field(0.9, ge=-1.0, le=1.0, description="registered frame vs reference, to accept")
    max_shift_px: float = Field(40.0, gt=0, description="largest shift of a part that still registers")
    max_angle_deg: float = Field(5.0, gt=0, description="largest rotation of a part that still registers")
    max_scale_change: float = Field(0.05, ge=0, description="largest |scale - 1| (similarity, affine)")


class RecipeConfig(Section):
    """A product: the model and thresholds to inspect it with. `cmd/recipe` switches between them.

    A recipe package (`recipes/<name>/recipe.yaml`, `inspector.recipes`) is one of these on disk, with the rest of
    what a changeover switches: class names and colours, golden reference, part geometry and gate budget.
    """

    model: ModelConfig = ModelConfig()
    thresholds: Thresholds = Thresholds()
    description: str = ""
    classes: list[ClassStyle] | None = Field(
        None, description="class id order: names (must match the model's metadata) and dashboard colours"
    )
    reference: ReferenceConfig = ReferenceConfig()
    part: PartGeometry | None = None
    gate_ms: float | None = Field(None, gt=0, description="this product's gate budget; none: pipeline.gate_ms")
    synthetic: Literal["pcb", "mooncake"] | None = Field(
        None, description="the synthetic line that makes this product (the demo's digital twin)"
    )
    synthetic_board: int | None = Field(
        None,
        ge=0,
        description="synthetic pcb line: every part is this board design, placed with jitter (one product with a "
        "golden reference: `inspector sim folder --board-seed K` writes its reference.png); none: each part its own",
    )
    package: Path | None = Field(None, description="the package folder it was read from (set by the loader)")
