"""The synthetic line as one product with a golden reference (`board_seed`) and placement jitter (`jitter`): seeded
and reproducible, boxes that follow the part, a reference without defects, parts that differ from it only at their
defects once the known jitter is undone, the writers and the CLI; and, without the new options, the very same parts
and files as before them."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import SyntheticConfig
from inspector.sim import (
    COPPER,
    REFERENCE_FILE,
    SUBSTRATE,
    Jitter,
    Placement,
    SyntheticLine,
    SyntheticPart,
    SyntheticSource,
    main,
    write_dataset,
    write_folder,
)
from inspector.sim.jitter import MID_GREY

JITTER = Jitter()  # the defaults: 3 px, 1 degree, +-10 grey levels, 5 % contrast, noise 2


@pytest.fixture(scope="module")
def product() -> SyntheticLine:
    """One product (board 3: about a fifth copper) on a jittered line where every part carries defects."""
    return SyntheticLine(seed=2, defect_rate=1.0, board_seed=3, jitter=JITTER)


@pytest.fixture(scope="module")
def placed(product: SyntheticLine) -> list[tuple[SyntheticPart, SyntheticPart]]:
    """20 parts of the product: (as seen, jittered; where the design puts them, unjittered)."""
    return [(product.make_part(i), product.make_unplaced(i)) for i in range(20)]


def _inner(size: int) -> np.ndarray:
    """(size, size) bool: the seen pixels whose samples come from inside the view whatever the jitter."""
    border = math.ceil(JITTER.reach(size)) + 2
    inner = np.zeros((size, size), bool)
    inner[border:-border, border:-border] = True
    return inner


def _box_mask(boxes: np.ndarray, size: int, grow: int = 0) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for x0, y0, x1, y1 in boxes.astype(int):
        mask[max(0, y0 - grow) : y1 + grow, max(0, x0 - grow) : x1 + grow] = True
    return mask


# ------------------------------------------------------------------------------------- default line unchanged
def _folder_digest(out: Path) -> str:
    """Names, decoded pixels (not the PNG encoder's bytes) and manifest bytes of a written folder."""
    h = hashlib.sha256()
    for f in sorted(out.rglob("*")):
        h.update(str(f.relative_to(out)).encode())
        if f.suffix == ".png":
            h.update(cv2.imread(str(f), cv2.IMREAD_UNCHANGED).tobytes())
        elif f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def test_without_the_new_options_parts_and_folders_are_unchanged(tmp_path: Path) -> None:
    """Digests taken from the code before `board_seed` and `jitter` existed (commit 3aee113): the same parts,
    templates, boxes and classes, and the same folder (no reference.png, the same truth.json)."""
    h = hashlib.sha256()
    for seed, rate, size in ((0, 0.3, 640), (7, 1.0, 320), (-4, 0.5, 640)):
        line = SyntheticLine(seed=seed, defect_rate=rate, size=size)
        for i in (0, 1, 5, 17):
            part = line.make_part(i)
            assert part.placement is None
            for array in (part.image, part.template, part.boxes, part.class_ids):
                h.update(array.tobytes())
    assert h.hexdigest() == "f811f2582f6d1aef9b6d7f62ba9f522c0b2230ebc96fbbe90ef75d4f654e5b9d"
    write_folder(tmp_path, 6, seed=3, defect_rate=0.5, start=2)
    assert not (tmp_path / REFERENCE_FILE).exists()
    assert _folder_digest(tmp_path) == "21ac1e2232b8459fd4a12e380e2576b2f965881d5a61e8f836b984d2243312fe"


# ---------------------------------------------------------------------------------------------- the jitter
def test_jitter_is_seeded_and_reproducible(product: SyntheticLine) -> None:
    again = SyntheticLine(seed=2, defect_rate=1.0, board_seed=3, jitter=JITTER)
    again.make_part(9)  # order of making does not matter
    for i in (0, 4, 11):
        a, b = product.make_part(i), again.make_part(i)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.class_ids, b.class_ids) and a.placement == b.placement
    assert product.make_part(0).placement != product.make_part(1).placement
    other_seed = SyntheticLine(seed=5, defect_rate=1.0, board_seed=3, jitter=JITTER)
    assert other_seed.make_part(0).placement != product.make_part(0).placement
    # The defect rate does not move the part: placement has its own stream.
    good = SyntheticLine(seed=2, defect_rate=0.0, board_seed=3, jitter=JITTER).make_part(4)
    assert good.placement == product.make_part(4).placement and not good.defective


def test_placements_stay_within_the_limits_and_use_them(product: SyntheticLine) -> None:
    placements = [product.placement(i) for i in range(200)]
    assert all(p is not None for p in placements)
    dx = np.array([p.dx for p in placements if p])
    dy = np.array([p.dy for p in placements if p])
    turn = np.array([p.rotation_deg for p in placements if p])
    gain = np.array([p.gain for p in placements if p])
    offset = np.array([p.offset for p in placements if p])
    assert np.abs(dx).max() <= 3 and np.abs(dy).max() <= 3 and np.abs(turn).max() <= 1
    assert np.abs(gain - 1).max() <= 0.05 and np.abs(offset).max() <= 10
    # Spread over the range, and sub-pixel (not whole-px steps).
    assert np.abs(dx).max() > 2.5 and np.abs(turn).max() > 0.8 and np.abs(offset).max() > 8
    assert np.abs(dx - np.round(dx)).max() > 0.3


def test_the_part_is_its_unplaced_self_placed(placed: list[tuple[SyntheticPart, SyntheticPart]]) -> None:
    """Away from the view's edge (where the board beyond the view comes in), the seen image is exactly the
    unjittered part through its placement, noise included."""
    inner = _inner(640)
    for part, unplaced in placed:
        assert part.placement is not None and unplaced.placement is None
        assert np.array_equal(part.template, unplaced.template)
        expected = part.placement.apply(unplaced.image)
        assert np.array_equal(part.image[inner], expected[inner]), part.index
        assert not np.array_equal(part.image, unplaced.image)


def test_boxes_follow_the_part(placed: list[tuple[SyntheticPart, SyntheticPart]]) -> None:
    """Every seen pixel a defect changed lies inside its jittered box, each box holds changed pixels, and each is
    tight within 2 px; the classes stay with their boxes."""
    inner = _inner(640)
    n_boxes = 0
    for part, unplaced in placed:
        assert part.placement is not None
        good = part.placement.apply(part.template)  # the same part without its defects, same light and noise
        changed = np.any(part.image != good, axis=2) & inner
        assert not (changed & ~_box_mask(part.boxes, 640)).any(), f"part {part.index}: change outside every box"
        assert np.array_equal(part.class_ids, unplaced.class_ids)  # no defect of these parts left the view
        for x0, y0, x1, y1 in part.boxes.astype(int):
            ys, xs = np.nonzero(changed[y0:y1, x0:x1])
            assert len(ys), f"part {part.index}: box {(x0, y0, x1, y1)} holds no change"
            if inner[y0:y1, x0:x1].all():
                slack = [xs.min(), ys.min(), x1 - x0 - 1 - xs.max(), y1 - y0 - 1 - ys.max()]
                assert max(slack) <= 2, f"part {part.index}: box {(x0, y0, x1, y1)} loose by {slack}"
            n_boxes += 1
        # The boxes moved with the part: their centres are the unplaced ones through the placement.
        centres = (unplaced.boxes[:, :2] + unplaced.boxes[:, 2:] - 1) / 2
        moved = centres @ part.placement.matrix[:, :2].T + part.placement.matrix[:, 2]
        seen = (part.boxes[:, :2] + part.boxes[:, 2:] - 1) / 2
        assert np.abs(moved - seen).max() <= 1.0
    assert n_boxes >= 40


def test_map_boxes_follows_a_known_shift_and_drops_boxes_that_leave() -> None:
    shift = Placement(size=100, dx=-5.0, dy=0.5, rotation_deg=0.0, gain=1.0, offset=0.0, noise=0.0, noise_seed=0)
    boxes, kept = shift.map_boxes(np.array([[0, 10, 3, 20], [50, 50, 60, 60]], np.float32))
    assert kept.tolist() == [False, True]  # the first box moved out of the view
    # x: pixels 50..59 land on 45..54 exactly; y: 50..59 land on 50.5..59.5, touching seen rows 50..60.
    assert boxes.tolist() == [[45.0, 50.0, 55.0, 61.0]]


# -------------------------------------------------------------------------------------------- the reference
def test_the_reference_has_no_defects(
    product: SyntheticLine, placed: list[tuple[SyntheticPart, SyntheticPart]]
) -> None:
    reference = product.reference()
    assert reference.shape == (640, 640, 3) and reference.dtype == np.uint8
    assert set(np.unique(reference).tolist()) == {COPPER, SUBSTRATE}
    # One product: whatever the line's seed, its reference is the board of board_seed, and every template is it.
    assert np.array_equal(reference, SyntheticLine(seed=99, board_seed=3).reference())
    assert not np.array_equal(reference, SyntheticLine(board_seed=4).reference())
    assert np.array_equal(SyntheticLine(seed=2, defect_rate=0.0, board_seed=3).make_part(5).image, reference)
    for part, unplaced in placed:
        assert np.array_equal(part.template, reference)
        # Unjittered, the part differs from the reference exactly inside its boxes.
        diff = np.any(unplaced.image != reference, axis=2)
        inside = _box_mask(unplaced.boxes, 640)
        assert diff.any() and not (diff & ~inside).any()
        for x0, y0, x1, y1 in unplaced.boxes.astype(int):
            assert diff[y0:y1, x0:x1].any()
    with pytest.raises(ValueError, match="board_seed"):
        SyntheticLine().reference()


def test_parts_differ_from_the_reference_only_at_defects_once_jitter_is_undone(
    product: SyntheticLine, placed: list[tuple[SyntheticPart, SyntheticPart]]
) -> None:
    """The known placement, undone (what a perfect registration does): off the reference's edges (where two
    bilinear resamplings blur a copper edge) and the view's border, the part is the reference within the noise
    and the light's clipping (25 grey levels); every defect stands out (copper for substrate or back)."""
    reference = product.reference()[:, :, 0].astype(np.float32)
    k = np.ones((3, 3), np.uint8)
    edges = cv2.dilate(reference, k) != cv2.erode(reference, k)
    off_edges = _inner(640) & ~edges
    for part, unplaced in placed:
        assert part.placement is not None
        undone = part.placement.undo(part.image[:, :, 0])
        error = np.abs(undone - reference)
        at_defects = _box_mask(unplaced.boxes, 640, grow=1)
        assert error[off_edges & ~at_defects].max() <= 25, part.index
        flipped = ((undone < MID_GREY) != (reference == COPPER)) & off_edges
        assert not (flipped & ~at_defects).any()
        for x0, y0, x1, y1 in unplaced.boxes.astype(int):
            assert flipped[y0:y1, x0:x1].any(), f"part {part.index}: defect at {(x0, y0, x1, y1)} not visible"


# --------------------------------------------------------------------------------------- writers, source, CLI
def test_cli_writes_a_product_folder_with_its_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f"
    args = ["folder", str(out), "-n", "6", "--size", "256", "--defect-rate", "0.5", "--board-seed", "3", "--jitter"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["reference"] == str(out / REFERENCE_FILE)
    line = SyntheticLine(seed=0, defect_rate=0.5, size=256, board_seed=3, jitter=Jitter())
    assert np.array_equal(cv2.imread(str(out / REFERENCE_FILE)), line.reference())
    truth = json.loads((out / "truth.json").read_text())
    assert truth["board_seed"] == 3 and truth["reference"] == REFERENCE_FILE
    assert truth["jitter"] == Jitter().to_dict()
    for entry in truth["parts"]:
        part = line.make_part(entry["index"])
        assert part.placement is not None
        assert np.array_equal(cv2.imread(str(out / entry["file"])), part.image)
        assert [d["xyxy"] for d in entry["defects"]] == part.boxes.tolist()
        assert np.allclose(entry["placement"]["matrix"], part.placement.matrix)
    assert {p["defective"] for p in truth["parts"]} == {True, False}
    # Without the options: no reference, no placements.
    assert main(["folder", str(tmp_path / "g"), "-n", "2", "--size", "128"]) == 0
    assert not (tmp_path / "g" / REFERENCE_FILE).exists()
    plain = json.loads((tmp_path / "g" / "truth.json").read_text())
    assert "board_seed" not in plain and "jitter" not in plain and "placement" not in plain["parts"][0]


def test_write_dataset_of_a_product(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path, n=4, seed=1, defect_rate=1.0, size=256, board_seed=2, jitter=Jitter())
    assert counts["train"] + counts["val"] == 4 and counts["boxes"] > 0
    assert np.array_equal(cv2.imread(str(tmp_path / REFERENCE_FILE)), SyntheticLine(size=256, board_seed=2).reference())
    split = json.loads((tmp_path / "split.json").read_text())
    assert split["board_seed"] == 2 and split["jitter"] == Jitter().to_dict()


def test_source_serves_the_jittered_product() -> None:
    config = SyntheticConfig(seed=4, defect_rate=0.5, size=256)
    source = SyntheticSource(config, limit=3, board_seed=1, jitter=JITTER)
    assert "board 1" in source.description and "jitter" in source.description
    line = SyntheticLine(seed=4, defect_rate=0.5, size=256, board_seed=1, jitter=JITTER)
    source.open()
    for i in range(3):
        item = source.read()
        assert item is not None
        image, truth = item
        part = line.make_part(i)
        assert np.array_equal(image, part.image) and np.array_equal(truth.boxes, part.boxes)
    assert source.read() is None


def test_bad_jitter_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="shift_px"):
        Jitter(shift_px=-1.0)
    with pytest.raises(ValueError, match="noise"):
        Jitter(noise=float("nan"))
    with pytest.raises(ValueError, match="contrast"):
        Jitter(contrast=1.5)
    with pytest.raises(ValueError, match="jitter moves pixels"):
        SyntheticLine(size=64, jitter=Jitter(shift_px=20.0))


def test_jitter_without_a_product_places_each_part_over_its_own_board() -> None:
    """Jitter alone: each part is still its own board, its template that board unjittered (its reference)."""
    line = SyntheticLine(seed=6, defect_rate=1.0, size=320, jitter=JITTER)
    a, b = line.make_part(0), line.make_part(1)
    assert a.placement is not None and not np.array_equal(a.template, b.template)
    unplaced = line.make_unplaced(0)
    inner = _inner(320)
    assert np.array_equal(a.image[inner], a.placement.apply(unplaced.image)[inner])


def test_jittered_parts_register_to_the_reference_within_a_tenth_of_a_pixel() -> None:
    """The runtime's registration recovers each part's known placement: the synthetic line exercises it for real."""
    from inspector.registration import Registrar

    line = SyntheticLine(seed=2, defect_rate=0.5, board_seed=3, jitter=Jitter())
    registrar = Registrar(line.reference())
    size = line.reference().shape[0]
    points = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1], [size / 2, size / 2, 1]])
    for i in range(12):
        part = line.make_part(i)
        result = registrar.register(part.image)
        assert result.ok, f"part {i}: {result}"
        error = np.abs(points @ result.warp.T - points @ part.placement.matrix.T).max()
        assert error < 0.1, f"part {i}: {error:.3f} px off its known placement"
