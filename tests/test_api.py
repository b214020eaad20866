"""The dashboard API against the app served by uvicorn on a free port, fed by a stand-in line (real `decide()`,
`Store` and `Stats`) and, when the pipeline exists, by the real pipeline on a folder of images."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from inspector.api import AppDeps, create_app
from inspector.auth import bootstrap_users, hash_password, verify_password
from inspector.config import DashboardConfig
from inspector.decide import decide
from inspector.types import Thresholds
from tests.web_helpers import EDITOR, NAMES, VIEWER, dashboard, make_deps, make_users, serve, wait_for

ROOT = Path(__file__).resolve().parent.parent
RAISE_RECT = {"default": {}, "classes": {"rect": {"min_confidence": 0.9}}}


def login(client: httpx.Client, user: tuple[str, str]) -> str:
    r = client.post("/api/login", json={"username": user[0], "password": user[1]})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_health_stats_and_metrics(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=30) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        health = c.get("/api/health").json()
        assert health["status"] == "ok" and health["thresholds_version"] == 1
        assert health["store"]["rows_written"] == 30

        stats = c.get("/api/stats").json()
        ledger = stats["ledger"]
        assert ledger["seen"] == ledger["decided"] == 30
        assert ledger["passed"] + ledger["rejected"] == 30 and ledger["rejected"] > 0
        assert stats["yield"] == pytest.approx(ledger["passed"] / 30)
        assert set(stats["latency_ms"]) >= {"p50", "p95", "p99", "min", "avg", "max"}
        assert sum(stats["per_class_rejects"].values()) >= ledger["rejected"]
        assert stats["rates"]["parts_per_s"] > 0 and stats["alarms"] == []
        assert stats["thresholds_version"] == 1 and stats["store"]["rows_written"] == 30
        assert "stage_ms" in stats  # keys the pipeline adds are passed through

        r = c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        samples = [line for line in r.text.splitlines() if line and not line.startswith("#")]
        assert samples and all(line.startswith("inspector_") for line in samples)
        values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in samples}
        assert values["inspector_parts_decided_total"] == 30
        assert values["inspector_parts_rejected_total"] == ledger["rejected"]
        assert values["inspector_store_rows_written_total"] == 30
        assert values["inspector_thresholds_version"] == 1
        assert any(k.startswith('inspector_rejects_by_class_total{class="') for k in values)


def test_verdicts_pages_details_and_images(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=40, pass_sample_rate=0.0) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        rejected = [v.part_id for v in d.line.verdicts if v.rejected][::-1]
        passed = [v.part_id for v in d.line.verdicts if not v.rejected]
        seen: list[int] = []
        before = None
        while True:  # page back through all rejects, five at a time
            params = {"decision": "reject", "limit": 5, **({"before": before} if before else {})}
            page = c.get("/api/verdicts", params=params).json()
            seen += [v["part_id"] for v in page["items"]]
            assert all(v["decision"] == "reject" for v in page["items"])
            before = page["next_before"]
            if before is None:
                break
        assert seen == rejected

        everything = c.get("/api/verdicts", params={"limit": 500}).json()
        assert len(everything["items"]) == 40 and everything["next_before"] is None
        assert c.get("/api/verdicts", params={"limit": 0}).status_code == 422
        assert c.get("/api/verdicts", params={"decision": "maybe"}).status_code == 422

        part = d.line.verdicts[rejected[0] - 1]
        listed = next(v for v in everything["items"] if v["part_id"] == part.part_id)
        detail = c.get(f"/api/verdicts/{listed['id']}").json()  # a verdict is addressed by its store id
        assert detail["part_id"] == part.part_id and detail["id"] == listed["id"] and detail["run"] == part.run
        assert detail["decision"] == "reject" and detail["reasons"] == part.reasons
        assert len(detail["detections"]) == len(part.detections)
        assert [x["kept"] for x in detail["detections"]] == part.kept.tolist()
        assert detail["detections"][0]["class_name"] in NAMES.values()
        assert detail["image_url"] == f"/api/verdicts/{listed['id']}/image.jpg"
        assert c.get("/api/verdicts/999999").status_code == 404
        assert c.get("/api/verdicts/0").status_code == 422
        # A part id with its run finds the part's verdict.
        found = c.get("/api/verdicts", params={"part_id": part.part_id, "run": part.run}).json()["items"]
        assert [v["id"] for v in found] == [listed["id"]]
        assert c.get("/api/verdicts", params={"part_id": part.part_id, "run": part.run + 1}).json()["items"] == []

        r = c.get(detail["image_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        annotated = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        raw = cv2.imdecode(np.frombuffer(c.get(detail["image_url"], params={"annotated": False}).content, np.uint8), 1)
        assert annotated.shape == raw.shape == (240, 320, 3)

        # Boxes are drawn in red (BGR 40, 40, 230) on kept defects: far more red pixels than in the raw image.
        def red(img: np.ndarray) -> int:
            return int(((img[..., 2] > 180) & (img[..., 1] < 90) & (img[..., 0] < 90)).sum())

        assert red(annotated) > red(raw) + 100
        small = c.get(detail["image_url"], params={"width": 160}).content
        assert cv2.imdecode(np.frombuffer(small, np.uint8), 1).shape == (120, 160, 3)
        a_pass = next(v for v in everything["items"] if v["part_id"] == passed[0])
        assert a_pass["image_url"] is None
        assert c.get(f"/api/verdicts/{a_pass['id']}/image.jpg").status_code == 404  # passes not sampled here


def test_login_roles_and_unauthenticated_edit(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=5) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        body = {"version": 1, "thresholds": RAISE_RECT, "comment": "x"}
        r = c.put("/api/thresholds", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.put("/api/thresholds", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/api/login", json={"username": EDITOR[0], "password": "wrong"}).status_code == 401
        assert c.post("/api/login", json={"username": "nobody", "password": "x"}).status_code == 401
        assert c.post("/api/login", json={"username": "", "password": "x"}).status_code == 422
        assert c.get("/api/me").json()["authenticated"] is False

        viewer_token = login(c, VIEWER)
        me = c.get("/api/me").json()  # the cookie set by the login
        assert me == {
            "authenticated": True,
            "username": "op",
            "role": "viewer",
            "can_edit": False,
            "login_to_view": False,
        }
        r = c.put("/api/thresholds", json=body)
        assert r.status_code == 403
        c.post("/api/logout")
        assert c.get("/api/me").json()["authenticated"] is False
        stale_token = {"Authorization": f"Bearer {viewer_token}"}
        assert c.put("/api/thresholds", json=body, headers=stale_token).status_code == 401

        with httpx.Client(base_url=d.base_url, timeout=30) as other:  # a bearer token without the cookie
            token = login(other, EDITOR)
        r = c.put("/api/thresholds", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["thresholds"]["version"] == 2
        assert d.holder.get().version == 2


def test_thresholds_edit_is_versioned_validated_and_audited(tmp_path: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    with (
        dashboard(tmp_path, parts=5, announce=lambda e: calls.append((e["old_version"], e["version"], e["user"]))) as d,
        httpx.Client(base_url=d.base_url, timeout=30) as c,
    ):
        state = c.get("/api/thresholds").json()
        assert state["class_names"] == ["rect", "circle"] and state["thresholds"]["version"] == 1
        login(c, EDITOR)
        audit_before = c.get("/api/audit").json()["items"]

        for bad in (
            {"version": 1, "thresholds": {"classes": {"rect": {"min_confidence": 1.5}}}},
            {"version": 1, "thresholds": {"classes": {"hole": {"min_confidence": 0.5}}}},
            {"version": 1, "thresholds": {"default": {"max_count": -1}}},
            {"version": 1, "thresholds": {"roi": [[0, 0], [1, 1]]}},
            {"version": 1, "thresholds": {}, "extra": 1},
            {"thresholds": {}},
        ):
            r = c.put("/api/thresholds", json=bad)
            assert r.status_code == 422, (bad, r.text)
        r = c.put("/api/thresholds", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422

        r = c.put("/api/thresholds", json={"version": 1, "thresholds": RAISE_RECT, "comment": "too many rect rejects"})
        assert r.status_code == 200, r.text
        installed = r.json()["thresholds"]
        assert installed["version"] == 2 and installed["classes"]["rect"]["min_confidence"] == 0.9
        assert d.holder.get().for_class("rect").min_confidence == 0.9
        assert calls == [(1, 2, "qa")]

        stale = c.put("/api/thresholds", json={"version": 1, "thresholds": {}, "comment": "late"})
        assert stale.status_code == 409 and "version 2" in stale.json()["detail"]
        assert d.holder.get().version == 2 and calls == [(1, 2, "qa")]

        audit = c.get("/api/audit").json()["items"]
        assert len(audit) == len(audit_before) + 1  # invalid and stale edits leave no trace but their 4xx
        row = audit[0]
        assert (row["user"], row["action"], row["old_version"], row["new_version"]) == ("qa", "thresholds.update", 1, 2)
        assert row["comment"] == "too many rect rejects"
        assert row["changes"] == [{"field": "classes.rect.min_confidence", "old": 0.25, "new": 0.9}]
        history = c.get("/api/thresholds/history").json()
        assert [h["version"] for h in history] == [2, 1] and history[0]["user"] == "qa"


def test_class_names_follow_a_recipe_switch(tmp_path: Path) -> None:
    """`names` as a function: edits are checked against the classes of the model in use at request time."""
    deps, line = make_deps(tmp_path)
    active = {"names": dict(NAMES)}
    deps.names = lambda: active["names"]
    line.run_parts(5)
    assert deps.store.flush(), "store did not flush"
    app = create_app(deps)

    def listed(c: httpx.Client) -> list[str]:
        spec = c.get("/openapi.json").json()
        return spec["components"]["schemas"]["ThresholdsIn"]["properties"]["classes"]["propertyNames"]["enum"]

    try:
        with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as c:
            assert c.get("/api/thresholds").json()["class_names"] == ["rect", "circle"]
            assert listed(c) == ["rect", "circle"]
            login(c, EDITOR)

            active["names"] = {0: "scratch", 1: "hole"}  # the recipe switched to a model with other classes
            assert c.get("/api/thresholds").json()["class_names"] == ["scratch", "hole"]
            assert listed(c) == ["scratch", "hole"]
            new_rule = {"classes": {"hole": {"min_confidence": 0.7}}}
            assert c.post("/api/thresholds/preview", json={"thresholds": new_rule}).status_code == 200
            r = c.put("/api/thresholds", json={"version": 1, "thresholds": new_rule})
            assert r.status_code == 200, r.text
            assert r.json()["class_names"] == ["scratch", "hole"] and deps.holder().get().version == 2
            assert deps.holder().get().for_class("hole").min_confidence == 0.7

            for unknown in ("rect", "dent"):  # a start class the model no longer has, and one it never had
                body = {"version": 2, "thresholds": {"classes": {unknown: {"min_confidence": 0.5}}}}
                r = c.put("/api/thresholds", json=body)
                assert 400 <= r.status_code < 500 and unknown in r.text, r.text
                r = c.post("/api/thresholds/preview", json={"thresholds": body["thresholds"]})
                assert 400 <= r.status_code < 500, r.text
            assert deps.holder().get().version == 2
    finally:
        deps.store.close()


def test_preview_redecides_recent_parts_without_changing_anything(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=60) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        proposed = Thresholds.model_validate(RAISE_RECT)
        expected = {"to_pass": [], "to_reject": []}
        for v in d.line.verdicts[-50:]:
            now = decide(v.detections, proposed, NAMES, v.part_id)
            if now.decision != v.decision:
                expected["to_pass" if not now.rejected else "to_reject"].append(v.part_id)
        assert expected["to_pass"], "the fixture should have rect rejects below 0.9"

        r = c.post("/api/thresholds/preview", json={"thresholds": RAISE_RECT, "parts": 50})
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["parts"] == 50 and p["skipped_failsafe"] == 0 and p["current_version"] == 1
        assert p["to_pass"] == len(expected["to_pass"]) and p["to_reject"] == 0
        assert sorted(f["part_id"] for f in p["flips"]) == sorted(expected["to_pass"])
        assert all(f["was"] == "reject" and f["now"] == "pass" for f in p["flips"])
        assert p["proposed"]["reject"] == p["current"]["reject"] - p["to_pass"]
        # Lowering a threshold flips the other way.
        lower = c.post("/api/thresholds/preview", json={"thresholds": {"default": {"min_confidence": 0.1}}}).json()
        assert lower["to_pass"] == 0
        assert c.post("/api/thresholds/preview", json={"thresholds": {"classes": {"x": {}}}}).status_code == 422
        assert c.post("/api/thresholds/preview", json={"thresholds": {}, "parts": 0}).status_code == 422
        assert d.holder.get().version == 1  # a preview changes nothing
        assert [a["action"] for a in c.get("/api/audit").json()["items"]] == ["thresholds.start"]


def test_next_parts_are_decided_with_the_new_version(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=10, run_line=True) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        login(c, EDITOR)
        assert c.put("/api/thresholds", json={"version": 1, "thresholds": RAISE_RECT}).status_code == 200
        marker = d.store.last_id()

        def newer_parts() -> list[dict]:
            items = c.get("/api/verdicts", params={"limit": 500}).json()["items"]
            return sorted((v for v in items if v["id"] > marker), key=lambda v: v["id"])

        parts = wait_for(lambda: len(newer_parts()) >= 12 and newer_parts(), 60, what="parts after the edit")
        # A part decided just before the swap may reach the store after it; from the first v2 part on, all are v2.
        versions = [v["thresholds_version"] for v in parts]
        assert versions == sorted(versions) and versions.count(1) <= 2, versions
        parts = [v for v in parts if v["thresholds_version"] == 2]
        for v in parts[:10]:
            detail = c.get(f"/api/verdicts/{v['id']}").json()
            kept = [x for x in detail["detections"] if x["kept"]]
            assert all(x["confidence"] >= 0.9 for x in kept if x["class_name"] == "rect")
            assert (v["decision"] == "reject") == bool(kept)


def test_event_stream_sends_stats_verdicts_and_thresholds(tmp_path: Path) -> None:
    with (
        dashboard(tmp_path, parts=3, run_line=True) as d,
        httpx.Client(base_url=d.base_url, timeout=30) as c,
        c.stream("GET", "/api/events") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen: dict[str, list[dict]] = {}
        event = None
        deadline = time.monotonic() + 30
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                seen.setdefault(event, []).append(json.loads(line[6:]))
            if {"stats", "verdict", "thresholds"} <= set(seen) and len(seen["stats"]) >= 2:
                break
            assert time.monotonic() < deadline, f"only got {sorted(seen)}"
        assert seen["thresholds"][0]["version"] == 1
        assert seen["stats"][-1]["ledger"]["decided"] > seen["stats"][0]["ledger"]["decided"] > 0
        assert seen["verdict"][0]["part_id"] > 3  # only parts newer than the stream
        assert seen["verdict"][0]["decision"] in {"pass", "reject"}


def test_login_to_view(tmp_path: Path) -> None:
    with dashboard(tmp_path, parts=3, login_to_view=True) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        for path in ("/api/stats", "/api/verdicts", "/api/verdicts/1", "/api/thresholds", "/api/audit", "/api/events"):
            assert c.get(path).status_code == 401, path
        assert c.post("/api/thresholds/preview", json={"thresholds": {}}).status_code == 401
        assert c.get("/api/health").status_code == 200
        assert c.get("/metrics").status_code == 200
        assert c.get("/").status_code == 200  # the page itself, with its login form
        assert c.get("/api/me").json() == {
            "authenticated": False,
            "username": None,
            "role": None,
            "can_edit": False,
            "login_to_view": True,
        }
        token = login(httpx.Client(base_url=d.base_url, timeout=30), VIEWER)
        r = c.get("/api/stats", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["ledger"]["decided"] == 3


def test_first_start_creates_an_editor_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deps, _ = make_deps(tmp_path, users={})
    deps.users = None  # nothing configured: config.users is empty too
    try:
        app = create_app(deps)
        err = capsys.readouterr().err
        assert "created user 'admin' (editor), password: " in err
        password = err.split("password: ")[1].split()[0]
        assert [(a.user, a.action) for a in deps.store.audit() if a.action == "user.create"] == [
            ("system", "user.create")
        ]
        with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=60) as c:
            r = c.post("/api/login", json={"username": "admin", "password": password})
            assert r.status_code == 200 and r.json()["role"] == "editor"
        create_app(AppDeps(**{**vars(deps), "users": None}))  # a restart: same account, nothing printed
        assert "password" not in capsys.readouterr().err
        users, again = bootstrap_users({}, deps.store)
        assert again is None and verify_password(password, users["admin"].password_hash)
    finally:
        deps.store.close()


def test_configured_users_are_used_as_they_are(tmp_path: Path) -> None:
    deps, _ = make_deps(tmp_path)
    try:
        users, password = bootstrap_users(deps.users or {}, deps.store)
        assert password is None and set(users) == {"qa", "op"}
        deps.users = None
        deps.config = DashboardConfig(users=users)
        app = create_app(deps)
        assert app.state.auth.usernames == ["op", "qa"]
    finally:
        deps.store.close()


def test_hash_password_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "inspector", "hash-password", "--iterations", "1000"],
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert out.startswith("pbkdf2_sha256$1000$")
    assert verify_password("s3cret pass", out) and not verify_password("s3cret", out)
    assert hash_password("a", iterations=1000) != hash_password("a", iterations=1000)  # salted
    assert not verify_password("a", "md5$1$x$y") and not verify_password("a", "garbage")


def test_page_and_static_files_are_served(tmp_path: Path) -> None:
    with dashboard(tmp_path) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        page = c.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text and "/static/style.css" in page.text
        for path in ("/static/app.js", "/static/style.css"):
            r = c.get(path)
            assert r.status_code == 200 and len(r.content) > 1000
        assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
        assert "https://" not in c.get("/static/app.js").text
        assert c.get("/static/nope.js").status_code == 404


def test_with_the_real_pipeline_on_a_folder_of_images(
    tmp_path: Path, yolov8n_onnx: Path, test_images: list[Path]
) -> None:
    """The real line (FolderSource, ONNX detector, pipeline, stats) with the store as its sink, under the API."""
    from inspector.config import CameraConfig, LineConfig, ModelConfig, PipelineConfig, StoreConfig
    from inspector.line import build_line
    from inspector.store import Store
    from inspector.thresholds import LineThresholds

    config = LineConfig(
        camera=CameraConfig(source="folder", uri=str(test_images[0].parent), loop=True, fps=8),
        model=ModelConfig(path=yolov8n_onnx, conf=0.05, threads=1),
        pipeline=PipelineConfig(gate_ms=None),  # a loaded CI box must not turn parts into fail-safes
        store=StoreConfig(path=tmp_path / "inspector.db", images_dir=tmp_path / "images", pass_sample_rate=1.0),
    )
    store = Store(config.store, {0: "rect", 1: "circle"})
    line_thresholds = LineThresholds.from_config(config, store)
    pipeline = build_line(config, sinks=[store], thresholds=line_thresholds)
    assert pipeline.names == {0: "rect", 1: "circle"}
    assert pipeline.thresholds is line_thresholds.holder("default")  # one holder: the pipeline reads what is edited
    deps = AppDeps(
        store=store,
        thresholds=line_thresholds,
        stats=pipeline.stats,
        names=pipeline.names,
        recipe=lambda: pipeline.recipe,
        users=make_users(),
        events_interval_s=0.25,
    )
    app = create_app(deps)
    pipeline.start()
    try:
        with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as c:
            wait_for(lambda: c.get("/api/stats").json()["ledger"].get("decided", 0) >= 12, 120, what="12 parts")
            stats = c.get("/api/stats").json()
            assert stats["ledger"]["seen"] >= stats["ledger"]["decided"] >= 12
            assert stats["recipe"] == "default" and stats["thresholds_version"] == 1

            items = c.get("/api/verdicts", params={"limit": 12}).json()["items"]
            assert {v["model_sha256"] for v in items} == {pipeline.stats()["model_sha256"]}
            assert any(v["n_detections"] > 0 for v in items), "the model should find the drawn shapes"
            found = next(v for v in items if v["n_detections"] > 0)
            detail = c.get(f"/api/verdicts/{found['id']}").json()
            assert {x["class_name"] for x in detail["detections"]} <= {"rect", "circle"}
            image = c.get(detail["image_url"])  # every image kept at pass_sample_rate 1
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"

            login(c, EDITOR)
            preview = c.post("/api/thresholds/preview", json={"thresholds": {"default": {"min_confidence": 0.99}}})
            assert preview.status_code == 200 and preview.json()["to_reject"] == 0
            r = c.put("/api/thresholds", json={"version": 1, "thresholds": {"default": {"min_confidence": 0.99}}})
            assert r.status_code == 200 and pipeline.thresholds.get().version == 2
            marker = store.last_id()

            def newer() -> list[dict]:
                items = c.get("/api/verdicts", params={"limit": 100}).json()["items"]
                return [v for v in items if v["id"] > marker]

            parts = wait_for(lambda: len(newer()) >= 5 and newer(), 120, what="parts after the edit")
            # Parts decided just before the swap may still be on their way to the store; after the first v2
            # part, every part is v2.
            versions = [v["thresholds_version"] for v in sorted(parts, key=lambda v: v["id"])]
            assert versions == sorted(versions) and versions[-1] == 2 and versions.count(1) <= 2, versions
            metrics = c.get("/metrics").text
            assert "inspector_parts_decided_total" in metrics and "inspector_thresholds_version 2.0" in metrics
    finally:
        assert pipeline.stop(timeout=30)
        store.close()


def test_a_restart_counts_this_run_apart_and_repeated_part_ids_stay_apart(tmp_path: Path) -> None:
    """Two starts over one store, both numbering parts from 1 (as a PLC's counter may): the stats give this run's
    counters (`ledger`, `run`) and the store's of every run (`cumulative`); a part id with its run names one part,
    and each verdict's store id addresses it (and its image)."""
    with dashboard(tmp_path, parts=10, pass_sample_rate=1.0) as d, httpx.Client(base_url=d.base_url, timeout=30) as c:
        stats = c.get("/api/stats").json()
        assert stats["run"] == 1 and stats["ledger"]["decided"] == 10
        assert stats["cumulative"] == {
            "decided": 10,
            "passed": stats["ledger"]["passed"],
            "rejected": stats["ledger"]["rejected"],
            "runs": 1,
        }
        first = c.get("/api/verdicts", params={"part_id": 3}).json()["items"]
    deps, line = make_deps(tmp_path, pass_sample_rate=1.0)
    line.run, line.rng = 2, np.random.default_rng(99)  # the next start: other parts
    line.run_parts(6)
    try:
        assert deps.store.flush()
        with serve(create_app(deps)) as base_url, httpx.Client(base_url=base_url, timeout=30) as c:
            stats = c.get("/api/stats").json()
            assert stats["run"] == 2 and stats["ledger"]["decided"] == 6  # this run's, from 0
            total = stats["cumulative"]
            assert total["decided"] == 16 and total["passed"] + total["rejected"] == 16 and total["runs"] == 2
            both = c.get("/api/verdicts", params={"part_id": 3}).json()["items"]
            assert [v["run"] for v in both] == [2, 1] and both[1]["id"] == first[0]["id"]
            again = c.get("/api/verdicts", params={"part_id": 3, "run": 1}).json()["items"]
            assert [v["id"] for v in again] == [first[0]["id"]]
            for v in both:  # each verdict, and its image, by its own store id
                detail = c.get(f"/api/verdicts/{v['id']}").json()
                assert (detail["part_id"], detail["run"]) == (3, v["run"])
                assert detail["image_url"] == f"/api/verdicts/{v['id']}/image.jpg"
                assert c.get(detail["image_url"], params={"annotated": False}).status_code == 200
            images = [c.get(v["image_url"], params={"annotated": False}).content for v in both]
            assert images[0] != images[1]  # two parts, two images
    finally:
        line.stop()
        deps.store.close()
