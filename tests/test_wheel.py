"""A wheel install works outside the repository (issue 17): the package finds its default model, self-test record
and thresholds through `inspector.resources`' search path, not through paths relative to a checkout.

The wheel is built from this checkout and installed without dependencies into a fresh virtual environment; the
dependencies come from the test environment through a `.pth` path line (they are the same packages a full install
would fetch, and fetching them again would only make the test slow). The demo then runs from another folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_the_demo_from_another_folder(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    (wheel,) = dist.glob("inspector-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)  # type: ignore[attr-defined]
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    installed = venv / "share" / "inspector"
    assert (installed / "models" / "deeppcb-v8n-480-int8.onnx").is_file()
    assert (installed / "calibration" / "deeppcb-v8n-480-int8-synthetic.yaml").is_file()
    assert (installed / "models" / "deeppcb-ref-v8n-480-int8.onnx").is_file()  # the demo's golden-reference model
    assert (installed / "calibration" / "deeppcb-ref-v8n-480-int8-synthetic.yaml").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSPECTOR_", "PYTHON"))}
    done = subprocess.run(
        [str(venv / "bin" / "inspector"), "demo", "--parts", "50", "--port", "0"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    where = subprocess.run(
        [str(python), "-c", "import inspector.config as c; print(c.__file__); print(c.DEFAULT_MODEL)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == str(installed / "models" / "deeppcb-v8n-480-int8.onnx")
    assert "model deeppcb-ref-v8n-480-int8.onnx (int8, CPUExecutionProvider, self-test passed)" in done.stderr
    assert "board 0, jitter" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["parts"] == 50 and result["plc"]["missing_answers"] == 0
