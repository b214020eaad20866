"""The OPC UA server of a line (docs/plant.md), modelled on OPC 40100-1 (Machine Vision), one job per module:

    model      states, one part's result, the bounded hand-off to the server's loop (no asyncua: cheap to import)
    security   logins and roles, the server certificate, the client trust list
    nodes      the address space: the VisionSystem object, its state machines, recipes and results
    methods    StartSingleJob, PrepareRecipe, ActivateRecipe, Halt, Reset, AcknowledgeResult
    server     `OpcuaServer`, the pipeline sink that runs asyncua in a thread of its own

`OpcuaServer` needs asyncua and is loaded on first use, so `import inspector.opcua` does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspector.opcua.server import OpcuaServer

__all__ = ["OpcuaServer"]


def __getattr__(name: str) -> Any:
    if name == "OpcuaServer":
        value = importlib.import_module("inspector.opcua.server").OpcuaServer
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
