"""Failed-login limits: whether a login attempt is checked at all, per account and per client address.

Per account: the first failure is free, each further one doubles the wait before the next try (`backoff_initial_s`:
1 s, 2 s, 4 s, ...), and `account_failures` failures within `account_window_s` lock the account for `lockout_s`, or
until an editor lifts the lock; one attempt per account is checked at a time. Per client address: `address_failures`
failures within `address_window_s` block the address, each block within `backoff_max_s` of the last twice as long.
Unknown user names are tracked like real ones, so that the answers do not tell which names exist. A refused attempt
costs no password hash: the login route answers 429 with Retry-After (`inspector.api.login_guard`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from inspector.config import LoginLimitsConfig

__all__ = ["REFUSALS", "Attempt", "Kind", "LimitEvent", "LockInfo", "LoginLimiter", "LoginRefused", "Reason"]

Kind = Literal["account", "address"]
Reason = Literal["account_locked", "account_backoff", "address_blocked", "busy"]
REFUSALS: tuple[Reason, ...] = ("account_locked", "account_backoff", "address_blocked", "busy")


class LoginRefused(Exception):
    """An attempt answered without checking its password: `status` 429 (limits) or 503 (hasher busy)."""

    def __init__(self, reason: Reason, retry_after_s: float, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = 503 if reason == "busy" else 429
        self.retry_after = max(1, math.ceil(retry_after_s))  # whole seconds, as the Retry-After header wants
        self.detail = detail.format(s=self.retry_after)


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted attempt: the limiter holds a place for it until `finish` or `cancel`."""

    username: str
    address: str


@dataclass(frozen=True, slots=True)
class LimitEvent:
    """An account locked or an address blocked by a failure."""

    kind: Kind
    name: str
    failures: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class LockInfo:
    """What the limiter holds against an account or address (`GET /api/login-locks`)."""

    kind: Kind
    name: str
    failures: int
    locked: bool
    retry_after_s: float


@dataclass(slots=True)
class _State:
    """One account's or address's record."""

    failures: deque[float] = field(default_factory=deque)  # monotonic times of failures in the window
    pending: int = 0  # admitted attempts not finished yet
    not_before: float = 0.0  # no attempt is checked before this (back-off)
    locked_until: float = 0.0  # account locked / address blocked until this; 0: not
    strikes: int = 0  # addresses: blocks so far; the next one lasts twice as long
    last_block_end: float = -math.inf


class LoginLimiter:
    """Per-account and per-address limits on failed logins (see the module docstring). Thread-safe; `clock` is
    `time.monotonic` unless a test drives it."""

    def __init__(self, limits: LoginLimitsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[Kind, OrderedDict[str, _State]] = {"account": OrderedDict(), "address": OrderedDict()}

    def admit(self, username: str, address: str) -> Attempt:
        """Hold a place for an attempt, or raise `LoginRefused` (429) saying how long to wait."""
        now = self._clock()
        with self._lock:
            account = self._get("account", username, now) or _State()
            source = self._get("address", address, now) or _State()
            refusals: list[tuple[float, Reason, str]] = []
            if account.locked_until:
                detail = "account locked after too many failed logins; try again in {s} s or ask an editor to unlock it"
                refusals.append((account.locked_until - now, "account_locked", detail))
            elif account.not_before > now or account.pending:
                wait = max(account.not_before - now, 1.0)
                refusals.append(
                    (wait, "account_backoff", "too many failed logins for this account; try again in {s} s")
                )
            if source.locked_until or len(source.failures) + source.pending >= self.limits.address_failures:
                wait = source.locked_until - now if source.locked_until else 1.0
                detail = "too many failed logins from this address; try again in {s} s"
                refusals.append((wait, "address_blocked", detail))
            if refusals:
                wait, reason, detail = max(refusals)
                raise LoginRefused(reason, wait, detail)
            account.pending += 1
            source.pending += 1
            self._keep("account", username, account, now)  # only admitted attempts are remembered: refused
            self._keep("address", address, source, now)  # ones cost no memory, however many come
        return Attempt(username, address)

    def cancel(self, attempt: Attempt) -> None:
        """Give back an admitted attempt's place without a verdict (its password was never checked)."""
        now = self._clock()
        with self._lock:
            for kind, name in (("account", attempt.username), ("address", attempt.address)):
                state = self._get(kind, name, now)  # type: ignore[arg-type]
                if state is not None:
                    state.pending = max(0, state.pending - 1)
                    self._drop_if_idle(kind, name, state, now)  # type: ignore[arg-type]

    def finish(self, attempt: Attempt, ok: bool) -> list[LimitEvent]:
        """Record the attempt's outcome; returns the lock and block it caused (if any)."""
        limits, now = self.limits, self._clock()
        events: list[LimitEvent] = []
        with self._lock:
            account = self._keep("account", attempt.username, self._get("account", attempt.username, now), now)
            source = self._keep("address", attempt.address, self._get("address", attempt.address, now), now)
            account.pending = max(0, account.pending - 1)
            source.pending = max(0, source.pending - 1)
            if ok:  # the account starts afresh; the address keeps its failures (a valid login must not reset them)
                account.failures.clear()
                account.not_before = 0.0
                self._drop_if_idle("account", attempt.username, account, now)
                self._drop_if_idle("address", attempt.address, source, now)
                return events
            account.failures.append(now)
            n = len(account.failures)
            if n >= limits.account_failures:
                account.locked_until = account.not_before = now + limits.lockout_s
                events.append(LimitEvent("account", attempt.username, n, limits.lockout_s))
            elif n >= 2:
                account.not_before = now + min(limits.backoff_max_s, limits.backoff_initial_s * 2 ** (n - 2))
            source.failures.append(now)
            if len(source.failures) >= limits.address_failures:
                if now - source.last_block_end > limits.backoff_max_s:
                    source.strikes = 0
                duration = min(limits.backoff_max_s, limits.address_window_s * 2**source.strikes)
                source.strikes += 1
                source.locked_until = now + duration
                events.append(LimitEvent("address", attempt.address, len(source.failures), duration))
        return events

    def lift(self, kind: Kind, name: str) -> LockInfo | None:
        """Forget an account's or address's failures, lock and back-off; what there was, or None if nothing."""
        now = self._clock()
        with self._lock:
            states = self._states[kind]
            state = states.get(name)
            if state is None:
                return None
            self._expire(kind, state, now)
            info = self._info(kind, name, state, now)
            if not state.failures and not state.locked_until and state.not_before <= now:
                return None
            states[name] = _State(pending=state.pending)
            return info

    def locks(self) -> list[LockInfo]:
        """Accounts and addresses with failures in their window or a lock, locked first, then by name."""
        now = self._clock()
        out = []
        with self._lock:
            for kind, states in self._states.items():
                for name, state in states.items():
                    self._expire(kind, state, now)
                    if state.failures or state.locked_until:
                        out.append(self._info(kind, name, state, now))
        return sorted(out, key=lambda i: (not i.locked, i.kind, i.name))

    def locked(self) -> dict[Kind, int]:
        """How many accounts are locked and addresses blocked now."""
        now = self._clock()
        with self._lock:
            return {
                kind: sum(1 for s in states.values() if s.locked_until > now) for kind, states in self._states.items()
            }

    # ------------------------------------------------------------------------------------------------ helpers
    def _window(self, kind: Kind) -> float:
        return self.limits.account_window_s if kind == "account" else self.limits.address_window_s

    def _expire(self, kind: Kind, state: _State, now: float) -> None:
        """Drop failures older than the window; end a lock whose time is up (its failures go with it)."""
        if state.locked_until and state.locked_until <= now:
            state.last_block_end = state.locked_until
            state.locked_until = 0.0
            state.failures.clear()
        horizon = now - self._window(kind)
        while state.failures and state.failures[0] <= horizon:
            state.failures.popleft()

    def _get(self, kind: Kind, name: str, now: float) -> _State | None:
        """The record of `name`, up to date (None when there is none, or nothing is left in it)."""
        states = self._states[kind]
        state = states.get(name)
        if state is not None:
            self._expire(kind, state, now)
            if self._drop_if_idle(kind, name, state, now):
                return None
            states.move_to_end(name)
        return state

    def _keep(self, kind: Kind, name: str, state: _State | None, now: float) -> _State:
        """Remember `state` (a new one for None) as the newest record of `name`, in a table of bounded size."""
        states = self._states[kind]
        if state is None:
            state = _State()
        if states.get(name) is not state:
            states[name] = state
            states.move_to_end(name)
            if len(states) > self.limits.max_tracked:
                self._prune(kind, states, now)
        return state

    def _idle(self, state: _State, now: float) -> bool:
        """Nothing held against it, and no recent block that the next one would double."""
        held = state.failures or state.pending or state.locked_until or state.not_before > now
        return not held and now - state.last_block_end > self.limits.backoff_max_s

    def _drop_if_idle(self, kind: Kind, name: str, state: _State, now: float) -> bool:
        if self._idle(state, now):
            self._states[kind].pop(name, None)
            return True
        return False

    def _prune(self, kind: Kind, states: OrderedDict[str, _State], now: float) -> None:
        """Bounded memory: forget idle records, then the oldest ones, down to 90 % of the bound so that this runs
        now and then rather than on every new record (the newest, just made, stays)."""
        for name in list(states)[:-1]:
            self._expire(kind, states[name], now)
            self._drop_if_idle(kind, name, states[name], now)
        target = max(1, int(self.limits.max_tracked * 0.9))
        while len(states) > target:
            states.popitem(last=False)

    def _info(self, kind: Kind, name: str, state: _State, now: float) -> LockInfo:
        wait = max(state.locked_until, state.not_before) - now
        return LockInfo(kind, name, len(state.failures), bool(state.locked_until), max(0.0, wait))
