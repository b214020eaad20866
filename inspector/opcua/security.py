"""Who may talk to the OPC UA server: logins, roles, the server certificate and the client trust list.

- Users: `opcua.users` with a PBKDF2 password hash (`inspector hash-password`, the dashboard's format) or an X.509
  user certificate; anonymous clients only when `opcua.anonymous` says so (off by default).
- Roles: a viewer browses, reads and subscribes; an operator may also call methods (jobs, recipes, halt).
- Application certificates: the server's own (configured, or self-signed once under `pki_dir/own/`), and the
  clients': only those in `pki_dir/trusted/` are accepted (unless `trust_all_clients`); a refused one is saved in
  `pki_dir/rejected/` for an administrator to review and move to `trusted/`, which takes effect on the next
  connection attempt (no restart).
"""

from __future__ import annotations

import logging
import secrets
import socket
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import PermissionRuleset, SimpleRoleRuleset, User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspector.auth import hash_password, verify_password
from inspector.config import OpcuaConfig, OpcuaUserConfig

__all__ = ["APPLICATION_URI", "ClientTrust", "InspectorUsers", "RoleRules", "demo_settings", "server_certificate"]

log = logging.getLogger(__name__)

APPLICATION_URI = "urn:inspector:opcua:server"
_CALL = ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)
_WRITE = ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)


class InspectorUsers:
    """asyncua's user manager: checks a login against `opcua.users`; returns None to refuse it.

    A user's name is `<role>:<login>` so that `RoleRules` can tell an operator from a viewer."""

    def __init__(self, config: OpcuaConfig) -> None:
        self._anonymous = config.anonymous
        self._passwords = {n: u for n, u in config.users.items() if u.password_hash is not None}
        self._certificates: dict[bytes, tuple[str, str]] = {}
        for name, user in config.users.items():
            if user.certificate is not None:
                der = _der(Path(user.certificate), f"opcua.users.{name}.certificate")
                self._certificates[der] = (name, user.role)
        # An unknown login still costs one hash, so that timing does not reveal which names exist.
        self._dummy = hash_password("not a password", iterations=1000)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        # asyncua passes the secure channel's client certificate for every login on a secured channel, and the
        # X.509 user token's certificate for a certificate login: a user name means a password login.
        if username is not None:
            user = self._passwords.get(username)
            hashed = user.password_hash if user is not None and user.password_hash else self._dummy
            if not verify_password(password or "", hashed) or user is None:
                log.warning("OPC UA login refused for user %r", username[:64])
                return None
            return User(role=UserRole.User, name=f"{user.role}:{username}")
        if certificate is not None:
            if isinstance(certificate, bytes):
                certificate = uacrypto.x509_from_der(certificate)
            found = self._certificates.get(uacrypto.der_from_x509(certificate))
            if found is not None:
                return User(role=UserRole.User, name=f"{found[1]}:{found[0]}")
        if self._anonymous == "off":
            log.warning("OPC UA login refused: anonymous, or a user certificate not in opcua.users")
            return None
        return User(role=UserRole.User, name=f"{self._anonymous}:anonymous")


def role_of(user: User | None) -> str:
    """`operator`, `viewer`, or `` for no session."""
    if user is None or not user.name:
        return ""
    return user.name.split(":", 1)[0]


class RoleRules(PermissionRuleset):
    """asyncua's permission check per request: everything a session may do, but methods for operators only and no
    writes (nothing is writable: commands are methods)."""

    def __init__(self) -> None:
        self._base = SimpleRoleRuleset()

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        if action_type_id == _WRITE:
            return False
        if action_type_id == _CALL and role_of(user) != "operator":
            return False
        return bool(self._base.check_validity(user, action_type_id, body))


def _der(path: Path, field: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"{field}: {path} is not an X.509 certificate (DER or PEM)") from exc
    return cert.public_bytes(serialization.Encoding.DER)


async def server_certificate(config: OpcuaConfig) -> tuple[Path, Path]:
    """The server's certificate and key files: the configured ones, else a self-signed pair made once under
    `pki_dir/own/` (kept across restarts, so that clients that trusted it go on trusting it)."""
    if config.certificate is not None and config.private_key is not None:
        for field, path in (("opcua.certificate", config.certificate), ("opcua.private_key", config.private_key)):
            if not Path(path).is_file():
                raise ValueError(f"{field}: file not found: {path}")
        return Path(config.certificate), Path(config.private_key)
    own = Path(config.pki_dir) / "own"
    own.mkdir(parents=True, exist_ok=True)
    cert, key = own / "cert.der", own / "key.pem"
    await setup_self_signed_certificate(
        key,
        cert,
        APPLICATION_URI,
        socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"countryName": "DE", "organizationName": "inspector", "commonName": "inspector OPC UA server"},
    )
    key.chmod(0o600)
    return cert, key


class ClientTrust:
    """The client application certificate check: time range, application URI, then the trust list in
    `pki_dir/trusted/` (reloaded when an unknown certificate arrives, so that a newly trusted client connects
    without a restart). A refused certificate is written to `pki_dir/rejected/<thumbprint>.der`."""

    def __init__(self, pki_dir: Path, trust_all: bool) -> None:
        self.trusted = Path(pki_dir) / "trusted"
        self.rejected = Path(pki_dir) / "rejected"
        self.trusted.mkdir(parents=True, exist_ok=True)
        self.rejected.mkdir(parents=True, exist_ok=True)
        self._trust_all = trust_all
        self._options = CertificateValidatorOptions.BASIC_VALIDATION
        self._basic = CertificateValidator(self._options)
        self._trusted = CertificateValidator(self._options | CertificateValidatorOptions.TRUSTED, None)
        self.refused = 0

    async def load(self) -> None:
        """(Re)read `trusted/`; an empty folder trusts nobody (asyncua's store cannot be empty)."""
        store = TrustStore([self.trusted], [])
        if any(p.suffix.lower() in {".der", ".pem"} for p in self.trusted.iterdir()):
            await store.load()
        else:
            store._trust_store = None  # asyncua's "nothing loaded": is_trusted() answers False
        self._trusted = CertificateValidator(self._options | CertificateValidatorOptions.TRUSTED, store)

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        if self._trust_all:
            await self._basic.validate(cert, app)
            return
        try:
            await self._trusted.validate(cert, app)
            return
        except Exception:
            await self.load()  # maybe trusted a moment ago
        try:
            await self._trusted.validate(cert, app)
        except Exception:
            self.refused += 1
            thumb = cert.fingerprint(hashes.SHA1()).hex()  # OPC UA's thumbprint: a file name here
            path = self.rejected / f"{thumb}.der"
            path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
            log.warning(
                "OPC UA client %r refused: its certificate is not trusted; saved as %s, move it to %s to trust it",
                app.ApplicationUri,
                path,
                self.trusted,
            )
            raise


def demo_settings(port: int, pki_dir: Path) -> tuple[OpcuaConfig, str]:
    """`inspector demo --opcua-port P`: the server on 127.0.0.1:P, anonymous clients may watch, an `operator` with
    a random password (returned, to print) may call methods, and any client certificate is accepted (loopback)."""
    password = secrets.token_urlsafe(12)
    config = OpcuaConfig(
        enabled=True,
        port=port,
        anonymous="viewer",
        users={"operator": OpcuaUserConfig(password_hash=hash_password(password, iterations=100_000), role="operator")},
        pki_dir=pki_dir,
        trust_all_clients=True,
    )
    return config, password
