"""Deployment files: edge line configs, the systemd unit, the Mosquitto configs (run for real), the Docker images
and the compose file, and the links in the deployment docs."""

from __future__ import annotations

import configparser
import contextlib
import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from inspector.config import LineConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
EDGE = ROOT / "edge"
DOCKER = ROOT / "docker"
LINE_FILES = [*sorted(EDGE.glob("*.yaml")), DOCKER / "line.yaml"]


# ------------------------------------------------------------------------------------------------ line configs
def test_the_three_example_lines_exist() -> None:
    assert {p.name for p in EDGE.glob("*.yaml")} >= {"line-usb.yaml", "line-rtsp.yaml", "line-triggered.yaml"}


@pytest.mark.parametrize("path", LINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_line_config_validates(path: Path) -> None:
    """`inspector check-config` accepts each example. `--no-files`: the install paths (/opt/inspector/models/...)
    exist on the line, not here; the systemd unit runs the full check (with files) before every start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    result = subprocess.run(
        [sys.executable, "-m", "inspector", "check-config", "--no-files", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ": OK" in result.stdout
    config = load_config(path, env={})
    assert isinstance(config, LineConfig)
    if path.parent == EDGE:
        # Real lines talk TLS to an authenticated broker and need a login to see the dashboard.
        assert config.mqtt.url is not None and config.mqtt.url.startswith("mqtts://")
        assert config.mqtt.tls is not None and config.mqtt.tls.ca_file is not None
        assert config.mqtt.username and config.mqtt.password is None, "passwords belong in the environment file"
        assert config.dashboard.login_to_view and config.dashboard.users
        assert str(config.store.path).startswith("/var/lib/inspector/"), "the systemd unit's StateDirectory"


def test_example_lines_are_what_their_names_say() -> None:
    usb = load_config(EDGE / "line-usb.yaml", env={})
    assert usb.camera.source == "opencv" and usb.camera.uri.isdigit() and usb.trigger.mode == "free-run"
    rtsp = load_config(EDGE / "line-rtsp.yaml", env={})
    assert rtsp.camera.uri.startswith("rtsp://") and "@" not in rtsp.camera.uri, "no credentials in the file"
    triggered = load_config(EDGE / "line-triggered.yaml", env={})
    assert triggered.trigger.mode == "triggered" and triggered.recipe in triggered.recipes
    demo = load_config(DOCKER / "line.yaml", env={})
    assert demo.camera.source == "synthetic"


def test_secrets_come_from_the_environment() -> None:
    """What the unit's EnvironmentFile and compose set reaches the config (`INSPECTOR_<SECTION>__<KEY>`)."""
    env = {"INSPECTOR_MQTT__PASSWORD": "s3cret", "INSPECTOR_CAMERA__URI": "rtsp://user:pw@10.0.0.9/s"}
    config = load_config(EDGE / "line-rtsp.yaml", env=env)
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "s3cret"
    assert config.camera.uri == env["INSPECTOR_CAMERA__URI"]


# ------------------------------------------------------------------------------------------------------ systemd
def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(EDGE / "inspector.service")
    return parser


def test_systemd_unit_restarts_and_runs_as_a_service_user() -> None:
    service = _unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service.get("User") not in {None, "", "root", "0"}
    assert "inspector run --config /etc/inspector/line.yaml" in service["ExecStart"]
    assert "check-config" in service["ExecStartPre"]
    assert service["StateDirectory"] == "inspector" and service["WorkingDirectory"] == "/var/lib/inspector"
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here to verify the unit")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` knows every directive; the install paths are pointed at a real executable."""
    text = (EDGE / "inspector.service").read_text()
    unit = tmp_path / "inspector.service"
    unit.write_text(text.replace("/opt/inspector/.venv/bin/inspector", shutil.which("true") or "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.search(r"Unknown|Invalid|Failed|not safe", output), output


# ---------------------------------------------------------------------------------------------------- mosquitto
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certs(d: Path) -> None:
    """A test CA and a server certificate for 127.0.0.1 / localhost, as docs/deploy.md has the integrator make."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        d,
    )
    _run(["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], d)
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        d,
    )


def _rewrite(conf: str, paths: dict[str, str], ports: list[int]) -> str:
    """The config with its files moved to `paths` (by option name) and listeners onto free loopback ports."""
    out, listeners = [f"user {getpass.getuser()}"], iter(ports)  # as root, mosquitto would drop to `mosquitto`
    for line in conf.splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            line = f"listener {next(listeners)} 127.0.0.1"
        elif key in paths:
            line = f"{key} {paths[key]}"
        elif key == "log_dest":
            line = "log_dest stderr"
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture
def broker_tools() -> None:
    missing = [t for t in ("mosquitto", "mosquitto_passwd", "openssl") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install mosquitto openssl) to run the broker configs")


@contextlib.contextmanager
def _mosquitto(conf: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("mosquitto did not open its port")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _Client:
    """A small paho client (MQTT 3.1.1) that records what it receives and its connection result."""

    def __init__(self, port: int, user: str | None, password: str | None, ca: Path | None) -> None:
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.connected = threading.Event()
        self.refused: str | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload))
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.refused = str(reason_code)
        self.connected.set()

    def wait_connected(self) -> bool:
        assert self.connected.wait(10), "no CONNACK"
        return self.refused is None

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(10)

    def wait_for(self, topic: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t == topic for t, _ in self.messages):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_edge_mosquitto_conf_users_tls_and_acl(tmp_path: Path, broker_tools: None) -> None:
    """edge/mosquitto.conf runs: TLS with the CA, no anonymous or wrong-password clients, and the ACL lets the
    inspector talk to the PLC and the PLC command the inspector, but not forge verdicts."""
    _make_certs(tmp_path)
    passwd = tmp_path / "passwd"
    _run(["mosquitto_passwd", "-c", "-b", str(passwd), "inspector", "pw-inspector"], tmp_path)
    _run(["mosquitto_passwd", "-b", str(passwd), "plc", "pw-plc"], tmp_path)
    shutil.copy(EDGE / "mosquitto.acl", tmp_path / "acl")
    plain, tls = _free_port(), _free_port()
    paths = {
        "cafile": tmp_path / "ca.crt",
        "certfile": tmp_path / "server.crt",
        "keyfile": tmp_path / "server.key",
        "password_file": passwd,
        "acl_file": tmp_path / "acl",
        "persistence_location": f"{tmp_path}/",
    }
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        _rewrite((EDGE / "mosquitto.conf").read_text(), {k: str(v) for k, v in paths.items()}, [plain, tls])
    )
    ca = tmp_path / "ca.crt"
    with _mosquitto(conf, tls):
        anonymous = _Client(tls, None, None, ca)
        wrong = _Client(tls, "plc", "wrong", ca)
        assert not anonymous.wait_connected() and not wrong.wait_connected()
        anonymous.close()
        wrong.close()
        inspector = _Client(tls, "inspector", "pw-inspector", ca)
        plc = _Client(tls, "plc", "pw-plc", ca)
        try:
            assert inspector.wait_connected(), inspector.refused
            assert plc.wait_connected(), plc.refused
            inspector.subscribe("inspector/+/+/cmd/#")
            plc.subscribe("inspector/#")
            inspector.client.publish("inspector/line1/cam0/reject", b'{"part_id": 1, "reject": true}', qos=1)
            assert plc.wait_for("inspector/line1/cam0/reject")
            # Published in order: if the broker passed the forged verdict, the PLC would see it before the trigger.
            plc.client.publish("inspector/line1/cam0/verdict", b'{"forged": true}', qos=1)
            plc.client.publish("inspector/line1/cam0/cmd/trigger", b"2", qos=1)
            assert inspector.wait_for("inspector/line1/cam0/cmd/trigger")
            assert plc.wait_for("inspector/line1/cam0/cmd/trigger")
            assert "inspector/line1/cam0/verdict" not in [t for t, _ in plc.messages]
        finally:
            inspector.close()
            plc.close()
        # The plain listener is loopback only and still needs a user.
        assert "listener 1883 127.0.0.1" in (EDGE / "mosquitto.conf").read_text()
        local = _Client(plain, "inspector", "pw-inspector", None)
        assert local.wait_connected(), local.refused
        local.close()


def test_compose_mosquitto_conf_runs_with_users(tmp_path: Path, broker_tools: None) -> None:
    """docker/mosquitto/mosquitto.conf with the password file compose.yaml makes: users only, and the
    healthcheck's subscription to $SYS/broker/uptime is allowed by the ACL."""
    passwd = tmp_path / "passwd"
    _run(["mosquitto_passwd", "-c", "-b", str(passwd), "inspector", "pw"], tmp_path)
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    paths = {
        "password_file": str(passwd),
        "acl_file": str(DOCKER / "mosquitto" / "acl"),
        "persistence_location": f"{tmp_path}/",
    }
    conf.write_text(_rewrite((DOCKER / "mosquitto" / "mosquitto.conf").read_text(), paths, [port]))
    compose = (DOCKER / "compose.yaml").read_text()
    assert "/mosquitto/data/passwd" in compose and "/mosquitto/config/acl" in compose
    with _mosquitto(conf, port):
        anonymous = _Client(port, None, None, None)
        assert not anonymous.wait_connected()
        anonymous.close()
        client = _Client(port, "inspector", "pw", None)
        try:
            assert client.wait_connected(), client.refused
            client.subscribe("$SYS/broker/uptime")
            assert client.wait_for("$SYS/broker/uptime", timeout=15)
        finally:
            client.close()


# ------------------------------------------------------------------------------------------------------- docker
def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    pairs = []
    for line in text.splitlines():
        if line.strip():
            op, _, args = line.strip().partition(" ")
            pairs.append((op.upper(), args.strip()))
    return pairs


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_runs_as_non_root_with_a_healthcheck(name: str) -> None:
    steps = _instructions(DOCKER / name)
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    last_user = max(i for i, (op, _) in enumerate(steps) if op == "USER")
    assert all(op != "RUN" for op, _ in steps[last_user:]), "nothing may run as root after USER"
    health = [args for op, args in steps if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/api/health" in health[0]
    assert ("EXPOSE", "8080") in steps
    assert any(op == "ENTRYPOINT" and "inspector" in args for op, args in steps)
    for op, args in steps:  # everything COPYed from the context exists in the repository
        if op == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), f"{name}: COPY {src}: not in the repository"
    ignore = (DOCKER / f"{name}.dockerignore").read_text().split()
    assert "models/checkpoints" in ignore, "the checkpoints stay out of the image"


def test_gpu_image_swaps_in_onnxruntime_gpu() -> None:
    runs = " ".join(args for op, args in _instructions(DOCKER / "Dockerfile.gpu") if op == "RUN")
    assert "uninstall -y onnxruntime" in runs and "onnxruntime-gpu" in runs
    assert "INSPECTOR_MODEL__PROVIDERS" in (DOCKER / "Dockerfile.gpu").read_text()


def test_dockerfile_healthcheck_command_is_valid_python() -> None:
    health = next(args for op, args in _instructions(DOCKER / "Dockerfile") if op == "HEALTHCHECK")
    code = re.search(r'"-c", "(.*)"\]', health)
    assert code is not None
    compile(code.group(1), "<healthcheck>", "exec")


def test_compose_file_structure() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    inspector = services["inspector"]
    build = inspector["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    assert "inspector-data:/data" in inspector["volumes"] and "inspector-data" in compose["volumes"]
    assert inspector["environment"]["INSPECTOR_MQTT__URL"].startswith("mqtt://mosquitto:")
    assert inspector["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert any(str(p).endswith("8080:8080") for p in inspector["ports"])
    for service in services.values():  # bind mounts point at files that exist
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"compose mounts {source}, which does not exist"
    # The Dockerfile's data volume is where compose mounts its volume.
    assert ("VOLUME", '["/data"]') in _instructions(DOCKER / "Dockerfile")


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        # Compose v1 (Debian's docker-compose 1.29) predates the Compose spec the file uses (`name:`).
        probe = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True, check=False)
        if probe.stdout.strip().startswith("2"):
            return ["docker-compose"]
    return None


def test_compose_config_parses() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "no Docker Compose here (`docker compose` plugin or docker-compose): compose.yaml not checked "
            "by Docker itself; test_compose_file_structure still ran"
        )
    env = {**os.environ, "MQTT_PASSWORD": "a", "PLC_PASSWORD": "b"}
    ok = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    # Without the broker passwords compose refuses, instead of starting a broker with an empty password.
    env = {k: v for k, v in os.environ.items() if k not in {"MQTT_PASSWORD", "PLC_PASSWORD"}}
    refused = subprocess.run(
        [*command, "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert refused.returncode != 0 and "MQTT_PASSWORD" in refused.stderr


# --------------------------------------------------------------------------------------------------------- docs
@pytest.mark.parametrize("doc", ["docs/deploy.md", "edge/README.md", "docker/README.md"])
def test_deploy_docs_links_resolve(doc: str) -> None:
    path = ROOT / doc
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://|mailto:", link)]
    assert local, f"{doc} links to nothing in the repository"
    for link in local:
        assert (path.parent / link).exists(), f"{doc}: broken link {link}"


def test_deploy_guide_covers_every_step() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    for needed in (
        "inspector check-config",
        "inspector hash-password",
        "mosquitto_passwd",
        "systemctl enable",
        "inspector calibrate",
        "cmd/trigger",
        "reject",
        "INSPECTOR_MQTT__PASSWORD",
        "openssl",
        "line-usb.yaml",
        "line-rtsp.yaml",
        "line-triggered.yaml",
        "inspector.service",
        "docker compose",
    ):
        assert needed in text, f"docs/deploy.md does not mention {needed}"


def test_sim_cli_is_runnable_as_a_module() -> None:
    """`python -m inspector.sim` stays an alias of `inspector sim` (docs/deploy.md's commissioning images)."""
    result = subprocess.run(
        [sys.executable, "-m", "inspector.sim", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "dataset" in result.stdout
