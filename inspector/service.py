"""The whole edge process for one line: the line (source, detector, pipeline) plus its sinks and servers.

`EdgeService(config).start()` opens the store, takes the part numbers, loads the model, starts the embedded broker
when the config names no broker, connects the PLC link, starts the OPC UA server and the Sparkplug B node when
enabled, serves the dashboard, then starts the pipeline; `stop()` undoes it in reverse order, draining the parts in
flight first so that every part's verdict still reaches the PLC and the store.
`inspector run` and `inspector demo` both use it.

Thresholds: `inspector.thresholds.LineThresholds` owns them (every recipe's holder, restored from the store at
start, edits saved, audited and announced on `events`, the score-floor alarm); the service only wires it to the
store, the line, the PLC link's events and the dashboard.

Recipes with other class names: each verdict carries the class names of its recipe, so the PLC link, the JSON
lines and any other sink name its defects as that recipe's model does; the store names what it shows with the
names of the latest verdicts, and the dashboard's thresholds editor follows the active recipe's class names. The
PLC's commands go to the pipeline itself; the score-floor alarm of the recipe in force is read with the stats.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from inspector.changeover import Switch
from inspector.config import LineConfig
from inspector.line import build_line
from inspector.part_ids import PartIds, clock_ids
from inspector.pipeline import Pipeline, Sink
from inspector.thresholds import FLOOR_ALARM, LineThresholds
from inspector.types import FrameSource
from inspector.webserver import ThreadedServer, serve_in_thread

__all__ = ["EdgeService", "model_brief"]

log = logging.getLogger(__name__)


def model_brief(model: Mapping[str, Any]) -> dict[str, Any]:
    """The model facts a heartbeat and the health check carry: file, sha256, precision, the execution provider in
    use and whether it is the one asked for, the self-test's status and summary."""
    selftest = model.get("selftest") or {}
    return {
        "file": model.get("file"),
        "sha256": model.get("sha256"),
        "precision": model.get("precision"),
        "provider": model.get("provider"),
        "provider_fallback": bool(model.get("provider_fallback")),
        "selftest": selftest.get("status"),
        "selftest_summary": selftest.get("summary"),
        "fallback_model": bool(model.get("fallback")),
    }


class EdgeService:
    """One line's edge process, assembled from its config.

    extra_sinks: more verdict sinks (after the store and the PLC link). source: overrides the camera config.
    After `start()`: `pipeline`, `store`, `thresholds` (`LineThresholds`), `plc`, `broker` (None unless embedded),
    `dashboard_url` (None when off), `first_password` (the generated dashboard password on a first start with no
    users, else None), `sparkplug` (the Sparkplug B edge node; None unless `sparkplug.enabled`), `opcua` (the OPC UA
    server; None unless `opcua.enabled`).
    """

    def __init__(
        self, config: LineConfig, *, extra_sinks: Sequence[Sink] = (), source: FrameSource | None = None
    ) -> None:
        self.config = config
        self._extra_sinks = list(extra_sinks)
        self._source = source
        self.pipeline: Pipeline | None = None
        self.store: Any = None
        self.ids: PartIds | None = None
        self.thresholds: LineThresholds | None = None
        self.plc: Any = None
        self.opcua: Any = None  # inspector.opcua.OpcuaServer when opcua.enabled
        self.sparkplug: Any = None
        self.broker: Any = None
        self.dashboard_url: str | None = None
        self.first_password: str | None = None
        self._web: ThreadedServer | None = None  # the dashboard's server
        self._stopped = False
        self._line_started = False

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self, before_line: Callable[[EdgeService], None] | None = None) -> None:
        """Bring everything up; on any failure, take down what was started and re-raise.

        before_line: called once store, broker, PLC link and dashboard are up and before the first part is made
        (the demo starts its PLC simulator there, so that it sees every part).
        """
        try:
            self._start(before_line)
        except BaseException:
            self.stop(drain=False)
            raise

    def _start(self, before_line: Callable[[EdgeService], None] | None) -> None:
        config = self.config
        if config.store.enabled:
            from inspector.store import Store

            self.store = Store(config.store, {})
        # Before the model loads: each recipe starts from its newest thresholds (QA's edits survive a restart).
        self.thresholds = LineThresholds.from_config(config, self.store)
        # Part numbers never reused by this line and camera across restarts: the store keeps the high-water mark;
        # without a store they start at the start time in ms (inspector/part_ids.py, docs/mqtt.md).
        line_name = config.mqtt.line
        self.ids = self.store.part_ids(line_name, config.camera.id) if self.store is not None else clock_ids()
        self.pipeline = pipeline = build_line(config, source=self._source, thresholds=self.thresholds, ids=self.ids)
        self._note_recipe(pipeline.recipe)  # said at start, not only when asked
        pipeline.changeover.listeners.append(self._on_switch)  # PLC and dashboard switches alike
        if self.store is not None:
            pipeline.add_sink(self.store)

        if config.mqtt.enabled:
            self._start_plc()
            pipeline.add_sink(self.plc)

        if config.opcua.enabled:
            self._start_opcua()
            pipeline.add_sink(self.opcua)
        if config.sparkplug.enabled:
            self._start_sparkplug()
            pipeline.add_sink(self.sparkplug)

        for sink in self._extra_sinks:
            pipeline.add_sink(sink)

        if config.dashboard.enabled:
            self._start_dashboard()

        if before_line is not None:
            before_line(self)
        pipeline.start()
        self._line_started = True
        log.info(
            "line started: camera %s (%s), mode %s, %d worker(s), trigger %s, recipe %s",
            config.camera.id,
            pipeline.camera["description"],
            pipeline.mode,
            pipeline.n_workers,
            config.trigger.mode,
            pipeline.recipe,
        )

    def _note_recipe(self, recipe: str) -> None:
        """Bookkeeping once `recipe` is active: the store's names (until its first verdict brings them), the floor
        check."""
        assert self.pipeline is not None and self.thresholds is not None
        names = dict(self.pipeline.names)
        if self.store is not None:
            self.store.names = names
        self.thresholds.floor_alarm(recipe, names)

    def _on_switch(self, switch: Switch) -> None:
        """After each changeover: bookkeeping, then the `recipe_switched` event on MQTT."""
        self._note_recipe(switch.recipe)
        if self.plc is not None:
            self.plc.publish_event(switch.event())

    def _recipe_state(self) -> dict[str, Any]:
        """The dashboard's `/api/recipe` answer: the active recipe, every recipe of the line, the last switch."""
        from inspector.recipes import recipe_card

        pipeline = self.pipeline
        assert pipeline is not None
        active = pipeline.recipe
        cards = {
            name: recipe_card(name, self.config.recipes.get(name), pipeline.class_names(name))
            for name in pipeline.recipes
        }
        history = pipeline.changeover.history
        last = history[-1].event() if history else None
        return {"recipe": active, "active": cards[active], "recipes": list(cards.values()), "last_switch": last}

    def _start_plc(self) -> None:
        from inspector.plc import PlcLink

        assert self.pipeline is not None
        config = self.config
        mqtt = config.mqtt
        if mqtt.url is None:
            from inspector.plc.broker import EmbeddedBroker

            self.broker = EmbeddedBroker()
            url = self.broker.start()
            # amqtt speaks 3.1.1 only; saying so up front spares the link its MQTT 5 attempt.
            protocol = "3.1.1" if self.broker.kind == "amqtt" else mqtt.protocol
            mqtt = mqtt.model_copy(update={"url": url, "protocol": protocol})
            log.info("embedded %s broker on %s", self.broker.kind, url)
        pipeline = self.pipeline

        def status() -> dict[str, Any]:
            # Cheap: called every heartbeat from the MQTT thread.
            camera = pipeline.camera_state()
            return {
                "ready": pipeline.ready(),
                "counters": {**pipeline.ledger.snapshot(), "frames_skipped": camera["frames_skipped"]},
                "paused": pipeline.paused,
                "recipe": pipeline.recipe,
                "model": model_brief(pipeline.model),
                "camera": camera,  # why `ready` is false when the camera is the reason
            }

        self.plc = PlcLink(mqtt, config.camera.id, commands=pipeline, status=status)
        pipeline.add_camera_listener(self.plc.publish_camera)  # camera lost / back: retained topic and events
        self.plc.start()
        assert self.thresholds is not None
        self.thresholds.announce = self.plc.publish_event  # each dashboard edit, once on `events`
        # Give the link a moment to connect so that the first parts' rejects are not queued past their gate; a
        # broker that does not answer must not keep the line from inspecting (verdicts queue until it does).
        wait_s = 10.0 if self.broker is not None else 3.0
        if not self.plc.wait_connected(wait_s):
            log.warning("MQTT broker %s not reachable yet; starting the line, verdicts queue", self.plc.info()["url"])

    def _start_opcua(self) -> None:
        from inspector.opcua import OpcuaServer
        from inspector.opcua.model import pipeline_status

        pipeline = self.pipeline
        assert pipeline is not None
        recipes = ["default", *self.config.recipes]
        self.opcua = OpcuaServer(self.config.opcua, pipeline, lambda: pipeline_status(pipeline), recipes)
        self.opcua.start()

    def _start_sparkplug(self) -> None:
        """The Sparkplug B edge node (docs/plant.md), on the PLC link's broker unless `sparkplug.url` names one."""
        from inspector.sparkplug import Device, SparkplugNode

        config, spb = self.config, self.config.sparkplug
        protocol = "5"
        if spb.url is None:
            mqtt = self.plc.config if self.plc is not None else config.mqtt
            if mqtt.url is None:  # no PLC link to share a broker with: start the embedded one here
                from inspector.plc.broker import EmbeddedBroker

                self.broker = EmbeddedBroker()
                mqtt = mqtt.model_copy(update={"url": self.broker.start()})
            spb = spb.model_copy(
                update={"url": mqtt.url, "username": mqtt.username, "password": mqtt.password, "tls": mqtt.tls}
            )
            amqtt = self.broker is not None and self.broker.kind == "amqtt"
            link_protocol = self.plc.info()["protocol"] if self.plc is not None else mqtt.protocol
            protocol = "3.1.1" if amqtt or link_protocol == "3.1.1" else "5"
        assert self.pipeline is not None
        device = Device(config.camera.id, status=self._stats, commands=self.pipeline)
        self.sparkplug = SparkplugNode(
            spb,
            [device],
            edge_node_id=spb.edge_node_id or config.mqtt.line,
            line=config.mqtt.line,
            protocol=protocol,
        )
        self.sparkplug.start()
        # Without a primary host the node births at once: wait for it, so that the first part's result is sent.
        wait = self.sparkplug.wait_connected if spb.primary_host_id else self.sparkplug.wait_born
        if not wait(10.0 if self.broker is not None else 3.0):
            log.warning("Sparkplug broker %s not reachable yet; starting the line", self.sparkplug.info()["url"])

    def _start_dashboard(self) -> None:
        from inspector.api import AppDeps, create_app
        from inspector.auth import bootstrap_users

        assert self.pipeline is not None and self.thresholds is not None
        config = self.config.dashboard
        pipeline = self.pipeline
        if self.store is None:
            raise ValueError("dashboard.enabled needs store.enabled: the dashboard reads verdicts from the store")
        users, self.first_password = bootstrap_users(config.users, self.store)

        def health() -> dict[str, Any]:
            facts: dict[str, Any] = {
                "camera_connected": pipeline.stats()["camera"]["connected"],
                "model": model_brief(pipeline.model),
            }
            if self.plc is not None:
                info = self.plc.info()
                facts["mqtt"] = {"connected": info.get("connected"), "protocol": info.get("protocol")}
            return facts

        deps = AppDeps(
            store=self.store,
            thresholds=self.thresholds,
            stats=self._stats,
            names=lambda: pipeline.names,
            recipe=lambda: pipeline.recipe,
            recipes=self._recipe_state,
            switch_recipe=lambda name, source: pipeline.set_recipe(name, source).event(),
            config=config,
            users=users,
            health=health,
        )
        self._web = serve_in_thread(create_app(deps), config.host, config.port, name="dashboard")
        self.dashboard_url = self._web.url
        if self.plc is not None:
            # Announced in the heartbeat for a plant view; a wildcard bind is reached through the host's name.
            wildcard = config.host in {"0.0.0.0", "::", ""}
            self.plc.dashboard_url = (
                f"http://{socket.gethostname()}:{self._web.port}/" if wildcard else self.dashboard_url
            )

    def _stats(self) -> dict[str, Any]:
        """The pipeline's stats plus the PLC link's and the broker's, and the service's own alarms, for the
        dashboard."""
        assert self.pipeline is not None and self.thresholds is not None
        pipeline = self.pipeline
        stats = pipeline.stats()
        if self.plc is not None:
            stats["mqtt"] = {**self.plc.stats(), **{k: v for k, v in self.plc.info().items() if k != "url"}}
        if self.broker is not None:
            stats["broker"] = self.broker.info()
        floor_alarm = self.thresholds.floor_alarm(pipeline.recipe, pipeline.names)
        if floor_alarm is not None:
            stats.setdefault("alarms", []).append({"name": FLOOR_ALARM, "message": floor_alarm})
        return stats

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a finite source has ended (True) or `timeout` passed (False)."""
        assert self.pipeline is not None
        return self.pipeline.wait(timeout)

    @property
    def done(self) -> bool:
        """True once the line has finished (a finite source ended, or `stop()`)."""
        return self.pipeline is not None and self.pipeline.done

    def stop(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Drain (or fail safe) the parts in flight, then close sinks, servers and broker. Idempotent.

        Returns True when every part in flight was decided in time.
        """
        if self._stopped:
            return True
        self._stopped = True
        drained = True
        if self._web is not None:  # the API answers 503 from here on, not a 500 from a store closing under it
            from inspector.api.shutdown import begin_shutdown

            begin_shutdown(self._web.app)
        if self.pipeline is not None:
            # Closes every sink too (store flushes, the PLC link sends what is queued and says `offline`).
            drained = self.pipeline.stop(drain=drain, timeout=timeout)
        if not self._line_started:  # a start that failed half-way: the pipeline never ran, so never closed them
            for sink in self._extra_sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("closing sink %s failed", getattr(sink, "name", sink))
        if self._web is not None:
            self._web.stop()
        if self.plc is not None:
            self.plc.stop()  # a no-op after the line closed it; needed when the line never started
        if self.opcua is not None:
            self.opcua.stop()  # likewise
        if self.sparkplug is not None:
            self.sparkplug.stop()  # likewise
        if self.pipeline is not None and self._line_started and not self.pipeline.done:
            # Its threads may still number parts and write verdicts: closing the ids and the store under them
            # would turn a slow stop into errors. Both are crash-safe (reserved id blocks, SQLite's journal).
            log.error("the line did not stop within its drain timeout; part ids and store left open for the exit")
        else:
            if self.ids is not None:
                self.ids.close()  # after every sink: no part is numbered any more
            if self.store is not None:
                self.store.close()
        if self.broker is not None:
            self.broker.stop()
        return drained
