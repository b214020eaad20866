"""The line's record: every verdict and its detections in SQLite (WAL), threshold versions per recipe, the audit
log, and JPEG images of rejects (and a sampled share of passes) in day folders beside it, under a quota and a
retention.

It is a pipeline sink. `handle()` runs on the dispatch thread, so it only copies what it needs into a bounded
queue; one writer thread batches rows into transactions and encodes JPEGs. WAL with `synchronous=NORMAL` keeps
every committed transaction through a crash of the process (`kill -9`); only a power cut can lose the last few.
Nothing is dropped silently: rows or images that do not fit the queues are counted in `stats()` and logged.

One job per module:

    schema    the SQL schema, the upgrade of older stores (`migrate`), a connection's set-up (pragmas)
    records   StoredVerdict, StoredDetection, AuditRecord, ThresholdRecord, the writer's Pending; rows <-> records
    counters  the counters behind `stats()` and their lock
    images    the image archive: which frames, JPEGs in day folders, quota and retention pruning
    writer    the writer thread: bounded queue, frame budget, batched transactions
    queries   the API's connection: verdict reads, thresholds versions per recipe, audit log, settings
    store     `Store`, the sink that puts them together
"""

from inspector.store.records import AuditRecord, StoredDetection, StoredVerdict, ThresholdRecord
from inspector.store.store import Store

__all__ = ["AuditRecord", "Store", "StoredDetection", "StoredVerdict", "ThresholdRecord"]
