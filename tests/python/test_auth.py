"""PyIceberg against a Floe server with authentication on: clients created
with the CLI, ``credential=id:secret`` through the edge's token endpoint,
roles enforced, a refresh after the server revoked the client's tokens, and a
secret rotated with the CLI while the server runs."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from conftest import FloeServer, _free_port, _origin_bin, _stop, _wait_ready
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import ForbiddenError, OAuthError, UnauthorizedError
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

WAREHOUSE = "secure"
CLI_TIMEOUT_S = 60.0
# README "What is cached, and for how long": a change made with the CLI reaches
# every tier hearing change events within 2 s (the origins read the change
# log every second).
CLI_CHANGE_BOUND_S = 2.0
SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "name", StringType(), required=False),
)


@dataclass(frozen=True)
class SecureFloe:
    """A Floe server with authentication on, and the secrets of its clients."""

    server: FloeServer
    metrics_url: str
    secrets: dict[str, str]
    binary: Path
    state: Path
    common: list[str]

    def cli(self, args: list[str]) -> str:
        """Runs ``floe`` on the server's database and configuration, as an operator would."""
        return _cli(self.binary, [*args, *self.common], self.state)


def _cli(binary: Path, args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [str(binary), *args], cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


@contextlib.contextmanager
def secure_server(database_url: str, state: Path, auth_extra: str = "") -> Iterator[SecureFloe]:
    """``floe serve`` with auth on (keys from ``floe keygen``, ``auth_extra``
    appended to the ``auth`` section of both tiers) and three clients."""
    binary = _origin_bin()
    warehouse = state / "warehouse"
    warehouse.mkdir()
    key = state / "signing.pem"
    _cli(binary, ["keygen", "--out", str(key)], state)
    auth = f"auth:\n  enabled: true\n  signing_key:\n    kid: k1\n    path: {key}\n{auth_extra}"
    origin_yaml = state / "origin.yaml"
    origin_yaml.write_text(f"warehouse:\n  name: {WAREHOUSE}\n  location: {warehouse.as_uri()}\n{auth}")
    edge_yaml = state / "edge.yaml"
    edge_yaml.write_text(auth)
    common = ["--config", str(origin_yaml), "--database-url", database_url]
    secrets: dict[str, str] = {}
    for name, role in (("admin", "admin"), ("etl", "writer"), ("viewer", "reader")):
        place = ["--warehouse", "*"] if role == "admin" else ["--warehouse", WAREHOUSE]
        out = _cli(binary, ["client", "create", "--name", name, "--role", role, *place, *common], state)
        match = re.search(r"client_secret: (\S+)", out)
        assert match, out
        secrets[name] = match.group(1)

    port, metrics_port = _free_port(), _free_port()
    log_path = state / "server.log"
    command = [
        str(binary),
        "serve",
        *common,
        "--edge-config",
        str(edge_yaml),
        "--listen",
        f"127.0.0.1:{port}",
        "--origin-listen",
        f"127.0.0.1:{_free_port()}",
        "--edge-metrics-listen",
        f"127.0.0.1:{metrics_port}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=state, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = FloeServer(url=f"http://127.0.0.1:{port}", warehouse_path=warehouse, log_path=log_path, process=process)
    try:
        _wait_ready(server)
        yield SecureFloe(
            server=server,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            secrets=secrets,
            binary=binary,
            state=state,
            common=common,
        )
    finally:
        _stop(server)
    log = log_path.read_text(errors="replace")
    for name, secret in secrets.items():
        assert secret not in log, f"the secret of {name} reached the log"


@pytest.fixture(scope="module")
def secure(make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFloe]:
    """Keys from ``floe keygen``, configuration files with auth on, three clients, then ``floe
    serve``, on a database of its own (each module using this fixture gets its own server)."""
    with secure_server(make_database(), tmp_path_factory.mktemp("secure")) as floe:
        yield floe


def _catalog(secure: SecureFloe, client: str, secret: str | None = None) -> Catalog:
    credential = f"{client}:{secret or secure.secrets[client]}"
    return load_catalog(
        f"secure-{client}",
        **{"type": "rest", "uri": secure.server.url, "warehouse": WAREHOUSE, "credential": credential},
    )


def _issued(secure: SecureFloe) -> float:
    text = requests.get(secure.metrics_url, timeout=5).text
    match = re.search(r'^floe_edge_auth_total\{result="issued",stage="token"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_writer_and_reader_through_the_edge(secure: SecureFloe) -> None:
    etl = _catalog(secure, "etl")
    etl.create_namespace("sales")
    table = etl.create_table("sales.orders", schema=SCHEMA)
    rows = pa.table(
        {"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", "c"]},
        schema=pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())]),
    )
    table.append(rows)

    viewer = _catalog(secure, "viewer")
    loaded = viewer.load_table("sales.orders")
    assert loaded.scan().to_arrow().sort_by("id").column("id").to_pylist() == [1, 2, 3]
    with pytest.raises(ForbiddenError):
        viewer.create_namespace("not_allowed")
    with pytest.raises(ForbiddenError):
        viewer.drop_table("sales.orders")
    assert etl.load_table("sales.orders").scan().to_arrow().num_rows == 3


def test_bad_credentials_are_refused(secure: SecureFloe) -> None:
    with pytest.raises(OAuthError):
        _catalog(secure, "etl", "not-the-secret")
    with pytest.raises(OAuthError):
        _catalog(secure, "nobody", "whatever")
    with pytest.raises(UnauthorizedError):
        load_catalog("anonymous", **{"type": "rest", "uri": secure.server.url, "warehouse": WAREHOUSE})


def test_token_refresh_after_revocation(secure: SecureFloe) -> None:
    etl = _catalog(secure, "etl")
    etl.list_namespaces()
    # No waiting for the clock: tokens carry their credential generation, so
    # a revocation in the token's own second refuses it too.
    admin = requests.post(
        f"{secure.server.url}/v1/oauth/tokens",
        data={"grant_type": "client_credentials", "client_id": "admin", "client_secret": secure.secrets["admin"]},
        timeout=10,
    )
    assert admin.status_code == 200, admin.text
    headers = {"Authorization": f"Bearer {admin.json()['access_token']}"}
    before = _issued(secure)
    revoked = requests.post(
        f"{secure.server.url}/management/v1/clients/etl/revoke-tokens", headers=headers, timeout=10
    )
    assert revoked.status_code == 200, revoked.text
    # The old token is refused; PyIceberg fetches a new one and carries on.
    assert "sales" in {ns[0] for ns in etl.list_namespaces()}
    assert _issued(secure) == before + 1


def _token_request(secure: SecureFloe, client: str, secret: str) -> requests.Response:
    return requests.post(
        f"{secure.server.url}/v1/oauth/tokens",
        data={"grant_type": "client_credentials", "client_id": client, "client_secret": secret},
        timeout=10,
    )


def _within(changed: float, bound_s: float, what: str, check: Callable[[], bool]) -> None:
    """Waits for ``check`` until ``bound_s`` after the change, then fails."""
    while not check():
        assert time.monotonic() - changed < bound_s, f"{what}: not true {bound_s} s after the change"
        time.sleep(0.02)


def test_cli_rotation_reaches_the_running_server(secure: SecureFloe) -> None:
    created = secure.cli(["client", "create", "--name", "rotor", "--role", "reader", "--warehouse", WAREHOUSE])
    old_secret = re.search(r"client_secret: (\S+)", created)
    assert old_secret, created
    old = _token_request(secure, "rotor", old_secret.group(1))
    assert old.status_code == 200, old.text
    old_token = old.json()["access_token"]
    namespaces = f"{secure.server.url}/v1/namespaces"
    assert requests.get(namespaces, headers={"Authorization": f"Bearer {old_token}"}, timeout=10).status_code == 200

    rotated = secure.cli(["client", "rotate", "rotor"])
    changed = time.monotonic()
    new_secret = re.search(r"client_secret: (\S+)", rotated)
    assert new_secret, rotated
    # The new secret works at once, through PyIceberg.
    _catalog(secure, "rotor", new_secret.group(1)).list_namespaces()
    _within(
        changed,
        CLI_CHANGE_BOUND_S,
        "old secret refused",
        lambda: _token_request(secure, "rotor", old_secret.group(1)).status_code == 401,
    )
    _within(
        changed,
        CLI_CHANGE_BOUND_S,
        "token of the old secret refused",
        lambda: requests.get(namespaces, headers={"Authorization": f"Bearer {old_token}"}, timeout=10).status_code
        == 401,
    )
    with pytest.raises(OAuthError):
        _catalog(secure, "rotor", old_secret.group(1))
