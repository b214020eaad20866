"""How the line talks to the plant: the MQTT contract, a Sparkplug B edge node and the OPC UA server."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from inspector.config.section import Section

__all__ = ["MqttConfig", "OpcuaConfig", "OpcuaSecurity", "OpcuaUserConfig", "SparkplugConfig", "TlsConfig"]


class TlsConfig(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip host name checks (commissioning only)")


# Sparkplug group, edge node, device and host ids: one MQTT topic level, no wildcards (spec: no '+', '/', '#').
_SPARKPLUG_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class MqttConfig(Section):
    enabled: bool = True
    url: str | None = Field(
        None, description="mqtt://host:port or mqtts://host:port; none starts the embedded broker on loopback"
    )
    line: str = Field("line1", pattern=r"^[A-Za-z0-9_.-]+$")
    prefix: str = Field("inspector", pattern=r"^[A-Za-z0-9_./-]+$")
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(5, ge=1)
    heartbeat_s: float = Field(1.0, gt=0)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    offline_queue: int = Field(10000, ge=1, description="verdicts kept while the broker is away")


class SparkplugConfig(Section):
    """A Sparkplug B 3.0 edge node beside the plain MQTT contract (docs/plant.md): the line is the edge node, the
    camera a device. Off by default."""

    enabled: bool = False
    url: str | None = Field(
        None,
        description="broker (mqtt:// or mqtts://); none: the `mqtt` section's broker, with its credentials and TLS",
    )
    group_id: str = Field("inspector", pattern=_SPARKPLUG_ID, description="Sparkplug group id (topic level 2)")
    edge_node_id: str | None = Field(
        None, pattern=_SPARKPLUG_ID, description="edge node id; none: `mqtt.line` (one inspector process per node)"
    )
    primary_host_id: str | None = Field(
        None,
        pattern=_SPARKPLUG_ID,
        description="the SCADA's host id: birth only while `spBv1.0/STATE/<id>` says online; none: birth at once",
    )
    min_period_s: float = Field(
        1.0, ge=0.0, description="report by exception: changed status metrics at most this often (parts: at once)"
    )
    keepalive_s: int = Field(5, ge=1, description="MQTT keep-alive; the broker sends NDEATH ~1.5x this after a hang")
    client_id: str | None = None
    username: str | None = Field(None, description="with `url` only (otherwise the `mqtt` section's)")
    password: SecretStr | None = None
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _credentials_need_url(self) -> SparkplugConfig:
        if self.url is None and (self.username is not None or self.password is not None or self.tls is not None):
            raise ValueError("sparkplug.username/password/tls apply to sparkplug.url only; set it or drop them")
        return self


class OpcuaUserConfig(Section):
    """An OPC UA account: a password (PBKDF2 hash, as `inspector hash-password` makes) or an X.509 user certificate."""

    password_hash: str | None = Field(None, description="output of `inspector hash-password` (pbkdf2_sha256)")
    certificate: Path | None = Field(None, description="the user's X.509 certificate (DER or PEM) instead")
    role: Literal["viewer", "operator"] = Field(
        "viewer", description="viewer: browse, read, subscribe; operator: also call methods (jobs, recipes)"
    )

    @model_validator(mode="after")
    def _one_credential(self) -> OpcuaUserConfig:
        if (self.password_hash is None) == (self.certificate is None):
            raise ValueError("give exactly one of password_hash and certificate")
        return self


OpcuaSecurity = Literal[
    "None",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign",
    "Aes256Sha256RsaPss_SignAndEncrypt",
]


class OpcuaConfig(Section):
    """The OPC UA server (OPC 40100-1 Machine Vision style VisionSystem, docs/plant.md); off by default."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(4840, ge=0, le=65535, description="TCP port (0: any free port)")
    path: str = Field("", pattern=r"^(/[A-Za-z0-9_.-]+)*$", description="endpoint path, e.g. /inspector")
    anonymous: Literal["off", "viewer", "operator"] = Field("off", description="what a client without login may do")
    users: dict[str, OpcuaUserConfig] = Field(default_factory=dict)
    security: list[OpcuaSecurity] = Field(
        default_factory=lambda: ["None", "Basic256Sha256_SignAndEncrypt"],
        min_length=1,
        description="endpoint security policies; passwords are encrypted with the server certificate even on None",
    )
    certificate: Path | None = Field(None, description="server certificate (DER or PEM); none: a self-signed one")
    private_key: Path | None = Field(None, description="its private key (PEM)")
    pki_dir: Path = Field(
        Path("var/opcua"),
        description="self-signed server certificate, trusted/ client certificates, rejected/ ones to review",
    )
    trust_all_clients: bool = Field(
        False, description="accept any client application certificate (commissioning only); else trusted/ only"
    )
    results_kept: int = Field(10, ge=1, le=1000, description="last results under ResultManagement/Results")
    queue_size: int = Field(1000, ge=1, description="results waiting for the OPC UA thread before the oldest drops")
    status_period_s: float = Field(0.2, gt=0, description="how often the state machine follows the line")

    @model_validator(mode="after")
    def _usable(self) -> OpcuaConfig:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("opcua.certificate and opcua.private_key go together: give both or neither")
        if self.enabled and self.anonymous == "off" and not self.users:
            raise ValueError("opcua.users is empty and opcua.anonymous is off: no client could log in")
        return self
