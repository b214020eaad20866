"""Rate-limited logging: a dead camera or a failing sink must not flood the log."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

__all__ = ["ThrottledLog"]


class ThrottledLog:
    """Logs to `logger` at most once per `period_s` per key; one instance per line, shared by its threads."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._times: dict[str, float] = {}

    def __call__(self, key: str, period_s: float, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - self._times.get(key, -math.inf) >= period_s:
            self._times[key] = now
            self._logger.log(level, msg, *args, **kwargs)
