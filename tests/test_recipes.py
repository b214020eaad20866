"""Recipe packages (`inspector/recipes.py`): the shipped packages check clean; a package with a missing file, classes
that disagree with its model's metadata, a reference model without its reference (or a plain model with one), or a
bad field fails `inspector recipe check` with one clear error naming the field and its line; a line config runs
the packages it lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import REFERENCE_MODEL, ConfigError, LineConfig, SyntheticConfig, load_config
from inspector.line import load_reference
from inspector.palette import PALETTE, class_colours
from inspector.recipes import check_package, load_package, main, recipe_card
from inspector.sim import SyntheticLine
from inspector.sim.changeover import ProductSource, plan_products
from tests.model_factory import rewrite_metadata

REPO = Path(__file__).resolve().parent.parent
PCB_CLASSES = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]


def package(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(text)
    return folder


def one_issue(ref: Path) -> str:
    """The one problem `check_package` finds, as printed (field, line, message)."""
    _, issues = check_package(ref)
    assert len(issues) == 1, [str(i) for i in issues]
    return str(issues[0])


@pytest.mark.parametrize("name", ["pcb", "pcb-no-reference", "pcb-320"])
def test_shipped_packages_check_clean(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    recipe_name, issues = check_package(REPO / "recipes" / name)
    assert (recipe_name, issues) == (name, [])
    _, recipe = load_package(name)  # found by name on the data search path
    assert recipe.model.path.is_file() and recipe.model.path.parent.name == "models"
    assert [c.name for c in recipe.classes or []] == PCB_CLASSES
    assert recipe.thresholds.classes and recipe.gate_ms == 2000 and recipe.synthetic == "pcb"
    # The detector's score floor must not hide what the calibrated thresholds keep.
    assert all(recipe.model.conf <= r.min_confidence for r in recipe.thresholds.classes.values())
    assert main(["check", str(REPO / "recipes" / name)]) == 0
    assert "OK: recipe " + name in capsys.readouterr().out


def test_the_mooncake_package_checks_clean() -> None:
    """The second product (issue 16): its own model, classes in the model's order, thresholds the detector floor
    does not hide, the synthetic mooncake line, no golden reference."""
    from inspector.sim.mooncake import MOONCAKE_NAMES

    assert check_package(REPO / "recipes" / "mooncake") == ("mooncake", [])
    _, recipe = load_package("mooncake")
    assert recipe.model.path.name == "mooncake-v8n-384-int8.onnx" and recipe.model.path.parent.name == "models"
    assert recipe.model.fallback is not None and recipe.model.fallback.name == "mooncake-v8n-384.onnx"
    assert [c.name for c in recipe.classes or []] == list(MOONCAKE_NAMES.values())
    assert sorted(recipe.thresholds.classes) == sorted(MOONCAKE_NAMES.values())
    assert all(recipe.model.conf <= r.min_confidence for r in recipe.thresholds.classes.values())
    assert recipe.synthetic == "mooncake" and recipe.reference.image is None


def test_missing_model_file_is_one_error_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = package(tmp_path / "board", "description: a board\nmodel: no-such-model.onnx\nthresholds: {version: 2}\n")
    text = one_issue(ref)
    assert text.startswith("model.path (line 2): file not found: no-such-model.onnx") and "board" in text
    assert main(["check", str(ref)]) == 1
    err = capsys.readouterr().err
    assert "1 problem" in err and "no-such-model.onnx" in err


def test_missing_thresholds_and_reference_files(tmp_path: Path) -> None:
    ref = package(tmp_path / "a", "model: deeppcb-v8n-480-int8.onnx\nthresholds: nowhere.yaml\n")
    assert one_issue(ref).startswith("thresholds (line 2): file not found: nowhere.yaml")
    ref = package(tmp_path / "b", "model: deeppcb-v8n-480-int8.onnx\n\nreference: golden.png\n")
    assert one_issue(ref).startswith("reference (line 3): file not found: golden.png")


def test_bad_thresholds_file_names_the_file(tmp_path: Path) -> None:
    ref = package(tmp_path / "c", "model: deeppcb-v8n-480-int8.onnx\nthresholds: rules.yaml\n")
    (ref / "rules.yaml").write_text("default: {min_confidence: 2}\n")
    text = one_issue(ref)
    assert text.startswith("thresholds (line 2): thresholds file") and "rules.yaml: default.min_confidence" in text


def test_classes_that_disagree_with_the_model_are_one_error(tmp_path: Path) -> None:
    swapped = [PCB_CLASSES[1], PCB_CLASSES[0], *PCB_CLASSES[2:]]
    lines = "".join(f"  - {{name: {n}}}\n" for n in swapped)
    ref = package(tmp_path / "d", f"model: deeppcb-v8n-480-int8.onnx\nclasses:\n{lines}")
    text = one_issue(ref)
    assert text.startswith("classes (line 2): the classes ['short', 'open',") and "model's metadata" in text
    ref = package(tmp_path / "e", "model: deeppcb-v8n-480-int8.onnx\nclasses:\n  - {name: open}\n")
    assert "disagree with the model's metadata" in one_issue(ref)


def test_thresholds_for_classes_the_model_lacks(tmp_path: Path) -> None:
    ref = package(
        tmp_path / "f", "model: deeppcb-v8n-480-int8.onnx\nthresholds:\n  classes: {crack: {min_confidence: 0.5}}\n"
    )
    assert one_issue(ref).startswith("thresholds (line 2): thresholds for classes the model does not have: ['crack']")


def test_reference_kind_against_the_package(tmp_path: Path, yolov8n_onnx: Path) -> None:
    ref_model = rewrite_metadata(yolov8n_onnx, tmp_path / "ref.onnx", {"inspector.input": "reference-diff"})
    cv2.imwrite(str(tmp_path / "golden.png"), np.zeros((32, 32, 3), np.uint8))
    without = package(tmp_path / "g", f"model: {ref_model}\n")
    assert one_issue(without).startswith("reference (line 1): ref.onnx is a reference model")
    with_ref = package(tmp_path / "h", f"model: {ref_model}\nreference: {tmp_path / 'golden.png'}\n")
    assert check_package(with_ref)[1] == []
    plain = package(tmp_path / "i", f"model: {yolov8n_onnx}\nreference: {tmp_path / 'golden.png'}\n")
    assert "takes plain images" in one_issue(plain)


def test_the_pcb_package_is_its_synthetic_boards_golden_reference(tmp_path: Path) -> None:
    """`recipes/pcb` (the golden-reference model) ships the defect-free render of its twin's board, and the twin's
    parts (the demo's changeover line) register to it; a board without the pcb line is an error."""
    _, recipe = load_package("pcb")
    assert recipe.synthetic == "pcb" and recipe.synthetic_board == 0 and recipe.reference.image is not None
    assert recipe.model.path.name == REFERENCE_MODEL.name
    shipped = cv2.imread(str(recipe.reference.image), cv2.IMREAD_COLOR)
    size = recipe.part.image_px[0] if recipe.part and recipe.part.image_px else 640
    render = SyntheticLine(board_seed=recipe.synthetic_board, size=size).reference()
    # The same board: equal up to the floating point of another CPU's drawing (a grey level here and there).
    assert shipped.shape == render.shape and np.abs(shipped.astype(int) - render).mean() < 0.5
    plan = plan_products("pcb", None)
    source = ProductSource(plan, SyntheticConfig(seed=4))
    source.open()
    registrar = load_reference("pcb", recipe.reference)
    assert registrar is not None
    for _ in range(3):
        item = source.read()
        assert item is not None and registrar.register(item[0]).ok
    bad = package(tmp_path / "cake", "model: deeppcb-v8n-480-int8.onnx\nsynthetic: mooncake\nsynthetic_board: 3\n")
    assert "synthetic_board is a board of the synthetic pcb line" in one_issue(bad)


def test_bad_fields_each_with_their_line(tmp_path: Path) -> None:
    ref = package(
        tmp_path / "j",
        "model: deeppcb-v8n-480-int8.onnx\ngate_ms: -5\ncolour: red\nclasses:\n  - {name: open, colour: red}\n",
    )
    _, issues = check_package(ref)
    assert sorted(str(i) for i in issues) == [
        "classes.0.colour (line 5): String should match pattern '^#[0-9A-Fa-f]{6}$' (got 'red')",
        "colour (line 3): unknown field (not allowed here)",
        "gate_ms (line 2): Input should be greater than 0 (got -5)",
    ]


def test_a_model_without_metadata_takes_the_package_classes(tmp_path: Path, yolov8n_onnx: Path) -> None:
    bare = rewrite_metadata(yolov8n_onnx, tmp_path / "bare.onnx", {"names": None})
    ref = package(tmp_path / "k", f"model: {bare}\nclasses: [{{name: rect}}, {{name: circle}}]\n")
    assert check_package(ref)[1] == []
    assert load_package(ref)[1].model.names == {0: "rect", 1: "circle"}
    ref = package(tmp_path / "l", f"model: {bare}\n")
    assert "no class names in its metadata" in one_issue(ref)


def test_files_next_to_the_package_win(tmp_path: Path) -> None:
    folder = tmp_path / "own"
    folder.mkdir()
    shutil.copy(REPO / "models" / "deeppcb-v8n-320-int8.onnx", folder / "deeppcb-v8n-480-int8.onnx")
    package(folder, "name: own-board\nmodel: deeppcb-v8n-480-int8.onnx\n")
    name, recipe = load_package(folder / "recipe.yaml")
    assert name == "own-board" and recipe.model.path == (folder / "deeppcb-v8n-480-int8.onnx").resolve()


def test_line_config_runs_the_packages_it_lists(tmp_path: Path) -> None:
    config = LineConfig.model_validate({"recipe_packages": ["pcb", str(REPO / "recipes" / "pcb-320")], "recipe": "pcb"})
    assert set(config.recipes) == {"pcb", "pcb-320"} and config.recipe == "pcb"
    assert config.recipes["pcb-320"].model.path.name == "deeppcb-v8n-320-int8.onnx"
    with pytest.raises(ValueError, match="recipe 'mooncake' is not defined under recipes or recipe_packages"):
        LineConfig.model_validate({"recipe_packages": ["pcb"], "recipe": "mooncake"})
    bad = package(tmp_path / "broken", "model: gone.onnx\n")
    path = tmp_path / "line.yaml"
    path.write_text(f"recipe_packages:\n  - {bad}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value.issues[0]).startswith(f"recipe_packages (line 1): recipe package {bad / 'recipe.yaml'}: ")
    assert "model.path (line 1): file not found: gone.onnx" in str(err.value)
    with pytest.raises(ConfigError, match="unknown field"):
        load_config_text(tmp_path, "recipe_packages: [pcb]\nrecipes:\n  x: {nonsense: 1}\n")


def load_config_text(tmp_path: Path, text: str) -> LineConfig:
    path = tmp_path / "line2.yaml"
    path.write_text(text)
    return load_config(path, env={})


def test_dashboard_colours_come_from_the_recipe_else_the_palette() -> None:
    _, recipe = load_package("pcb")
    names = dict(enumerate(PCB_CLASSES))
    card = recipe_card("pcb", recipe, names)
    assert [c["colour"] for c in card["classes"]] == [c.colour for c in recipe.classes or []]
    assert card["description"].startswith("Bare PCB") and card["gate_ms"] == 2000
    assert class_colours({0: "a", 1: "b", 12: "m"}) == {0: PALETTE[0], 1: PALETTE[1], 12: PALETTE[0]}
    assert recipe_card("default", None, {0: "rect"})["classes"] == [{"id": 0, "name": "rect", "colour": PALETTE[0]}]
