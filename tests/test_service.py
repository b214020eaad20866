"""`EdgeService`, the whole edge process in one object, with real parts: the embedded broker (Mosquitto), the PLC
link, the store, the dashboard on a free port, the shipped model on the synthetic line. An independent MQTT client
checks what the PLC side gets; httpx talks to the dashboard as a browser would."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from inspector.config import DEFAULT_MODEL, LineConfig
from inspector.line import JsonlSink
from inspector.plc import load_schema
from inspector.service import EdgeService
from inspector.thresholds import below_floor
from inspector.types import Thresholds
from tests.mqtt_helpers import Recorder, publish

LINE, CAMERA = "lineS", "camS"
ROOT_TOPIC = f"inspector/{LINE}/{CAMERA}"
PCB_NAMES = {"open", "short", "mousebite", "spur", "copper", "pin-hole"}
WAIT_S = 30.0  # generous: two shared cores


def service_config(tmp_path: Path, **sections: Any) -> LineConfig:
    """Synthetic line at 8 parts/s, the shipped model, the embedded broker (no mqtt.url), dashboard on port 0."""
    data: dict[str, Any] = {
        "camera": {"id": CAMERA, "source": "synthetic", "fps": 8, "synthetic": {"seed": 3, "size": 320}},
        "model": {"path": str(DEFAULT_MODEL)},
        "pipeline": {"gate_ms": 3000},
        "mqtt": {"line": LINE},
        "dashboard": {"port": 0},
        "store": {"path": str(tmp_path / "inspector.db"), "images_dir": str(tmp_path / "images")},
    }
    data.update(sections)
    return LineConfig.model_validate(data)


@pytest.fixture
def services() -> Iterator[list[EdgeService]]:
    """Services a test started; stopped (without draining) whatever the test's outcome."""
    started: list[EdgeService] = []
    yield started
    for service in started:
        service.stop(drain=False)


def start(services: list[EdgeService], config: LineConfig, **kwargs: Any) -> EdgeService:
    service = EdgeService(config, **kwargs)
    services.append(service)
    service.start()
    return service


def login(client: httpx.Client, password: str) -> dict[str, str]:
    r = client.post("/api/login", json={"username": "admin", "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def put_thresholds(
    client: httpx.Client, auth: dict[str, str], version: int, rules: dict[str, Any], comment: str
) -> dict[str, Any]:
    """PUT an edit made on `version` as the logged-in editor; returns the installed thresholds."""
    body = {"version": version, "thresholds": rules, "comment": comment}
    r = client.put("/api/thresholds", json=body, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["thresholds"]


def versions_in_order(rec: Recorder) -> list[int]:
    """thresholds_version of each published verdict of an inspected part, in part order. Fail-safe verdicts are
    left out: they take the version in force when they fail (the watchdog's or the capture thread's moment), which
    on a loaded machine can come after the swap for an earlier part than one the model decided under the old one."""
    verdicts = sorted(rec.payloads("verdict"), key=lambda p: p["seq"])
    return [p["thresholds_version"] for p in verdicts if "uninspected" not in p["reasons"]]


def test_edge_service_end_to_end_thresholds_survive_a_restart(tmp_path: Path, services: list[EdgeService]) -> None:
    """Embedded broker, retained birth, verdicts on MQTT, dashboard health, two threshold edits announced on
    `events` and applied to the next parts, a clean stop (`offline`, idempotent), then a restart on the same store
    that resumes at the stored version; and a config with a higher version wins over QA's edits."""
    config = service_config(tmp_path)
    service = start(services, config)
    assert service.broker is not None and service.broker.running and service.plc is not None
    assert service.dashboard_url and service.first_password

    with (
        Recorder(service.broker.url, [f"{ROOT_TOPIC}/#"]) as rec,
        httpx.Client(base_url=service.dashboard_url, timeout=30) as c,
    ):
        # The retained birth is there for a subscriber that comes later, and says which protocol is in use.
        status = rec.wait_count("status", 1)[0]
        assert status["status"] == "online" and status["protocol"] == "5" and rec.on("status")[0].retain
        first = rec.wait_count("verdict", 3, WAIT_S)
        assert all(p["thresholds_version"] == 1 and isinstance(p["truth"], bool) for p in first)
        assert {d["class"] for p in first for d in p["defects"]} <= PCB_NAMES

        health = c.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"

        auth = login(c, service.first_password)
        edit1 = {"default": {"min_confidence": 0.5}, "classes": {"short": {"min_confidence": 0.7}}}
        assert put_thresholds(c, auth, 1, edit1, "fewer false rejects")["version"] == 2
        event = rec.wait_for(lambda r: any(p.get("event") == "thresholds" for p in r.payloads("events")), WAIT_S)
        assert event, rec.payloads("events")
        announced = next(p for p in rec.payloads("events") if p["event"] == "thresholds")
        assert announced | {"ts": 0} == {
            "schema": 1,
            "event": "thresholds",
            "ts": 0,
            "seq": announced["seq"],
            "old_version": 1,
            "version": 2,
            "user": "admin",
            "recipe": "default",
        }
        # The next parts are decided under v2, and once v2 is in no part goes back to v1 (an atomic swap).
        assert rec.wait_for(lambda r: versions_in_order(r).count(2) >= 3, WAIT_S)
        order = versions_in_order(rec)
        assert order == sorted(order) and set(order) == {1, 2}

        edit2 = {"default": {"min_confidence": 0.4}, "classes": {"short": {"min_confidence": 0.6}}}
        assert put_thresholds(c, auth, 2, edit2, "second look")["version"] == 3
        assert rec.wait_for(lambda r: 3 in versions_in_order(r), WAIT_S)
        # Each edit saved once and audited once (the store's own rows), and announced once (below, after the stop).
        assert [(h.version, h.recipe) for h in service.store.threshold_history(recipe=None)] == [
            (3, "default"),
            (2, "default"),
            (1, "default"),
        ]
        audited = [(a.action, a.new_version) for a in service.store.audit() if a.action.startswith("thresholds")]
        assert audited == [("thresholds.update", 3), ("thresholds.update", 2), ("thresholds.start", 1)]

        assert service.stop() is True  # drained
        assert rec.wait_for(lambda r: r.payloads("status")[-1]["status"] == "offline", WAIT_S)
        assert rec.payloads("status")[-1]["reason"] == "stopped"
        assert [p["version"] for p in rec.payloads("events") if p["event"] == "thresholds"] == [2, 3]
    assert service.stop() is True  # idempotent: nothing left to do, nothing raised
    assert not service.broker.running and service.done
    before = {(p["part_id"], p["seq"]) for p in rec.payloads("verdict")}
    assert len(before) == service.pipeline.ledger.snapshot()["decided"]  # every decided part was published

    # Restart on the same store: QA's last edit is back, with its own version number.
    again = start(services, config)
    holder = again.pipeline.thresholds  # type: ignore[union-attr]
    assert holder.get() == Thresholds.model_validate({**edit2, "version": 3})
    assert again.first_password is None  # the first-start account is remembered, its password not shown again
    assert again.broker is not None and again.broker.running
    with (
        Recorder(again.broker.url, [f"{ROOT_TOPIC}/verdict"]) as rec2,
        httpx.Client(base_url=again.dashboard_url, timeout=30) as c,
    ):
        assert all(p["thresholds_version"] == 3 for p in rec2.wait_count("verdict", 2, WAIT_S))
        assert c.get("/api/thresholds").json()["thresholds"]["version"] == 3
        history = c.get("/api/thresholds/history").json()
        assert [h["version"] for h in history[:3]] == [3, 2, 1]  # no second "v3" or a rewound version at start
        assert history[0]["comment"] == "second look"
        # The next edit goes on from 3.
        auth = login(c, service.first_password)
        assert put_thresholds(c, auth, 3, {"default": {"min_confidence": 0.45}}, "third")["version"] == 4
    assert again.stop() is True

    # An integrator's new thresholds in the config win over QA's edits when their version is higher.
    integrator = {"version": 10, "default": {"min_confidence": 0.3}}
    third = start(services, service_config(tmp_path, thresholds=integrator, mqtt={"enabled": False}))
    assert third.pipeline.thresholds.get() == Thresholds.model_validate(integrator)  # type: ignore[union-attr]
    assert third.stop() is True


def test_thresholds_below_the_detector_floor_warn_and_raise_an_alarm(
    tmp_path: Path, services: list[EdgeService], caplog: pytest.LogCaptureFixture
) -> None:
    config = service_config(
        tmp_path,
        model={"path": str(DEFAULT_MODEL), "conf": 0.25},
        thresholds={"classes": {"spur": {"min_confidence": 0.1}, "copper": {"min_confidence": 0.2, "enabled": False}}},
        mqtt={"enabled": False},
    )
    caplog.set_level(logging.WARNING, logger="inspector.thresholds")
    service = start(services, config)
    warned = [r.getMessage() for r in caplog.records if "score floor" in r.getMessage()]
    assert len(warned) == 1 and "min_confidence of spur is below" in warned[0] and "copper" not in warned[0]

    def alarms(c: httpx.Client) -> list[str]:
        return [a["name"] for a in c.get("/api/stats").json()["alarms"]]

    assert service.dashboard_url and service.first_password
    with httpx.Client(base_url=service.dashboard_url, timeout=30) as c:
        assert "thresholds_below_floor" in alarms(c)
        auth = login(c, service.first_password)
        put_thresholds(c, auth, 1, {"classes": {"spur": {"min_confidence": 0.3}}}, "above the floor")
        assert "thresholds_below_floor" not in alarms(c)
        caplog.clear()
        put_thresholds(c, auth, 2, {"default": {"min_confidence": 0.05}}, "below again")
        assert "thresholds_below_floor" in alarms(c)
    assert any("thresholds v3" in r.getMessage() and "score floor" in r.getMessage() for r in caplog.records)


def test_below_floor_names_only_enabled_classes_of_the_model() -> None:
    rules = Thresholds.model_validate(
        {"default": {"min_confidence": 0.1}, "classes": {"a": {"min_confidence": 0.3}, "b": {"enabled": False}}}
    )
    assert below_floor(rules, {0: "a", 1: "b", 2: "c"}, 0.25) == ["c"]  # c uses the default
    assert below_floor(rules, {0: "a", 1: "b", 2: "c"}, 0.1) == []
    assert below_floor(rules, {0: "a"}, 0.5) == ["a"]


def test_recipe_switch_names_defects_with_the_new_models_classes(
    tmp_path: Path, services: list[EdgeService], yolov8n_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Default recipe: the 2-class test model (rect, circle); `cmd/recipe pcb` switches to the DeepPCB model. The
    verdicts on MQTT and in the JSON lines name each part's defects with its own recipe's classes."""
    low = {"default": {"min_confidence": 0.001}}  # every box is a defect: each part names some classes
    config = service_config(
        tmp_path,
        model={"path": str(yolov8n_onnx), "conf": 0.001},
        thresholds=low,
        recipes={"pcb": {"model": {"path": str(DEFAULT_MODEL), "conf": 0.001}, "thresholds": low}},
    )
    stream = io.StringIO()
    caplog.set_level(logging.WARNING, logger="inspector.service")
    service = start(services, config, extra_sinks=[JsonlSink(stream)])
    assert service.broker is not None
    with Recorder(service.broker.url, [f"{ROOT_TOPIC}/verdict", f"{ROOT_TOPIC}/events"]) as rec:
        rec.wait_count("verdict", 2, WAIT_S)
        publish(service.broker.url, f"{ROOT_TOPIC}/cmd/recipe", json.dumps({"recipe": "pcb"}))
        assert rec.wait_for(lambda r: any(p.get("recipe") == "pcb" for p in r.payloads("events")), WAIT_S)
        assert rec.wait_for(lambda r: sum(p["recipe"] == "pcb" for p in r.payloads("verdict")) >= 3, WAIT_S)
        service.stop()
        published = rec.payloads("verdict")

    def classes(items: list[dict[str, Any]], recipe: str) -> set[str]:
        return {d["class"] for p in items if p["recipe"] == recipe for d in p["defects"]}

    assert classes(published, "default") and classes(published, "default") <= {"rect", "circle"}
    assert classes(published, "pcb") and classes(published, "pcb") <= PCB_NAMES
    written = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert classes(written, "default") and classes(written, "default") <= {"rect", "circle"}
    assert classes(written, "pcb") and classes(written, "pcb") <= PCB_NAMES
    assert set(service.store.names.values()) == PCB_NAMES  # the store names what it shows after the switch


def test_model_in_use_is_reported_in_health_heartbeat_metrics_and_stats(
    tmp_path: Path, services: list[EdgeService]
) -> None:
    """The model file, its precision, the execution provider actually in use (a CUDA request that fell back to the
    CPU shows as such) and its self-test result, wherever the line reports its state."""
    config = service_config(tmp_path, model={"path": str(DEFAULT_MODEL), "providers": ["cuda", "cpu"]})
    service = start(services, config)
    assert service.broker is not None and service.dashboard_url
    expected = {
        "file": DEFAULT_MODEL.name,
        "precision": "int8",
        "provider": "CPUExecutionProvider",
        "provider_fallback": True,  # this onnxruntime has no CUDA provider
        "selftest": "passed",
        "fallback_model": False,
    }
    with (
        Recorder(service.broker.url, [f"{ROOT_TOPIC}/heartbeat"]) as rec,
        httpx.Client(base_url=service.dashboard_url, timeout=30) as c,
    ):
        beat = rec.wait_count("heartbeat", 1, WAIT_S)[0]
        Draft202012Validator(load_schema("heartbeat")).validate(beat)
        assert beat["pipeline"]["model"].items() >= expected.items()
        assert "passed" in beat["pipeline"]["model"]["selftest_summary"]
        health = c.get("/api/health").json()
        assert health["details"]["model"].items() >= expected.items()
        stats = c.get("/api/stats").json()
        assert stats["model"]["requested_providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        assert stats["model"]["selftest"]["status"] == "passed" and stats["model"]["sha256"] == stats["model_sha256"]
        # This start's counters come with its run; the store's over every run with them.
        assert isinstance(stats["run"], int) and stats["run"] >= 1
        assert set(stats["cumulative"]) == {"decided", "passed", "rejected", "runs"}
        metrics = c.get("/metrics").text
    assert (
        f'inspector_model_info{{file="{DEFAULT_MODEL.name}",precision="int8",provider="CPUExecutionProvider",'
        f'selftest="passed",sha256="{stats["model_sha256"]}"}} 1.0' in metrics
    )
    assert "inspector_model_selftest_passed 1.0" in metrics
    assert "inspector_model_provider_fallback 1.0" in metrics


def test_the_api_answers_503_while_the_line_shuts_down(tmp_path: Path, services: list[EdgeService]) -> None:
    """From the moment `stop` begins, the API answers 503 with Retry-After (not a 500 from a store or pipeline
    closing under a request); the page itself still loads until the server stops."""
    service = start(services, service_config(tmp_path))
    assert service.dashboard_url and service.first_password and service.pipeline is not None
    seen: dict[str, Any] = {}
    with httpx.Client(base_url=service.dashboard_url, timeout=30) as c:
        auth = login(c, service.first_password)
        assert c.get("/api/stats").status_code == 200
        pipeline_stop = service.pipeline.stop

        def stop_and_ask(drain: bool = True, timeout: float | None = None) -> bool:
            # Inside stop, before the pipeline drains: what a client gets now.
            seen["stats"] = c.get("/api/stats")
            seen["metrics"] = c.get("/metrics")
            body = {"version": 1, "thresholds": {"default": {"min_confidence": 0.5}}, "comment": "late edit"}
            seen["put"] = c.put("/api/thresholds", json=body, headers=auth)
            seen["page"] = c.get("/")
            return pipeline_stop(drain=drain, timeout=timeout)

        service.pipeline.stop = stop_and_ask  # type: ignore[method-assign]
        assert service.stop() is True
    for name in ("stats", "metrics", "put"):
        r = seen[name]
        assert r.status_code == 503, (name, r.status_code, r.text)
        assert r.headers["Retry-After"].isdigit() and r.json() == {"detail": "the line is shutting down"}
        assert r.headers["X-Content-Type-Options"] == "nosniff"  # the security headers still wrap it
    assert seen["page"].status_code == 200


def test_a_stop_that_times_out_leaves_the_store_and_part_ids_open(
    tmp_path: Path, services: list[EdgeService], caplog: pytest.LogCaptureFixture
) -> None:
    """A line whose drain outlives its timeout may still number parts and write verdicts: the service says so and
    does not close the store or the part ids under its threads (the line closes its sinks when it ends)."""
    service = start(services, service_config(tmp_path))
    assert service.pipeline is not None and service.store is not None and service.ids is not None
    pipeline = service.pipeline
    real_stop = pipeline.stop
    pipeline.stop = lambda drain=True, timeout=None: False  # type: ignore[method-assign]  # the drain ran out
    with caplog.at_level(logging.ERROR, logger="inspector.service"):
        assert service.stop() is False
    assert "did not stop within its drain timeout" in caplog.text
    assert not pipeline.done and not service.store._writer.closed  # still writing what the line decides
    assert real_stop(drain=True) and pipeline.done  # the line ends, closing its sinks (the store among them)
    assert service.store._writer.closed
    service.ids.close()
