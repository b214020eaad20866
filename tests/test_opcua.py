"""The OPC UA server (docs/plant.md) against a real asyncua client on a free loopback port, in front of a real line:
the synthetic source in triggered mode, the shipped model, two recipes. The client browses the VisionSystem, starts
jobs with part ids and gets each one's `ResultReadyEvent`, switches recipes by method call, sees the state machine
go to Error when the camera is lost (a source the test makes fail) and come back, and is refused without a login,
with a wrong password, as a viewer calling a method, and with an application certificate nobody trusted yet."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asyncua import Client, Node, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from inspector.auth import hash_password
from inspector.config import DEFAULT_MODEL, ConfigError, LineConfig, load_config
from inspector.opcua.model import Mailbox, PartResult, line_state
from inspector.opcua.nodes import NAMESPACE
from inspector.service import EdgeService
from inspector.sim import SyntheticSource
from inspector.types import Decision, SourceError, Verdict

WAIT_S = 30.0  # generous: two shared cores
OPERATOR, VIEWER, PASSWORD = "plc", "hmi", "s3cret-plc"
CLIENT_URI = "urn:inspector:test:client"


class SwitchableSource:
    """The synthetic line, until the test pulls the cable (`lost = True`): then reads and reopens fail."""

    description = "switchable synthetic line"
    live = True

    def __init__(self) -> None:
        from inspector.config import SyntheticConfig

        self._inner = SyntheticSource(SyntheticConfig(seed=3, size=320))
        self.lost = False

    def open(self) -> None:
        if self.lost:
            raise SourceError("cable pulled")
        self._inner.open()

    def read(self) -> tuple[np.ndarray, Any] | None:
        time.sleep(0.05)  # ~20 frames a second: triggered parts take the next frame
        if self.lost:
            raise SourceError("cable pulled")
        return self._inner.read()

    def close(self) -> None:
        self._inner.close()


def line_config(tmp_path: Path, **opcua: Any) -> LineConfig:
    fast_hash = hash_password(PASSWORD, iterations=1000)  # the dashboard's format; few iterations keep tests quick
    settings: dict[str, Any] = {
        "enabled": True,
        "port": 0,
        "pki_dir": str(tmp_path / "pki"),
        "users": {OPERATOR: {"password_hash": fast_hash, "role": "operator"}, VIEWER: {"password_hash": fast_hash}},
        "status_period_s": 0.05,
    }
    settings.update(opcua)
    return LineConfig.model_validate(
        {
            "camera": {"id": "camU"},
            "trigger": {"mode": "triggered"},
            "model": {"path": str(DEFAULT_MODEL)},
            "thresholds": {"default": {"min_confidence": 0.3}},
            "recipes": {"strict": {"model": {"path": str(DEFAULT_MODEL)}, "thresholds": {"version": 7}}},
            "pipeline": {"gate_ms": 5000},
            "mqtt": {"enabled": False},
            "dashboard": {"enabled": False},
            "store": {"enabled": False},
            "opcua": settings,
        }
    )


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeService, SwitchableSource]]:
    source = SwitchableSource()
    service = EdgeService(line_config(tmp_path_factory.mktemp("opcua")), source=source)
    try:
        service.start()
        yield service, source
    finally:
        service.stop(drain=False)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, WAIT_S * 2))  # type: ignore[arg-type]


def client_for(service: EdgeService, user: str | None = OPERATOR, password: str = PASSWORD) -> Client:
    client = Client(service.opcua.endpoint, timeout=WAIT_S)
    if user is not None:
        client.set_user(user)
        client.set_password(password)
    return client


async def vision_system(client: Client) -> tuple[Node, int]:
    idx = await client.get_namespace_index(NAMESPACE)
    return await client.nodes.objects.get_child([f"{idx}:VisionSystem"]), idx


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


class Events:
    """Collects the ResultReadyEvents of one subscription."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.items.append(event)

    def of(self, part_id: str) -> list[Any]:
        return [e for e in self.items if e.PartId == part_id]


async def subscribe_results(client: Client, system: Node, idx: int) -> Events:
    events = Events()
    subscription = await client.create_subscription(50, events)
    event_type = await client.nodes.base_event_type.get_child([f"{idx}:ResultReadyEventType"])
    await subscription.subscribe_events(system, event_type)
    return events


async def start_job(system: Node, idx: int, part_id: str, recipe: str = "") -> str:
    auto = await system.get_child([f"{idx}:VisionStateMachine", f"{idx}:AutomaticModeStateMachine"])
    job_id, error = await auto.call_method(f"{idx}:StartSingleJob", "meas-1", part_id, recipe, "boardA")
    assert error == 0
    return str(job_id)


# -- the acceptance path ------------------------------------------------------------------------------------------


def test_browse_start_a_job_get_its_event_and_acknowledge(line: tuple[EdgeService, SwitchableSource]) -> None:
    service, _ = line

    async def scenario() -> None:
        async with client_for(service) as client:
            system, idx = await vision_system(client)
            names = {(await c.read_browse_name()).Name for c in await system.get_children()}
            assert {"VisionStateMachine", "RecipeManagement", "ResultManagement", "Ready"} <= names
            vsm = await system.get_child([f"{idx}:VisionStateMachine"])
            states = {(await c.read_browse_name()).Name for c in await vsm.get_children()}
            assert {"Preoperational", "Halted", "Error", "Operational", "AutomaticModeStateMachine"} <= states
            recipes = await system.get_child([f"{idx}:RecipeManagement", f"{idx}:Recipes"])
            assert {(await c.read_browse_name()).Name for c in await recipes.get_children()} == {"default", "strict"}

            current = await vsm.get_child(["0:CurrentState"])
            auto_current = await vsm.get_child([f"{idx}:AutomaticModeStateMachine", "0:CurrentState"])

            async def ready() -> bool:
                return (await current.read_value()).Text == "Operational" and (
                    await auto_current.read_value()
                ).Text == "Ready"

            assert await wait_until(ready), ((await current.read_value()).Text, (await auto_current.read_value()).Text)
            number = await (await vsm.get_child(["0:CurrentState", "0:Number"])).read_value()
            assert number == 4  # Operational, as OPC 40100-1 numbers it

            events = await subscribe_results(client, system, idx)
            job_id = await start_job(system, idx, "4242")

            async def got_event() -> bool:
                return bool(events.of("4242"))

            assert await wait_until(got_event), [e.PartId for e in events.items]
            event = events.of("4242")[0]
            assert event.JobId == job_id and event.Decision in {"OK", "NG"}
            assert (event.ResultState > 0) == (event.Decision == "OK")
            assert event.InternalRecipeId == "default" and len(event.ModelSha256) == 64 and event.ThresholdsVersion == 1

            results = await system.get_child([f"{idx}:ResultManagement"])
            newest = await results.get_child([f"{idx}:Results", f"{idx}:Result_00"])

            async def value(name: str) -> Any:
                return await (await newest.get_child([f"{idx}:{name}"])).read_value()

            assert await value("PartId") == "4242" and await value("JobId") == job_id
            assert await value("ResultId") == event.ResultId and await value("Decision") == event.Decision
            assert await value("ModelSha256") == event.ModelSha256 and await value("ThresholdsVersion") == 1
            assert isinstance(await value("DefectClasses"), list)

            # The PLC's handshake: the result is valid until acknowledged; a stale acknowledgement changes nothing.
            valid = await results.get_child([f"{idx}:ResultValid"])
            assert await valid.read_value() is True
            assert await results.call_method(f"{idx}:AcknowledgeResult", "camU-0") == 1
            assert await valid.read_value() is True
            assert await results.call_method(f"{idx}:AcknowledgeResult", event.ResultId) == 0
            assert await valid.read_value() is False

            # A bad part id is refused the way cmd/trigger refuses it, and nothing is triggered.
            auto = await vsm.get_child([f"{idx}:AutomaticModeStateMachine"])
            for bad in ("-5", "twelve", ""):
                with pytest.raises(ua.uaerrors.BadInvalidArgument):
                    await auto.call_method(f"{idx}:StartSingleJob", "m", bad, "", "")
            with pytest.raises(ua.uaerrors.BadInvalidState):  # a job for a recipe that is not active
                await auto.call_method(f"{idx}:StartSingleJob", "m", "7", "strict", "")

            # Several jobs in a row: each one's event arrives, with its own job id.
            jobs = {str(p): await start_job(system, idx, str(p)) for p in range(5000, 5004)}

            async def all_events() -> bool:
                return all(events.of(p) for p in jobs)

            assert await wait_until(all_events)
            assert {p: events.of(p)[0].JobId for p in jobs} == jobs

    run(scenario())
    assert service.opcua.stats()["dropped"] == 0


def test_recipe_switch_by_method_call(line: tuple[EdgeService, SwitchableSource]) -> None:
    service, _ = line

    async def scenario() -> None:
        async with client_for(service) as client:
            system, idx = await vision_system(client)
            recipes = await system.get_child([f"{idx}:RecipeManagement"])
            active = await recipes.get_child([f"{idx}:ActiveRecipe"])
            with pytest.raises(ua.uaerrors.BadNotFound):
                await recipes.call_method(f"{idx}:PrepareRecipe", "nosuch", "")
            internal, completed, error = await recipes.call_method(f"{idx}:PrepareRecipe", "strict", "")
            assert (internal, completed, error) == ("strict", True, 0)
            assert await active.read_value() == "default"  # prepared, not active yet
            assert await recipes.call_method(f"{idx}:ActivateRecipe", "") == 0
            assert await active.read_value() == "strict"
            assert service.pipeline is not None and service.pipeline.recipe == "strict"

            events = await subscribe_results(client, system, idx)
            job_id = await start_job(system, idx, "777", recipe="strict")

            async def got_event() -> bool:
                return bool(events.of("777"))

            assert await wait_until(got_event)
            event = events.of("777")[0]
            assert (event.JobId, event.InternalRecipeId, event.ThresholdsVersion) == (job_id, "strict", 7)

            assert await recipes.call_method(f"{idx}:ActivateRecipe", "default") == 0
            assert service.pipeline.recipe == "default"

    run(scenario())


def test_state_goes_to_error_when_the_camera_is_lost_and_back(line: tuple[EdgeService, SwitchableSource]) -> None:
    service, source = line

    async def scenario() -> None:
        async with client_for(service, VIEWER) as client:  # a viewer may watch
            system, idx = await vision_system(client)
            vsm = await system.get_child([f"{idx}:VisionStateMachine"])
            current = await vsm.get_child(["0:CurrentState"])
            cause = await vsm.get_child([f"{idx}:ErrorCause"])
            ready = await system.get_child([f"{idx}:Ready"])

            assert await wait_until(state_is(current, "Operational"))
            source.lost = True
            try:
                assert await wait_until(state_is(current, "Error")), (await current.read_value()).Text
                assert await cause.read_value() == "camera lost"
                assert await ready.read_value() is False
                state_id = await (await vsm.get_child(["0:CurrentState", "0:Id"])).read_value()
                assert state_id == (await vsm.get_child([f"{idx}:Error"])).nodeid
            finally:
                source.lost = False
            assert await wait_until(state_is(current, "Operational"))
            assert await cause.read_value() == ""

        async with client_for(service) as operator:  # Halt / Reset pause and resume the line
            system, idx = await vision_system(operator)
            vsm = await system.get_child([f"{idx}:VisionStateMachine"])
            current = await vsm.get_child(["0:CurrentState"])
            assert await vsm.call_method(f"{idx}:Halt", 0, "changeover") == 0
            assert await wait_until(state_is(current, "Halted"))
            assert service.pipeline is not None and service.pipeline.paused
            assert await vsm.call_method(f"{idx}:Reset", 0, "") == 0
            assert await wait_until(state_is(current, "Operational"))

    run(scenario())


def state_is(current: Node, name: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await current.read_value()).Text == name

    return check


# -- security -----------------------------------------------------------------------------------------------------


def test_anonymous_wrong_password_and_viewer_calls_are_refused(line: tuple[EdgeService, SwitchableSource]) -> None:
    service, _ = line

    async def scenario() -> None:
        with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
            async with client_for(service, user=None):
                pass
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            async with client_for(service, OPERATOR, "wrong"):
                pass
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            async with client_for(service, "nobody", PASSWORD):
                pass
        async with client_for(service, VIEWER) as viewer:
            system, idx = await vision_system(viewer)
            assert isinstance(await (await system.get_child([f"{idx}:Ready"])).read_value(), bool)  # reads
            auto = await system.get_child([f"{idx}:VisionStateMachine", f"{idx}:AutomaticModeStateMachine"])
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await auto.call_method(f"{idx}:StartSingleJob", "m", "99", "", "")
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # nothing is writable, not even for an operator
                await (await system.get_child([f"{idx}:Ready"])).write_value(True)

    run(scenario())


def test_client_certificate_is_refused_until_trusted(tmp_path: Path) -> None:
    """Sign & encrypt with an application certificate: refused and saved under rejected/ until an administrator
    moves it to trusted/; then the same client connects (no restart)."""
    config = line_config(tmp_path, security=["Basic256Sha256_SignAndEncrypt"])
    service = EdgeService(config, source=SwitchableSource())
    key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
    try:
        service.start()

        async def scenario() -> None:
            await setup_self_signed_certificate(
                key, cert, CLIENT_URI, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test PLC"}
            )

            async def connect() -> str:
                client = client_for(service)
                client.application_uri = CLIENT_URI
                await client.set_security(
                    SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
                )
                async with client:
                    system, _ = await vision_system(client)
                    return str((await system.read_browse_name()).Name)

            with pytest.raises(Exception):  # noqa: B017 - asyncua reports the refusal in several ways
                await connect()
            rejected = list((tmp_path / "pki" / "rejected").glob("*.der"))
            assert len(rejected) == 1
            shutil.move(rejected[0], tmp_path / "pki" / "trusted" / rejected[0].name)
            assert await connect() == "VisionSystem"

        run(scenario())
    finally:
        service.stop(drain=False)


# -- configuration and the hand-off -------------------------------------------------------------------------------


def test_off_by_default_and_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    assert LineConfig().opcua.enabled is False
    cases = {
        "opcua:\n  enabled: true\n": "opcua (line 1): opcua.users is empty and opcua.anonymous is off",
        "opcua:\n  users:\n    plc: {role: operator}\n": "opcua.users.plc",
        "opcua:\n  port: 70000\n": "opcua.port",
        "opcua:\n  security: [Basic128]\n": "opcua.security.0",
        "opcua:\n  anonymous: yes\n": "opcua.anonymous",
        "opcua:\n  certificate: a.der\n": "opcua.certificate and opcua.private_key go together",
    }
    for text, expected in cases.items():
        path = tmp_path / "line.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(path, env={})
        assert len(err.value.issues) == 1 and expected in str(err.value), str(err.value)


def test_mailbox_never_blocks_and_counts_what_it_drops() -> None:
    woken = threading.Event()
    box = Mailbox(3)
    box.wake = woken.set
    results = [PartResult.of(Verdict(part_id=i, decision=Decision.PASS, seq=i)) for i in range(5)]
    for result in results:
        box.put(result)
    assert woken.is_set() and box.dropped == 2
    assert [r.part_id for r in box.take()] == [2, 3, 4]  # the oldest went
    assert box.take() == []


def test_line_state_follows_the_line() -> None:
    running = {"running": True, "camera_connected": True, "ready": True, "triggered": True}
    assert line_state({}).vision == "Preoperational"
    assert line_state({**running, "camera_connected": False}).vision == "Preoperational"  # still opening
    assert line_state({**running, "camera_connected": False, "camera_failures": 1}).cause == "camera lost"
    assert line_state(running, model_error="boom").vision == "Error"
    assert line_state({**running, "paused": True}).vision == "Halted"
    assert (line_state(running).vision, line_state(running).auto) == ("Operational", "Ready")
    assert line_state(running, jobs_in_flight=1).auto == "SingleExecution"
    assert line_state({**running, "triggered": False}).auto == "ContinuousExecution"
    assert line_state({**running, "ready": False}).auto == "Initialized"
