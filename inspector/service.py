"""The whole edge process for one line: the line (source, detector, pipeline) plus its sinks and servers.

`EdgeService(config).start()` opens the store, loads the model, starts the embedded broker when the config names
no broker, connects the PLC link, serves the dashboard, then starts the pipeline; `stop()` undoes it in reverse
order, draining the parts in flight first so that every part's verdict still reaches the PLC and the store.
`inspector run` and `inspector demo` both use it.

Thresholds across restarts: every edit made on the dashboard is remembered in the store per recipe (setting
`thresholds.<recipe>`). At the next start a recipe begins with the remembered thresholds, version number included,
when their version is higher than the config's; otherwise the config's own thresholds apply (an integrator who
changes them in the YAML raises their `version` above QA's last one for the change to win).

Recipes with other class names: each verdict carries the class names of its recipe, so the PLC link, the JSON
lines and any other sink name its defects as that recipe's model does; the store names what it shows with the
names of the latest verdicts, and the dashboard's thresholds editor follows the active recipe's class names.

The detector's score floor (`model.conf`) drops detections before the decision rules see them, so a class
`min_confidence` below it has no effect: the service logs a warning and raises a dashboard alarm whenever the
active thresholds are in that state (at start, after an edit, after a recipe switch).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from inspector.config import LineConfig, ModelConfig
from inspector.decide import ThresholdsHolder
from inspector.line import build_line
from inspector.pipeline import Pipeline, Sink
from inspector.types import FrameSource, Thresholds

__all__ = ["EdgeService", "below_floor", "model_brief"]

log = logging.getLogger(__name__)

_THRESHOLDS_SETTING = "thresholds.{recipe}"
_FLOOR_ALARM = "thresholds_below_floor"


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


def below_floor(thresholds: Thresholds, names: Mapping[int, str], floor: float) -> list[str]:
    """Enabled classes of the model (`names`) whose `min_confidence` is below the detector's score floor `floor`:
    detections scored between the two are dropped by the detector, so those thresholds cannot act as set."""
    return sorted(
        {
            name
            for name in names.values()
            if (rule := thresholds.for_class(name)).enabled and rule.min_confidence < floor
        }
    )


class EdgeService:
    """One line's edge process, assembled from its config.

    extra_sinks: more verdict sinks (after the store and the PLC link). source: overrides the camera config.
    After `start()`: `pipeline`, `store`, `plc`, `broker` (None unless embedded), `dashboard_url` (None when off),
    `first_password` (the generated dashboard password on a first start with no users, else None).
    """

    def __init__(
        self, config: LineConfig, *, extra_sinks: Sequence[Sink] = (), source: FrameSource | None = None
    ) -> None:
        self.config = config
        self._extra_sinks = list(extra_sinks)
        self._source = source
        self.pipeline: Pipeline | None = None
        self.store: Any = None
        self.plc: Any = None
        self.broker: Any = None
        self.dashboard_url: str | None = None
        self.first_password: str | None = None
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._stopped = False
        # Per recipe noted active: its thresholds holder (to tell whose thresholds an edit changed).
        self._holders: dict[str, ThresholdsHolder] = {}
        self._noted_recipe: str | None = None
        self._floor_alarm: str | None = None
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

            # The store opens before the model loads: the line's thresholds holders are built from the config,
            # so QA's remembered thresholds go into the config first (keeping their version numbers).
            self.store = Store(config.store, {})
            config = self._restore_thresholds(config)
        self.pipeline = pipeline = build_line(config, source=self._source)
        self._note_recipe(pipeline.recipe)
        if self.store is not None:
            self.store.names = dict(pipeline.names)  # until the first verdict brings its recipe's names
            pipeline.add_sink(self.store)

        if config.mqtt.enabled:
            self._start_plc()
            pipeline.add_sink(self.plc)

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

    def _restore_thresholds(self, config: LineConfig) -> LineConfig:
        """`config` with each recipe's thresholds replaced by those remembered in the store, where those are newer
        (a higher version: QA edited them after the config's version). The version number is kept as stored, so
        verdicts, the dashboard's history and the audit go on counting from where they were."""
        assert self.store is not None
        restored: dict[str, Thresholds] = {}
        for name, current in [("default", config.thresholds), *((n, r.thresholds) for n, r in config.recipes.items())]:
            raw = self.store.get_setting(_THRESHOLDS_SETTING.format(recipe=name))
            if raw is None:
                continue
            try:
                stored = Thresholds.model_validate_json(raw)
            except ValidationError as exc:
                log.warning("recipe %s: ignoring the stored thresholds, they no longer validate: %s", name, exc)
                continue
            if stored.version > current.version:
                restored[name] = stored
                log.info(
                    "recipe %s: thresholds v%d restored from the store (config: v%d)",
                    name,
                    stored.version,
                    current.version,
                )
            elif stored != current:
                log.warning(
                    "recipe %s: the config's thresholds v%d replace the stored v%d%s",
                    name,
                    current.version,
                    stored.version,
                    " (same version, other values: raise `version` when editing thresholds in the config)"
                    if stored.version == current.version
                    else "",
                )
                # Remember what is in force now, so that this is said once, not at every start.
                self.store.put_setting(_THRESHOLDS_SETTING.format(recipe=name), current.model_dump_json())
        if not restored:
            return config
        recipes = {
            n: r.model_copy(update={"thresholds": restored[n]}) if n in restored else r
            for n, r in config.recipes.items()
        }
        return config.model_copy(update={"thresholds": restored.get("default", config.thresholds), "recipes": recipes})

    def _model_config(self, recipe: str) -> ModelConfig:
        return self.config.model if recipe == "default" else self.config.recipes[recipe].model

    def _note_recipe(self, recipe: str) -> None:
        """Bookkeeping once `recipe` is active (at start; after a switch, when the line's state is next read): its
        thresholds holder and the floor check."""
        assert self.pipeline is not None
        pipeline = self.pipeline
        self._noted_recipe = recipe
        self._holders[recipe] = pipeline.thresholds
        self._check_floor(recipe, pipeline.thresholds.get(), pipeline.names)

    def _check_floor(self, recipe: str, thresholds: Thresholds, names: Mapping[int, str]) -> None:
        """Warn (log and dashboard alarm) when `thresholds` ask for less than the detector's score floor."""
        floor = self._model_config(recipe).conf
        low = below_floor(thresholds, names, floor)
        if not low:
            self._floor_alarm = None
            return
        lowest = min(thresholds.for_class(n).min_confidence for n in low)
        self._floor_alarm = (
            f"recipe {recipe}, thresholds v{thresholds.version}: min_confidence of {', '.join(low)} is below the "
            f"detector's score floor model.conf {floor:g}, so detections scored under {floor:g} never reach the "
            f"decision; set model.conf to {lowest:g} or lower for those thresholds to act"
        )
        log.warning("%s", self._floor_alarm)

    def _remember_thresholds(self, new: Thresholds) -> str:
        """Remember `new` in the store for the recipe whose holder has it; returns that recipe's name."""
        assert self.pipeline is not None
        recipe = next((n for n, h in self._holders.items() if h.get() is new), self.pipeline.recipe)
        if self.store is not None:
            self.store.put_setting(_THRESHOLDS_SETTING.format(recipe=recipe), new.model_dump_json())
        return recipe

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
            return {
                "ready": pipeline.ready(),
                "counters": pipeline.ledger.snapshot(),
                "paused": pipeline.paused,
                "recipe": pipeline.recipe,
                "model": model_brief(pipeline.model),
            }

        self.plc = PlcLink(mqtt, config.camera.id, commands=pipeline, status=status)
        self.plc.start()
        # Give the link a moment to connect so that the first parts' rejects are not queued past their gate; a
        # broker that does not answer must not keep the line from inspecting (verdicts queue until it does).
        wait_s = 10.0 if self.broker is not None else 3.0
        if not self.plc.wait_connected(wait_s):
            log.warning("MQTT broker %s not reachable yet; starting the line, verdicts queue", self.plc.info()["url"])

    def _start_dashboard(self) -> None:
        import uvicorn

        from inspector.api import AppDeps, create_app
        from inspector.auth import bootstrap_users

        assert self.pipeline is not None
        config = self.config.dashboard
        pipeline = self.pipeline
        if self.store is None:
            raise ValueError("dashboard.enabled needs store.enabled: the dashboard reads verdicts from the store")
        users, self.first_password = bootstrap_users(config.users, self.store)

        def on_change(old: Thresholds, new: Thresholds, user: str) -> None:
            recipe = self._remember_thresholds(new)
            if recipe == pipeline.recipe:
                self._check_floor(recipe, new, pipeline.names)
            if self.plc is not None:
                self.plc.publish_event(
                    {
                        "event": "thresholds",
                        "old_version": old.version,
                        "version": new.version,
                        "user": user,
                        "recipe": recipe,
                    }
                )

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
            thresholds=lambda: pipeline.thresholds,
            stats=self._stats,
            names=lambda: pipeline.names,
            config=config,
            on_thresholds_changed=on_change,
            users=users,
            health=health,
        )
        app = create_app(deps)
        # Bind here so that port 0 gets a free port we can report, and a taken port fails at start.
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
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
        """The pipeline's stats plus the PLC link's and the broker's, and the service's own alarms, for the
        dashboard."""
        assert self.pipeline is not None
        if self.pipeline.recipe != self._noted_recipe:  # switched (by a PLC command) since last noted
            self._note_recipe(self.pipeline.recipe)
        stats = self.pipeline.stats()
        if self.plc is not None:
            stats["mqtt"] = {**self.plc.stats(), **{k: v for k, v in self.plc.info().items() if k != "url"}}
        if self.broker is not None:
            stats["broker"] = self.broker.info()
        if self._floor_alarm is not None:
            stats.setdefault("alarms", []).append({"name": _FLOOR_ALARM, "message": self._floor_alarm})
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
        if self.pipeline is not None:
            # Closes every sink too (store flushes, the PLC link sends what is queued and says `offline`).
            drained = self.pipeline.stop(drain=drain, timeout=timeout)
        if not self._line_started:  # a start that failed half-way: the pipeline never ran, so never closed them
            for sink in self._extra_sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("closing sink %s failed", getattr(sink, "name", sink))
        if self._server is not None:
            self._server.should_exit = True
            if self._server_thread is not None:
                self._server_thread.join(5)
        if self.plc is not None:
            self.plc.stop()  # a no-op after the line closed it; needed when the line never started
        if self.store is not None:
            self.store.close()
        if self.broker is not None:
            self.broker.stop()
        return drained
