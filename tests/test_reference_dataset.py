"""The reference model's input (issue 15): the composite function's channels, and `import-deeppcb --reference` on a
tiny DeepPCB-style folder that the test writes (same split and labels as without it, PNG composites, data.yaml says
so; `dataset mix` keeps the marker and refuses to mix composites with plain images)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from inspector.cli import main as cli
from inspector.reference import INPUT_KEY, REFERENCE_DIFF, reference_composite

SIZE = 64
N_PAIRS = 4


def _board(rng: np.random.Generator) -> np.ndarray:
    """A binarised grey PCB-like template (DeepPCB's look): white background, black traces."""
    img = np.full((SIZE, SIZE), 255, np.uint8)
    for _ in range(3):
        y = int(rng.integers(6, SIZE - 6))
        cv2.line(img, (0, y), (SIZE - 1, y), 0, 3)
    return img


def _make_deeppcb(root: Path) -> dict[str, list[tuple[int, int, int, int, int]]]:
    """N_PAIRS pairs in DeepPCB's layout (grey JPEGs, `x1,y1,x2,y2,type` annotations, trainval.txt); stem -> boxes."""
    rng = np.random.default_rng(3)
    (root / "group90000" / "90000").mkdir(parents=True)
    (root / "group90000" / "90000_not").mkdir()
    index, written = [], {}
    for i in range(N_PAIRS):
        stem = f"90000{i:03d}"
        template = _board(rng)
        test = template.copy()
        x, y = (int(v) for v in rng.integers(10, SIZE - 10, 2))
        cv2.circle(test, (x, y), 4, 0, -1)  # a "copper" blob
        boxes = [(x - 5, y - 5, x + 5, y + 5, 5)]
        cv2.imwrite(str(root / "group90000" / "90000" / f"{stem}_test.jpg"), test)
        cv2.imwrite(str(root / "group90000" / "90000" / f"{stem}_temp.jpg"), template)
        sep = "," if i % 2 else " "  # DeepPCB uses both
        text = "".join(sep.join(str(v) for v in box) + "\n" for box in boxes)
        (root / "group90000" / "90000_not" / f"{stem}.txt").write_text(text)
        index.append(f"group90000/90000/{stem}.jpg group90000/90000_not/{stem}.txt")
        written[stem] = boxes
    (root / "trainval.txt").write_text("\n".join(index) + "\n")
    return written


def test_composite_channels_are_frame_reference_and_difference() -> None:
    reference = np.full((32, 48), 200, np.uint8)
    reference[:, 20:24] = 30  # a trace
    frame = reference.copy()
    frame[5:9, 5:9] = 60  # a planted blob only in the frame
    out = reference_composite(frame, reference)
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], frame)
    np.testing.assert_array_equal(out[:, :, 1], reference)
    diff = out[:, :, 2]
    assert (diff[5:9, 5:9] == 140).all()
    outside = np.ones_like(diff, bool)
    outside[5:9, 5:9] = False
    assert (diff[outside] == 0).all(), "the difference is zero where the images agree"
    # BGR input is greyed the OpenCV way, and gives the same composite for grey-looking colour images.
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(reference_composite(bgr, cv2.cvtColor(reference, cv2.COLOR_GRAY2BGR)), out)
    colour = np.zeros((32, 48, 3), np.uint8)
    colour[:, :, 2] = 255  # pure red
    red_grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(reference_composite(colour, colour)[:, :, 0], red_grey)
    # The reference against itself: a defect-free part, zero difference.
    same = reference_composite(reference, reference)
    assert not same[:, :, 2].any()
    with pytest.raises(ValueError, match="differ in size"):
        reference_composite(frame, reference[:, :40])
    with pytest.raises(ValueError, match="uint8"):
        reference_composite(frame.astype(np.float32), reference)


def test_import_deeppcb_reference_writes_composites_with_the_same_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "deeppcb"
    pairs = _make_deeppcb(src)
    plain, ref = tmp_path / "plain", tmp_path / "ref"
    split_args = ["--val-fraction", "0.25", "--seed", "5"]
    assert cli(["dataset", "import-deeppcb", str(src), str(plain), *split_args]) == 0
    assert cli(["dataset", "import-deeppcb", str(src), str(ref), *split_args, "--reference"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts == {
        "out": str(ref),
        "train": 3,
        "val": 1,
        "boxes": N_PAIRS,
        "templates": N_PAIRS,
        "registered": N_PAIRS,
        "unregistered": 0,
    }

    split_plain = json.loads((plain / "split.json").read_text())
    split_ref = json.loads((ref / "split.json").read_text())
    assert split_ref == split_plain and len(split_ref["val"]) == 1
    spec = yaml.safe_load((ref / "data.yaml").read_text())
    assert spec[INPUT_KEY] == REFERENCE_DIFF
    assert INPUT_KEY not in yaml.safe_load((plain / "data.yaml").read_text())

    for split in ("train", "val"):
        assert sorted(p.stem for p in (ref / "images" / split).iterdir()) == sorted(split_ref[split])
        assert not list((ref / "images" / split).glob("*.jpg")), "composites are PNG, not JPEG"
        for stem in split_ref[split]:
            labels = (ref / "labels" / split / f"{stem}.txt").read_text()
            assert labels == (plain / "labels" / split / f"{stem}.txt").read_text() and labels.startswith("4 ")
            test = cv2.imread(str(src / "group90000" / "90000" / f"{stem}_test.jpg"), cv2.IMREAD_GRAYSCALE)
            temp = cv2.imread(str(src / "group90000" / "90000" / f"{stem}_temp.jpg"), cv2.IMREAD_GRAYSCALE)
            image = cv2.imread(str(ref / "images" / split / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            assert image.shape == (SIZE, SIZE, 3)
            np.testing.assert_array_equal(image[:, :, 0], test)  # lossless
            # The template registered to the test image: these pairs are aligned, so it barely moves.
            assert np.abs(image[:, :, 1].astype(np.int16) - temp).mean() < 3
            np.testing.assert_array_equal(image[:, :, 2], cv2.absdiff(image[:, :, 0], image[:, :, 1]))
            # The planted blob shows in the difference channel, inside its labelled box.
            x1, y1, x2, y2, _ = pairs[stem][0]
            assert image[y1:y2, x1:x2, 2].max() > 100
            template = cv2.imread(str(ref / "templates" / split / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(template, reference_composite(temp, temp))
            assert not template[:, :, 2].any()


def test_mix_keeps_the_composite_marker_and_refuses_plain_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "deeppcb"
    _make_deeppcb(src)
    plain, ref = tmp_path / "plain", tmp_path / "ref"
    assert cli(["dataset", "import-deeppcb", str(src), str(plain)]) == 0
    assert cli(["dataset", "import-deeppcb", str(src), str(ref), "--reference"]) == 0
    mix = tmp_path / "mix"
    assert cli(["dataset", "mix", str(mix), "--base", str(ref / "data.yaml"), "--backgrounds", "2"]) == 0
    spec = yaml.safe_load((mix / "data.yaml").read_text())
    assert spec[INPUT_KEY] == REFERENCE_DIFF
    rows = (mix / "train.txt").read_text().split()
    assert all(r.endswith(".png") for r in rows) and sum("/templates/" in r for r in rows) == 2
    capsys.readouterr()
    assert cli(["dataset", "mix", str(tmp_path / "bad"), "--base", str(ref / "data.yaml"), "--add", str(plain)]) == 1
    assert INPUT_KEY in capsys.readouterr().err


def test_import_deeppcb_reference_registers_each_template_to_its_test_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DeepPCB's pairs are off by a few pixels and stretched a little: the template is registered to its test image
    before the composite, so that the difference channel holds the defect and not every edge; a template that
    cannot be registered (here: a blank one) is used as it is and listed."""
    size, rng = 160, np.random.default_rng(8)
    template = np.full((size, size), 255, np.uint8)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(8, size - 8, 2))
        cv2.circle(template, (x, y), int(rng.integers(3, 8)), 0, -1)
        cv2.line(template, (x, 0), (x, size - 1), 0, 2) if rng.random() < 0.5 else None
    warp = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), 0.25, 1.01)  # a turn and a stretch
    warp[:, 2] += (1.7, -1.2)
    test = cv2.warpAffine(template, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    box = (100, 20, 116, 36)
    cv2.rectangle(test, box[:2], box[2:], 128, -1)
    root = tmp_path / "deeppcb" / "group90000"
    (root / "90000").mkdir(parents=True)
    (root / "90000_not").mkdir()
    index = []
    for stem, temp in (("90000000", template), ("90000001", np.full((size, size), 255, np.uint8))):
        cv2.imwrite(str(root / "90000" / f"{stem}_test.png"), test)
        cv2.imwrite(str(root / "90000" / f"{stem}_temp.jpg"), temp, [cv2.IMWRITE_JPEG_QUALITY, 100])
        (root / "90000" / f"{stem}_test.jpg").write_bytes((root / "90000" / f"{stem}_test.png").read_bytes())
        (root / "90000_not" / f"{stem}.txt").write_text(" ".join(map(str, box)) + " 5\n")
        index.append(f"group90000/90000/{stem}.jpg group90000/90000_not/{stem}.txt")
    (tmp_path / "deeppcb" / "trainval.txt").write_text("\n".join(index) + "\n")
    out = tmp_path / "ref"
    assert cli(["dataset", "import-deeppcb", str(tmp_path / "deeppcb"), str(out), "--reference"]) == 0
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["registered"] == 1 and counts["unregistered"] == 1
    report = json.loads((out / "registration.json").read_text())
    assert report["motion"] == "affine" and list(report["unregistered"]) == ["90000001"]
    assert "too little texture" in report["unregistered"]["90000001"]

    image = cv2.imread(str(next(out.glob("images/*/90000000.png"))), cv2.IMREAD_UNCHANGED)
    diff = image[:, :, 2].astype(np.float64)
    raw = reference_composite(test, template)[:, :, 2].astype(np.float64)
    outside = np.ones_like(diff, bool)
    outside[box[1] - 3 : box[3] + 4, box[0] - 3 : box[2] + 4] = False
    inner = np.zeros_like(outside)
    inner[10:-10, 10:-10] = True
    print(f"difference outside the defect: {raw[outside & inner].mean():.2f} raw, {diff[outside & inner].mean():.2f}")
    assert diff[outside & inner].mean() < 0.25 * raw[outside & inner].mean(), "edges no longer ring"
    assert np.median(diff[box[1] + 2 : box[3] - 1, box[0] + 2 : box[2] - 1]) > 100, "the defect stays"
