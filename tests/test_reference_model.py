"""The shipped reference models: the default one (`inspector.config.DEFAULT_MODEL`) loads, its card names its hash,
its thresholds files were fitted to it, and (where the team's DeepPCB copy is present) it finds real defects on
held-out images and passes more of their defect-free templates than it rejects. Every shipped ONNX file's hash is
in its model card."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.accuracy import box_iou
from inspector.config import DEFAULT_MODEL
from inspector.dataset import DEEPPCB_NAMES, held_out_stems, list_deeppcb_pairs, read_deeppcb_annotation
from inspector.decide import decide
from inspector.demo import demo_thresholds
from inspector.detector import OnnxDetector
from inspector.evaluate import load_thresholds

REPO = Path(__file__).resolve().parent.parent
MODEL = DEFAULT_MODEL  # models/deeppcb-v8n-480-int8.onnx
CARD = REPO / "models" / "deeppcb-v8n-480.md"
THRESHOLDS = REPO / "calibration" / f"{MODEL.stem}.yaml"
DEMO_THRESHOLDS = REPO / "calibration" / f"{MODEL.stem}-synthetic.yaml"
DEEPPCB = REPO.parent / "shared" / "datasets" / "deeppcb"


def test_model_loads_with_deeppcb_metadata_and_its_card_names_its_hash() -> None:
    detector = OnnxDetector(MODEL)
    assert detector.names == DEEPPCB_NAMES
    assert detector.imgsz == (480, 480)
    digest = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert detector.sha256 == digest
    assert digest in CARD.read_text(), "the model card must name the shipped file's sha256"
    thresholds = load_thresholds(THRESHOLDS)
    assert set(thresholds.classes) == set(DEEPPCB_NAMES.values())
    assert digest in THRESHOLDS.read_text(), "the thresholds file must have been fitted to the shipped model"
    assert digest in DEMO_THRESHOLDS.read_text(), "the demo's thresholds must have been fitted to the shipped model"
    assert demo_thresholds(MODEL) == load_thresholds(DEMO_THRESHOLDS)


@pytest.mark.parametrize("onnx", sorted((REPO / "models").glob("*.onnx")), ids=lambda p: p.name)
def test_every_shipped_file_is_named_in_its_card(onnx: Path) -> None:
    card = REPO / "models" / (onnx.stem.removesuffix("-int8").removesuffix("-fp16") + ".md")
    assert card.exists(), f"{onnx.name} has no model card"
    assert hashlib.sha256(onnx.read_bytes()).hexdigest() in card.read_text(), f"{card.name} lacks {onnx.name}'s sha256"


@pytest.mark.skipif(not (DEEPPCB / "trainval.txt").exists(), reason=f"DeepPCB not present at {DEEPPCB}")
def test_finds_real_defects_on_held_out_deeppcb_images() -> None:
    """On 20 held-out pairs: most annotated defects are found (DeepPCB rule: class match, IoU > 0.33), and at the
    shipped thresholds more defective images are rejected than defect-free templates."""
    pairs = list_deeppcb_pairs(DEEPPCB)
    held_out = held_out_stems(pairs)
    sample = sorted((p for p in pairs if p.stem in held_out), key=lambda p: p.stem)[:20]
    detector = OnnxDetector(MODEL)
    thresholds = load_thresholds(THRESHOLDS)
    found = total = rejected_bad = rejected_good = 0
    for pair in sample:
        image, template = cv2.imread(str(pair.test_image)), cv2.imread(str(pair.template_image))
        truth = np.array(read_deeppcb_annotation(pair.annotation), dtype=np.float32).reshape(-1, 5)
        dets, dets_template = detector.detect([image, template])
        total += len(truth)
        if len(dets):
            iou = box_iou(truth[:, :4], dets.xyxy)
            same_class = truth[:, 4:5].astype(np.int64) == dets.class_id[None, :]
            found += int(((iou > 0.33) & same_class).any(axis=1).sum())
        rejected_bad += decide(dets, thresholds, detector.names).rejected
        rejected_good += decide(dets_template, thresholds, detector.names).rejected
    print(f"found {found} of {total}; rejected {rejected_bad} defective, {rejected_good} good of 20 each")
    assert found / total > 0.6, f"found {found} of {total} annotated defects"
    assert rejected_bad > rejected_good, (rejected_bad, rejected_good)
    assert rejected_bad >= 16, f"only {rejected_bad} of 20 defective images rejected"


@pytest.mark.parametrize(
    "card", sorted(p for p in (REPO / "models").glob("*.md") if p.name != "README.md"), ids=lambda p: p.name
)
def test_card_figures_name_the_commands_that_give_them(card: Path) -> None:
    text = card.read_text()
    for command in ("inspector eval", "inspector calibrate", "inspector export", "inspector train", "inspector bench"):
        assert command in text
    assert re.search(r"epoch \d+ of \d+", text), "the card says which epoch the shipped file is"
