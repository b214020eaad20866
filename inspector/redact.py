"""One rule for secrets in URIs: `scheme://user:password@host` shows as `scheme://user:***@host`, and the values of
secret-looking query parameters (`?password=...`, `token=`, ...) as `***`.

docs/deploy.md recommends credentials in the camera URI (`rtsp://user:pass@camera/stream`) and allows them in
`mqtt.url`; every place that shows a URI or a message that may quote one goes through this module: the log (a log
record factory, so every logger and handler is covered, tracebacks included), the API's stats, health and live
stream, the MQTT events, heartbeats and status, `check-config` and the demo's banner.

    redact_url("rtsp://cam:s3cret@10.0.0.5/live?token=abc")   # 'rtsp://cam:***@10.0.0.5/live?token=***'
    redact_text("cannot open opencv rtsp rtsp://cam:s3cret@10.0.0.5/live")   # the same rule inside free text
    redact_obj({"camera": {"description": "...rtsp://cam:s3cret@..."}})   # every string in a JSON-like value
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MASK", "install_log_redaction", "redact_obj", "redact_text", "redact_url"]

MASK = "***"

# scheme://user:password@ : the password runs to the last `@` before the host (an unencoded `@` in a password
# still ends up masked); whitespace, `/`, `?` and `#` end the authority, as in a URL.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*):[^\s/?#]*@")
# ?password=... / &token=... in any URI's query.
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pass|pwd|secret|token|access_token|auth|api_?key|key|sig|signature)=)"
    r"[^&;#\s'\"]*",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """`text` with the password of every URI in it, and the values of secret query parameters, masked."""
    if "://" not in text and "=" not in text:  # the common case: nothing to look at
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)
    return text


def redact_url(url: str) -> str:
    """One URL with its password (and secret query parameters) masked; for logs, `info()` and error messages."""
    return redact_text(url)


def redact_obj(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings, numbers) with every string redacted.

    Dict keys stay as they are; strings without anything to mask are returned as they are (no copy)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_obj(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_obj(v) for v in value)
    return value


_installed: Callable[..., logging.LogRecord] | None = None


def install_log_redaction() -> None:
    """Redact every log record from now on, whichever logger makes it and whichever handler writes it.

    A log record factory (not a handler filter) so that handlers added later (uvicorn's, a test's) are covered too.
    The message is formatted once here (records below the logger's level are never made, so this costs nothing
    for them); a traceback is formatted here too and kept redacted in `exc_text`. Idempotent.
    """
    global _installed
    if _installed is not None:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report, as logging does
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
    _installed = factory
