"""The dashboard (accounts, login limits) and the store behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from inspector.config.section import Section

__all__ = ["DashboardConfig", "LoginLimitsConfig", "StoreConfig", "UserConfig"]


class UserConfig(Section):
    password_hash: str = Field(description="output of `inspector hash-password` (pbkdf2_sha256)")
    role: Literal["viewer", "editor"] = "viewer"


class LoginLimitsConfig(Section):
    """Limits on failed dashboard logins (`inspector.api.login_guard`): back-off and lockout per account, a cap per
    client address, and the one-at-a-time password hasher, so that login traffic never takes the line's CPU."""

    account_failures: int = Field(
        5, ge=1, description="failed logins of one account within account_window_s that lock it for lockout_s"
    )
    account_window_s: float = Field(900.0, gt=0, description="how long an account's failed login is remembered")
    lockout_s: float = Field(
        900.0, gt=0, description="how long a locked account stays locked, unless an editor lifts the lock first"
    )
    backoff_initial_s: float = Field(
        1.0,
        ge=0,
        description="an account's first failure is free; after the second its next try waits this long, and the "
        "wait doubles with each further failure (up to backoff_max_s)",
    )
    address_failures: int = Field(
        20, ge=1, description="failed logins from one client address within address_window_s that block it"
    )
    address_window_s: float = Field(
        60.0,
        gt=0,
        description="the window of address_failures, and an address's first block; each block within "
        "backoff_max_s of the last one doubles (up to backoff_max_s)",
    )
    backoff_max_s: float = Field(900.0, gt=0, description="longest back-off wait or address block")
    hash_queue: int = Field(
        4,
        ge=0,
        description="logins waiting for the password hasher, which checks one at a time; more are answered 503 at once",
    )
    refusal_delay_s: float = Field(
        1.0,
        ge=0,
        description="hold each refused answer (429, 503) this long, at most its Retry-After, so that a client "
        "looping on refusals makes about one request a second per connection; 0: answer at once",
    )
    max_tracked: int = Field(
        10000, ge=1, description="accounts and addresses remembered each (bounded memory; the oldest go first)"
    )


class DashboardConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    login_to_view: bool = False
    secure_cookies: bool = Field(
        False,
        description="mark the session cookie Secure (sent over HTTPS only): set it when the dashboard is served "
        "behind a TLS proxy; the page cannot log in over plain HTTP then",
    )
    users: dict[str, UserConfig] = Field(default_factory=dict)
    logins: LoginLimitsConfig = LoginLimitsConfig()


class StoreConfig(Section):
    enabled: bool = True
    path: Path = Path("var/inspector.db")
    images_dir: Path = Path("var/images")
    quota_mb: float = Field(500.0, gt=0)
    retention_days: float = Field(30.0, gt=0)
    pass_sample_rate: float = Field(0.01, ge=0.0, le=1.0, description="share of passed parts whose image is kept")
