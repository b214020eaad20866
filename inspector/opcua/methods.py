"""The VisionSystem's methods: the PLC's commands to the pipeline, as OPC 40100-1 names them where it has them.

    VisionStateMachine.Halt / Reset              pause / resume the line
    AutomaticModeStateMachine.StartSingleJob     trigger one part with the PLC's part id (triggered lines)
    RecipeManagement.PrepareRecipe               check a recipe and select it for ActivateRecipe
    RecipeManagement.ActivateRecipe              switch to it, as `cmd/recipe` does (inspector extension)
    ResultManagement.AcknowledgeResult           the PLC has read the newest result (inspector extension)

Handlers run on the server's asyncio loop. A trigger is quick and runs there; a recipe switch may load a model for
seconds, so it runs on one worker thread of its own (switches are serialised) while the loop keeps serving.
A refused call answers a Bad status code (the OPC UA way), never raises into asyncua.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asyncua import ua

from inspector.opcua.nodes import Nodes
from inspector.plc.contract import CommandError, PlcCommands, parse_command

__all__ = ["Handlers", "Jobs", "add_methods"]

log = logging.getLogger(__name__)

_S, _I32, _B = ua.VariantType.String, ua.VariantType.Int32, ua.VariantType.Boolean
_MAX_JOBS = 10_000


def _arg(name: str, vtype: ua.VariantType, description: str) -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = -1
    arg.Description = ua.LocalizedText(description)
    return arg


def _bad(code: int, why: str) -> ua.StatusCode:
    log.warning("OPC UA method refused: %s", why)
    return ua.StatusCode(code)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


class Jobs:
    """Part id -> JobId of the parts started by `StartSingleJob` and not decided yet (shared with the dispatch
    thread, which takes a job's id when its verdict arrives)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, str] = {}
        self._count = 0

    def start(self, part_id: int) -> str:
        with self._lock:
            self._count += 1
            job_id = f"job-{self._count}"
            self._jobs[part_id] = job_id
            while len(self._jobs) > _MAX_JOBS:  # a part that never got a verdict must not grow this forever
                del self._jobs[next(iter(self._jobs))]
            return job_id

    def finish(self, part_id: int) -> str:
        with self._lock:
            return self._jobs.pop(part_id, "")

    def forget(self, part_id: int) -> None:
        self.finish(part_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


class Handlers:
    """The method callbacks. recipes: the line's recipe names; active_recipe: the recipe inspecting now;
    on_ack: called with the acknowledged result id (None: not the newest, nothing acknowledged)."""

    def __init__(
        self,
        commands: PlcCommands,
        nodes: Nodes,
        jobs: Jobs,
        recipes: list[str],
        active_recipe: Callable[[], str],
        latest_result: Callable[[], str],
        on_ack: Callable[[], Any],
    ) -> None:
        self.commands = commands
        self.nodes = nodes
        self.jobs = jobs
        self.recipes = recipes
        self.active_recipe = active_recipe
        self.latest_result = latest_result
        self.on_ack = on_ack
        self.prepared = ""
        self._switcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opcua-recipe")
        self.calls = 0

    def close(self) -> None:
        self._switcher.shutdown(wait=True, cancel_futures=True)

    async def start_single_job(
        self, parent: ua.NodeId, meas_id: Any, part_id: Any, recipe_id: Any, product_id: Any
    ) -> list[ua.Variant] | ua.StatusCode:
        text = _text(part_id.Value if isinstance(part_id, ua.Variant) else part_id)
        try:
            _, number = parse_command("trigger", text.encode())  # the same rule as cmd/trigger
        except CommandError as exc:
            return _bad(ua.StatusCodes.BadInvalidArgument, f"StartSingleJob PartId {text[:40]!r}: {exc.detail}")
        assert isinstance(number, int)
        recipe = _text(recipe_id.Value if isinstance(recipe_id, ua.Variant) else recipe_id)
        if recipe and recipe != self.active_recipe():
            return _bad(ua.StatusCodes.BadInvalidState, f"StartSingleJob recipe {recipe!r} is not active")
        job_id = self.jobs.start(number)
        try:
            self.commands.trigger(number)
        except RuntimeError as exc:  # free-run line, or stopped
            self.jobs.forget(number)
            return _bad(ua.StatusCodes.BadInvalidState, f"StartSingleJob: {exc}")
        self.calls += 1
        return [ua.Variant(job_id, _S), ua.Variant(0, _I32)]

    async def prepare_recipe(self, parent: ua.NodeId, external_id: Any, internal_id: Any) -> Any:
        name = _text(getattr(external_id, "Value", external_id)) or _text(getattr(internal_id, "Value", internal_id))
        if name not in self.recipes:
            return _bad(ua.StatusCodes.BadNotFound, f"PrepareRecipe: no recipe {name[:64]!r} in the line config")
        self.prepared = name
        await self.nodes.prepared_recipe.write_value(ua.Variant(name, _S))
        self.calls += 1
        return [ua.Variant(name, _S), ua.Variant(True, _B), ua.Variant(0, _I32)]

    async def activate_recipe(self, parent: ua.NodeId, internal_id: Any) -> Any:
        name = _text(getattr(internal_id, "Value", internal_id)) or self.prepared
        if name not in self.recipes:
            return _bad(ua.StatusCodes.BadNotFound, f"ActivateRecipe: no recipe {name[:64]!r} (PrepareRecipe first)")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._switcher, self.commands.set_recipe, name, "opcua")
        except KeyError:
            return _bad(ua.StatusCodes.BadNotFound, f"ActivateRecipe: unknown recipe {name!r}")
        except Exception as exc:  # loading its model failed: the old recipe goes on inspecting
            log.exception("ActivateRecipe %s failed", name)
            return _bad(ua.StatusCodes.BadInternalError, f"ActivateRecipe {name!r}: {type(exc).__name__}")
        await self.nodes.active_recipe.write_value(ua.Variant(name, _S))
        log.info("OPC UA: recipe %s active", name)
        self.calls += 1
        return [ua.Variant(0, _I32)]

    async def halt(self, parent: ua.NodeId, cause: Any = None, description: Any = None) -> Any:
        self.commands.pause()
        self.calls += 1
        return [ua.Variant(0, _I32)]

    async def reset(self, parent: ua.NodeId, cause: Any = None, description: Any = None) -> Any:
        self.commands.resume()
        self.calls += 1
        return [ua.Variant(0, _I32)]

    async def acknowledge_result(self, parent: ua.NodeId, result_id: Any) -> Any:
        wanted = _text(getattr(result_id, "Value", result_id))
        if wanted and wanted != self.latest_result():
            return [ua.Variant(1, _I32)]  # a stale acknowledgement: the newer result stays valid
        await self.on_ack()
        self.calls += 1
        return [ua.Variant(0, _I32)]


async def add_methods(nodes: Nodes, handlers: Handlers) -> None:
    idx = nodes.idx
    error = _arg("Error", _I32, "0: done; see docs/plant.md")
    cause = [_arg("Cause", _I32, "why (free)"), _arg("CauseDescription", _S, "why, in words")]

    async def add(
        parent: Any, path: str, name: str, func: Any, inputs: list[ua.Argument], outputs: list[ua.Argument]
    ) -> None:
        await parent.add_method(ua.NodeId(f"{path}.{name}", idx), ua.QualifiedName(name, idx), func, inputs, outputs)

    vsm = "VisionSystem.VisionStateMachine"
    await add(nodes.vision.node, vsm, "Halt", handlers.halt, cause, [error])
    await add(nodes.vision.node, vsm, "Reset", handlers.reset, cause, [error])
    job_inputs = [
        _arg("MeasId", _S, "the PLC's measurement id (kept with the result)"),
        _arg("PartId", _S, "the part's id: an integer 0..2^53-1, as text"),
        _arg("RecipeId", _S, "empty, or the active recipe's name"),
        _arg("ProductId", _S, "the product (informational)"),
    ]
    job_outputs = [_arg("JobId", _S, "names this job in its ResultReadyEvent"), error]
    await add(
        nodes.auto.node,
        f"{vsm}.AutomaticModeStateMachine",
        "StartSingleJob",
        handlers.start_single_job,
        job_inputs,
        job_outputs,
    )
    rm = "VisionSystem.RecipeManagement"
    await add(
        nodes.recipe_management,
        rm,
        "PrepareRecipe",
        handlers.prepare_recipe,
        [_arg("ExternalId", _S, "a recipe name of the line config"), _arg("InternalIdIn", _S, "or its internal id")],
        [_arg("InternalIdOut", _S, "the recipe's internal id"), _arg("IsCompleted", _B, "prepared"), error],
    )
    await add(
        nodes.recipe_management,
        rm,
        "ActivateRecipe",
        handlers.activate_recipe,
        [_arg("InternalId", _S, "empty: the prepared recipe")],
        [error],
    )
    await add(
        nodes.result_management,
        "VisionSystem.ResultManagement",
        "AcknowledgeResult",
        handlers.acknowledge_result,
        [_arg("ResultId", _S, "the result read (empty: the newest)")],
        [_arg("Error", _I32, "0: acknowledged; 1: not the newest result (nothing changed)")],
    )
