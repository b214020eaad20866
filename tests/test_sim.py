"""The synthetic PCB line: determinism, boxes vs the pixels each defect changed, defect semantics, the source,
and the dataset / folder writers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.config import SyntheticConfig
from inspector.dataset import DEEPPCB_NAMES
from inspector.sim import (
    COPPER,
    LABEL_MARGIN,
    SUBSTRATE,
    PartTruth,
    SyntheticLine,
    SyntheticPart,
    SyntheticSource,
    main,
    write_dataset,
    write_folder,
)
from inspector.sources import Paced
from inspector.types import FrameSource, SourceError

OPEN, SHORT, MOUSEBITE, SPUR, COPPER_BLOB, PIN_HOLE = range(6)


@pytest.fixture(scope="module")
def defective_parts() -> list[SyntheticPart]:
    """60 parts that all carry defects (two seeds, so one seed's luck does not hide a bug)."""
    parts = [SyntheticLine(seed=11, defect_rate=1.0).make_part(i) for i in range(30)]
    return parts + [SyntheticLine(seed=-4, defect_rate=1.0).make_part(i) for i in range(30)]


def _gray(image: np.ndarray) -> np.ndarray:
    return image[:, :, 0]


def _count(binary: np.ndarray) -> int:
    return int(cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)[0]) - 1


# ------------------------------------------------------------------------------------------------- generator
def test_part_is_deterministic_by_seed_and_index() -> None:
    a = SyntheticLine(seed=3, defect_rate=0.5).make_part(17)
    other = SyntheticLine(seed=3, defect_rate=0.5)
    other.make_part(2)  # generation order must not matter
    b = other.make_part(17)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.template, b.template)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(a.template, SyntheticLine(seed=4, defect_rate=0.5).make_part(17).template)
    assert not np.array_equal(a.template, SyntheticLine(seed=3, defect_rate=0.5).make_part(18).template)


def test_defect_rate_does_not_change_the_board() -> None:
    """The board is drawn from its own stream: the same part is the same board whether defective or not."""
    good = SyntheticLine(seed=5, defect_rate=0.0).make_part(9)
    bad = SyntheticLine(seed=5, defect_rate=1.0).make_part(9)
    assert np.array_equal(good.template, bad.template)
    assert np.array_equal(good.image, good.template) and not good.defective and len(good.boxes) == 0
    assert bad.defective and not np.array_equal(bad.image, bad.template)


def test_image_format_matches_deeppcb_scans() -> None:
    part = SyntheticLine(seed=0, defect_rate=1.0).make_part(0)
    for img in (part.image, part.template):
        assert img.shape == (640, 640, 3) and img.dtype == np.uint8
        assert set(np.unique(img).tolist()) <= {COPPER, SUBSTRATE}  # binarised, like DeepPCB
        assert np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(img[:, :, 0], img[:, :, 2])
    small = SyntheticLine(seed=0, size=320).make_part(0)
    assert small.image.shape == (320, 320, 3)


def test_boards_have_deeppcb_like_copper_cover() -> None:
    """DeepPCB templates: copper (black) covers 8-65 % of a scan (10th-90th percentile), median 27 %."""
    cover = [float((_gray(SyntheticLine(seed=1).make_part(i).template) == COPPER).mean()) for i in range(30)]
    assert min(cover) > 0.03 and max(cover) < 0.85
    assert 0.12 < float(np.median(cover)) < 0.5


def test_boxes_cover_exactly_the_changed_pixels(defective_parts: list[SyntheticPart]) -> None:
    """The acceptance check: image vs template differs inside the boxes only, and each box is tight."""
    n_boxes = 0
    for part in defective_parts:
        diff = np.any(part.image != part.template, axis=2)
        inside = np.zeros_like(diff)
        boxes = part.boxes.astype(int)
        assert np.array_equal(boxes, part.boxes), "boxes are whole pixels"
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 640
            sub = diff[y1:y2, x1:x2]
            # Tight: changed pixels on all four borders of the box.
            assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any(), (part.index, x1, y1)
            assert not inside[y1:y2, x1:x2].any(), f"part {part.index}: boxes overlap"
            inside[y1:y2, x1:x2] = True
            n_boxes += 1
        assert not (diff & ~inside).any(), f"part {part.index}: pixels changed outside every box"
        assert diff.any() == part.defective
    assert n_boxes >= 60


def test_each_defect_does_what_its_class_says(defective_parts: list[SyntheticPart]) -> None:
    """DeepPCB semantics, checked on a window around each box with connected components and pixel directions."""
    seen = set()
    for part in defective_parts:
        img, tmpl = _gray(part.image), _gray(part.template)
        for (x1, y1, x2, y2), cls in zip(part.boxes.astype(int), part.class_ids, strict=True):
            ys, xs = slice(max(0, y1 - 6), y2 + 6), slice(max(0, x1 - 6), x2 + 6)
            after, before = img[ys, xs] == COPPER, tmpl[ys, xs] == COPPER
            d_cu = _count(after) - _count(before)
            d_sub = _count(~after) - _count(~before)
            changed = img[y1:y2, x1:x2] != tmpl[y1:y2, x1:x2]
            removed = bool(np.all(img[y1:y2, x1:x2][changed] == SUBSTRATE))  # copper taken away
            added = bool(np.all(img[y1:y2, x1:x2][changed] == COPPER))  # copper put on
            where = f"part {part.index} box {(x1, y1, x2, y2)} class {DEEPPCB_NAMES[int(cls)]}"
            if cls == OPEN:
                assert removed and d_cu == 1, where  # the trace falls apart
            elif cls == SHORT:
                assert added and d_cu == -1, where  # two coppers become one
            elif cls == MOUSEBITE:
                assert removed and d_cu == 0 and d_sub == 0, where  # bitten, still whole, no enclosed hole
            elif cls == SPUR:
                assert added and d_cu == 0 and d_sub == 0, where  # attached, touching nothing else
            elif cls == COPPER_BLOB:
                assert added and d_cu == 1, where  # isolated
            else:
                assert removed and d_sub == 1 and d_cu == 0, where  # an enclosed hole
            seen.add(int(cls))
    assert seen == set(range(6))


def test_defects_have_deeppcb_sizes(defective_parts: list[SyntheticPart]) -> None:
    """DeepPCB defects span 7-51 px (10th-90th percentile, changed pixels); labels add ~10 px a side."""
    boxes = np.concatenate([p.boxes for p in defective_parts])
    sides = np.concatenate([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    assert 7 <= float(np.median(sides)) <= 25
    assert sides.min() >= 2 and sides.max() <= 70
    part = defective_parts[0]
    grown = part.boxes + np.array([-LABEL_MARGIN, -LABEL_MARGIN, LABEL_MARGIN, LABEL_MARGIN], np.float32)
    assert np.allclose(part.label_boxes(), np.clip(grown, 0, 640))
    counts = np.bincount(np.concatenate([p.class_ids for p in defective_parts]), minlength=6)
    assert counts.min() >= 0.3 * counts.max(), f"classes badly unbalanced: {counts}"


def test_defect_rate_is_respected() -> None:
    line = SyntheticLine(seed=2, defect_rate=0.3)
    rate = np.mean([line.make_part(i).defective for i in range(150)])
    assert 0.18 <= rate <= 0.42
    assert not any(SyntheticLine(seed=2, defect_rate=0.0).make_part(i).defective for i in range(10))


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="defect_rate"):
        SyntheticLine(defect_rate=1.5)
    with pytest.raises(ValueError, match="size"):
        SyntheticLine(size=10)
    with pytest.raises(ValueError, match="limit"):
        SyntheticSource(SyntheticConfig(), limit=-1)


def test_generation_is_fast() -> None:
    """A few ms a part (CPU time, so other jobs on the machine do not count); the bound leaves room for slow CPUs."""
    line = SyntheticLine(seed=0, defect_rate=0.3)
    line.make_part(0)
    t0 = time.process_time()
    for i in range(1, 41):
        line.make_part(i)
    per_part_ms = (time.process_time() - t0) / 40 * 1e3
    assert per_part_ms < 30, f"{per_part_ms:.1f} ms a part"


# ---------------------------------------------------------------------------------------------------- source
def test_source_is_a_frame_source_with_truth() -> None:
    config = SyntheticConfig(seed=7, defect_rate=0.5)
    source = SyntheticSource(config, limit=4)
    assert isinstance(source, FrameSource)
    assert "synthetic" in source.description
    with pytest.raises(SourceError):
        source.read()
    source.open()
    line = SyntheticLine(seed=7, defect_rate=0.5)
    for i in range(4):
        item = source.read()
        assert item is not None
        image, truth = item
        part = line.make_part(i)
        assert np.array_equal(image, part.image)
        assert isinstance(truth, PartTruth) and truth.index == i and truth.defective == part.defective
        assert np.array_equal(truth.boxes, part.boxes) and np.array_equal(truth.class_ids, part.class_ids)
        assert truth.class_names == tuple(DEEPPCB_NAMES[int(c)] for c in part.class_ids)
        json.dumps(truth.to_dict())  # JSON-ready
    assert source.read() is None
    source.close()


def test_source_paces_at_fps() -> None:
    """Paced like any source (`Paced`, part first then its slot): the schedule starts at open."""
    source = Paced(SyntheticSource(SyntheticConfig(), limit=6), 20.0, read_first=True)
    source.open()
    t0 = time.monotonic()
    while source.read() is not None:
        pass
    elapsed = time.monotonic() - t0
    # Parts at t = 0, 0.05, ..., 0.25 s; the generous upper bound allows for a busy machine.
    assert 0.24 <= elapsed < 1.0, elapsed
    assert "synthetic" in source.description and "20 fps" in source.description


def test_source_reopen_continues_the_line() -> None:
    source = SyntheticSource(SyntheticConfig(seed=1))
    source.open()
    first = source.read()
    source.close()
    source.open()
    second = source.read()
    assert first is not None and second is not None
    assert (first[1].index, second[1].index) == (0, 1)


# --------------------------------------------------------------------------------------------------- writers
def test_write_dataset_yolo_layout(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path, n=10, seed=4, defect_rate=0.8, val_fraction=0.2)
    assert counts["train"] == 8 and counts["val"] == 2
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["names"] == DEEPPCB_NAMES and data["train"] == "images/train" and data["val"] == "images/val"
    line = SyntheticLine(seed=4, defect_rate=0.8)
    n_boxes = 0
    for label in sorted(tmp_path.glob("labels/*/*.txt")):
        index = int(label.stem.split("_")[1])
        part = line.make_part(index)
        split = label.parent.name
        assert (tmp_path / "images" / split / f"{label.stem}.jpg").exists()
        assert (tmp_path / "templates" / split / f"{label.stem}.jpg").exists()
        rows = np.array([[float(v) for v in row.split()] for row in label.read_text().splitlines()]).reshape(-1, 5)
        assert np.array_equal(rows[:, 0].astype(int), part.class_ids)
        cx, cy, w, h = rows[:, 1:].T * 640
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        assert np.allclose(xyxy, part.label_boxes(), atol=0.01)
        n_boxes += len(rows)
    assert n_boxes == counts["boxes"] > 0


def test_write_folder_with_truth_manifest(tmp_path: Path) -> None:
    manifest = write_folder(tmp_path, n=8, seed=6, defect_rate=0.5, start=3)
    truth = json.loads(manifest.read_text())
    assert [p["index"] for p in truth["parts"]] == list(range(3, 11))
    line = SyntheticLine(seed=6, defect_rate=0.5)
    for entry in truth["parts"]:
        part = line.make_part(entry["index"])
        assert entry["file"].startswith("bad/" if part.defective else "good/")
        assert np.array_equal(cv2.imread(str(tmp_path / entry["file"])), part.image)  # PNG: lossless
        assert [d["xyxy"] for d in entry["defects"]] == part.boxes.tolist()
    assert {p["defective"] for p in truth["parts"]} == {True, False}


def test_cli_writes_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["folder", str(tmp_path / "f"), "-n", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["parts"] == 2
    assert len(list((tmp_path / "f").glob("*/*.png"))) == 2


def test_sim_is_an_inspector_sub_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.cli import main as inspector_main

    assert inspector_main(["sim", "dataset", str(tmp_path / "d"), "-n", "2", "--size", "128"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["train"] + counts["val"] == 2
    assert inspector_main(["sim", "dataset", str(tmp_path / "e"), "-n", "0"]) == 1
    assert "inspector sim: n must be at least 1" in capsys.readouterr().err
