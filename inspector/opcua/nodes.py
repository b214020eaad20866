"""The address space: a `VisionSystem` object laid out as OPC 40100-1 (Machine Vision) lays out its
VisionSystemType, in the inspector's own namespace (docs/plant.md has the node map).

Every node has a string NodeId that is its browse path (`ns=<inspector>;s=VisionSystem.ResultManagement.
ResultValid`), so a PLC program can address nodes statically. Methods are added by `inspector.opcua.methods`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from asyncua import Node, Server, ua

from inspector.opcua.model import AUTO_STATES, VISION_STATES, PartResult

__all__ = ["NAMESPACE", "Nodes", "ResultSlot", "StateMachine", "build"]

NAMESPACE = "urn:inspector:machine-vision"
_S = ua.VariantType.String
_STRINGS: list[str] = []


def _base(node: Node, type_id: int) -> Node:
    """The standard type `type_id` (a node of the same session as `node`)."""
    return Node(node.session, ua.NodeId(type_id))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class StateMachine:
    """A FiniteStateMachineType instance with its states as StateType children (so that a client can browse them
    with their numbers); `set` writes CurrentState, its Id (the state's node) and its Number."""

    def __init__(self, node: Node, current: Node, current_id: Node, number: Node, states: dict[str, Node]) -> None:
        self.node = node
        self._current = current
        self._id = current_id
        self._number = number
        self.states = states
        self.state = ""

    @classmethod
    async def create(
        cls, parent: Node, idx: int, path: str, name: str, type_name: str, numbers: dict[str, int]
    ) -> StateMachine:
        # FiniteStateMachineType is abstract: OPC 40100-1 subtypes it, so do we (same type names).
        machine_type = await _base(parent, ua.ObjectIds.FiniteStateMachineType).add_object_type(
            ua.NodeId(type_name, idx), ua.QualifiedName(type_name, idx)
        )
        node = await parent.add_object(
            ua.NodeId(f"{path}.{name}", idx),
            ua.QualifiedName(name, idx),
            machine_type.nodeid,
            instantiate_optional=False,
        )
        current = await node.get_child(["0:CurrentState"])
        current_id = await current.get_child(["0:Id"])
        number = await current.add_property(0, "Number", ua.Variant(0, ua.VariantType.UInt32))
        states = {}
        for state, num in numbers.items():
            states[state] = await node.add_object(
                ua.NodeId(f"{path}.{name}.{state}", idx),
                ua.QualifiedName(state, idx),
                ua.NodeId(ua.ObjectIds.StateType),
            )
            await (await states[state].get_child(["0:StateNumber"])).write_value(ua.Variant(num, ua.VariantType.UInt32))
        machine = cls(node, current, current_id, number, states)
        await machine.set(next(iter(numbers)))
        return machine

    async def set(self, state: str) -> bool:
        """Enter `state`; False (and nothing written) when already in it."""
        if state == self.state:
            return False
        await self._current.write_value(ua.Variant(ua.LocalizedText(state, "en-US"), ua.VariantType.LocalizedText))
        await self._id.write_value(ua.Variant(self.states[state].nodeid, ua.VariantType.NodeId))
        number = await self.states[state].get_child(["0:StateNumber"])
        await self._number.write_value(ua.Variant(await number.read_value(), ua.VariantType.UInt32))
        self.state = state
        return True


@dataclass
class ResultSlot:
    """One entry of `ResultManagement/Results` (Result_00 is the newest)."""

    node: Node
    values: dict[str, Node]

    async def write(self, result: PartResult | None) -> None:
        for name, value in result_fields(result).items():
            await self.values[name].write_value(value)


def result_fields(result: PartResult | None) -> dict[str, ua.Variant]:
    """The values of one result slot (typed defaults for None)."""
    r = result
    return {
        "ResultId": ua.Variant(r.result_id if r else "", _S),
        "PartId": ua.Variant(str(r.part_id) if r else "", _S),
        "JobId": ua.Variant(r.job_id if r else "", _S),
        "ResultState": ua.Variant(r.state if r else 0, ua.VariantType.Int32),
        "Decision": ua.Variant(r.decision if r else "", _S),
        "Reasons": ua.Variant(list(r.reasons) if r else [], _S, is_array=True),
        "DefectClasses": ua.Variant(list(r.defect_classes) if r else [], _S, is_array=True),
        "Recipe": ua.Variant(r.recipe if r else "", _S),
        "ModelSha256": ua.Variant(r.model_sha256 if r else "", _S),
        "ThresholdsVersion": ua.Variant(r.thresholds_version if r else 0, ua.VariantType.UInt32),
        "LatencyMs": ua.Variant(r.latency_ms if r else 0.0, ua.VariantType.Double),
        "CreationTime": ua.Variant(r.created if r else _now(), ua.VariantType.DateTime),
    }


@dataclass
class Nodes:
    """The nodes the server writes after the build."""

    idx: int
    system: Node
    vision: StateMachine
    auto: StateMachine
    error_cause: Node
    ready: Node
    recipes: Node
    recipe_management: Node
    active_recipe: Node
    prepared_recipe: Node
    result_management: Node
    result_valid: Node
    results_dropped: Node
    slots: list[ResultSlot] = field(default_factory=list)
    result_event_type: Node | None = None


async def _var(parent: Node, idx: int, path: str, name: str, value: ua.Variant) -> Node:
    return await parent.add_variable(ua.NodeId(f"{path}.{name}", idx), ua.QualifiedName(name, idx), value)


async def build(server: Server, idx: int, recipes: list[str], active: str, results_kept: int) -> Nodes:
    """Types, the VisionSystem object and its components (no methods yet)."""
    base_object = server.get_node(ua.ObjectIds.BaseObjectType)
    system_type = await base_object.add_object_type(
        ua.NodeId("VisionSystemType", idx), ua.QualifiedName("VisionSystemType", idx)
    )
    event_type = await server.get_node(ua.ObjectIds.BaseEventType).add_object_type(
        ua.NodeId("ResultReadyEventType", idx), ua.QualifiedName("ResultReadyEventType", idx)
    )
    for name, value in (
        ("ResultId", ua.Variant("", _S)),
        ("PartId", ua.Variant("", _S)),
        ("JobId", ua.Variant("", _S)),
        ("MeasId", ua.Variant("", _S)),
        ("ResultState", ua.Variant(0, ua.VariantType.Int32)),
        ("IsPartial", ua.Variant(False, ua.VariantType.Boolean)),
        ("IsSimulated", ua.Variant(False, ua.VariantType.Boolean)),
        ("CreationTime", ua.Variant(_now(), ua.VariantType.DateTime)),
        ("InternalRecipeId", ua.Variant("", _S)),
        ("Decision", ua.Variant("", _S)),
        ("DefectClasses", ua.Variant(_STRINGS, _S, is_array=True)),
        ("ModelSha256", ua.Variant("", _S)),
        ("ThresholdsVersion", ua.Variant(0, ua.VariantType.UInt32)),
    ):
        await event_type.add_property(
            ua.NodeId(f"ResultReadyEventType.{name}", idx), ua.QualifiedName(name, idx), value
        )

    path = "VisionSystem"
    system = await server.nodes.objects.add_object(
        ua.NodeId(path, idx), ua.QualifiedName(path, idx), system_type.nodeid
    )
    vision = await StateMachine.create(system, idx, path, "VisionStateMachine", "VisionStateMachineType", VISION_STATES)
    auto = await StateMachine.create(
        vision.node,
        idx,
        f"{path}.VisionStateMachine",
        "AutomaticModeStateMachine",
        "VisionAutomaticModeStateMachineType",
        AUTO_STATES,
    )
    error_cause = await _var(vision.node, idx, f"{path}.VisionStateMachine", "ErrorCause", ua.Variant("", _S))
    ready = await _var(system, idx, path, "Ready", ua.Variant(False, ua.VariantType.Boolean))

    rm_path = f"{path}.RecipeManagement"
    recipe_management = await system.add_object(ua.NodeId(rm_path, idx), ua.QualifiedName("RecipeManagement", idx))
    recipes_folder = await recipe_management.add_folder(
        ua.NodeId(f"{rm_path}.Recipes", idx), ua.QualifiedName("Recipes", idx)
    )
    for name in recipes:
        recipe = await recipes_folder.add_object(
            ua.NodeId(f"{rm_path}.Recipes.{name}", idx), ua.QualifiedName(name, idx)
        )
        await recipe.add_property(
            ua.NodeId(f"{rm_path}.Recipes.{name}.ExternalId", idx),
            ua.QualifiedName("ExternalId", idx),
            ua.Variant(name, _S),
        )
    active_recipe = await _var(recipe_management, idx, rm_path, "ActiveRecipe", ua.Variant(active, _S))
    prepared_recipe = await _var(recipe_management, idx, rm_path, "PreparedRecipe", ua.Variant("", _S))

    res_path = f"{path}.ResultManagement"
    result_management = await system.add_object(ua.NodeId(res_path, idx), ua.QualifiedName("ResultManagement", idx))
    result_valid = await _var(
        result_management, idx, res_path, "ResultValid", ua.Variant(False, ua.VariantType.Boolean)
    )
    dropped = await _var(result_management, idx, res_path, "ResultsDropped", ua.Variant(0, ua.VariantType.UInt64))
    results = await result_management.add_folder(
        ua.NodeId(f"{res_path}.Results", idx), ua.QualifiedName("Results", idx)
    )
    slots = []
    for i in range(results_kept):
        slot_path = f"{res_path}.Results.Result_{i:02d}"
        slot = await results.add_object(ua.NodeId(slot_path, idx), ua.QualifiedName(f"Result_{i:02d}", idx))
        values = {}
        for name, value in result_fields(None).items():
            values[name] = await _var(slot, idx, slot_path, name, value)
        slots.append(ResultSlot(slot, values))
    return Nodes(
        idx=idx,
        system=system,
        vision=vision,
        auto=auto,
        error_cause=error_cause,
        ready=ready,
        recipes=recipes_folder,
        recipe_management=recipe_management,
        active_recipe=active_recipe,
        prepared_recipe=prepared_recipe,
        result_management=result_management,
        result_valid=result_valid,
        results_dropped=dropped,
        slots=slots,
        result_event_type=event_type,
    )
