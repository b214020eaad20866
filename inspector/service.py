"""The whole edge process for one line: the line (source, detector, pipeline) plus its sinks and servers.

`EdgeService(config).start()` loads the model, opens the store, starts the embedded broker when the config names
no broker, connects the PLC link, serves the dashboard, then starts the pipeline; `stop()` undoes it in reverse
order, draining the parts in flight first so that every part's verdict still reaches the PLC and the store.
`inspector run` and `inspector demo` both use it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

from inspector.config import LineConfig
from inspector.line import Line, build_line
from inspector.pipeline import Sink
from inspector.types import FrameSource, Thresholds

__all__ = ["EdgeService"]

log = logging.getLogger(__name__)


class EdgeService:
    """One line's edge process, assembled from its config.

    extra_sinks: more verdict sinks (after the store and the PLC link). source: overrides the camera config.
    After `start()`: `line`, `store`, `plc`, `broker` (None unless embedded), `dashboard_url` (None when off),
    `first_password` (the generated dashboard password on a first start with no users, else None).
    """

    def __init__(
        self, config: LineConfig, *, extra_sinks: Sequence[Sink] = (), source: FrameSource | None = None
    ) -> None:
        self.config = config
        self._extra_sinks = list(extra_sinks)
        self._source = source
        self.line: Line | None = None
        self.store: Any = None
        self.plc: Any = None
        self.broker: Any = None
        self.dashboard_url: str | None = None
        self.first_password: str | None = None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._stopped = False

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring everything up; on any failure, take down what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop(drain=False)
            raise

    def _start(self) -> None:
        config = self.config
        # The model loads first: a bad model file is the likeliest failure and should cost nothing else.
        self.line = build_line(config, source=self._source)
        pipeline = self.line.pipeline
        names = pipeline.names

        if config.store.enabled:
            from inspector.store import Store

            self.store = Store(config.store, names)
            self._restore_thresholds()
            pipeline.add_sink(self.store)

        if config.mqtt.enabled:
            self._start_plc()
            pipeline.add_sink(self.plc)

        for sink in self._extra_sinks:
            pipeline.add_sink(sink)

        if config.dashboard.enabled:
            self._start_dashboard()

        self.line.start()

    def _restore_thresholds(self) -> None:
        """Keep QA's last threshold edit across a restart: the store remembers every installed version."""
        assert self.line is not None and self.store is not None
        holder = self.line.pipeline.thresholds
        latest = self.store.latest_thresholds()
        if latest is None or latest == holder.get():
            return
        # Only a version that was edited from this config's own start values is restored.
        if latest.version > holder.get().version:
            holder.swap(latest.model_copy(update={"version": latest.version - 1}))
            log.info("thresholds: restored version %d from the store", holder.get().version)

    def _start_plc(self) -> None:
        from inspector.plc import PlcLink

        assert self.line is not None
        config = self.config
        mqtt = config.mqtt
        if mqtt.url is None:
            from inspector.broker import EmbeddedBroker

            self.broker = EmbeddedBroker()
            url = self.broker.start()
            # amqtt speaks 3.1.1 only; saying so up front spares the link its MQTT 5 attempt.
            protocol = "3.1.1" if self.broker.kind == "amqtt" else mqtt.protocol
            mqtt = mqtt.model_copy(update={"url": url, "protocol": protocol})
            log.info("embedded %s broker on %s", self.broker.kind, url)
        pipeline = self.line.pipeline

        def status() -> dict[str, Any]:
            # Cheap: called every heartbeat from the MQTT thread.
            return {
                "ready": pipeline.ready(),
                "counters": pipeline.ledger.snapshot(),
                "paused": pipeline.paused,
                "recipe": pipeline.recipe,
            }

        self.plc = PlcLink(mqtt, config.camera.id, commands=pipeline, status=status, names=pipeline.names)
        self.plc.start()

    def _start_dashboard(self) -> None:
        import uvicorn

        from inspector.api import AppDeps, create_app
        from inspector.auth import bootstrap_users

        assert self.line is not None
        config = self.config.dashboard
        pipeline = self.line.pipeline
        if self.store is None:
            raise ValueError("dashboard.enabled needs store.enabled: the dashboard reads verdicts from the store")
        users, self.first_password = bootstrap_users(config.users, self.store)

        def on_change(old: Thresholds, new: Thresholds, user: str) -> None:
            if self.plc is not None:
                self.plc.publish_event(
                    {"event": "thresholds_changed", "old_version": old.version, "version": new.version, "user": user}
                )

        def health() -> dict[str, Any]:
            facts: dict[str, Any] = {"camera_connected": pipeline.stats()["camera"]["connected"]}
            if self.plc is not None:
                info = self.plc.info()
                facts["mqtt"] = {"connected": info.get("connected"), "protocol": info.get("protocol")}
            return facts

        deps = AppDeps(
            store=self.store,
            thresholds=lambda: pipeline.thresholds,
            stats=self._stats,
            names=pipeline.names,
            config=config,
            on_thresholds_changed=on_change,
            users=users,
            health=health,
        )
        app = create_app(deps)
        # Bind here so that port 0 gets a free port we can report, and a taken port fails at start.
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        port = sock.getsockname()[1]
        server_config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
        self._server = uvicorn.Server(server_config)
        self._server_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="dashboard", daemon=True
        )
        self._server_thread.start()
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.dashboard_url = f"http://{host}:{port}/"

    def _stats(self) -> dict[str, Any]:
        """The pipeline's stats plus the PLC link's and the broker's, for the dashboard."""
        assert self.line is not None
        stats = self.line.pipeline.stats()
        if self.plc is not None:
            stats["mqtt"] = {**self.plc.stats(), **{k: v for k, v in self.plc.info().items() if k != "url"}}
        if self.broker is not None:
            stats["broker"] = self.broker.info()
        return stats

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a finite source has ended (True) or `timeout` passed (False)."""
        assert self.line is not None
        return self.line.wait(timeout)

    @property
    def done(self) -> bool:
        return self.line is not None and self.line.pipeline.done

    def stop(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Drain (or fail safe) the parts in flight, then close sinks, servers and broker. Idempotent.

        Returns True when every part in flight was decided in time.
        """
        if self._stopped:
            return True
        self._stopped = True
        drained = True
        if self.line is not None:
            # Closes every sink too (store flushes, the PLC link sends what is queued and says `offline`).
            drained = self.line.stop(drain=drain, timeout=timeout)
        if self._server is not None:
            self._server.should_exit = True
            if self._server_thread is not None:
                self._server_thread.join(5)
        if self.plc is not None:
            self.plc.stop()
        if self.store is not None:
            self.store.close()
        if self.broker is not None:
            self.broker.stop()
        return drained
