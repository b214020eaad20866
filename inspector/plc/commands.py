"""The PLC's commands to the pipeline: validated, run, and answered on `cmd/error` when malformed or failing.

Paho's network thread delivers them. Triggers, pauses and resumes run there at once; recipe switches may load a
model for seconds, so they run on a thread of their own (started by `start()`), and paho's thread keeps
answering pings and acknowledgements and triggers keep flowing meanwhile.

A trigger is idempotent within `DUPLICATE_WINDOW_S`: a second `cmd/trigger` with a part id already triggered in
that window (a QoS 1 re-delivery after the PLC reconnected, a PLC program sending twice) makes no second part and
no second verdict; it is answered `duplicate` on `cmd/error`.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from inspector.plc.contract import CommandError, PlcCommands, Topics, command_error_payload, dumps, parse_command

__all__ = ["DUPLICATE_WINDOW_S", "CommandDispatcher"]

log = logging.getLogger(__name__)

_LOUD_ERRORS_PER_MINUTE = 10  # a PLC sending garbage in a loop must not flood the log
# Long enough for any re-delivery (a PLC's reconnect back-off), short enough that a PLC restarting its part counter
# is unlikely to reuse an id inside it (and if it does, the refused part gets no answer: the PLC rejects it).
DUPLICATE_WINDOW_S = 60.0
_MAX_REMEMBERED_TRIGGERS = 100_000  # memory bound at absurd trigger rates (1,600/s over the window)

_Job = tuple[str, str, bytes, str]  # topic, command name, payload, recipe


class CommandDispatcher:
    """Runs the commands arriving under `topics.cmd` on `handler`.

    answer: sends a `cmd/error` payload (queued like every other message). event: publishes an `events` message
    (an accepted command other than a trigger is announced there; a trigger's answer is its verdict).
    duplicate_window_s: a trigger repeating a part id accepted less than this long ago is refused (`duplicate`).
    """

    def __init__(
        self,
        handler: PlcCommands | None,
        topics: Topics,
        *,
        answer: Callable[[bytes], None],
        event: Callable[[dict[str, Any]], None],
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
    ) -> None:
        self.handler = handler
        self.topics = topics
        self._answer = answer
        self._event = event
        self._lock = threading.Lock()
        self.malformed = 0
        self.accepted = 0
        self.duplicates = 0
        self.duplicate_window_s = duplicate_window_s
        self._recent_triggers: collections.OrderedDict[int, float] = collections.OrderedDict()  # id -> accepted at
        self._error_log_times: collections.deque[float] = collections.deque(maxlen=_LOUD_ERRORS_PER_MINUTE)
        self._slow: queue.Queue[_Job | None] | None = None
        self._slow_thread: threading.Thread | None = None

    def start(self, thread_name: str) -> None:
        """Start the thread for recipe switches (until then they run on the caller's thread)."""
        self._slow = queue.Queue()
        self._slow_thread = threading.Thread(target=self._run_slow, args=(self._slow,), name=thread_name, daemon=True)
        self._slow_thread.start()

    def stop(self) -> None:
        """Let the recipe thread finish what it has and end (waits up to 5 s)."""
        slow, self._slow = self._slow, None
        if slow is not None and self._slow_thread is not None:
            slow.put(None)
            self._slow_thread.join(timeout=5.0)

    def receive(self, topic: str, payload: bytes, retain: bool) -> None:
        """One message under `cmd/` (paho's network thread)."""
        name = topic[len(self.topics.cmd) :]
        if name == "error":  # our own answers (MQTT 3.1.1 has no "no local" subscription option)
            return
        try:
            command, arg = parse_command(name, payload, retain)
        except CommandError as exc:
            self._error(topic, name, payload, exc)
            return
        if command == "recipe" and self._slow is not None:
            assert isinstance(arg, str)
            self._slow.put((topic, name, payload, arg))
            return
        self._execute(topic, name, payload, command, arg)

    def _run_slow(self, jobs: queue.Queue[_Job | None]) -> None:
        while (job := jobs.get()) is not None:
            topic, name, payload, arg = job
            self._execute(topic, name, payload, "recipe", arg)

    def _execute(self, topic: str, name: str, payload: bytes, command: str, arg: int | str | None) -> None:
        try:
            self._dispatch(command, arg)
        except CommandError as exc:
            self._error(topic, name, payload, exc)
        except Exception as exc:  # the pipeline's handler failed: answer, never let it stop the link
            self._error(topic, name, payload, CommandError("command_failed", f"{type(exc).__name__}: {str(exc)[:200]}"))

    def _dispatch(self, command: str, arg: int | str | None) -> None:
        assert self.handler is not None
        if command == "trigger":
            assert isinstance(arg, int)
            self._refuse_repeat(arg)
            self.handler.trigger(arg)
            self._remember_trigger(arg)
        elif command == "pause":
            self.handler.pause()
        elif command == "resume":
            self.handler.resume()
        else:
            assert isinstance(arg, str)
            try:
                self.handler.set_recipe(arg)
            except KeyError as exc:
                raise CommandError("unknown_recipe", f"no recipe named {arg!r} in the line config") from exc
        with self._lock:
            self.accepted += 1
        if command != "trigger":  # a trigger's answer is its verdict
            self._event({"event": "command", "command": command, **({"recipe": arg} if arg else {})})

    def _refuse_repeat(self, part_id: int) -> None:
        """Raise `duplicate` when `part_id` was triggered within the window (triggers arrive on one thread)."""
        now = time.monotonic()
        recent = self._recent_triggers
        while recent and (
            len(recent) > _MAX_REMEMBERED_TRIGGERS or next(iter(recent.values())) < now - self.duplicate_window_s
        ):
            recent.popitem(last=False)
        if (at := recent.get(part_id)) is not None:
            with self._lock:
                self.duplicates += 1
            raise CommandError(
                "duplicate",
                f"part {part_id} was triggered {now - at:.1f} s ago; a repeat within {self.duplicate_window_s:g} s "
                "is answered once",
            )

    def _remember_trigger(self, part_id: int) -> None:
        """Only an accepted trigger counts: a PLC may retry one the pipeline refused."""
        self._recent_triggers[part_id] = time.monotonic()
        self._recent_triggers.move_to_end(part_id)

    def _error(self, topic: str, name: str, payload: bytes, exc: CommandError) -> None:
        with self._lock:
            self.malformed += 1
            count = self.malformed
            now = time.monotonic()
            loud = len(self._error_log_times) < _LOUD_ERRORS_PER_MINUTE or now - self._error_log_times[0] > 60
            if loud:
                self._error_log_times.append(now)
        (log.warning if loud else log.debug)("malformed command on %s: %s", topic, exc)
        self._answer(dumps(command_error_payload(topic, name, payload, exc, count)))
