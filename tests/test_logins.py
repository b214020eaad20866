"""Failed-login limits and the password hasher (issue 20, item 1).

The limiter and the hash worker on their own, driven by a test clock; the limits through the served API (429 with
Retry-After, lockout, the editor's lift, audit, metrics); and the acceptance test: a flood of logins from 16 threads
in another process against the whole edge service (embedded Mosquitto, the shipped model, a 5 parts/s line) makes
no part fail safe and is answered with 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inspector.api import create_app
from inspector.api.login_guard import HasherBusy, HashWorker, LoginGuard
from inspector.api.login_limits import LoginLimiter, LoginRefused
from inspector.config import DEFAULT_MODEL, DashboardConfig, LineConfig, LoginLimitsConfig
from inspector.service import EdgeService
from tests.mqtt_helpers import Recorder
from tests.web_helpers import CHROMIUM_ARGS, EDITOR, VIEWER, make_deps, serve

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(**limits: Any) -> tuple[LoginLimiter, Clock]:
    clock = Clock()
    return LoginLimiter(LoginLimitsConfig(**limits), clock), clock


def fail(lim: LoginLimiter, user: str = "qa", address: str = "10.0.0.1") -> list[Any]:
    return lim.finish(lim.admit(user, address), ok=False)


def refused(lim: LoginLimiter, user: str = "qa", address: str = "10.0.0.1") -> LoginRefused:
    with pytest.raises(LoginRefused) as info:
        lim.admit(user, address)
    return info.value


# ------------------------------------------------------------------------------------------------- the limiter
def test_account_backoff_doubles_after_a_free_first_failure_then_locks() -> None:
    lim, clock = limiter()  # plant defaults: 5 failures in 15 min lock for 15 min; back-off from 1 s
    fail(lim)
    fail(lim)  # the first failure is free: a typo costs nothing
    waits = []
    for _ in range(2):
        r = refused(lim)
        assert (r.status, r.reason) == (429, "account_backoff") and "try again in" in r.detail
        waits.append(r.retry_after)
        clock.now += r.retry_after - 0.25
        assert refused(lim).retry_after == 1  # still waiting; never less than 1 s
        clock.now += 0.25
        fail(lim)
    assert waits == [1, 2]
    assert refused(lim).retry_after == 4
    clock.now += 4
    events = fail(lim)  # the fifth failure in the window locks the account
    assert [(e.kind, e.name, e.failures, e.duration_s) for e in events] == [("account", "qa", 5, 900.0)]
    r = refused(lim)
    assert (r.status, r.reason, r.retry_after) == (429, "account_locked", 900)
    assert refused(lim, address="10.9.9.9").reason == "account_locked"  # from anywhere
    clock.now += 899.5
    assert refused(lim).retry_after == 1  # 0.5 s left: rounded up
    clock.now += 0.5
    lim.finish(lim.admit("qa", "10.0.0.1"), ok=False)  # the lock is over and its failures with it: a fresh start
    lim.admit("qa", "10.0.0.1")  # ... so that was a free first failure again


def test_failures_leave_the_account_window_and_a_success_resets_it() -> None:
    lim, clock = limiter(backoff_initial_s=0, account_failures=3, account_window_s=60)
    fail(lim)
    fail(lim)
    clock.now += 61  # both forgotten
    fail(lim)
    fail(lim)
    lim.finish(lim.admit("qa", "10.0.0.1"), ok=True)
    fail(lim)
    fail(lim)
    assert fail(lim)  # three in a row after the success: locked now
    assert refused(lim).reason == "account_locked"


def test_an_address_is_blocked_across_accounts_and_each_block_doubles() -> None:
    lim, clock = limiter(address_failures=20, address_window_s=60, backoff_max_s=900)
    for i in range(19):
        assert fail(lim, f"user{i}") == []
    events = fail(lim, "user19")
    assert [(e.kind, e.name, e.failures, e.duration_s) for e in events] == [("address", "10.0.0.1", 20, 60.0)]
    r = refused(lim, "someone-else")
    assert (r.status, r.reason, r.retry_after) == (429, "address_blocked", 60)
    lim.finish(lim.admit("someone-else", "10.0.0.2"), ok=True)  # another address is not affected
    assert refused(lim, EDITOR[0]).reason == "address_blocked"  # a right password from there is not even checked
    clock.now += 60
    for i in range(19):
        fail(lim, f"again{i}")
    assert fail(lim, "again19")[0].duration_s == 120  # the next block within backoff_max_s lasts twice as long
    clock.now += 120 + 901  # quiet for longer than backoff_max_s: back to the first block's length
    for i in range(19):
        fail(lim, f"later{i}")
    assert fail(lim, "later19")[0].duration_s == 60


def test_a_success_does_not_reset_the_address() -> None:
    lim, _ = limiter(address_failures=3)
    fail(lim, "a")
    fail(lim, "b")
    lim.finish(lim.admit(VIEWER[0], "10.0.0.1"), ok=True)  # a valid viewer login from the guessing address
    assert fail(lim, "c")[0].kind == "address"


def test_one_attempt_per_account_at_a_time_and_pending_attempts_count_for_the_address() -> None:
    lim, _ = limiter(address_failures=3)
    first = lim.admit("qa", "10.0.0.1")
    r = refused(lim, "qa", "10.0.0.2")  # no parallel guessing of one account
    assert (r.reason, r.retry_after) == ("account_backoff", 1)
    lim.cancel(first)  # given back without a verdict: no failure counted
    lim.finish(lim.admit("qa", "10.0.0.1"), ok=False)
    lim.admit("a", "10.0.0.1")
    lim.admit("b", "10.0.0.1")  # 1 failure + 2 in flight = the address's limit
    assert refused(lim, "c").reason == "address_blocked"


def test_an_editor_lifts_a_lock_and_unknown_names_are_tracked_alike() -> None:
    lim, _ = limiter(backoff_initial_s=0, account_failures=3)
    for _ in range(3):
        fail(lim, "qa")
        fail(lim, "no-such-user", "10.0.0.2")
    assert refused(lim, "qa").reason == refused(lim, "no-such-user", "10.0.0.3").reason == "account_locked"
    locks = lim.locks()
    assert [(i.kind, i.name, i.failures, i.locked) for i in locks] == [
        ("account", "no-such-user", 3, True),
        ("account", "qa", 3, True),
        ("address", "10.0.0.1", 3, False),
        ("address", "10.0.0.2", 3, False),
    ]
    assert locks[0].retry_after_s == pytest.approx(900)
    lifted = lim.lift("account", "qa")
    assert lifted is not None and lifted.locked and lifted.failures == 3
    lim.finish(lim.admit("qa", "10.0.0.4"), ok=True)
    assert lim.lift("account", "qa") is None  # nothing left to lift
    assert lim.lift("address", "10.0.0.9") is None
    assert lim.lift("address", "10.0.0.2") is not None
    assert [i.name for i in lim.locks()] == ["no-such-user", "10.0.0.1"]
    assert lim.locked() == {"account": 1, "address": 0}


def test_memory_is_bounded() -> None:
    lim, _ = limiter(max_tracked=50, address_failures=10_000)
    for i in range(500):
        fail(lim, f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(lim.locks()) <= 100


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert LoginRefused("account_backoff", 0.01, "{s}").retry_after == 1
    assert LoginRefused("account_backoff", 2.1, "wait {s} s").detail == "wait 3 s"
    busy = LoginRefused("busy", 1.0, "")
    assert (busy.status, busy.retry_after) == (503, 1)


# -------------------------------------------------------------------------------------------- the hash worker
def test_hash_worker_runs_one_at_a_time_and_refuses_when_its_queue_is_full() -> None:
    worker = HashWorker(queue_size=2)
    release = threading.Event()
    running, most = [0], [0]
    lock = threading.Lock()

    def job() -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
        return 7

    futures = [worker.submit(job) for _ in range(3)]  # one running, two waiting
    assert worker.depth == 3
    with pytest.raises(HasherBusy):
        worker.submit(job)
    release.set()
    assert [f.result(30) for f in futures] == [7, 7, 7]
    assert most[0] == 1
    deadline = time.monotonic() + 30
    while worker.depth and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.depth == 0
    worker.submit(job).result(30)  # room again
    worker.close()


class SlowAuth:
    """Authenticator stand-in whose password check waits for the test."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.checks = 0

    def check(self, username: str, password: str) -> bool:
        self.checks += 1
        self.go.wait(30)
        return password == "right"

    def open_session(self, username: str) -> str:
        return f"session of {username}"


def test_guard_refuses_when_the_hasher_is_busy_holds_refusals_and_audits_failures() -> None:
    audited: list[dict[str, str]] = []
    limits = LoginLimitsConfig(hash_queue=0, refusal_delay_s=0.5)
    guard = LoginGuard(limits, audit=lambda **kw: audited.append(kw))
    auth = SlowAuth()

    async def scenario() -> tuple[Any, ...]:
        first = asyncio.ensure_future(guard.login(auth, "a", "wrong", "10.0.0.1"))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # its check is on the hasher now, which takes one at a time and queues none
        started = time.monotonic()
        with pytest.raises(LoginRefused) as busy:
            await guard.login(auth, "b", "right", "10.0.0.2")  # type: ignore[arg-type]
        held = time.monotonic() - started  # the refusal was held back, so that a looping client slows down
        auth.go.set()
        wrong = await first
        right = await guard.login(auth, "b", "right", "10.0.0.2")  # type: ignore[arg-type]
        return busy.value, held, wrong, right

    busy, held, wrong, right = asyncio.run(scenario())
    assert (busy.status, busy.reason, busy.retry_after) == (503, "busy", 1) and held >= 0.45
    assert wrong is None and right == "session of b" and auth.checks == 2
    assert audited == [{"user": "a", "action": "login.failed", "comment": "wrong user name or password, from 10.0.0.1"}]
    stats = guard.stats()
    assert (stats["successes"], stats["failures"], stats["refused"]["busy"], stats["hash_queue"]) == (1, 1, 1, 0)
    guard.lift("account", "a", by="qa", comment="it was me")
    assert audited[-1] == {
        "user": "qa",
        "action": "login.unlock",
        "comment": "account 'a' unlocked (1 failed logins): it was me",
    }


# -------------------------------------------------------------------------------------------------- the API
@contextlib.contextmanager
def served(tmp_path: Path, **limits: Any) -> Iterator[str]:
    deps, _ = make_deps(tmp_path)
    deps.config = DashboardConfig(logins=LoginLimitsConfig(**limits))
    try:
        with serve(create_app(deps)) as base_url:
            yield base_url
    finally:
        deps.store.close()


def metric_values(c: httpx.Client) -> dict[str, float]:
    lines = [line for line in c.get("/metrics").text.splitlines() if line and not line.startswith("#")]
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}


def post_login(c: httpx.Client, user: str, password: str) -> httpx.Response:
    return c.post("/api/login", json={"username": user, "password": password})


def test_api_locks_an_account_and_an_editor_lifts_it(tmp_path: Path) -> None:
    with served(tmp_path, backoff_initial_s=0, account_failures=3) as url, httpx.Client(base_url=url, timeout=30) as c:
        editor = {"Authorization": f"Bearer {post_login(c, *EDITOR).json()['token']}"}
        assert [post_login(c, VIEWER[0], "wrong").status_code for _ in range(3)] == [401, 401, 401]
        r = post_login(c, *VIEWER)  # the right password, but the account is locked
        assert r.status_code == 429 and r.headers["retry-after"] == "900"
        assert "locked" in r.json()["detail"] and "editor" in r.json()["detail"]

        with httpx.Client(base_url=url, timeout=30) as nobody:  # no session cookie, no token
            assert nobody.get("/api/login-locks").status_code == 401
            assert nobody.delete(f"/api/login-locks/accounts/{VIEWER[0]}").status_code == 401
        locks = c.get("/api/login-locks", headers=editor).json()["items"]
        assert locks[0] == {
            "kind": "account",
            "name": "op",
            "failures": 3,
            "locked": True,
            "retry_after_s": locks[0]["retry_after_s"],
        }
        assert 890 < locks[0]["retry_after_s"] <= 900
        assert c.delete("/api/login-locks/accounts/nobody", headers=editor).status_code == 404
        r = c.delete(f"/api/login-locks/accounts/{VIEWER[0]}", headers=editor, params={"comment": "called me"})
        assert r.status_code == 200 and r.json()["locked"] is True
        viewer_token = post_login(c, *VIEWER).json()["token"]
        r = c.delete("/api/login-locks/addresses/127.0.0.1", headers={"Authorization": f"Bearer {viewer_token}"})
        assert r.status_code == 403

        audit = [(a["user"], a["action"], a["comment"]) for a in c.get("/api/audit").json()["items"]][::-1]
        assert audit[-5:] == [
            ("op", "login.failed", "wrong user name or password, from 127.0.0.1"),
            ("op", "login.failed", "wrong user name or password, from 127.0.0.1"),
            ("op", "login.failed", "wrong user name or password, from 127.0.0.1"),
            ("system", "login.locked", "account 'op' locked for 900 s after 3 failed logins"),
            ("qa", "login.unlock", "account 'op' unlocked (3 failed logins): called me"),
        ]
        values = metric_values(c)
        assert values["inspector_login_failures_total"] == 3
        assert values["inspector_login_successes_total"] == 2
        assert values["inspector_login_lockouts_total"] == 1
        assert values['inspector_login_refused_total{reason="account_locked"}'] == 1
        assert values['inspector_login_refused_total{reason="busy"}'] == 0
        assert values["inspector_login_locked_accounts"] == 0 and values["inspector_login_hash_queue_depth"] == 0
        assert values["inspector_parts_decided_total"] == 0  # the line's metrics are still there, unchanged


def test_api_blocks_an_address_with_retry_after(tmp_path: Path) -> None:
    with served(tmp_path, address_failures=3, address_window_s=30) as url, httpx.Client(base_url=url, timeout=30) as c:
        editor = {"Authorization": f"Bearer {post_login(c, *EDITOR).json()['token']}"}
        assert [post_login(c, f"guess{i}", "x").status_code for i in range(3)] == [401, 401, 401]
        r = post_login(c, *EDITOR)
        assert r.status_code == 429 and r.headers["retry-after"] == "30" and "address" in r.json()["detail"]
        items = c.get("/api/login-locks", headers=editor).json()["items"]
        assert {"kind": "address", "name": "127.0.0.1", "failures": 3, "locked": True} in [
            {k: v for k, v in i.items() if k != "retry_after_s"} for i in items
        ]
        assert c.delete("/api/login-locks/addresses/127.0.0.1", headers=editor).status_code == 200
        assert post_login(c, *EDITOR).status_code == 200
        values = metric_values(c)
        assert values["inspector_login_address_blocks_total"] == 1
        assert values['inspector_login_refused_total{reason="address_blocked"}'] == 1
        actions = [a["action"] for a in c.get("/api/audit").json()["items"]]
        assert actions[:2] == ["login.unlock", "login.blocked"]


def test_an_editor_unlocks_an_account_from_the_page(tmp_path: Path) -> None:
    """Real headless Chromium (Playwright, as tests/test_web_e2e.py): the Audit card lists the locked account for an
    editor, its Unlock button lifts the lock, and the audit shows who did."""
    from playwright.sync_api import expect, sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with served(tmp_path, backoff_initial_s=0, account_failures=3) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert [post_login(c, VIEWER[0], "wrong").status_code for _ in range(3)] == [401, 401, 401]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            errors: list[str] = []
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            expect(page.get_by_test_id("audit-row").first).to_contain_text("login.locked")
            expect(page.get_by_test_id("locks")).to_be_hidden()  # not for a visitor
            page.fill("#login-user", EDITOR[0])
            page.fill("#login-pass", EDITOR[1])
            page.click("#login-button")
            row = page.get_by_test_id("lock-row").first
            expect(row).to_contain_text("account")
            expect(row).to_contain_text("3 failed, locked 15 min")
            expect(page.get_by_test_id("lock-row").nth(1)).to_contain_text("address127.0.0.13 failed")  # not locked
            row.get_by_test_id("unlock").click()
            expect(page.get_by_test_id("lock-row")).to_have_count(1)
            expect(page.get_by_test_id("lock-row").first).to_contain_text("address")
            expect(page.get_by_test_id("audit-row").first).to_contain_text("login.unlock")
            expect(page.get_by_test_id("audit-row").first).to_contain_text("qa")
            browser.close()
        assert errors == []
        assert post_login(c, *VIEWER).status_code == 200


def test_config_section_is_strict_and_has_plant_defaults() -> None:
    limits = LineConfig().dashboard.logins
    assert (limits.account_failures, limits.account_window_s, limits.address_failures, limits.address_window_s) == (
        5,
        900.0,
        20,
        60.0,
    )
    with pytest.raises(ValueError, match="hash_queue"):
        LineConfig.model_validate({"dashboard": {"logins": {"hash_queue": -1}}})
    with pytest.raises(ValueError, match="extra"):
        LineConfig.model_validate({"dashboard": {"logins": {"max_failures": 3}}})


# ---------------------------------------------------------------------------------------- acceptance: a flood
FLOOD_S = 20.0
FLOOD_THREADS = 16


# The attacker, run in a process of its own with nothing but httpx imported. Threads loop wrong-password logins as
# fast as answers come: even threads from one address, trying `admin` and a few usual names; odd threads claim a new
# address each time (X-Forwarded-For, which uvicorn takes from a loopback client) and a new name, as a botnet would,
# so that only the hash worker bounds their hashing. It says READY once started (a process start costs a loaded
# machine's line as much as anything: that is not login traffic), floods from GO on, and prints the status codes
# counted and the 429/503 answers without Retry-After.
FLOOD = """
import json, random, sys, threading, time
from collections import Counter
import httpx

url, seconds, threads, one_address = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
codes, lock, go = Counter(), threading.Lock(), threading.Event()
clients = [httpx.Client(base_url=url, timeout=30) for _ in range(threads)]

def loop(n):
    rng, mine, c = random.Random(n), Counter(), clients[n]
    go.wait()
    while time.monotonic() < deadline:
        if n % 2 and not one_address:
            name = f"bot{rng.randrange(10**9)}"
            headers = {"X-Forwarded-For": f"10.{n}.{rng.randrange(256)}.{rng.randrange(256)}"}
        else:
            name, headers = rng.choice(["admin", "root", "operator", "qa", "user", "guest"]), {}
        try:
            r = c.post("/api/login", json={"username": name, "password": "wrong"}, headers=headers)
        except httpx.HTTPError:
            mine["error"] += 1
            continue
        mine[str(r.status_code)] += 1
        if r.status_code in (429, 503) and not r.headers.get("retry-after", "").isdigit():
            mine["no_retry_after"] += 1
    with lock:
        codes.update(mine)

workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
for w in workers:
    w.start()
print("READY", flush=True)
sys.stdin.readline()
deadline = time.monotonic() + seconds
go.set()
for w in workers:
    w.join()
print(json.dumps(codes), flush=True)
"""


Flood = Callable[[], dict[str, int]]


@contextlib.contextmanager
def flood(
    url: str, seconds: float, threads: int, *, one_address: bool = False
) -> Iterator[Callable[[], dict[str, int]]]:
    """Start the attacker against `url` and wait until it is ready; the body runs just before the flood starts,
    and the function it gets runs the flood and returns the counts printed."""
    args = [sys.executable, "-c", FLOOD, url, str(seconds), str(threads), "1" if one_address else "0"]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", proc.communicate()[1][-3000:]

        def run() -> dict[str, int]:
            out, err = proc.communicate("GO\n", timeout=seconds + 120)
            assert proc.returncode == 0, err[-3000:]
            return json.loads(out.strip().splitlines()[-1])

        yield run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_login_flood_makes_no_part_fail_safe(tmp_path: Path) -> None:
    config = LineConfig.model_validate(
        {
            "camera": {"id": "camL", "source": "synthetic", "fps": 5, "synthetic": {"seed": 5, "size": 320}},
            "model": {"path": str(DEFAULT_MODEL)},
            "mqtt": {"line": "lineL"},
            "dashboard": {"port": 0},  # no users: the first-start admin, hashed with the full 600,000 rounds
            "store": {"path": str(tmp_path / "inspector.db"), "images_dir": str(tmp_path / "images")},
        }
    )
    service = EdgeService(config)
    try:
        service.start()
        assert service.broker is not None and service.dashboard_url and service.first_password
        url = service.dashboard_url.rstrip("/")
        with (
            Recorder(service.broker.url, ["inspector/lineL/camL/verdict"]) as rec,
            httpx.Client(base_url=url, timeout=60) as c,
        ):
            admin = {"Authorization": f"Bearer {post_login(c, 'admin', service.first_password).json()['token']}"}
            rec.wait_count("verdict", 3, 60)
            depth: list[float] = []
            sampling = threading.Event()

            def sample() -> None:  # the hash queue, as /metrics shows it during the flood
                while not sampling.wait(0.5):
                    depth.append(metric_values(c)["inspector_login_hash_queue_depth"])

            with flood(url, FLOOD_S, FLOOD_THREADS) as run:
                before = service.pipeline.stats()["ledger"]  # type: ignore[union-attr]
                first_seq = max(v["seq"] for v in rec.payloads("verdict"))
                sampler = threading.Thread(target=sample)
                sampler.start()
                codes = run()
                sampling.set()
                sampler.join()
                after = service.pipeline.stats()["ledger"]  # type: ignore[union-attr]

            assert codes.get("429", 0) > 0 and codes.get("401", 0) > 0, codes
            assert set(codes) <= {"401", "429", "503"}, codes  # nothing else: no 5xx but "busy", no dropped connection
            assert depth and max(depth) <= 1 + LoginLimitsConfig().hash_queue
            decided = after["decided"] - before["decided"]
            assert decided >= FLOOD_S * 5 * 0.5, (before, after)  # the line kept inspecting meanwhile ...
            assert after["failsafe"] == before["failsafe"], (before, after)  # ... every part in time
            during = [v for v in rec.payloads("verdict") if v["seq"] > first_seq]
            assert during and not [v for v in during if "uninspected" in v["reasons"]]

            values = metric_values(c)
            assert values["inspector_login_failures_total"] == codes["401"]
            refused = {k: v for k, v in values.items() if k.startswith("inspector_login_refused_total")}
            assert sum(refused.values()) == codes.get("429", 0) + codes.get("503", 0), refused
            # The names tried from 127.0.0.1 are in back-off or locked, even with the right password, until an editor
            # lifts that: then the real admin logs in again.
            locks = {(i["kind"], i["name"]): i for i in c.get("/api/login-locks", headers=admin).json()["items"]}
            if locks.get(("account", "admin"), {}).get("locked"):
                r = post_login(c, "admin", service.first_password)
                assert r.status_code == 429 and r.json()["detail"].startswith("account locked"), r.text
            for path in ("accounts/admin", "addresses/127.0.0.1"):
                assert c.delete(f"/api/login-locks/{path}", headers=admin).status_code in (200, 404)
            assert post_login(c, "admin", service.first_password).status_code == 200
    finally:
        service.stop(drain=False)
