"""The embedded default MQTT broker: for the demo and for a first run with no broker configured.

It runs `mosquitto` (MQTT 5 and 3.1.1) when the Debian package is installed, otherwise amqtt, the pure-Python
broker from PyPI (MQTT 3.1.1 only; the PLC link falls back to 3.1.1 against it). Either way it listens on
loopback only and runs as a child process, so a crash of the broker never takes the inspector down and a test
can `kill -9` it and start it again on the same port. Real deployments point `mqtt.url` at their own broker.

The broker never outlives the inspector, even one killed with `kill -9`: on Linux the child asks the kernel for
SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)`). The kernel sends it when the *thread* that started the
child ends, so a broker started from any thread but the main one is started by one long-lived spawner thread.
Its temporary folder is marked with the inspector's pid (`inspector.tempdirs`): the next start removes the folders
of inspectors that are gone.

    with EmbeddedBroker() as broker:
        print(broker.url, broker.kind, broker.protocols)   # mqtt://127.0.0.1:41235 mosquitto ('5', '3.1.1')
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from inspector.tempdirs import make_owned_tempdir, remove_stale

__all__ = ["BrokerError", "EmbeddedBroker", "find_mosquitto", "free_port", "spawn_child"]

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "amqtt"]
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.
_SBIN_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child sent SIGTERM when its parent dies (Linux); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # looked up before the fork: the child only calls it

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl: nobody would send the signal
            os._exit(1)

    return preexec


def spawn_child(cmd: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(cmd, **popen)` for a child that must end with this process (see the module's docstring)."""
    preexec = _die_with_parent(os.getpid())
    if preexec is None or threading.current_thread() is threading.main_thread():
        return subprocess.Popen(cmd, preexec_fn=preexec, **popen)
    global _spawner
    with _spawner_lock:
        if _spawner is None:  # its one thread waits for work until the interpreter exits
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="child-spawner")
        spawner = _spawner
    return spawner.submit(lambda: subprocess.Popen(cmd, preexec_fn=preexec, **popen)).result()


class BrokerError(RuntimeError):
    """The embedded broker could not be started (with the broker's own last log lines)."""


def find_mosquitto() -> str | None:
    """Path of the `mosquitto` executable: on the PATH, else where Debian puts it; None when not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _SBIN_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def amqtt_available() -> bool:
    """True when the amqtt package can be imported by this interpreter."""
    return importlib.util.find_spec("amqtt") is not None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it; a tiny race with other processes remains)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A loopback-only MQTT broker in a child process: `mosquitto` when installed, else amqtt.

    port: 0 picks a free port (kept across `kill()` / `start()` so clients reconnect to the same address).
    kind: "auto" (mosquitto if installed, else amqtt), or force one; a forced kind that is missing raises.
    persistence: mosquitto only: keep sessions, subscriptions and queued messages on disk in `workdir`, so a
        restarted broker still knows persistent subscribers. Saved after every change: Mosquitto acknowledges a
        QoS 1 message once it holds it in memory, so a `kill -9` loses what it had not yet saved (with its default
        time-based autosave, up to the whole interval); this leaves the few milliseconds of one loop.
    workdir: where config, log and persistence files go; a temporary folder (removed on `stop()`) when None.
    allow_anonymous: mosquitto only; False needs a `password_file` line in `extra_config`.
    extra_config: more mosquitto.conf lines, appended after the listener (so `certfile`, `require_certificate`
        and the like apply to it: tests run a TLS listener with client certificates this way).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        kind: BrokerKind = "auto",
        persistence: bool = False,
        workdir: Path | None = None,
        allow_anonymous: bool = True,
        extra_config: str = "",
        start_timeout_s: float = 15.0,
    ) -> None:
        if host not in _LOOPBACK:
            raise ValueError(f"the embedded broker listens on loopback only, not {host!r}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.kind = self._pick_kind(kind)
        self.persistence = persistence
        self.allow_anonymous = allow_anonymous
        self.extra_config = extra_config
        self.start_timeout_s = start_timeout_s
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None

    @staticmethod
    def _pick_kind(kind: BrokerKind) -> Literal["mosquitto", "amqtt"]:
        if kind == "mosquitto" or (kind == "auto" and find_mosquitto()):
            if not find_mosquitto():
                raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
            return "mosquitto"
        if not amqtt_available():
            raise BrokerError("no broker available: install mosquitto (apt) or amqtt (pip install amqtt)")
        return "amqtt"

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`mqtt://host:port` of the running broker."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def protocols(self) -> tuple[str, ...]:
        """MQTT versions this broker accepts, newest first."""
        return ("5", "3.1.1") if self.kind == "mosquitto" else ("3.1.1",)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def info(self) -> dict[str, object]:
        """What the status/dashboard shows about the embedded broker."""
        return {"kind": self.kind, "url": self.url, "protocols": list(self.protocols), "running": self.running}

    def start(self) -> str:
        """Start the broker (again, after `kill()`/`stop()`, on the same port) and wait until it accepts
        connections. Returns the URL."""
        if self.running:
            return self.url
        if self.workdir is None:
            prefix = f"inspector-{self.kind}-"
            remove_stale(prefix)  # the folders of inspectors killed before they could remove theirs
            self.workdir = make_owned_tempdir(prefix)
        self.workdir.mkdir(parents=True, exist_ok=True)
        pick_port = self.port == 0
        attempts = 3 if pick_port else 1
        for attempt in range(attempts):
            if pick_port:
                self.port = free_port(self.host)
            try:
                self._spawn()
                self._wait_ready()
            except BrokerError:
                self._terminate(signal.SIGKILL)
                if attempt + 1 == attempts:
                    raise
                continue
            log.info("embedded %s broker on %s (pid %s)", self.kind, self.url, self.pid)
            return self.url
        raise AssertionError("unreachable")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after `timeout_s`) and remove a temporary workdir."""
        self._terminate(signal.SIGTERM, timeout_s)
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self) -> None:
        """`kill -9` the broker (tests: a crash). Port, workdir and persisted state stay for `start()`."""
        self._terminate(signal.SIGKILL)

    def log_tail(self, n: int = 20) -> str:
        """The broker's last log lines, for error messages."""
        if self._log_file is None or not self._log_file.exists():
            return ""
        lines = self._log_file.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedBroker(kind={self.kind!r}, url={self.url!r}, running={self.running})"

    # -- internals ----------------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        assert self.workdir is not None
        self._log_file = self.workdir / f"{self.kind}.log"
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(self._mosquitto_conf())
            cmd = [str(find_mosquitto()), "-c", str(conf)]
        else:
            conf = self.workdir / "amqtt.yaml"
            conf.write_text(self._amqtt_conf())
            cmd = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
        with open(self._log_file, "ab") as logf:
            # Own session: a Ctrl-C in the terminal goes to the inspector, which then stops the broker in order.
            self._proc = spawn_child(
                cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _mosquitto_conf(self) -> str:
        assert self.workdir is not None
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp true",
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.persistence:
            lines += [
                f"persistence_location {self.workdir}/",
                "persistence_file mosquitto.db",
                "autosave_on_changes true",  # autosave_interval then counts changes: save after each one
                "autosave_interval 1",
            ]
        if os.geteuid() == 0:
            # As root mosquitto drops to the `mosquitto` user, which could not write our workdir.
            lines.append("user root")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _amqtt_conf(self) -> str:
        # JSON is valid YAML; no sys-topic plugin (it would publish $SYS every few seconds).
        return (
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(f"{self.kind} exited with {self._proc.returncode} on {self.url}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise BrokerError(
            f"{self.kind} did not listen on {self.url} within {self.start_timeout_s} s:\n{self.log_tail()}"
        )

    def _terminate(self, sig: signal.Signals, timeout_s: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
