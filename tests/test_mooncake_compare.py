"""`bench/mooncake_compare.py`: two mooncake files judged on the same parts, with a sign test on the parts only one
got wrong (the shipped int8 model, the synthetic line, a few parts)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "mooncake_compare.py"
MODEL = ROOT / "models" / "mooncake-v8n-384-int8.onnx"
THRESHOLDS = ROOT / "calibration" / "mooncake-v8n-384-int8-synthetic.yaml"
PARTS = ["--parts", "12", "--seed", "13", "--defect-rate", "0.5"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def _compare(*args: str) -> dict:
    proc = _run(*args, *PARTS)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_same_file_twice_differs_on_no_part() -> None:
    result = _compare("--b", str(MODEL), str(THRESHOLDS))
    assert result["defective"] + result["good"] == 12 and result["defective"] > 0 and result["good"] > 0
    assert (result["escapes_a"], result["false_rejects_a"]) == (result["escapes_b"], result["false_rejects_b"])
    only = ("escapes_a_only", "escapes_b_only", "false_rejects_a_only", "false_rejects_b_only")
    assert [result[k] for k in only] == [0, 0, 0, 0]
    assert result["p_escapes"] == result["p_false_rejects"] == 1.0


def test_rules_that_never_reject_let_every_defective_part_pass(tmp_path: Path) -> None:
    never = tmp_path / "never.yaml"
    never.write_text(yaml.safe_dump({"version": 1, "default": {"enabled": False}}))
    result = _compare("--b", str(MODEL), str(never))
    assert (result["escapes_b"], result["false_rejects_b"]) == (result["defective"], 0)
    assert result["escapes_b_only"] == result["defective"] - result["escapes_a"] > 0
    assert result["escapes_a_only"] == 0
    assert result["false_rejects_a_only"] == result["false_rejects_a"]


def test_a_missing_file_is_named() -> None:
    proc = _run("--b", str(MODEL), "no-such-thresholds.yaml", "--parts", "1")
    assert proc.returncode == 2
    assert "no-such-thresholds.yaml: no such file" in proc.stderr


@pytest.fixture(scope="module")
def sign_test() -> Callable[[int, int], float]:
    """The bench's function, loaded from its file (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location("mooncake_compare", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module.sign_test


@pytest.mark.parametrize(
    ("a_only", "b_only", "p"),
    [(0, 0, 1.0), (5, 5, 1.0), (0, 10, round(2 / 1024, 5)), (3, 7, round(2 * (1 + 10 + 45 + 120) / 1024, 5))],
)
def test_sign_test_is_the_exact_two_sided_binomial(
    sign_test: Callable[[int, int], float], a_only: int, b_only: int, p: float
) -> None:
    assert sign_test(a_only, b_only) == p
    assert sign_test(b_only, a_only) == p
