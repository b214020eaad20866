"""`FleetServer`: the fleet view as one object (state, MQTT subscriber, web server in a thread), for
`inspector fleet` and `inspector demo --lines N`."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from inspector.fleet.shifts import Shifts
from inspector.fleet.state import Fleet
from inspector.fleet.subscriber import FleetSubscriber

__all__ = ["FleetServer"]

log = logging.getLogger(__name__)


class FleetServer:
    """`FleetServer(mqtt_url).start()` -> the page's URL; `stop()`.

    host / port: where the page listens (port 0: any free port). prefix: the lines' `mqtt.prefix`.
    """

    def __init__(
        self,
        mqtt_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8090,
        prefix: str = "inspector",
        shifts: Shifts | None = None,
    ) -> None:
        self.fleet = Fleet(prefix, shifts)
        self.subscriber = FleetSubscriber(mqtt_url, self.fleet)  # validates the URL
        self.host = host
        self.port = port
        self.url: str | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        import uvicorn

        from inspector.fleet.app import create_fleet_app

        app = create_fleet_app(self.fleet, broker_url=self.subscriber.safe_url())
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fleet-web", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.subscriber.start()
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        return self.url

    def stop(self) -> None:
        self.subscriber.stop()
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(5)
            self._server = None
