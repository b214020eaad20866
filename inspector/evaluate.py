"""`inspector eval MODEL DATA`: accuracy and inspection rates of an ONNX model, run through our own runtime.

The images go through `inspector.detector.OnnxDetector` (letterbox, onnxruntime, decode, NMS), not Ultralytics,
so the figures are those of the line. One detection pass at a low score floor (`--conf`, 0.001 as `yolo val`)
serves every figure: greedy NMS keeps a box when no more confident box overlaps it, so the boxes at or above a
higher threshold are the same whichever floor the pass used (barring the `max_det` cap), and the deployed
thresholds are applied afterwards with `inspector.decide`, exactly as the pipeline decides a part. The line
therefore matches these figures when its detector floor (`model.conf`) is at or below its lowest class threshold.

Reported (see `inspector.accuracy` for the exact definitions):
- mAP@0.5 and mAP@0.5:0.95 (Ultralytics' matching and 101-point interpolation), per class;
- the DeepPCB protocol (class match and IoU > 0.33): AP per class, and precision / recall / F-score of the
  detections kept at the deployed thresholds;
- at the deployed thresholds, the escape rate (defective images passed) and the false-reject rate (defect-free
  images rejected: the `templates_<split>` images of the data set, plus any unlabelled image of the split);
- images per second of the detector (preprocess + inference + NMS) at the model's input size and batch.

Against `yolo val` on the same ONNX file: given the same boxes the figures are identical (the matching and AP code
reproduces Ultralytics' to the last digit), but the boxes differ in two ways. `yolo val` labels a box with every
class scoring above the floor (`multi_label=True` NMS), where predict and the line keep one class a box, as here;
on a weak model with confused classes that adds several points of mAP (4 points at mAP@0.5 measured on an early
DeepPCB checkpoint: 0.379 against 0.337), on a converged one little. And on a dynamic-shape model `yolo val`
letterboxes rect batches padded to a stride multiple plus half a stride (352 for 320), where the line uses the
full imgsz.

DATA is an Ultralytics data.yaml (with our `templates_val` key for the defect-free images, as written by
`inspector dataset import-deeppcb`), or a YOLO folder holding one (or `images/<split>`, `labels/<split>`,
`templates/<split>`).

A reference model (issue 15) takes references as `inspector detect` does (`inspector.reference_inputs`): a data.yaml
with `inspector_input: reference-diff` (`import-deeppcb --reference`) holds composites and they go in as they are;
else `--reference IMAGE` for every image, or each `NAME_test` image against the `NAME_temp` beside it (a template
`NAME_temp` without one against itself). An image that does not register has no detections and counts as rejected
(the line's fail-safe `unregistered`); registration time is reported apart from the detector's. A reference model
without references, or a plain model on composites or with `--reference`, is a clear error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.accuracy import DetectionAccumulator, precision_recall_f1
from inspector.decide import decide, kept_mask
from inspector.eval_data import EvalData, load_data, load_thresholds
from inspector.reference_inputs import add_reference_arguments
from inspector.registration import MotionModel
from inspector.types import Detections, Thresholds

__all__ = [
    "Collected",
    "EvalData",
    "class_scores",
    "collect",
    "evaluate",
    "format_table",
    "load_data",
    "load_thresholds",
    "main",
    "registration_report",
    "scores_matrix",
]


@dataclass
class Collected:
    """One detection pass over a split. Detections are in original-image pixels.

    gt: per image (xyxy (m, 4) float32 pixels, class (m,) int64). reference: how a reference model got its
    references ("composites", "pairs" or the `--reference` image; None for a plain model). unregistered /
    template_unregistered: per image, True when it did not register to its reference (its detections are empty:
    the line rejects such a part fail-safe, `unregistered`); empty lists when there was no registration.
    """

    data: EvalData
    model: str
    sha256: str
    imgsz: tuple[int, int]
    conf: float
    iou: float
    batch: int
    gt: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    detections: list[Detections] = field(default_factory=list)
    template_detections: list[Detections] = field(default_factory=list)
    detect_seconds: float = 0.0
    read_seconds: float = 0.0
    selftest: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    unregistered: list[bool] = field(default_factory=list)
    template_unregistered: list[bool] = field(default_factory=list)
    register_seconds: float = 0.0

    @property
    def names(self) -> dict[int, str]:
        return self.data.names

    @property
    def images_per_s(self) -> float:
        n = len(self.detections) + len(self.template_detections)
        return n / self.detect_seconds if self.detect_seconds > 0 else 0.0


def _to_pixels(labels: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    cx, cy, bw, bh = labels[:, 1] * w, labels[:, 2] * h, labels[:, 3] * w, labels[:, 4] * h
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    return xyxy.reshape(-1, 4), labels[:, 0].astype(np.int64)


def collect(
    model: Path,
    data: EvalData,
    *,
    conf: float = 0.001,
    iou: float = 0.7,
    batch: int | None = None,
    threads: int = 0,
    providers: Sequence[str] = ("cpu",),
    selftest: bool = True,
    reference: str | None = None,
    motion: MotionModel = "affine",
) -> Collected:
    """Run the detector over the split's images and templates (in batches), timing the detector alone.

    selftest: first check the file on this host against its recorded source outputs (`inspector.selftest`) and
    raise `SelfTestError` when it fails; False measures a failing file anyway (the result is still reported).
    A reference model gets composites as `inspector.reference_inputs` builds them: the data's own (a reference-diff
    data.yaml), or each image registered (`motion`) to `reference`, or to its NAME_temp (a `_temp` template without
    one to itself); registration is timed apart. Raises `ModelError` when model and data do not fit.
    """
    from inspector.detector import OnnxDetector  # the runtime; imported here so that `--help` stays cheap
    from inspector.reference import REFERENCE_DIFF
    from inspector.reference_inputs import NotRegistered, is_pair_reference, plan_references
    from inspector.selftest import SelfTestError, failure_message, run_selftest

    kwargs: dict[str, Any] = {"providers": tuple(providers), "threads": threads, "conf": conf, "iou": iou}
    if batch:
        kwargs["max_batch"] = batch
    detector = OnnxDetector(model, **kwargs)
    check = run_selftest(detector)
    if check.status == "failed" and selftest:
        raise SelfTestError(failure_message(check, detector), check)
    model_names = dict(detector.names)
    if len(model_names) != len(data.names):
        raise ValueError(f"the model has {len(model_names)} classes, the data {len(data.names)}")
    if model_names != data.names:
        msg = f"class names differ (model {model_names}, data {data.names}); class ids are compared"
        print(f"inspector eval: {msg}", file=sys.stderr)
    composites = data.input_kind == REFERENCE_DIFF
    references = plan_references(
        detector.path, detector.input_kind, paths=data.images, reference=reference, composites=composites, motion=motion
    )
    if references is not None and reference is None:  # pairs: a pair's reference is not a part to inspect
        keep = [i for i, p in enumerate(data.images) if not is_pair_reference(p)]
        images, labels = [data.images[i] for i in keep], [data.labels[i] for i in keep]
        data = replace(data, images=images, labels=labels)
    out = Collected(
        data=data,
        model=str(model),
        sha256=detector.sha256,
        imgsz=tuple(detector.imgsz),  # type: ignore[arg-type]
        conf=conf,
        iou=iou,
        batch=detector.max_batch,
        selftest=check.to_dict(),
        reference="composites" if composites else None if references is None else (reference or "pairs"),
    )

    def run(paths: list[Path], sink: list[Detections], labels: list[np.ndarray] | None, failed: list[bool]) -> None:
        for start in range(0, len(paths), detector.max_batch):
            chunk = paths[start : start + detector.max_batch]
            t0 = time.perf_counter()
            images = []
            for p in chunk:
                image = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"{p}: not an image")
                images.append(image)
            t1 = time.perf_counter()
            inputs = images
            if references is not None:
                inputs = []
                for p, image in zip(chunk, images, strict=True):
                    try:
                        inputs.append(references.composite(image, references.reference_of(p, own=labels is None))[0])
                        failed.append(False)
                    except NotRegistered:
                        failed.append(True)  # no detections: the line rejects it fail-safe
            t2 = time.perf_counter()
            found = iter(detector.detect(inputs) if inputs else [])
            if references is None:
                sink.extend(found)
            else:
                sink.extend(Detections.empty() if bad else next(found) for bad in failed[-len(chunk) :])
            out.detect_seconds += time.perf_counter() - t2
            out.register_seconds += t2 - t1
            out.read_seconds += t1 - t0
            if labels is not None:
                for image, lab in zip(images, labels[start : start + len(chunk)], strict=True):
                    out.gt.append(_to_pixels(lab, image.shape[:2]))

    run(data.images, out.detections, data.labels, out.unregistered)
    run(data.templates, out.template_detections, None, out.template_unregistered)
    return out


def class_scores(detections: Detections, thresholds: Thresholds, names: dict[int, str]) -> np.ndarray:
    """(nc,) per class, the confidence at which that class would reject this image under `thresholds`.

    It is the (max_count + 1)-th highest confidence among the class's detections that pass every rule but the
    confidence (enabled, min area, ROI); -1 when there are not that many. So the image is rejected by class c
    exactly when `score[c] >= min_confidence[c]`, which is what `inspector.decide` does.
    """
    nc = len(names)
    scores = np.full(nc, -1.0)
    if len(detections) == 0:
        return scores
    rules = {name: thresholds.for_class(name) for name in names.values()}
    no_conf = thresholds.model_copy(
        update={
            "default": thresholds.default.model_copy(update={"min_confidence": 0.0}),
            "classes": {k: v.model_copy(update={"min_confidence": 0.0}) for k, v in thresholds.classes.items()},
        }
    )
    eligible = kept_mask(detections, no_conf, names)
    for c, name in names.items():
        confs = np.sort(detections.confidence[eligible & (detections.class_id == c)])[::-1]
        k = rules[name].max_count
        if len(confs) > k:
            scores[c] = float(confs[k])
    return scores


def scores_matrix(collected: Collected, thresholds: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(defective (n_def, nc), defect-free (n_good, nc)) class scores of every image, see `class_scores`.

    Defective: split images with at least one label. Defect-free: templates, plus split images without labels.
    An image that did not register to its reference scores 1.0 for every class: rejected at any threshold.
    """
    nc = len(collected.names)

    def scores(dets: Detections, unregistered: bool) -> np.ndarray:
        return np.ones(nc) if unregistered else class_scores(dets, thresholds, collected.names)

    defective, good = [], []
    for dets, (_, gt_cls), bad in zip(collected.detections, collected.gt, _flags(collected, False), strict=True):
        (defective if len(gt_cls) else good).append(scores(dets, bad))
    good += [scores(d, bad) for d, bad in zip(collected.template_detections, _flags(collected, True), strict=True)]
    return np.array(defective, dtype=np.float64).reshape(-1, nc), np.array(good, dtype=np.float64).reshape(-1, nc)


def _flags(collected: Collected, templates: bool) -> list[bool]:
    """Per image of the split (or of the templates), whether it did not register (all False without registration)."""
    flags = collected.template_unregistered if templates else collected.unregistered
    return flags or [False] * len(collected.template_detections if templates else collected.detections)


def _r(x: float) -> float:
    return round(float(x), 5)


def evaluate(collected: Collected, thresholds: Thresholds) -> dict[str, Any]:
    """All figures of one detection pass at the given deployed thresholds, as a JSON-ready dict."""
    names = collected.names
    nc = len(names)
    acc = DetectionAccumulator(nc=nc)
    kept_tp: list[np.ndarray] = []
    kept_cls: list[np.ndarray] = []
    images_with = np.zeros(nc, int)
    escapes = defective = false_rejects = good = 0
    for dets, (gt_xyxy, gt_cls), bad in zip(collected.detections, collected.gt, _flags(collected, False), strict=True):
        _, tp_deeppcb = acc.add(dets.xyxy, dets.confidence, dets.class_id, gt_xyxy, gt_cls)
        keep = kept_mask(dets, thresholds, names)
        kept_tp.append(tp_deeppcb[keep])
        kept_cls.append(dets.class_id[keep])
        images_with[np.unique(gt_cls)] += 1
        rejected = bad or decide(dets, thresholds, names).rejected  # unregistered: a fail-safe reject
        if len(gt_cls):
            defective += 1
            escapes += not rejected
        else:
            good += 1
            false_rejects += rejected
    for dets, bad in zip(collected.template_detections, _flags(collected, True), strict=True):
        good += 1
        false_rejects += bad or decide(dets, thresholds, names).rejected
    coco, deeppcb = acc.result()
    target_cls = np.concatenate([g[1] for g in collected.gt]) if collected.gt else np.zeros(0, np.int64)
    pooled, per_class = precision_recall_f1(
        np.concatenate(kept_tp) if kept_tp else np.zeros(0, bool),
        np.concatenate(kept_cls) if kept_cls else np.zeros(0, np.int64),
        target_cls,
        nc,
    )

    def ap(value: float) -> float | None:
        return None if np.isnan(value) else _r(value)

    classes = []
    for c, name in names.items():
        classes.append(
            {
                "class": name,
                "images": int(images_with[c]),
                "instances": int(coco.n_labels[c]),
                "min_confidence": thresholds.for_class(name).min_confidence,
                "precision": _r(per_class[c].precision),
                "recall": _r(per_class[c].recall),
                "f1": _r(per_class[c].f1),
                "ap50": ap(coco.ap[c, 0]),
                "ap50_95": ap(coco.ap[c].mean()),
                "ap_deeppcb": ap(deeppcb.ap[c, 0]),
            }
        )
    n_images = len(collected.detections) + len(collected.template_detections)
    return {
        "model": collected.model,
        "sha256": collected.sha256,
        "selftest": collected.selftest,
        "data": collected.data.source,
        "imgsz": list(collected.imgsz),
        "conf": collected.conf,
        "iou": collected.iou,
        "thresholds_version": thresholds.version,
        "images": len(collected.detections),
        "instances": int(coco.n_labels.sum()),
        "map50": _r(coco.mean(0)),
        "map50_95": _r(coco.mean(slice(None))),
        "deeppcb": {
            "map": _r(deeppcb.mean(0)),
            "precision": _r(pooled.precision),
            "recall": _r(pooled.recall),
            "f1": _r(pooled.f1),
            "tp": pooled.tp,
            "detections": pooled.n_pred,
        },
        "inspection": {
            "defective_images": defective,
            "escapes": escapes,
            "escape_rate": _r(escapes / defective) if defective else 0.0,
            "good_images": good,
            "false_rejects": false_rejects,
            "false_reject_rate": _r(false_rejects / good) if good else 0.0,
        },
        "speed": {
            "images_per_s": round(collected.images_per_s, 1),
            "images": n_images,
            "detect_seconds": round(collected.detect_seconds, 2),
            "batch": collected.batch,
            "note": "detector.detect (preprocess + inference + NMS) at the eval score floor; image reading excluded",
        },
        "reference": registration_report(collected),
        "classes": classes,
    }


def registration_report(collected: Collected) -> dict[str, Any] | None:
    """How a reference model got its references, and what did not register (None for a plain model)."""
    if collected.reference is None:
        return None
    if collected.reference == "composites":
        return {"input": "composites"}  # the data's own: nothing registered here
    paths = [*collected.data.images, *collected.data.templates]
    failed = [str(p) for p, bad in zip(paths, _flags(collected, False) + _flags(collected, True), strict=True) if bad]
    registered = len(collected.unregistered) + len(collected.template_unregistered)
    return {
        "input": collected.reference,
        "registered": registered - len(failed),
        "unregistered": len(failed),
        "unregistered_images": failed[:20],
        "register_ms": round(1000 * collected.register_seconds / registered, 2) if registered else None,
    }


def format_table(report: dict[str, Any]) -> str:
    """The per-class table and the summary lines, for a terminal."""

    def pct(v: float | None) -> str:
        return "     -" if v is None else f"{100 * v:6.1f}"

    head = f"{'class':<12}{'images':>7}{'inst':>6}{'conf':>6}   {'P':>6}{'R':>6}{'F':>6}   {'AP50':>6}{'AP50-95':>8}"
    head += f"{'AP.33':>7}"
    d = report["deeppcb"]
    lines = [head]
    lines.append(
        f"{'all':<12}{report['images']:>7}{report['instances']:>6}{'':>6}   {pct(d['precision'])}{pct(d['recall'])}"
        f"{pct(d['f1'])}   {pct(report['map50'])}{pct(report['map50_95']):>8}{pct(d['map']):>7}"
    )
    for c in report["classes"]:
        lines.append(
            f"{c['class'][:12]:<12}{c['images']:>7}{c['instances']:>6}{c['min_confidence']:>6.2f}   "
            f"{pct(c['precision'])}{pct(c['recall'])}{pct(c['f1'])}   {pct(c['ap50'])}{pct(c['ap50_95']):>8}"
            f"{pct(c['ap_deeppcb']):>7}"
        )
    ins, sp = report["inspection"], report["speed"]
    lines += [
        "",
        "P, R, F: DeepPCB protocol (class match, IoU > 0.33) at the deployed thresholds (conf column), in %.",
        "AP50, AP50-95: Ultralytics' matching and interpolation; AP.33: the same at the DeepPCB criterion.",
        f"escapes: {ins['escapes']}/{ins['defective_images']} defective images passed "
        f"({100 * ins['escape_rate']:.2f}%); false rejects: {ins['false_rejects']}/{ins['good_images']} defect-free "
        f"images rejected ({100 * ins['false_reject_rate']:.2f}%)",
        f"speed: {sp['images_per_s']} images/s ({sp['images']} images, batch {sp['batch']}, "
        f"input {report['imgsz'][0]}x{report['imgsz'][1]}, conf {report['conf']})",
    ]
    if report.get("selftest"):
        lines.append(f"self-test: {report['selftest']['summary']}")
    ref = report.get("reference")
    if ref and ref["input"] == "composites":
        lines.append("reference: the data's reference-diff composites, as they are")
    elif ref:
        lines.append(
            f"reference: {ref['input']}, {ref['registered']} registered ({ref['register_ms']} ms each), "
            f"{ref['unregistered']} unregistered (rejected fail-safe)"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector eval", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX model")
    parser.add_argument("data", type=Path, help="data.yaml, or a YOLO folder")
    parser.add_argument("--split", default="val", help="split to evaluate (val)")
    parser.add_argument("--conf", type=float, default=0.001, help="detector score floor of the pass (0.001)")
    parser.add_argument("--iou", type=float, default=0.7, help="NMS IoU (0.7)")
    parser.add_argument("--thresholds", type=Path, help="deployed thresholds YAML (default: 0.25 for every class)")
    parser.add_argument("--batch", type=int, help="images per inference call (default: the detector's)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its choice)")
    parser.add_argument("--providers", default="cpu", help="comma-separated execution providers (cpu)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    add_reference_arguments(parser)
    parser.add_argument(
        "--ignore-selftest",
        action="store_true",
        help="measure a file that fails its self-test on this host anyway (to see what the fault costs)",
    )
    args = parser.parse_args(argv)
    try:
        thresholds = load_thresholds(args.thresholds)
        data = load_data(args.data, args.split)
        collected = collect(
            args.model,
            data,
            conf=args.conf,
            iou=args.iou,
            batch=args.batch,
            threads=args.threads,
            providers=args.providers.split(","),
            selftest=not args.ignore_selftest,
            reference=args.reference,
            motion=args.motion,
        )
        report = evaluate(collected, thresholds)
    except (OSError, ValueError) as exc:  # ModelError is a ValueError
        print(f"inspector eval: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0
