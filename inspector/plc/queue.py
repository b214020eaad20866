"""The PLC link's offline queue: every QoS >= 1 message stays ours until the broker acknowledged it.

Messages wait here while the broker is away (bounded: rejects whose gate has passed are purged first, then the
oldest are dropped, counted `overflow` and reported in one alarm), then stay in flight until acknowledged. On a
reconnect what paho still holds unacknowledged is taken back and sent again through the same path, so a reject
whose gate has passed meanwhile is dropped (counted `late`) instead of reaching the PLC after the part went by,
and every other reject gets a fresh MQTT 5 message expiry (`expiry`).

The queue has no lock of its own: the link's lock guards it (methods say "lock held" when the caller holds it).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from inspector.types import Timings

__all__ = ["Item", "Outbox"]

log = logging.getLogger(__name__)

_LATE_IDS_KEPT = 10000
_PURGE_EVERY_NS = 500_000_000  # the overflow purge is an O(n) scan: at most twice a second


@dataclass(slots=True)
class Item:
    """One message waiting to go out (or waiting for its PUBACK)."""

    kind: Literal["verdict", "reject", "event", "error", "camera"]
    topic: str
    payload: bytes
    part_id: int | None = None
    deadline_ns: int | None = None
    timings: Timings | None = None
    retain: bool = False


class Outbox:
    """Messages not yet acknowledged: `waiting` (the offline queue, in order) and `inflight` (handed to paho).

    bound: the most messages `waiting` holds (`mqtt.offline_queue`). qos: the link's QoS (QoS 0 messages lost
    with a connection are queued again, QoS >= 1 ones come back from paho on reconnect).
    """

    def __init__(self, bound: int, qos: int, lock: threading.Condition) -> None:
        self.bound = bound
        self.qos = qos
        self._lock = lock
        self.waiting: collections.deque[Item] = collections.deque()
        self.inflight: dict[int, tuple[mqtt.MQTTMessageInfo, Item]] = {}
        self.sent = 0
        self.overflow = 0
        self.late = 0
        self.late_ids: collections.deque[int] = collections.deque(maxlen=_LATE_IDS_KEPT)
        # Overflow since the last alarm: count, first and last part id dropped (the alarm event reports them).
        self.overflow_pending: tuple[int, int | None, int | None] = (0, None, None)
        self.alarm_logged = False
        self._last_purge_ns = 0

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged, waiting or in flight (lock held)."""
        return len(self.waiting) + len(self.inflight)

    def push(self, item: Item, front: bool = False) -> None:
        """Queue `item` (lock held); on overflow drop stale rejects first, then the oldest."""
        if front:
            self.waiting.appendleft(item)
        else:
            self.waiting.append(item)
        if len(self.waiting) <= self.bound:
            return
        now = time.monotonic_ns()
        if now - self._last_purge_ns > _PURGE_EVERY_NS:
            self._last_purge_ns = now
            kept: collections.deque[Item] = collections.deque()
            for queued in self.waiting:
                if queued.kind == "reject" and queued.deadline_ns is not None and queued.deadline_ns <= now:
                    self.mark_late(queued.part_id)  # useless now: its gate has passed
                else:
                    kept.append(queued)
            self.waiting = kept
        while len(self.waiting) > self.bound:
            dropped = self.waiting.popleft()
            self.overflow += 1
            n, first, last = self.overflow_pending
            if dropped.part_id is not None:
                first = dropped.part_id if first is None else first
                last = dropped.part_id
            self.overflow_pending = (n + 1, first, last)
            if not self.alarm_logged:
                self.alarm_logged = True
                log.error("PLC link offline queue full (%d): dropping the oldest messages", self.bound)

    def take_overflow(self) -> tuple[int, int | None, int | None] | None:
        """Messages dropped since the last call, with the first and last part id, or None (lock held)."""
        if not self.overflow_pending[0]:
            return None
        pending, self.overflow_pending = self.overflow_pending, (0, None, None)
        return pending

    def mark_late(self, part_id: int | None) -> None:
        """Count a reject not sent because its gate had passed (lock held)."""
        self.late += 1
        if part_id is not None:
            self.late_ids.append(part_id)

    def count_late(self, part_id: int | None) -> None:
        """`mark_late`, taking the lock."""
        with self._lock:
            self.mark_late(part_id)

    def expiry(self, item: Item, protocol: str) -> Properties | Literal[False] | None:
        """The MQTT 5 message expiry of a reject (the time left to its gate), None when it has none, or False
        when the gate has passed (the item is then counted late and must not be sent)."""
        if item.kind != "reject" or item.deadline_ns is None:
            return None
        remaining_ns = item.deadline_ns - time.monotonic_ns()
        if remaining_ns <= 0:
            self.count_late(item.part_id)
            return False
        if protocol != "5":
            return None
        # Whole seconds only in MQTT; round up so a broker never drops an answer that is still in time.
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = max(1, math.ceil(remaining_ns / 1e9))
        return properties

    def track(self, info: mqtt.MQTTMessageInfo, item: Item) -> None:
        """Keep a published item until the broker acknowledges it (lock held)."""
        self.inflight[id(info)] = (info, item)

    def take_back(self, dropped: list[mqtt.MQTTMessage]) -> None:
        """Queue again, first and in order, what paho held unacknowledged when the connection dropped (lock held;
        `dropped` from `drop_out_messages()`)."""
        back = [self.inflight.pop(id(m.info))[1] for m in dropped if id(m.info) in self.inflight]
        for item in reversed(back):
            self.push(item, front=True)

    def sweep(self) -> None:
        """Count acknowledged messages; put QoS 0 messages lost with a connection back in the queue."""
        with self._lock:
            lost: list[Item] = []
            for key, (info, item) in list(self.inflight.items()):
                try:
                    done = info.is_published()
                except (RuntimeError, ValueError):
                    # rc NO_CONN (QoS >= 1: still in paho, handed back on reconnect) or CONN_LOST (QoS 0: gone).
                    if info.rc == MQTTErrorCode.MQTT_ERR_CONN_LOST and self.qos == 0:
                        del self.inflight[key]
                        lost.append(item)
                    continue
                if done:
                    del self.inflight[key]
                    self.sent += 1
            for item in reversed(lost):
                self.push(item, front=True)
