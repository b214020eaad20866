"""MQTT client setup: broker URLs (parsing, redaction), and a paho client with protocol, credentials and TLS set.

Shared by the PLC link and `inspector plc-sim`, so both connect to a broker the same way.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from inspector.config import TlsConfig
from inspector.redact import redact_url  # the one redaction rule, re-exported for the PLC modules

__all__ = ["BrokerAddress", "ProtocolName", "new_client", "parse_mqtt_url", "redact_url"]

ProtocolName = Literal["5", "3.1.1"]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is: from `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS, port 8883)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse a broker URL; raises ValueError naming what is wrong (never echoing a password)."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL has no host: {redact_url(url)!r}")
    tls = parts.scheme in {"mqtts", "ssl"}
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"MQTT URL has a bad port: {redact_url(url)!r}") from exc
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def new_client(
    *,
    protocol: ProtocolName,
    client_id: str,
    address: BrokerAddress,
    username: str | None = None,
    password: str | None = None,
    tls: TlsConfig | None = None,
    clean_session: bool = True,
) -> mqtt.Client:
    """A paho client (callback API 2) with protocol, credentials and TLS set; not yet connected.

    Credentials from the config win over those in the URL. TLS is on for `mqtts://` or when `tls` is given;
    without a CA file the system's trusted CAs verify the broker. clean_session: MQTT 3.1.1's flag, for every
    connect of this client (MQTT 5 chooses clean start and session expiry when connecting instead).
    """
    if protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean_session
        )
    user = username if username is not None else address.username
    secret = password if password is not None else address.password
    if user is not None:
        client.username_pw_set(user, secret)
    if address.tls or tls is not None:
        tls = tls or TlsConfig()
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if tls.insecure:
            client.tls_insecure_set(True)
    return client
