"""Failed-login limits and the password hasher: login traffic cannot take the line's CPU, and guessing is slow.

Each dashboard login costs one PBKDF2 hash (600,000 rounds, about 0.3 s of a core). Unlimited, a flood of wrong
passwords ran as many hashes at once as the server had threads and starved the model (issue 20). Now:

- `LoginLimiter` (`inspector.api.login_limits`) decides before any hash whether an attempt is checked at all:
  back-off and lockout per account, blocks per client address; a refused attempt costs no hash (429 with
  Retry-After).
- `HashWorker` checks passwords on one thread, one at a time, with `hash_queue` waiting; more are refused at once
  (503). At most one core's worth of hashing runs whatever the traffic, and no request thread holds the GIL
  meanwhile (hashlib releases it while it hashes; the route awaits the result on the event loop). On Linux the
  hash thread also runs at nice 10 (that thread only), so the line's threads win a contended CPU.
- `LoginGuard` puts them together for the login route, holds refused answers back a second (`refusal_delay_s`:
  a client looping on 429s then costs about one cheap request a second per connection, not thousands), counts
  for `/metrics` (`inspector.prometheus.LoginCollector`) and audits failed logins, locks, blocks and lifts in the
  store's audit log.

With 16 threads flooding wrong passwords at a 5 parts/s line on the 2-core test box, 112 of 117 parts failed safe
before; none do now (`tests/test_logins.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar

from inspector.api.login_limits import REFUSALS, Attempt, Kind, LockInfo, LoginLimiter, LoginRefused
from inspector.auth import Authenticator, Session
from inspector.config import LoginLimitsConfig

__all__ = ["MAX_HELD", "HashWorker", "HasherBusy", "LoginGuard", "lower_thread_priority"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_HELD = 512  # refused answers held back at once (`refusal_delay_s`); more are answered at once


class HasherBusy(Exception):
    """The hash worker and its queue are full."""


HASH_NICE = 10  # the hash thread's nice value where the OS lets one thread have its own (Linux)


def lower_thread_priority(nice: int = HASH_NICE) -> bool:
    """Lower the calling thread's CPU priority to `nice` (Linux: a thread id is a process id to setpriority), so
    that the line's threads win the CPU when both want it and hashing gets what they leave; the process itself
    keeps its priority (unlike `os.nice`). Elsewhere it does nothing, and the one-at-a-time bound alone applies.
    True when lowered."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except (AttributeError, OSError):
        return False
    return True


class HashWorker:
    """Runs password checks on one thread, one at a time, with at most `queue_size` waiting; `submit` raises
    `HasherBusy` at once when they are all taken, rather than queueing without bound."""

    def __init__(self, queue_size: int) -> None:
        self._slots = threading.BoundedSemaphore(queue_size + 1)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="login-hash", initializer=lower_thread_priority
        )
        self._depth = 0
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Checks running or waiting."""
        return self._depth

    def submit(self, job: Callable[[], T]) -> Future[T]:
        if not self._slots.acquire(blocking=False):
            raise HasherBusy
        with self._lock:
            self._depth += 1

        def run() -> T:
            try:
                return job()
            finally:  # before the result is set: whoever has it sees the slot free again
                self._release()

        try:
            return self._executor.submit(run)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        with self._lock:
            self._depth -= 1
        self._slots.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=False)


class LoginGuard:
    """The login route's gatekeeper: limits first, then the password on the hash worker, then the record.

    audit: called as `audit(user=, action=, comment=)` (the store's `audit_event`) for each failed login
    (`login.failed`, user: the name tried), each lock or block (`login.locked`, `login.blocked`, user: `system`)
    and each lift (`login.unlock`, user: the editor).
    """

    def __init__(
        self,
        limits: LoginLimitsConfig,
        *,
        audit: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = LoginLimiter(limits, clock)
        self.hasher = HashWorker(limits.hash_queue)
        self._delay_s = limits.refusal_delay_s
        self._held = 0
        self._audit = audit
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    async def login(self, auth: Authenticator, username: str, password: str, address: str) -> Session | None:
        """A session for correct credentials, None for wrong ones; raises `LoginRefused` when not checked."""
        try:
            attempt = self.limiter.admit(username, address)
        except LoginRefused as refused:
            await self._refuse(refused)
        try:
            future = self.hasher.submit(lambda: self._check(auth, attempt, password))
        except HasherBusy:
            self.limiter.cancel(attempt)
            await self._refuse(LoginRefused("busy", 1.0, "too many logins at once; try again in {s} s"))
        # Shielded: a client that hangs up must not cancel a queued check, whose place the limiter holds.
        ok = await asyncio.shield(asyncio.wrap_future(future))
        return auth.open_session(username) if ok else None

    async def _refuse(self, refused: LoginRefused) -> NoReturn:
        """Count the refusal and hold its answer a while (`refusal_delay_s`, at most Retry-After): a client that
        loops on refusals then sends about one request a second per connection, not thousands, and the flood
        costs the line no CPU. Held answers are capped (a waiting coroutine is cheap, but not free)."""
        self._count(f"refused_{refused.reason}")
        delay = min(self._delay_s, float(refused.retry_after))
        if delay > 0 and self._held < MAX_HELD:
            self._held += 1  # only the event loop's thread touches it
            try:
                await asyncio.sleep(delay)
            finally:
                self._held -= 1
        raise refused

    def _check(self, auth: Authenticator, attempt: Attempt, password: str) -> bool:
        """On the hash worker: the password, then the limiter's record and the audit."""
        try:
            ok = auth.check(attempt.username, password)
        except BaseException:
            self.limiter.cancel(attempt)
            raise
        events = self.limiter.finish(attempt, ok)
        self._count("successes" if ok else "failures")
        if not ok:
            self._record(attempt.username, "login.failed", f"wrong user name or password, from {attempt.address}")
        for event in events:
            self._count("lockouts" if event.kind == "account" else "address_blocks")
            if event.kind == "account":
                what, action = f"account {event.name!r} locked", "login.locked"
            else:
                what, action = f"address {event.name} blocked", "login.blocked"
            self._record("system", action, f"{what} for {event.duration_s:g} s after {event.failures} failed logins")
        return ok

    def lift(self, kind: Kind, name: str, *, by: str, comment: str = "") -> LockInfo | None:
        """An editor lifts an account's lock (or an address's block); audited. None when there was nothing."""
        info = self.limiter.lift(kind, name)
        if info is not None:
            what = f"account {name!r}" if kind == "account" else f"address {name}"
            text = f"{what} unlocked ({info.failures} failed logins)" + (f": {comment}" if comment else "")
            self._record(by, "login.unlock", text)
        return info

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for `/metrics` (`inspector.prometheus.LoginCollector`)."""
        with self._counts_lock:
            counts = dict(self._counts)
        locked = self.limiter.locked()
        return {
            "successes": counts.get("successes", 0),
            "failures": counts.get("failures", 0),
            "refused": {reason: counts.get(f"refused_{reason}", 0) for reason in REFUSALS},
            "lockouts": counts.get("lockouts", 0),
            "address_blocks": counts.get("address_blocks", 0),
            "locked_accounts": locked["account"],
            "blocked_addresses": locked["address"],
            "hash_queue": self.hasher.depth,
        }

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self._counts[key] += 1

    def _record(self, user: str, action: str, comment: str) -> None:
        if self._audit is None:
            return
        try:
            self._audit(user=user, action=action, comment=comment)
        except Exception:  # a store that cannot write must not turn a login answer into a 500
            log.exception("auditing %s failed", action)
