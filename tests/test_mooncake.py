"""The synthetic mooncake line: determinism, good parts equal their templates, every class drawn with a box tight
around the pixels it changed, what each class does to the pixels, the source, and the dataset / folder writers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.config import SyntheticConfig
from inspector.evaluate import load_data
from inspector.sim import PartTruth, SyntheticPart
from inspector.sim.mooncake import (
    DIFF_THRESHOLD,
    LABEL_MARGIN,
    MOONCAKE_NAMES,
    MooncakeLine,
    MooncakePart,
    MooncakeSource,
    main,
    write_dataset,
    write_folder,
)
from inspector.sources import FolderSource
from inspector.types import FrameSource, SourceError

CRACK, BURNT, MISSHAPEN, BLURRED_IMPRINT, FOREIGN_SPECK, UNDERBAKED = range(6)


@pytest.fixture(scope="module")
def single_defects() -> dict[int, list[MooncakePart]]:
    """Parts with one defect each, collected until every class has three (two seeds' worth of luck at most)."""
    by_class: dict[int, list[MooncakePart]] = {c: [] for c in MOONCAKE_NAMES}
    for seed in (21, 7):
        line = MooncakeLine(seed=seed, defect_rate=1.0, max_defects=1)
        for i in range(60):
            part = line.make_part(i)
            assert len(part.class_ids) == 1, f"seed {seed} part {i}: a defective part without a defect"
            by_class[int(part.class_ids[0])].append(part)
            if min(len(v) for v in by_class.values()) >= 3:
                return by_class
    return by_class


def _changed(part: SyntheticPart) -> np.ndarray:
    d = cv2.absdiff(part.image, part.template).max(axis=2)
    return d > DIFF_THRESHOLD


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


# ------------------------------------------------------------------------------------------------- generator
def test_part_is_deterministic_by_seed_and_index() -> None:
    a = MooncakeLine(seed=3, defect_rate=0.5).make_part(17)
    other = MooncakeLine(seed=3, defect_rate=0.5)
    other.make_part(2)  # generation order must not matter
    b = other.make_part(17)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.template, b.template)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.class_ids, b.class_ids)
    assert not np.array_equal(a.template, MooncakeLine(seed=4, defect_rate=0.5).make_part(17).template)
    assert not np.array_equal(a.template, MooncakeLine(seed=3, defect_rate=0.5).make_part(18).template)


def test_good_part_equals_its_template_and_defects_do_not_change_the_cake() -> None:
    good = MooncakeLine(seed=5, defect_rate=0.0)
    bad = MooncakeLine(seed=5, defect_rate=1.0)
    for i in range(4):
        g, b = good.make_part(i), bad.make_part(i)
        assert not g.defective and g.boxes.shape == (0, 4) and g.class_ids.shape == (0,)
        assert np.array_equal(g.image, g.template)
        assert np.array_equal(g.template, b.template)  # the same cake (light, noise), good or bad
        assert b.defective and not np.array_equal(b.image, b.template)


def test_image_format_and_scale() -> None:
    part = MooncakeLine(seed=1, defect_rate=0.5).make_part(0)
    assert part.image.shape == (384, 384, 3) and part.image.dtype == np.uint8
    assert isinstance(part, SyntheticPart)
    big = MooncakeLine(seed=1, defect_rate=1.0, size=512).make_part(0)
    assert big.image.shape == (512, 512, 3) and big.defective


def test_every_class_is_drawn(single_defects: dict[int, list[MooncakePart]]) -> None:
    assert all(len(single_defects[c]) >= 3 for c in MOONCAKE_NAMES), {c: len(v) for c, v in single_defects.items()}


def test_boxes_are_tight_around_the_changed_pixels() -> None:
    line = MooncakeLine(seed=11, defect_rate=1.0, max_defects=2)
    seen_two = False
    for i in range(30):
        part = line.make_part(i)
        changed = _changed(part)
        covered = np.zeros_like(changed)
        h, w = changed.shape
        for x0, y0, x1, y1 in part.boxes.astype(int):
            assert 0 < x0 < x1 < w and 0 < y0 < y1 < h
            covered[y0:y1, x0:x1] = True
            inside = changed[y0:y1, x0:x1]
            # Tight: every edge row and column of the box holds a changed pixel.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any(), (i, x0, y0)
        assert not (changed & ~covered).any(), f"part {i}: changed pixels outside every box"
        if len(part.boxes) == 2:
            seen_two = True
            (a, b) = part.boxes
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], "boxes overlap"
    assert seen_two


def test_each_defect_does_what_its_class_says(single_defects: dict[int, list[MooncakePart]]) -> None:
    for cls, parts in single_defects.items():
        for part in parts:
            x0, y0, x1, y1 = part.boxes[0].astype(int)
            changed = _changed(part)[y0:y1, x0:x1]
            before, after = _luma(part.template)[y0:y1, x0:x1], _luma(part.image)[y0:y1, x0:x1]
            change = (after - before)[changed]
            delta, darkest = float(change.mean()), float(np.percentile(change, 10))
            name = f"{MOONCAKE_NAMES[cls]} on part {part.index}"
            if cls in (CRACK, BURNT):  # darker (a crack's groove also has a lit flank: look at its dark side)
                assert delta < 0 and darkest < -12, f"{name}: not darker ({delta:.1f}, {darkest:.1f})"
            elif cls == UNDERBAKED:
                assert delta > 8, f"{name}: not paler ({delta:.1f})"
            elif cls == FOREIGN_SPECK:
                assert max(x1 - x0, y1 - y0) <= 16, f"{name}: not small"
            elif cls == BLURRED_IMPRINT:
                # The relief flattens: less fine detail (Laplacian energy) in the box than in the template.
                lap_b = np.abs(cv2.Laplacian(cv2.GaussianBlur(before, (0, 0), 1.2), cv2.CV_32F)).mean()
                lap_a = np.abs(cv2.Laplacian(cv2.GaussianBlur(after, (0, 0), 1.2), cv2.CV_32F)).mean()
                assert lap_a < lap_b, f"{name}: relief not weaker"
            elif cls == MISSHAPEN:
                # The outline moved: the box reaches off the cake, onto what was (or now is) background.
                grad = cv2.morphologyEx(_luma(part.template), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
                assert (grad[y0:y1, x0:x1] > 25).any(), f"{name}: no edge of the cake in the box"
            if cls == CRACK:
                assert changed.mean() < 0.5, f"{name}: a crack fills its box"


def test_defect_sizes_spread_from_borderline_to_obvious() -> None:
    line = MooncakeLine(seed=9, defect_rate=1.0)
    areas = []
    for i in range(40):
        part = line.make_part(i)
        changed = _changed(part)
        for x0, y0, x1, y1 in part.boxes.astype(int):
            areas.append(int(changed[y0:y1, x0:x1].sum()))
    assert min(areas) < 100 and max(areas) > 3000, (min(areas), max(areas))


def test_labels_carry_the_margin() -> None:
    part = MooncakeLine(seed=2, defect_rate=1.0).make_part(0)
    margin = np.array([-3, -3, 3, 3], np.float32)
    assert np.allclose(part.label_boxes(), np.clip(part.boxes + margin, 0, 384))
    assert LABEL_MARGIN == 3
    truth = part.truth()
    assert isinstance(truth, PartTruth) and truth.class_names == tuple(MOONCAKE_NAMES[int(c)] for c in part.class_ids)
    assert np.array_equal(truth.label_boxes, part.label_boxes())
    rows = [row.split() for row in part.yolo_label().splitlines()]
    assert [int(r[0]) for r in rows] == part.class_ids.tolist()


def test_defect_rate_is_respected() -> None:
    line = MooncakeLine(seed=0, defect_rate=0.5, size=192)
    share = np.mean([line.make_part(i).defective for i in range(60)])
    assert 0.3 < share < 0.7


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="defect_rate"):
        MooncakeLine(defect_rate=1.5)
    with pytest.raises(ValueError, match="size"):
        MooncakeLine(size=32)
    with pytest.raises(ValueError, match="max_defects"):
        MooncakeLine(max_defects=0)
    with pytest.raises(ValueError, match="fps"):
        MooncakeSource(SyntheticConfig(), fps=0)


def test_generation_time() -> None:
    """CPU time per part at 384 px (other jobs on the machine do not count); the bound leaves room for slow CPUs."""
    line = MooncakeLine(seed=0, defect_rate=0.3)
    line.make_part(0)
    t0 = time.process_time()
    for i in range(1, 21):
        line.make_part(i)
    per_part_ms = (time.process_time() - t0) / 20 * 1e3
    assert per_part_ms < 200, f"{per_part_ms:.1f} ms a part"


# ---------------------------------------------------------------------------------------------------- source
def test_source_is_a_frame_source_with_truth() -> None:
    source = MooncakeSource(SyntheticConfig(seed=7, defect_rate=0.5, size=192), limit=4)
    assert isinstance(source, FrameSource)
    assert "mooncake" in source.description and "192 px" in source.description
    with pytest.raises(SourceError):
        source.read()
    source.open()
    line = MooncakeLine(seed=7, defect_rate=0.5, size=192)
    for i in range(4):
        item = source.read()
        assert item is not None
        image, truth = item
        part = line.make_part(i)
        assert np.array_equal(image, part.image)
        assert isinstance(truth, PartTruth) and truth.index == i and truth.defective == part.defective
        assert np.array_equal(truth.boxes, part.boxes) and np.array_equal(truth.class_ids, part.class_ids)
        json.dumps(truth.to_dict())  # JSON-ready
    assert source.read() is None
    source.close()


def test_source_takes_settings_directly_and_paces() -> None:
    source = MooncakeSource(seed=3, defect_rate=1.0, size=160, fps=20.0, limit=4)
    assert source.line.seed == 3 and source.line.defect_rate == 1.0 and source.line.size == 160
    overridden = MooncakeSource(SyntheticConfig(seed=1, size=200), seed=2)
    assert (overridden.line.seed, overridden.line.size) == (2, 200)
    source.open()
    t0 = time.monotonic()
    n = 0
    while (item := source.read()) is not None:
        assert item[1].defective
        n += 1
    elapsed = time.monotonic() - t0
    assert n == 4 and 0.14 <= elapsed < 2.0, elapsed
    source.close()
    source.open()  # a reopen continues the line
    assert source.index == 4


# --------------------------------------------------------------------------------------------------- writers
def test_write_dataset_yolo_layout(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path, n=8, seed=4, defect_rate=0.8, val_fraction=0.25, size=192)
    assert counts["train"] == 6 and counts["val"] == 2
    assert counts["boxes"] == sum(counts[name] for name in MOONCAKE_NAMES.values()) > 0
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["names"] == MOONCAKE_NAMES and data["train"] == "images/train" and data["val"] == "images/val"
    assert data["templates_val"] == "templates/val"
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["generator"] == "inspector.mooncake" and len(split["val"]) == 2
    line = MooncakeLine(seed=4, defect_rate=0.8, size=192)
    n_boxes = 0
    for label in sorted(tmp_path.glob("labels/*/*.txt")):
        part = line.make_part(int(label.stem.split("_")[1]))
        split_name = label.parent.name
        assert (tmp_path / "images" / split_name / f"{label.stem}.jpg").exists()
        assert (tmp_path / "templates" / split_name / f"{label.stem}.jpg").exists()
        rows = np.array([[float(v) for v in row.split()] for row in label.read_text().splitlines()]).reshape(-1, 5)
        assert np.array_equal(rows[:, 0].astype(int), part.class_ids)
        cx, cy, w, h = rows[:, 1:].T * 192
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        assert np.allclose(xyxy, part.label_boxes(), atol=0.01)
        n_boxes += len(rows)
    assert n_boxes == counts["boxes"]
    val = load_data(tmp_path / "data.yaml", "val")  # what `inspector eval` / `calibrate` read
    assert val.names == MOONCAKE_NAMES and len(val.images) == 2 and len(val.templates) == 2


def test_cli_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["dataset", str(tmp_path / "d"), "-n", "4", "--seed", "2", "--defect-rate", "1", "--val-fraction", "0.5"]
    assert main([*argv, "--size", "160"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train"] == 2 and out["val"] == 2 and out["defective"] == 4
    assert len(list((tmp_path / "d" / "images").glob("*/*.jpg"))) == 4
    # --image-ext png: the frames exactly as the line hands them on (the demo does not JPEG-compress them).
    argv[1] = str(tmp_path / "p")
    assert main([*argv, "--size", "160", "--image-ext", "png"]) == 0
    capsys.readouterr()
    line = MooncakeLine(seed=2, defect_rate=1, size=160)
    pngs = sorted((tmp_path / "p" / "images").glob("*/*.png"))
    assert len(pngs) == 4 and not list((tmp_path / "p" / "images").glob("*/*.jpg"))
    index = int(pngs[0].stem.split("_")[-1])
    assert np.array_equal(cv2.imread(str(pngs[0])), line.make_part(index).image)


def test_write_folder_reads_back_as_a_folder_source(tmp_path: Path) -> None:
    manifest = write_folder(tmp_path, n=6, seed=6, defect_rate=0.5, size=160, start=2)
    truth = json.loads(manifest.read_text())
    assert [p["index"] for p in truth["parts"]] == list(range(2, 8))
    line = MooncakeLine(seed=6, defect_rate=0.5, size=160)
    for entry in truth["parts"]:
        part = line.make_part(entry["index"])
        assert entry["file"].startswith("bad/" if part.defective else "good/")
        assert np.array_equal(cv2.imread(str(tmp_path / entry["file"])), part.image)  # PNG: lossless
        assert [d["class_name"] for d in entry["defects"]] == list(part.class_names)
    source = FolderSource(tmp_path)
    source.open()
    item = source.read()
    assert item is not None and item[1] is not None and item[1].defective == truth["parts"][0]["defective"]
    source.close()
