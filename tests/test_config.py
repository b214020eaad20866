"""Line config: YAML plus environment overrides, validated with field-named, line-numbered errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import ConfigError, LineConfig, check_files, load_config


def write(tmp_path: Path, text: str, name: str = "line.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_file_and_empty_file_give_the_defaults(tmp_path: Path) -> None:
    assert load_config(None, env={}) == LineConfig()
    assert load_config(write(tmp_path, ""), env={}) == LineConfig()
    assert load_config(write(tmp_path, "# only a comment\n"), env={}) == LineConfig()


def test_a_full_file_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
camera:
  id: cam-2
  source: opencv
  uri: rtsp://10.0.0.5/stream1
  fps: 12.5
trigger: {mode: triggered, max_pending: 8}
model:
  path: models/pcb.onnx
  sessions: 2
  threads: 1
thresholds:
  version: 3
  default: {min_confidence: 0.4}
  classes:
    short: {min_confidence: 0.3, min_area_px: 20, max_count: 1}
  roi: [[0, 0], [100, 0], [100, 100]]
pipeline: {mode: throughput, gate_ms: 1500, failsafe_decision: pass}
mqtt: {url: "mqtt://broker:1883", line: L7}
recipes:
  boardB:
    model: {path: models/b.onnx}
recipe: boardB
""",
    )
    config = load_config(path, env={})
    assert config.camera.uri == "rtsp://10.0.0.5/stream1" and config.camera.fps == 12.5
    assert config.trigger.mode == "triggered" and config.model.sessions == 2
    assert config.thresholds.for_class("short").max_count == 1 and config.thresholds.roi is not None
    assert config.pipeline.mode == "throughput" and config.pipeline.gate_ms == 1500
    assert config.pipeline.failsafe_decision == "pass"
    assert config.recipes["boardB"].model.path == Path("models/b.onnx") and config.recipe == "boardB"


def test_environment_overrides_win_and_are_parsed_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  gate_ms: 900\nrecipes:\n  BoardB: {}\n")
    env = {
        "INSPECTOR_PIPELINE__GATE_MS": "1500",
        "INSPECTOR_MQTT__URL": "mqtts://plc-broker:8883",
        "INSPECTOR_MQTT__ENABLED": "false",
        "INSPECTOR_MODEL__PROVIDERS": "[cuda, cpu]",
        "INSPECTOR_THRESHOLDS__CLASSES__SHORT__MIN_CONFIDENCE": "0.6",
        "INSPECTOR_RECIPES__BOARDB__THRESHOLDS__VERSION": "4",  # matches the existing key "BoardB"
        "INSPECTOR_CONFIG": "/etc/inspector/line.yaml",  # no "__": not an override
        "OTHER__THING": "x",
    }
    config = load_config(path, env=env)
    assert config.pipeline.gate_ms == 1500.0
    assert config.mqtt.url == "mqtts://plc-broker:8883" and config.mqtt.enabled is False
    assert config.model.providers == ["cuda", "cpu"]
    assert config.thresholds.for_class("short").min_confidence == 0.6
    assert config.recipes["BoardB"].thresholds.version == 4


def test_errors_name_the_field_and_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """camera:
  source: opencv
  uri: "0"
  fps: -3
pipeline:
  mode: fastest
thresholds:
  classes:
    short:
      min_confidence: 1.5
model:
  providers: [cpu, tpu]
  colour: red
""",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    found = {(i.path, i.line) for i in err.value.issues}
    assert found == {
        ("camera.fps", 4),
        ("pipeline.mode", 6),
        ("thresholds.classes.short.min_confidence", 10),
        ("model.providers.1", 12),
        ("model.colour", 13),
    }
    text = str(err.value)
    assert str(path) in text and "camera.fps (line 4)" in text and "unknown field" in text
    assert "'tpu'" in text  # the offending value is quoted back


def test_model_level_rule_points_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "camera:\n  source: folder\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    (issue,) = err.value.issues
    assert issue.path == "camera" and issue.line == 1 and "camera.uri is required" in issue.message


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"INSPECTOR_PIPELINE__QUEUE_SIZE": "0", "INSPECTOR_NOSUCH__KEY": "1"})
    issues = {i.path: i for i in err.value.issues}
    assert issues["pipeline.queue_size"].env == "INSPECTOR_PIPELINE__QUEUE_SIZE"
    assert issues["nosuch"].env == "INSPECTOR_NOSUCH__KEY"
    assert "(from $INSPECTOR_PIPELINE__QUEUE_SIZE)" in str(err.value)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("camera:\n  id: a\n   source: x\n", 3, "not valid YAML"),
        ("- just\n- a list\n", 1, "must be a mapping"),
        ("camera: [unclosed\n", 2, "not valid YAML"),
    ],
)
def test_malformed_yaml_says_where(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    (issue,) = err.value.issues
    assert issue.line == line and words in issue.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml", env={})


def test_unknown_recipe_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipe 'b' is not defined under recipes"):
        load_config(write(tmp_path, "recipes:\n  a: {}\nrecipe: b\n"), env={})


def test_check_files_reports_missing_models_and_folders(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    config = LineConfig.model_validate(
        {
            "model": {"path": str(model)},
            "camera": {"source": "folder", "uri": str(tmp_path / "missing")},
            "recipes": {"b": {"model": {"path": str(tmp_path / "b.onnx")}}},
        }
    )
    assert {i.path for i in check_files(config)} == {"camera.uri", "recipes.b.model.path"}
