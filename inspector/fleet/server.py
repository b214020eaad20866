"""`FleetServer`: the fleet view as one object (state, MQTT subscriber, web server in a thread), for
`inspector fleet` and `inspector demo --lines N`."""

from __future__ import annotations

import logging

from inspector.fleet.shifts import Shifts
from inspector.fleet.state import Fleet
from inspector.fleet.subscriber import FleetSubscriber
from inspector.webserver import ThreadedServer, serve_in_thread

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
        self._web: ThreadedServer | None = None

    def start(self) -> str:
        from inspector.fleet.app import create_fleet_app

        app = create_fleet_app(self.fleet, broker_url=self.subscriber.safe_url())
        self._web = serve_in_thread(app, self.host, self.port, name="fleet-web")
        self.subscriber.start()
        self.url = self._web.url
        return self.url

    def stop(self) -> None:
        self.subscriber.stop()
        if self._web is not None:
            self._web.stop()
            self._web = None
