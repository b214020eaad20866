"""One line's whole configuration: every section, the recipes and the checks that span sections."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from inspector.config.camera import CameraConfig
from inspector.config.dashboard import DashboardConfig, StoreConfig
from inspector.config.pipeline import PipelineConfig, TriggerConfig
from inspector.config.plant import MqttConfig, OpcuaConfig, SparkplugConfig
from inspector.config.product import ModelConfig, RecipeConfig, ReferenceConfig
from inspector.config.section import Section
from inspector.types import Thresholds

__all__ = ["LineConfig"]


class LineConfig(Section):
    camera: CameraConfig = CameraConfig()
    trigger: TriggerConfig = TriggerConfig()
    model: ModelConfig = ModelConfig()
    thresholds: Thresholds = Thresholds()
    reference: ReferenceConfig = ReferenceConfig()
    pipeline: PipelineConfig = PipelineConfig()
    mqtt: MqttConfig = MqttConfig()
    sparkplug: SparkplugConfig = SparkplugConfig()
    dashboard: DashboardConfig = DashboardConfig()
    store: StoreConfig = StoreConfig()
    opcua: OpcuaConfig = OpcuaConfig()
    recipes: dict[str, RecipeConfig] = Field(
        default_factory=dict,
        description="named products; `model`, `thresholds` and `reference` above are recipe 'default'",
    )
    recipe_packages: list[str] = Field(
        default_factory=list,
        description="recipe packages this line may run: a folder holding recipe.yaml, or a package name found as "
        "recipes/<name>/ on the data search path; each becomes a recipe named by its package",
    )
    recipe: str = Field("default", description="the recipe active at start")

    @field_validator("recipe_packages")
    @classmethod
    def _add_packages(cls, refs: list[str], info: ValidationInfo) -> list[str]:
        """Each package becomes a recipe (`recipes` is validated before this field, so it is in `info.data`)."""
        if refs and "recipes" in info.data:
            from inspector.recipes import add_packages  # reads the package files; imports this module

            add_packages(info.data["recipes"], refs)
        return refs

    @model_validator(mode="after")
    def _software_trigger_needs_triggers(self) -> LineConfig:
        camera = self.camera
        if camera.source == "genicam" and camera.genicam.trigger == "software" and self.trigger.mode != "triggered":
            raise ValueError(
                "camera.genicam.trigger 'software' takes one frame per PLC trigger: set trigger.mode 'triggered'"
            )
        return self

    @model_validator(mode="after")
    def _recipe_exists(self) -> LineConfig:
        if self.recipe != "default" and self.recipe not in self.recipes:
            raise ValueError(f"recipe {self.recipe!r} is not defined under recipes or recipe_packages")
        return self
