"""The PLC's commands to the pipeline: validated, run, and answered on `cmd/error` when malformed or failing.

Paho's network thread delivers them. Triggers, pauses and resumes run there at once; recipe switches may load a
model for seconds, so they run on a thread of their own (started by `start()`), and paho's thread keeps
answering pings and acknowledgements and triggers keep flowing meanwhile.
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

__all__ = ["CommandDispatcher"]

log = logging.getLogger(__name__)

_LOUD_ERRORS_PER_MINUTE = 10  # a PLC sending garbage in a loop must not flood the log

_Job = tuple[str, str, bytes, str]  # topic, command name, payload, recipe


class CommandDispatcher:
    """Runs the commands arriving under `topics.cmd` on `handler`.

    answer: sends a `cmd/error` payload (queued like every other message). event: publishes an `events` message
    (an accepted command other than a trigger is announced there; a trigger's answer is its verdict).
    """

    def __init__(
        self,
        handler: PlcCommands | None,
        topics: Topics,
        *,
        answer: Callable[[bytes], None],
        event: Callable[[dict[str, Any]], None],
    ) -> None:
        self.handler = handler
        self.topics = topics
        self._answer = answer
        self._event = event
        self._lock = threading.Lock()
        self.malformed = 0
        self.accepted = 0
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
            self.handler.trigger(arg)
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
