"""`serve_in_thread`: a uvicorn server on a daemon thread, for the line's dashboard and the fleet view.

The socket is bound here, before uvicorn starts, so that port 0 gets a free port we can report and a taken port
fails the start at once (an `OSError` from `serve_in_thread`, not a log line on the server's thread).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["ThreadedServer", "serve_in_thread"]

_START_WAIT_S = 30.0  # uvicorn listens within milliseconds; this only bounds a start that hangs


@dataclass
class ThreadedServer:
    """A running server: its `port`, the `url` it answers on, and `stop()`."""

    port: int
    url: str
    server: Any  # uvicorn.Server
    app: Any  # the ASGI app it serves
    thread: threading.Thread

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)


def serve_in_thread(app: Any, host: str, port: int, *, name: str) -> ThreadedServer:
    """Serve the ASGI `app` on host:port (0: any free port) from a daemon thread called `name`; returns once it
    listens (or its thread died, or the start wait ran out). Raises OSError when the address cannot be bound."""
    import uvicorn  # the dashboard's dependency: not imported by a line without one

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_WAIT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    url_host = f"[{host}]" if ":" in host else host
    return ThreadedServer(bound_port, f"http://{url_host}:{bound_port}/", server, app, thread)
