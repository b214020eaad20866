"""`inspector export`: a checkpoint to ONNX (fp32), plus optional int8 (static, QDQ) and fp16 variants.

fp32: Ultralytics' own ONNX export with `dynamic=True` (batch, height and width axes dynamic), so its metadata
(names, imgsz, stride, task) is written the way `inspector.detector` reads it, and the file behaves the same in
Ultralytics' tools. (Pinning H/W to imgsz while keeping the batch dynamic was tried: no measurable speed-up on
this CPU, and Ultralytics treats any dynamic-batch ONNX as fully dynamic and feeds it rect shapes, which then fail.)

int8: onnxruntime's `quantize_static`, QDQ format, uint8 activations and int8 weights quantized to 7 bits
(`reduce_range`), MinMax calibration on training images preprocessed by the detector's own `preprocess`
(letterbox to imgsz with grey 114, BGR to RGB, /255, NCHW float32). Why 7 bits: on x86 CPUs with AVX2 but no
VNNI, onnxruntime's u8 x s8 kernels multiply with VPMADDUBSW, which adds two u8 x s8 products into a saturating
int16; with full 8-bit weights (255 x 127 x 2 > 32767) the sums clip and the model's scores go wrong (measured on
an AMD EPYC with AVX2 only: 63 % of good demo parts rejected, DeepPCB mAP 0.958 -> 0.865), while the same file is
right on a VNNI CPU. 7-bit weights cannot saturate (255 x 63 x 2 < 32767) and cost no measurable accuracy here
(models/README.md); onnxruntime's quantization docs name this cure. `reduce_range=False` is kept only to reproduce
the fault. The head's decode (DFL softmax, anchor arithmetic, class sigmoid, the final concat) stays float: one
int8 scale spanning box pixels (0..imgsz) and class scores (0..1) in the same tensor would round every score to 0.

Self-test: every exported file gets a `<stem>.selftest.json` beside it holding the fp32 file's detections on
small synthetic reference images (`inspector.selftest`), and each file is checked against it here, on the
exporting machine, before export reports success; the line repeats the check on its own host at every load.

fp16: weights and activations in float16 with float32 inputs and outputs (`keep_io_types`), so the detector
feeds it exactly like the fp32 model. Half the file size; its CPU speed depends on the processor's fp16 support,
so measure it (`inspector eval` prints images/s) before choosing it for a CPU line.

Every output keeps Ultralytics' metadata and adds `inspector.precision`, `inspector.source_sha256` (the fp32 file)
and, for int8, `inspector.calibration`. A reference model (issue 15: trained on composites of each part with its
golden reference) gets `inspector.input: reference-diff`, read from its training data.yaml (`inspector_input`, as
`inspector dataset import-deeppcb --reference` writes it) or given with `--input`; the line and `inspector detect`
then refuse to run it without a reference. Ultralytics is imported only when a `.pt` checkpoint has to be exported;
`WEIGHTS` may also be an existing fp32 `.onnx`, to make the int8 / fp16 variants without torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from inspector.detector import sha256_file
from inspector.detector.metadata import INPUT_METADATA_KEY
from inspector.reference import INPUT_KINDS, dataset_input_kind

__all__ = [
    "SelfTestFailed",
    "calibration_images",
    "calibration_reader",
    "copy_metadata",
    "export_fp32",
    "export_variants",
    "main",
    "quantize_int8",
    "record_selftests",
    "sha256_file",
    "to_fp16",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def copy_metadata(src: Any, dst: Any, extra: dict[str, str] | None = None) -> None:
    """Replace `dst`'s metadata_props with `src`'s plus `extra` (both onnx ModelProto)."""
    props = {**_metadata(src), **(extra or {})}
    del dst.metadata_props[:]
    for key, value in props.items():
        entry = dst.metadata_props.add()
        entry.key, entry.value = key, str(value)


def export_fp32(
    weights: Path, out: Path, imgsz: int | None = None, opset: int | None = None, input_kind: str | None = None
) -> Path:
    """Export an Ultralytics `.pt` checkpoint to `out` (ONNX fp32, dynamic batch and H/W, imgsz in the metadata).

    imgsz: square input size; default the checkpoint's training size. Ultralytics writes its export next to the
    weights, so it works on a copy in a temporary folder and never touches the checkpoint's folder.
    input_kind: "image" or "reference-diff" (`inspector.input` in the metadata); default: the training data's.
    """
    if input_kind is not None and input_kind not in INPUT_KINDS:
        raise ValueError(f"input kind must be one of {list(INPUT_KINDS)}, got {input_kind!r}")
    import onnx

    from inspector.train import import_ultralytics

    ultralytics = import_ultralytics()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspector-export-") as tmp:
        local = Path(tmp) / "model.pt"
        shutil.copyfile(weights, local)
        yolo = ultralytics.YOLO(str(local))
        train_args = (getattr(yolo, "ckpt", None) or {}).get("train_args", {}) or {}
        if imgsz is None:
            imgsz = int(train_args.get("imgsz", 640))
        kind = input_kind or _trained_input_kind(train_args.get("data"))
        kwargs: dict[str, Any] = {"format": "onnx", "imgsz": imgsz, "dynamic": True, "simplify": True}
        kwargs.update({"device": "cpu", "batch": 1})  # no `nms` key: the detector reads args.nms=False as NMS-free
        if opset:
            kwargs["opset"] = opset
        exported = Path(yolo.export(**kwargs))
        model = onnx.load(str(exported))
        extra = {"inspector.precision": "fp32", "inspector.source": weights.name}
        if kind != "image":
            extra[INPUT_METADATA_KEY] = kind
        copy_metadata(model, model, extra)
        onnx.save(model, str(out))
    return out


def to_fp16(src: Path, out: Path) -> Path:
    """Convert an fp32 ONNX file to fp16 weights and activations, float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    copy_metadata(model, half, {"inspector.precision": "fp16", "inspector.source_sha256": sha256_file(src)})
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(out))
    return out


def calibration_images(data: Path, n: int, seed: int = 0) -> list[Path]:
    """Up to `n` image paths for int8 calibration, drawn reproducibly (seed) from the training split.

    data: an Ultralytics data.yaml (its `train` entry: folder, list of folders, or a .txt list), a YOLO folder
    (`images/train` is used when present), or a plain folder of images.
    """
    data = Path(data)
    roots: list[Path] = []
    if data.suffix in {".yaml", ".yml"}:
        spec = yaml.safe_load(data.read_text()) or {}
        base = Path(spec.get("path") or data.parent)
        if not base.is_absolute():
            base = (data.parent / base).resolve()
        train = spec.get("train")
        if train is None:
            raise ValueError(f"{data}: no 'train' entry to calibrate on")
        roots = [base / t for t in (train if isinstance(train, list) else [train])]
    elif (data / "images" / "train").is_dir():
        roots = [data / "images" / "train"]
    else:
        roots = [data]
    files: list[Path] = []
    for root in roots:
        if root.suffix == ".txt":
            files += [(root.parent / line.strip()) for line in root.read_text().splitlines() if line.strip()]
        elif root.is_dir():
            files += [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            raise ValueError(f"{root}: not a folder or an image list")
    files = sorted(set(files))
    if not files:
        raise ValueError(f"{data}: no calibration images found")
    random.Random(seed).shuffle(files)
    return files[:n]


def calibration_reader(model: Path, files: Sequence[Path], batch: int = 8) -> Any:
    """An onnxruntime `CalibrationDataReader` over image files, for the fp32 ONNX `model`.

    Each batch is `{input: (b, 3, h, w) float32}` made by `OnnxDetector.preprocess` of that very model, so the
    calibration sees exactly what the line feeds (letterbox 114, RGB, /255). Images are read one batch at a time.
    """
    from onnxruntime.quantization import CalibrationDataReader

    from inspector.detector import OnnxDetector

    detector = OnnxDetector(model, max_batch=batch, warmup=False)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = self._batches()

        def _batches(self) -> Iterator[dict[str, np.ndarray]]:
            for i in range(0, len(files), batch):
                images = []
                for f in files[i : i + batch]:
                    image = cv2.imread(str(f), cv2.IMREAD_COLOR)
                    if image is None:
                        raise ValueError(f"{f}: not an image")
                    images.append(image)
                prepared = detector.preprocess(images)
                tensor = prepared.tensor[: prepared.n].copy()  # the buffer goes back to the detector's pool
                prepared.release()
                yield {detector.input_name: tensor}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = self._batches()

    return _Reader()


def _head_decode_nodes(model: Any) -> list[str]:
    """Names of the detection head's float decode nodes, which int8 must not touch.

    Ultralytics names nodes after modules, `/model.<i>/...`; the head is the highest `i`. Inside it, the box and
    class branches (`cv2.*`, `cv3.*`, and YOLO26's `one2one_cv*`) are plain conv stacks and are quantized; the rest
    (DFL, anchors, strides, sigmoid, concat) is decode arithmetic and stays float. Without module names (a graph
    from elsewhere) it falls back to excluding every non-Conv node, which is always safe.
    """
    import re

    index = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"^/model\.(\d+)/", n.name))]
    if not index:
        return [n.name for n in model.graph.node if n.op_type != "Conv"]
    head = f"/model.{max(index)}/"
    branch = re.compile(re.escape(head) + r"(one2one_)?cv[234]\.")
    return [n.name for n in model.graph.node if n.name.startswith(head) and not branch.match(n.name)]


def quantize_int8(
    src: Path,
    out: Path,
    calib: Sequence[Path],
    *,
    batch: int = 8,
    per_channel: bool = False,
    method: str = "minmax",
    reduce_range: bool = True,
) -> Path:
    """Static int8 quantization (QDQ) of the fp32 ONNX `src` into `out`, calibrated on the images `calib`.

    per_channel: per-output-channel weight scales (more accurate for some models, a little slower on CPU).
    method: 'minmax' (default), 'entropy' or 'percentile' (onnxruntime's calibrators; the last two hold
    histograms of every activation and need far more memory).
    reduce_range: 7-bit weights, so that AVX2 CPUs without VNNI cannot saturate (module docstring). False writes
    the saturating file that earlier versions shipped: for tests and measurements only.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, got {method!r}")
    if not calib:
        raise ValueError("int8 needs calibration images")
    source = onnx.load(str(src))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspector-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Symbolic shape inference fails on Ultralytics' graphs ("incomplete") and is not needed: ONNX's own shape
        # inference plus onnxruntime's graph optimizations (what the pre-processing is for) still run.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        exclude = _head_decode_nodes(onnx.load(str(pre)))
        reader = calibration_reader(src, list(calib), batch)
        quantize_static(
            str(pre),
            str(Path(tmp) / "int8.onnx"),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            nodes_to_exclude=exclude,
            calibrate_method=methods[method],
        )
        model = onnx.load(str(Path(tmp) / "int8.onnx"))
    copy_metadata(
        source,
        model,
        {
            "inspector.precision": "int8",
            "inspector.source_sha256": sha256_file(src),
            "inspector.calibration": json.dumps(
                {
                    "images": len(calib),
                    "method": method,
                    "per_channel": per_channel,
                    "format": "QDQ u8/s7" if reduce_range else "QDQ u8/s8",
                    "reduce_range": reduce_range,
                }
            ),
        },
    )
    onnx.save(model, str(out))
    return out


def _describe(path: Path) -> dict[str, Any]:
    """Load `path` in onnxruntime (proof that it runs) and describe it: size, sha256, input and output shapes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp, outp = session.get_inputs()[0], session.get_outputs()[0]
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "input": [inp.name, inp.type, inp.shape],
        "output": [outp.name, outp.type, outp.shape],
    }


def export_variants(
    weights: Path,
    out: Path | None = None,
    *,
    imgsz: int | None = None,
    int8: bool = False,
    calib: Path | None = None,
    calib_images: int = 128,
    per_channel: bool = False,
    fp16: bool = False,
    opset: int | None = None,
    selftest_images: Path | None = None,
    input_kind: str | None = None,
) -> list[dict[str, Any]]:
    """Export `weights` (.pt, or an fp32 .onnx) and the requested variants; return one description per file.

    Files: `out` (default: the weights' stem + `.onnx` in the current folder; for an .onnx WEIGHTS the file
    itself, not rewritten), `<out stem>-int8.onnx`, `<out stem>-fp16.onnx`, and each one's `.selftest.json`.
    selftest_images: a folder whose first 8 images (sorted by name) are the self-test's reference images, for a
    product that does not look like the synthetic PCB line (default: synthetic PCB parts). input_kind: see
    `export_fp32`; for an .onnx WEIGHTS it must agree with the file's own metadata, which its variants keep.
    Raises `SelfTestFailed` when a variant does not behave like the fp32 file on this machine.
    """
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no such file")
    if int8 and calib is None:
        raise ValueError("--int8 needs --calib DATA (a data.yaml or a folder of training images)")
    files: list[Path] = []
    timings: list[float] = []
    t0 = time.perf_counter()
    if weights.suffix == ".onnx":
        # An existing fp32 ONNX: only the variants are made, named after `out` (default: next to it).
        if imgsz is not None:
            raise ValueError("--imgsz applies to a .pt checkpoint; an ONNX file keeps its own input size")
        if not (int8 or fp16):
            raise ValueError("an .onnx WEIGHTS is only used to make --int8 / --fp16 variants")
        if input_kind is not None and input_kind != _onnx_input_kind(weights):
            raise ValueError(
                f"--input {input_kind}: {weights} says {INPUT_METADATA_KEY}: {_onnx_input_kind(weights)}; "
                "its variants keep the file's own input kind (re-export the checkpoint to change it)"
            )
        out = Path(out) if out else weights
        fp32 = weights
    else:
        out = Path(out) if out else Path(weights.stem + ".onnx")
        fp32 = export_fp32(weights, out, imgsz, opset, input_kind)
        files.append(fp32)
        timings.append(time.perf_counter() - t0)
    if int8:
        t0 = time.perf_counter()
        assert calib is not None  # checked above
        dest = out.with_name(f"{out.stem}-int8.onnx")
        files.append(quantize_int8(fp32, dest, calibration_images(calib, calib_images), per_channel=per_channel))
        timings.append(time.perf_counter() - t0)
    if fp16:
        t0 = time.perf_counter()
        files.append(to_fp16(fp32, out.with_name(f"{out.stem}-fp16.onnx")))
        timings.append(time.perf_counter() - t0)
    checks = record_selftests(fp32, [fp32, *files], selftest_images)
    described = [
        {**_describe(f), "seconds": round(t, 1), "selftest": checks[f].to_dict()}
        for f, t in zip(files, timings, strict=True)
    ]
    failed = [checks[f].summary() for f in files if not checks[f].passed]
    if failed:
        raise SelfTestFailed(described, "; ".join(failed))
    return described


def _trained_input_kind(data: str | None) -> str:
    """The input kind of a checkpoint's training data (its data.yaml's `inspector_input`); plain images, with a
    warning, when that data.yaml is not on this machine."""
    if data and not Path(data).is_file():
        log.warning("training data %s not found here: exporting a plain-image model (else pass --input)", data)
    return (dataset_input_kind(data) if data else None) or "image"


def _onnx_input_kind(path: Path) -> str:
    import onnx

    return _metadata(onnx.load(str(path), load_external_data=False)).get(INPUT_METADATA_KEY, "image")


class SelfTestFailed(ValueError):
    """An exported file does not behave like its fp32 source on this machine; `described` lists every file."""

    def __init__(self, described: list[dict[str, Any]], message: str) -> None:
        super().__init__(f"self-test failed: {message}")
        self.described = described


def record_selftests(fp32: Path, files: Sequence[Path], images: Path | None = None) -> dict[Path, Any]:
    """Record the fp32 file's detections on the reference images (the first 8 of folder `images`, default the
    synthetic PCB parts) into each file's `.selftest.json`, then self-test each file against it on this machine.
    Returns file -> `SelfTestResult`."""
    from inspector.detector import OnnxDetector
    from inspector.selftest import record, reference_images, run_selftest, sidecar_path

    if images is None:
        pairs = reference_images()
    else:
        paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:8]
        if not paths:
            raise ValueError(f"{images}: no images for the self-test")
        pairs = []
        for p in paths:
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{p}: not an image")
            pairs.append((p.with_suffix(".png").name, image))
    source = record(OnnxDetector(fp32), pairs)
    results = {}
    for f in dict.fromkeys(files):  # fp32 may be listed twice (an existing .onnx WEIGHTS)
        source.save(sidecar_path(f))
        results[f] = run_selftest(OnnxDetector(f), source)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector export", description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="Ultralytics checkpoint (.pt), or an fp32 .onnx for variants")
    parser.add_argument("--imgsz", type=int, help="square input size (default: the checkpoint's training size)")
    parser.add_argument("-o", "--out", type=Path, help="fp32 output .onnx (variants get -int8 / -fp16 suffixes)")
    parser.add_argument("--int8", action="store_true", help="also write a static int8 (QDQ) model")
    parser.add_argument("--calib", type=Path, help="int8 calibration data: data.yaml (train split) or a folder")
    parser.add_argument("--calib-images", type=int, default=128, help="calibration images (128)")
    parser.add_argument("--per-channel", action="store_true", help="int8: per-channel weight scales")
    parser.add_argument("--fp16", action="store_true", help="also write an fp16 model (float32 inputs/outputs)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: Ultralytics' choice)")
    parser.add_argument(
        "--input",
        choices=INPUT_KINDS,
        help="what the model takes: camera images, or reference-diff composites of each part and its golden "
        "reference (default: the training data.yaml's inspector_input)",
    )
    parser.add_argument(
        "--selftest-images",
        type=Path,
        help="folder whose first 8 images are the self-test's reference images (default: synthetic PCB parts)",
    )
    args = parser.parse_args(argv)
    try:
        described = export_variants(
            args.weights,
            args.out,
            imgsz=args.imgsz,
            int8=args.int8,
            calib=args.calib,
            calib_images=args.calib_images,
            per_channel=args.per_channel,
            fp16=args.fp16,
            opset=args.opset,
            selftest_images=args.selftest_images,
            input_kind=args.input,
        )
    except SelfTestFailed as exc:
        print("[\n" + ",\n".join(json.dumps(d) for d in exc.described) + "\n]")
        print(f"inspector export: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"inspector export: {exc}", file=sys.stderr)
        return 1
    print("[\n" + ",\n".join(json.dumps(d) for d in described) + "\n]")
    return 0
