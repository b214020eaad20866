"""`OpcuaServer`: the OPC UA server of one line, a pipeline sink and a command source (docs/plant.md).

Threads: asyncua runs an asyncio loop; it runs in a thread of its own (`opcua`). `handle()` runs on the pipeline's
dispatch thread and only builds a small immutable `PartResult` and puts it in a bounded `Mailbox` (the oldest
drops, counted, when the loop falls behind): it never waits for the loop. On the loop, one task publishes the
results (the Results slots, ResultValid, a `ResultReadyEvent` per part) and one follows the line's state every
`status_period_s` (the two state machines, Ready, ErrorCause). Method calls run there too (`inspector.opcua.methods`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from asyncua import Server, ua

from inspector.config import OpcuaConfig
from inspector.opcua import nodes as address_space
from inspector.opcua.methods import Handlers, Jobs, add_methods
from inspector.opcua.model import LineState, Mailbox, PartResult, line_state
from inspector.opcua.security import APPLICATION_URI, ClientTrust, InspectorUsers, RoleRules, server_certificate
from inspector.plc.broker import free_port
from inspector.plc.contract import PlcCommands
from inspector.types import Verdict

__all__ = ["OpcuaServer"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 30.0


class OpcuaServer:
    """The OPC UA server, and a pipeline sink (`name = "opcua"`, `handle(verdict)`, `close()`).

    commands: the pipeline's command handler (trigger, pause, resume, set_recipe), as the PLC link gets it.
    status: the line's state, cheap (called every `status_period_s` on the server's thread):
        `{"running", "camera_connected", "camera_failures", "paused", "ready", "triggered", "recipe"}`.
    recipes: the recipe names of the line config.
    After `start()`: `endpoint` (`opc.tcp://host:port/path`, with the port actually bound).
    """

    name = "opcua"

    def __init__(
        self,
        config: OpcuaConfig,
        commands: PlcCommands,
        status: Callable[[], dict[str, Any]],
        recipes: list[str],
    ) -> None:
        self.config = config
        self.commands = commands
        self.status = status
        self.recipes = list(recipes)
        self.endpoint = ""
        self.mailbox = Mailbox(config.queue_size)
        self.jobs = Jobs()
        self.published = 0
        self.state = LineState("Preoperational", "Initialized")
        self._users = InspectorUsers(config)  # reads user certificates now: a bad path fails the start
        self._model_error = ""
        self._latest = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind, build the address space and serve; returns once clients can connect (raises when it cannot)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT_S):
            raise RuntimeError(f"the OPC UA server did not start within {_START_TIMEOUT_S:.0f} s")
        if self._error is not None:
            self._thread.join(5.0)
            self._thread = None
            raise self._error
        log.info("OPC UA server on %s", self.endpoint)

    def stop(self) -> None:
        """Stop serving (idempotent); what is still in the mailbox is published first."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(10.0)
        log.info("OPC UA server stopped: %d results published, %d dropped", self.published, self.mailbox.dropped)

    def close(self) -> None:
        """Sink protocol: same as `stop()`."""
        self.stop()

    # -- the sink -----------------------------------------------------------------------------------------------

    def handle(self, verdict: Verdict) -> None:
        """One part's result to the server's loop (dispatch thread: never waits)."""
        if "error" in verdict.reasons:
            self._model_error = "the model could not inspect a part"
        elif not verdict.failsafe:
            self._model_error = ""
        self.mailbox.put(PartResult.of(verdict, self.jobs.finish(int(verdict.part_id))))

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "published": self.published,
            "dropped": self.mailbox.dropped,
            "waiting": len(self.mailbox),
            "state": self.state.vision,
            "auto_state": self.state.auto,
        }

    # -- the loop -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # a failed start is re-raised by start(); later, it is logged
            if not self._started.is_set():
                self._error = exc
            else:
                log.exception("the OPC UA server failed")
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server, nodes, handlers = await self._build()
        wake = asyncio.Event()
        loop = self._loop

        def wake_up() -> None:
            loop.call_soon_threadsafe(wake.set)

        self.mailbox.wake = wake_up
        if len(self.mailbox):
            wake.set()
        async with server:
            self._started.set()
            evgen = await server.get_event_generator(nodes.result_event_type, nodes.system)
            tasks = [
                asyncio.create_task(self._publish(nodes, evgen, wake)),
                asyncio.create_task(self._follow(nodes)),
            ]
            await self._stop.wait()
            tasks[1].cancel()
            wake.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            handlers.close()
        self._loop = None

    async def _build(self) -> tuple[Server, address_space.Nodes, Handlers]:
        config = self.config
        server = Server(user_manager=self._users)
        await server.init()
        host = f"[{config.host}]" if ":" in config.host else config.host
        # Port 0: pick a free one here, so that the endpoints the server advertises name the real port.
        port = config.port or free_port(config.host)
        self.endpoint = f"opc.tcp://{host}:{port}{config.path}"
        server.set_endpoint(self.endpoint)
        server.set_server_name("inspector VisionSystem")
        await server.set_application_uri(APPLICATION_URI)
        tokens: list[type] = [ua.UserNameIdentityToken, ua.X509IdentityToken]
        if config.anonymous != "off":
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_security_policy(
            [getattr(ua.SecurityPolicyType, name.replace("None", "NoSecurity")) for name in config.security],
            permission_ruleset=RoleRules(),
        )
        cert, key = await server_certificate(config)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        trust = ClientTrust(config.pki_dir, config.trust_all_clients)
        await trust.load()
        server.set_certificate_validator(trust)
        idx = await server.register_namespace(address_space.NAMESPACE)
        status = self._status()
        nodes = await address_space.build(
            server, idx, self.recipes, str(status.get("recipe", "default")), config.results_kept
        )
        handlers = Handlers(
            self.commands,
            nodes,
            self.jobs,
            self.recipes,
            active_recipe=lambda: str(self._status().get("recipe", "")),
            latest_result=lambda: self._latest,
            on_ack=lambda: nodes.result_valid.write_value(ua.Variant(False, ua.VariantType.Boolean)),
        )
        await add_methods(nodes, handlers)
        return server, nodes, handlers

    def _status(self) -> dict[str, Any]:
        try:
            return dict(self.status())
        except Exception:  # a failing status callback must not stop the server
            log.exception("OPC UA status callback failed")
            return {}

    async def _publish(self, nodes: address_space.Nodes, evgen: Any, wake: asyncio.Event) -> None:
        """Publish what the dispatch thread hands over until stopped (then what is left)."""
        newest: list[PartResult] = []
        while True:
            await wake.wait()
            wake.clear()
            batch = self.mailbox.take()
            for result in batch:
                await self._event(evgen, result)
            if batch:
                newest = (batch[::-1] + newest)[: len(nodes.slots)]
                for slot, result in zip(nodes.slots, newest, strict=False):
                    await slot.write(result)
                self._latest = newest[0].result_id
                await nodes.result_valid.write_value(ua.Variant(True, ua.VariantType.Boolean))
                await nodes.results_dropped.write_value(ua.Variant(self.mailbox.dropped, ua.VariantType.UInt64))
                self.published += len(batch)
            if self._stop is not None and self._stop.is_set() and not len(self.mailbox):
                return

    async def _event(self, evgen: Any, result: PartResult) -> None:
        event = evgen.event
        event.ResultId = result.result_id
        event.PartId = str(result.part_id)
        event.JobId = result.job_id
        event.ResultState = result.state
        event.CreationTime = result.created
        event.InternalRecipeId = result.recipe
        event.Decision = result.decision
        event.DefectClasses = list(result.defect_classes)
        event.ModelSha256 = result.model_sha256
        event.ThresholdsVersion = result.thresholds_version
        event.Severity = 100 if result.state > 0 else 500
        await evgen.trigger(message=f"part {result.part_id}: {result.decision}")

    async def _follow(self, nodes: address_space.Nodes) -> None:
        """Mirror the line's state into the state machines every `status_period_s`."""
        while True:
            status = self._status()
            state = line_state(status, model_error=self._model_error, jobs_in_flight=len(self.jobs))
            if state != self.state:
                if state.vision != self.state.vision:
                    log.info("OPC UA VisionStateMachine: %s -> %s %s", self.state.vision, state.vision, state.cause)
                await nodes.vision.set(state.vision)
                await nodes.auto.set(state.auto)
                await nodes.error_cause.write_value(ua.Variant(state.cause, ua.VariantType.String))
                ready = state.vision == "Operational" and state.auto != "Initialized"
                await nodes.ready.write_value(ua.Variant(ready, ua.VariantType.Boolean))
                self.state = state
            recipe = str(status.get("recipe", ""))
            if recipe and recipe != self._shown_recipe:
                await nodes.active_recipe.write_value(ua.Variant(recipe, ua.VariantType.String))
                self._shown_recipe = recipe
            await asyncio.sleep(self.config.status_period_s)

    _shown_recipe = ""
