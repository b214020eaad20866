"""Registration of a frame to its golden reference (issue 15): known synthetic motions are recovered to well under
half a pixel (the issue asks < 0.5 px), lighting drift does not bias them, and every way of failing is a typed
`Unregistered` with its reason, never an exception or a silently wrong warp. On the line: a recipe with a reference
registers each frame before the detector, a part that does not register is a fail-safe reject `unregistered`, and
registration time is the `register` stage of the stats and `/metrics`."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import ModelConfig, ReferenceConfig
from inspector.detector import ModelError
from inspector.line import load_recipe
from inspector.pipeline import Pipeline
from inspector.prometheus import LineCollector, line_registry, render
from inspector.reference import REFERENCE_DIFF, reference_composite
from inspector.registration import Limits, Registered, Registrar, Unregistered, _inverse, _motion, register
from inspector.sources import MemorySource
from inspector.types import Decision, Thresholds, Verdict
from tests.model_factory import legacy_v5_onnx, rewrite_metadata

H, W = 480, 640


def _board(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A PCB-like grey part: pads, traces and holes on a mid-grey substrate with a little noise."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 70, np.uint8)
    for _ in range(40):
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            x2, y2 = (x1, int(rng.integers(0, h))) if rng.random() < 0.5 else (int(rng.integers(0, w)), y1)
            cv2.line(img, (x1, y1), (x2, y2), int(rng.integers(150, 230)), int(rng.integers(2, 7)))
        else:
            r = int(rng.integers(5, 18))
            cv2.circle(img, (x1, y1), r, int(rng.integers(160, 240)), -1, cv2.LINE_AA)
            cv2.circle(img, (x1, y1), r // 3, 20, -1, cv2.LINE_AA)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def _moved(image: np.ndarray, dx: float, dy: float, angle_deg: float, scale: float = 1.0) -> tuple[np.ndarray, ...]:
    """(frame, true warp): the part turned by angle_deg (OpenCV's sense) about the centre, scaled, then shifted."""
    h, w = image.shape[:2]
    warp = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle_deg, scale)
    warp[:, 2] += (dx, dy)
    frame = cv2.warpAffine(image, warp, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return frame, warp


def _error_px(found: np.ndarray, true: np.ndarray, shape: tuple[int, int] = (H, W)) -> float:
    """Largest distance between where the two warps put the image's corners and centre."""
    h, w = shape
    points = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1], [w / 2, h / 2, 1]], float).T
    return float(np.abs(found @ points - true @ points).max())


@pytest.fixture(scope="module")
def board() -> np.ndarray:
    return _board()


@pytest.fixture(scope="module")
def registrar(board: np.ndarray) -> Registrar:
    return Registrar(board)


@pytest.mark.parametrize(
    ("dx", "dy", "angle"),
    [(0.0, 0.0, 0.0), (1.3, -0.7, 0.2), (-2.25, 1.6, -0.45), (7.4, 5.1, 1.2), (-24.6, 17.3, -2.5)],
)
def test_recovers_a_known_shift_and_rotation_to_sub_pixel(
    registrar: Registrar, board: np.ndarray, dx: float, dy: float, angle: float
) -> None:
    frame, true = _moved(board, dx, dy, angle)
    result = registrar.register(frame)
    assert isinstance(result, Registered), result
    error = _error_px(result.warp, true)
    print(f"shift ({dx}, {dy}) angle {angle}: error {error:.4f} px, {result.ms:.1f} ms, motion {result.motion}")
    assert error < 0.1  # the issue asks < 0.5 px
    assert result.motion.dx == pytest.approx(dx, abs=0.1) and result.motion.dy == pytest.approx(dy, abs=0.1)
    assert result.motion.angle_deg == pytest.approx(-angle, abs=0.02)  # ours: clockwise on the screen
    assert result.correlation > 0.99
    # The resampled reference sits on the frame: the difference channel is nearly empty away from the rim.
    inner = (slice(40, H - 40), slice(40, W - 40))
    assert cv2.absdiff(result.reference, frame)[inner].mean() < 2.0


def test_lighting_drift_and_noise_do_not_bias_the_motion(registrar: Registrar, board: np.ndarray) -> None:
    frame, true = _moved(board, 3.4, -1.8, 0.6)
    rng = np.random.default_rng(5)
    darker = np.clip(frame.astype(np.float32) * 0.75 + 30 + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    result = registrar.register(cv2.cvtColor(darker, cv2.COLOR_GRAY2BGR))  # a colour camera's frame is fine too
    assert isinstance(result, Registered), result
    assert _error_px(result.warp, true) < 0.15


@pytest.mark.parametrize("model", ["similarity", "affine"])
def test_scale_models_recover_a_small_scale_change(board: np.ndarray, model: str) -> None:
    frame, true = _moved(board, -1.2, 2.3, 0.4, scale=1.02)
    result = Registrar(board, model=model).register(frame)  # type: ignore[arg-type]
    assert isinstance(result, Registered), result
    assert _error_px(result.warp, true) < 0.1
    assert result.motion.scale == pytest.approx(1.02, abs=1e-3)
    # The rigid model cannot follow a 2 % scale: 6 px at the corners, and it says so rather than pretending.
    rigid = Registrar(board, limits=Limits(min_correlation=0.99)).register(frame)
    assert not rigid.ok or _error_px(rigid.warp, true) > 1.0


def test_a_planted_defect_registers_and_stands_out_in_the_difference(registrar: Registrar, board: np.ndarray) -> None:
    frame, _ = _moved(board, 2.6, -1.1, 0.3)
    # Copper where the part has bare substrate: the first 40x40 window of the frame's middle without features.
    x, y = next(
        (x, y)
        for y in range(60, H - 100, 20)
        for x in range(60, W - 100, 20)
        if frame[y : y + 40, x : x + 40].max() < 100
    )
    cx, cy = x + 20, y + 20
    cv2.circle(frame, (cx, cy), 6, 255, -1)
    result = registrar.register(frame)
    assert isinstance(result, Registered), result
    composite = reference_composite(frame, result.reference)
    diff = composite[:, :, 2]
    assert diff[cy - 4 : cy + 5, cx - 4 : cx + 5].min() > 120, "the defect is in the difference channel"
    rest = diff.copy()
    rest[y : y + 40, x : x + 40] = 0
    assert rest[40:-40, 40:-40].mean() < 2.0, "and little else is"
    unregistered = cv2.absdiff(frame, board)[40:-40, 40:-40].mean()
    assert unregistered > 5 * rest[40:-40, 40:-40].mean(), "without registration the whole board would differ"


def test_another_part_is_unregistered_with_low_correlation(registrar: Registrar) -> None:
    result = registrar.register(_board(seed=9))
    assert isinstance(result, Unregistered)
    assert result.reason == "low-correlation"
    assert result.correlation is not None and result.correlation < 0.9
    assert "correlation" in result.detail and result.ms > 0


def test_a_blank_or_a_wrong_size_frame_is_unregistered(registrar: Registrar) -> None:
    blank = registrar.register(np.full((H, W), 128, np.uint8))
    assert isinstance(blank, Unregistered) and blank.reason in {"diverged", "low-correlation"}
    small = registrar.register(np.zeros((H // 2, W // 2, 3), np.uint8))
    assert isinstance(small, Unregistered) and small.reason == "size"
    assert "320x240" in small.detail and "640x480" in small.detail


def test_motion_beyond_the_limits_is_refused(board: np.ndarray) -> None:
    frame, _ = _moved(board, 12.0, -3.0, 2.0)
    tight = Registrar(board, limits=Limits(max_shift_px=5.0))
    result = tight.register(frame)
    assert isinstance(result, Unregistered) and result.reason == "motion-limit"
    assert result.motion is not None and result.motion.dx == pytest.approx(12.0, abs=0.1), "it says what it found"
    turned = Registrar(board, limits=Limits(max_angle_deg=1.0)).register(frame)
    assert isinstance(turned, Unregistered) and turned.reason == "motion-limit"
    assert Registrar(board).register(frame).ok


def test_a_reference_without_texture_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="too little texture"):
        Registrar(np.full((H, W), 90, np.uint8))
    with pytest.raises(ValueError, match="motion model"):
        Registrar(_board(), model="projective")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_correlation"):
        Limits(min_correlation=1.5)


def test_one_off_register_matches_the_registrar(board: np.ndarray, registrar: Registrar) -> None:
    frame, _ = _moved(board, 0.8, 0.4, -0.1)
    once, kept = register(frame, board), registrar.register(frame)
    assert once.ok and kept.ok
    np.testing.assert_allclose(once.warp, kept.warp, atol=1e-9)
    np.testing.assert_array_equal(once.reference, kept.reference)


def test_the_frame_in_grey_comes_back_for_the_composite(board: np.ndarray, registrar: Registrar) -> None:
    frame, _ = _moved(board, 0.8, 0.4, -0.1)
    result = registrar.register(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    assert isinstance(result, Registered), result
    np.testing.assert_array_equal(result.frame, frame)  # grey of grey-turned-BGR: the same pixels


@pytest.mark.parametrize("model", ["rigid", "affine"])
def test_points_leaving_the_frame_take_the_slow_path_to_the_same_answer(board: np.ndarray, model: str) -> None:
    """Large shifts push textured points out of the frame: the bounding-box shortcut must send such iterations to
    the path that drops them, and the answer must stay sub-pixel (the precomputed Hessian would be wrong there)."""
    registrar = Registrar(board, model=model)  # type: ignore[arg-type]
    level, shape = registrar._levels[0], registrar._half.shape  # the finest level tracked: half the frame's size
    centre = level.centre
    for shift in (0.0, 30.0):
        warp = np.array([[1, 0, shift], [0, 1, 0], [0, 0, 1]], float)
        where = level.points.where(warp, centre)
        every_point = bool(level.points.inside(where, shape).all())
        assert level.points.all_inside(warp, centre, shape) == every_point
        assert every_point == (shift == 0.0)
    frame, true = _moved(board, 30.0, -12.0, 0.8)
    result = registrar.register(frame)
    assert isinstance(result, Registered), result
    assert _error_px(result.warp, true) < 0.1


def test_closed_forms_match_numpy() -> None:
    """The per-iteration small-matrix shortcuts: the inverse of an affine step, the principal scales of a warp."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        warp = np.eye(3)
        warp[:2] += rng.normal(0, 0.05, (2, 3)) * [[1, 1, 100], [1, 1, 100]]
        np.testing.assert_allclose(_inverse(warp), np.linalg.inv(warp), atol=1e-12)
        motion = _motion(warp)
        low, high = sorted(np.linalg.svd(warp[:2, :2], compute_uv=False))
        assert motion.scale_range == pytest.approx((low, high), abs=1e-12)
        assert (motion.dx, motion.dy) == (warp[0, 2], warp[1, 2])
    assert _inverse(np.array([[1.0, 2.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])) is None  # singular


# ------------------------------------------------------------------------------------------------------ the line
class _Collect:
    name = "collect"

    def __init__(self) -> None:
        self.verdicts: list[Verdict] = []
        self._lock = threading.Lock()

    def handle(self, verdict: Verdict) -> None:
        with self._lock:
            self.verdicts.append(verdict)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def stub_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(plain, reference) stub detectors whose objectness is a cell's mean first network channel: for a composite,
    |frame - reference| (`tests.model_factory.legacy_v5_onnx`); so they find what differs from the reference."""
    plain = legacy_v5_onnx(tmp_path_factory.mktemp("line") / "plain.onnx", imgsz=64, batch="batch")
    return plain, rewrite_metadata(plain, plain.with_name("ref.onnx"), {"inspector.input": REFERENCE_DIFF})


def test_the_line_registers_each_frame_and_fails_safe_what_does_not_register(
    stub_models: tuple[Path, Path], tmp_path: Path
) -> None:
    # Square frames: the stub model sees them without letterbox padding (whose grey it would take for a difference).
    board = _board(h=512, w=512)
    board[128:192, 128:192] = 70  # bare substrate where one part gets copper (one 64 px cell of the stub model)
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), board)
    recipe = load_recipe(
        "pcb", ModelConfig(path=stub_models[1]), Thresholds(), "latency", reference=ReferenceConfig(image=reference)
    )
    assert recipe.reference is not None and recipe.model["reference"]["image"] == str(reference)
    good = [_moved(board, dx, dy, a)[0] for dx, dy, a in [(1.5, -2.0, 0.3), (-3.2, 0.7, -0.6), (0.4, 2.6, 1.0)]]
    copper = _moved(board, 2.0, 1.0, -0.4)[0]
    copper[134:188, 134:188] = 250
    frames = [*good, copper, _board(seed=9, h=512, w=512)]  # the last is another part: it cannot register
    sink = _Collect()
    pipeline = Pipeline(MemorySource(frames, count=len(frames)), {"pcb": recipe}, recipe="pcb", sinks=[sink])
    pipeline.start()
    assert pipeline.wait(60)
    verdicts = {v.part_id: v for v in sink.verdicts}
    assert sorted(verdicts) == [1, 2, 3, 4, 5]
    for part in (1, 2, 3):
        assert verdicts[part].decision == Decision.PASS and not verdicts[part].failsafe, verdicts[part].reasons
    assert verdicts[4].decision == Decision.REJECT and not verdicts[4].failsafe, "the copper is found"
    assert all(120 < (x1 + x2) / 2 < 200 for x1, _, x2, _ in verdicts[4].detections.xyxy[verdicts[4].kept])
    assert verdicts[5].decision == Decision.REJECT and verdicts[5].reasons == ["unregistered"]
    assert verdicts[5].failsafe and len(verdicts[5].detections) == 0
    stats = pipeline.stats()
    assert stats["ledger"]["failsafe"] == 1 and stats["ledger"]["decided"] == 5
    assert stats["stage_ms"]["register"]["p50"] > 0
    metrics = render(line_registry(LineCollector(pipeline.stats)))
    assert 'inspector_stage_ms{stage="register"}' in metrics


def test_a_recipe_refuses_a_reference_model_without_reference_and_a_plain_model_with_one(
    stub_models: tuple[Path, Path], tmp_path: Path
) -> None:
    plain, ref = stub_models
    with pytest.raises(ModelError, match="is a reference model"):
        load_recipe("pcb", ModelConfig(path=ref), Thresholds(), "latency")
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), _board())
    with pytest.raises(ModelError, match="is a plain model"):
        load_recipe("pcb", ModelConfig(path=plain), Thresholds(), "latency", reference=ReferenceConfig(image=reference))
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((H, W), 80, np.uint8))
    with pytest.raises(ModelError, match=r"recipe pcb: reference.image .*flat.png: .*too little texture"):
        load_recipe("pcb", ModelConfig(path=ref), Thresholds(), "latency", reference=ReferenceConfig(image=flat))
    with pytest.raises(ModelError, match="missing or not an image"):
        load_recipe(
            "pcb", ModelConfig(path=ref), Thresholds(), "latency", reference=ReferenceConfig(image=tmp_path / "x.png")
        )
    assert load_recipe("plain", ModelConfig(path=plain), Thresholds(), "latency").reference is None
