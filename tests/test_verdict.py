"""One verdict record: `Verdict.to_record()`, from which the store row, the MQTT payloads, the JSON lines and the API
answers are made; the fail-safe rule once; one detection record and its JSON shape."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from inspector.api.schemas import AuditOut, VerdictDetailOut, VerdictOut
from inspector.config import StoreConfig
from inspector.line import JsonlSink
from inspector.plc import load_schema, reject_payload, verdict_payload
from inspector.store import AuditRecord, Store, StoredVerdict
from inspector.types import (
    FAILSAFE_REASONS,
    Decision,
    DetectionRecord,
    Detections,
    Timings,
    Verdict,
    is_failsafe,
)
from inspector.verdict import VerdictFields, VerdictRecord, truth_flag_of

NOW_NS = 10**12
NOW_WALL = 1_700_000_000.0
NAMES = {0: "open", 1: "short"}


def verdict(**changes: object) -> Verdict:
    """A rejected part with three detections, two kept, one of a class the names do not know."""
    dets = Detections(
        np.array([[1.234567, 2.5, 30.25, 40.75], [5, 6, 7, 8], [9.99, 9.99, 19.99, 29.99]], np.float32),
        np.array([0.912345, 0.3, 0.777777], np.float32),
        np.array([1, 0, 7], np.int64),
    )
    fields: dict[str, object] = {
        "part_id": 11,
        "decision": Decision.REJECT,
        "reasons": ["short", "7"],
        "detections": dets,
        "kept": np.array([True, False, True]),
        "thresholds_version": 3,
        "model_sha256": "ab" * 32,
        "recipe": "boardA",
        "camera_id": "cam2",
        "seq": 5,
        "run": 4,
        "timings": Timings(captured_ns=NOW_NS - 12_345_678, decided_ns=NOW_NS - 1_000_000),
        "names": NAMES,
    }
    fields.update(changes)
    return Verdict(**fields)  # type: ignore[arg-type]


def test_record_holds_the_verdict_written_out() -> None:
    r = verdict(truth=True).to_record(NOW_NS, NOW_WALL)
    assert isinstance(r, VerdictRecord)
    assert (r.part_id, r.seq, r.run, r.camera_id, r.recipe, r.thresholds_version) == (11, 5, 4, "cam2", "boardA", 3)
    assert r.decision is Decision.REJECT and r.rejected and not r.failsafe
    assert r.ts == pytest.approx(NOW_WALL - 0.012345678) and r.decided_ts == NOW_WALL - 0.001
    assert r.latency_ms == pytest.approx(11.345678) and (r.n_detections, r.n_kept) == (3, 2)
    assert [(d.class_name, d.kept) for d in r.detections] == [("short", True), ("open", False), ("7", True)]
    assert r.truth is True
    # The defects list the MQTT message and the JSON lines carry: the kept ones, named by the verdict's recipe.
    assert r.defects() == [
        {"class": "short", "confidence": 0.9123, "xyxy": [1.2, 2.5, 30.2, 40.8]},
        {"class": "7", "confidence": 0.7778, "xyxy": [10.0, 10.0, 20.0, 30.0]},
    ]


def test_a_failsafe_verdict_has_no_defects_and_no_latency_when_never_captured() -> None:
    v = Verdict(3, Decision.REJECT, ["uninspected"], thresholds_version=2, timings=Timings(decided_ns=NOW_NS))
    r = v.to_record(NOW_NS, NOW_WALL)
    assert r.failsafe and v.failsafe and r.rejected
    assert r.latency_ms is None and r.ts == NOW_WALL and r.detections == [] and r.defects() == []
    # A kept mask that does not match the detections (no decision was made on them) marks nothing kept.
    odd = verdict(kept=np.zeros(0, bool)).to_record(NOW_NS, NOW_WALL)
    assert odd.n_kept == 0 and odd.defects() == [] and odd.n_detections == 3


def test_the_failsafe_rule_is_written_once() -> None:
    """`is_failsafe` decides for the verdict, its record and the stored verdict alike."""
    assert {"uninspected", "error", "unregistered"} == FAILSAFE_REASONS
    assert is_failsafe(["error"]) and is_failsafe(["short", "uninspected"]) and is_failsafe(["unregistered"])
    assert not is_failsafe(["short"])
    for reasons in (["uninspected"], ["short"]):
        v = verdict(decision=Decision.PASS, reasons=reasons)
        record = v.to_record(NOW_NS, NOW_WALL)
        common = {f.name: getattr(record, f.name) for f in dataclasses.fields(VerdictFields)}
        stored = StoredVerdict(**common, id=1, image=None)
        assert v.failsafe == record.failsafe == stored.failsafe == is_failsafe(reasons)
        assert not (v.rejected or record.rejected or stored.rejected)


def test_one_field_list_for_record_store_and_api() -> None:
    """`VerdictFields` is the record's and the stored verdict's common part; the API's verdict answers list the
    stored verdict's fields (the image as a URL), and its audit answers the audit record's (plus the changes)."""
    common = [f.name for f in dataclasses.fields(VerdictFields)]
    assert [f.name for f in dataclasses.fields(VerdictRecord)][: len(common)] == common
    assert [f.name for f in dataclasses.fields(StoredVerdict)][: len(common)] == common
    assert list(VerdictOut.model_fields) == ["id", *common, "image_url"]
    assert list(VerdictDetailOut.model_fields) == ["id", *common, "image_url", "detections"]
    audit = [f.name for f in dataclasses.fields(AuditRecord)]
    assert sorted(AuditOut.model_fields) == sorted([*audit, "changes"])


def test_payloads_and_json_lines_are_made_from_the_record() -> None:
    v = verdict(truth=False, deadline_ns=NOW_NS + 2_000_000_000)
    r = v.to_record(NOW_NS, NOW_WALL)
    full = verdict_payload(r, line="l1", gate_ts=NOW_WALL + 2.0)
    Draft202012Validator(load_schema("verdict")).validate(full)
    assert full["ts"] == r.decided_ts and full["defects"] == r.defects() and full["truth"] is False
    assert (full["camera"], full["model"], full["latency_ms"], full["failsafe"]) == ("cam2", "ab" * 32, 11.346, False)
    flat = reject_payload(r, gate_ts=NOW_WALL + 2.0, now_wall=NOW_WALL)
    Draft202012Validator(load_schema("reject")).validate(flat)
    assert (flat["reject"], flat["reason"], flat["seq"], flat["run"]) == (True, "short", 5, 4)
    assert (full["part_id"], full["seq"], full["run"]) == (11, 5, 4)
    stream = io.StringIO()
    JsonlSink(stream).handle(v)
    line = json.loads(stream.getvalue())
    assert line["defects"] == r.defects() and line["decision"] == "reject" and line["latency_ms"] == 11.346
    assert (line["part_id"], line["seq"], line["run"]) == (11, 5, 4)


def test_store_row_is_the_record(tmp_path: Path) -> None:
    """What the store reads back is the record's fields; its detections are named by the latest verdict's
    recipe."""
    store = Store(StoreConfig(path=str(tmp_path / "db.sqlite"), images_dir=str(tmp_path / "images")), {})
    try:
        v = verdict()
        record = v.to_record()
        store.handle(v)
        assert store.flush()
        stored = store.get_verdict(11)
    finally:
        store.close()
    assert stored is not None and store.names is NAMES
    for f in dataclasses.fields(VerdictFields):
        if f.name != "ts":
            assert getattr(stored, f.name) == getattr(record, f.name), f.name
    assert stored.ts == pytest.approx(record.ts, abs=0.05)
    assert stored.detections == record.detections


def test_truth_flag_only_from_typed_truth() -> None:
    """A verdict publishes the truth its source states as a flag or a record with `defective`; other shapes are
    `inspector.truth`'s to read."""

    @dataclasses.dataclass
    class PartTruth:
        defective: bool

    assert truth_flag_of(True) is True and truth_flag_of(np.bool_(False)) is False
    assert truth_flag_of(PartTruth(True)) is True and truth_flag_of(PartTruth(False)) is False
    assert truth_flag_of(None) is None and truth_flag_of({"defective": True}) is None and truth_flag_of(3) is None


def test_one_detection_record_and_its_json_shape() -> None:
    dets = verdict().detections
    records = dets.to_records(NAMES)
    assert records[0] == DetectionRecord(1, "short", float(np.float32(0.912345)), records[0].xyxy, True)
    rows = dets.to_list(NAMES)
    assert rows[0] == {"class_id": 1, "class_name": "short", "confidence": 0.91234, "xyxy": [1.23, 2.5, 30.25, 40.75]}
    assert rows == [r.to_json() for r in records]
    back = Detections.from_list(rows)
    assert np.allclose(back.xyxy, dets.xyxy, atol=0.01) and list(back.class_id) == [1, 0, 7]
    assert Detections.from_list([{"class_id": 2, "confidence": 0.5, "xyxy": [0, 0, 1, 1]}]).class_id.tolist() == [2]
    assert len(Detections.from_records([])) == 0
