"""One line's configuration: pydantic models with `extra="forbid"`, validated once at start-up.

A line is one YAML file (see `edge/` for examples). Every section has defaults, so an empty file is a valid
line: the synthetic source, the shipped reference model, the embedded broker and the dashboard on loopback.

One module per concern: `camera` (sources), `pipeline` (trigger and part flow), `product` (model, golden
reference, recipe), `plant` (MQTT, Sparkplug, OPC UA), `dashboard` (logins, store), `line` (the whole line) and
`loader` (YAML, environment overrides, errors naming field and line, `check_files`). Import from here.
"""

from __future__ import annotations

from inspector.config.camera import CameraConfig, GenicamConfig, SyntheticConfig
from inspector.config.dashboard import DashboardConfig, LoginLimitsConfig, StoreConfig, UserConfig
from inspector.config.line import LineConfig
from inspector.config.loader import ENV_PREFIX, ConfigError, ConfigIssue, check_files, load_config
from inspector.config.pipeline import PipelineConfig, TriggerConfig
from inspector.config.plant import MqttConfig, OpcuaConfig, OpcuaUserConfig, SparkplugConfig, TlsConfig
from inspector.config.product import (
    DEFAULT_MODEL,
    REFERENCE_MODEL,
    ClassStyle,
    ModelConfig,
    PartGeometry,
    RecipeConfig,
    ReferenceConfig,
)

__all__ = [
    "DEFAULT_MODEL",
    "ENV_PREFIX",
    "REFERENCE_MODEL",
    "CameraConfig",
    "ClassStyle",
    "ConfigError",
    "ConfigIssue",
    "DashboardConfig",
    "GenicamConfig",
    "LineConfig",
    "LoginLimitsConfig",
    "ModelConfig",
    "MqttConfig",
    "OpcuaConfig",
    "OpcuaUserConfig",
    "PartGeometry",
    "PipelineConfig",
    "RecipeConfig",
    "ReferenceConfig",
    "SparkplugConfig",
    "StoreConfig",
    "SyntheticConfig",
    "TlsConfig",
    "TriggerConfig",
    "UserConfig",
    "check_files",
    "load_config",
]
