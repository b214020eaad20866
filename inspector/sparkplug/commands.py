"""NCMD and DCMD: what a SCADA writes, checked and run on the pipeline through the same `PlcCommands` interface the
plain MQTT link uses (`inspector.plc.contract`).

    NCMD  Node Control/Rebirth = true          publish NBIRTH and every DBIRTH again (the node does it)
    DCMD  Device Control/Recipe = "boardB"     switch product between two parts (may load a model: seconds)
    DCMD  Device Control/Pause = true          stop inspecting; Device Control/Resume = true: inspect again

Metrics may come by name or by the alias of the birth. Writing `false` to a momentary boolean does nothing (a
SCADA button may write true then false). Anything else is refused with a `PayloadError`, which the node logs,
counts and reports on the device's `Device Control/Last Error`; nothing a host sends can stop the node.
Commands run on a thread of their own, in order, so that paho's network thread never waits on a model load.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from inspector.plc.contract import PlcCommands
from inspector.sparkplug.metrics import PAUSE_CMD, REBIRTH, RECIPE_CMD, RESUME_CMD, MetricValue
from inspector.sparkplug.payloads import CommandMetric, PayloadError

__all__ = ["Action", "CommandRunner", "device_actions", "node_actions"]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a recipe name, as on the plain link's cmd/recipe


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do: `rebirth` (node), `recipe` (with its name), `pause` or `resume` (a device)."""

    kind: str
    device: str | None = None
    recipe: str | None = None


def _resolve(metric: CommandMetric, aliases: Mapping[int, str]) -> str:
    if metric.name is not None:
        return metric.name
    assert metric.alias is not None
    if metric.alias not in aliases:
        raise PayloadError("unknown_alias", f"alias {metric.alias} is not one of this node's metrics")
    return aliases[metric.alias]


def _flag(name: str, value: MetricValue) -> bool:
    if not isinstance(value, bool):
        raise PayloadError("wrong_type", f"{name} must be a Boolean, got {type(value).__name__} {value!r:.40}")
    return value


def node_actions(metrics: Sequence[CommandMetric], aliases: Mapping[int, str]) -> list[Action]:
    """The actions of an NCMD (only `Node Control/Rebirth` is writable)."""
    actions = []
    for metric in metrics:
        name = _resolve(metric, aliases)
        if name != REBIRTH:
            raise PayloadError("unknown_metric", f"{name!r} is not writable; the node accepts {REBIRTH!r}")
        if _flag(name, metric.value):
            actions.append(Action("rebirth"))
    return actions


def device_actions(device: str, metrics: Sequence[CommandMetric], aliases: Mapping[int, str]) -> list[Action]:
    """The actions of a DCMD to `device`, in the order written; all are checked before any runs."""
    actions = []
    for metric in metrics:
        name = _resolve(metric, aliases)
        if name == RECIPE_CMD:
            if not isinstance(metric.value, str):
                raise PayloadError("wrong_type", f"{name} must be a String, got {type(metric.value).__name__}")
            if not _NAME_RE.match(metric.value):
                raise PayloadError("bad_name", f"recipe name {metric.value[:80]!r} must be 1..64 of [A-Za-z0-9_.-]")
            actions.append(Action("recipe", device, metric.value))
        elif name in (PAUSE_CMD, RESUME_CMD):
            if _flag(name, metric.value):
                actions.append(Action("pause" if name == PAUSE_CMD else "resume", device))
        else:
            writable = ", ".join(repr(n) for n in (RECIPE_CMD, PAUSE_CMD, RESUME_CMD))
            raise PayloadError("unknown_metric", f"{name!r} is not writable; a device accepts {writable}")
    return actions


class CommandRunner:
    """Runs device actions on each device's `PlcCommands`, one at a time, on its own thread.

    done: called after each action with `(action, error)`; error is None when it worked, else why not.
    """

    def __init__(self, handlers: Mapping[str, PlcCommands], done: Callable[[Action, str | None], None]) -> None:
        self._handlers = dict(handlers)
        self._done = done
        self._jobs: queue.Queue[Action | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, action: Action) -> None:
        self._jobs.put(action)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while (action := self._jobs.get()) is not None:
            self._done(action, self._execute(action))

    def _execute(self, action: Action) -> str | None:
        handler = self._handlers.get(action.device or "")
        if handler is None:
            return f"no device {action.device!r} on this node"
        try:
            if action.kind == "recipe":
                assert action.recipe is not None
                try:
                    handler.set_recipe(action.recipe, "sparkplug")
                except KeyError:
                    return f"unknown_recipe: no recipe named {action.recipe!r} in the line config"
            elif action.kind == "pause":
                handler.pause()
            elif action.kind == "resume":
                handler.resume()
            else:
                return f"unknown action {action.kind!r}"
        except Exception as exc:  # the pipeline refused it: say so, never stop the node
            log.warning("Sparkplug command %s on %s failed: %s", action.kind, action.device, exc)
            return f"command_failed: {type(exc).__name__}: {str(exc)[:200]}"
        log.info(
            "Sparkplug command %s%s on %s", action.kind, f" {action.recipe}" if action.recipe else "", action.device
        )
        return None
