"""Fixtures that run a real Floe server for the PyIceberg end-to-end suite.

The backend is chosen with ``FLOE_TEST_BACKEND`` (``sqlite``, the default, or
``postgres``). The server binary comes from ``FLOE_BIN`` (default
``target/debug/floe``, relative to the repository root): the all-in-one
binary, so every request goes through the edge to the origin. With the
postgres backend, ``FLOE_TEST_PG_URL`` is an admin URL used to create and drop
one fresh database per session.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from pyiceberg.catalog import Catalog, load_catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = "target/debug/floe"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PSQL_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 8000


@dataclass(frozen=True)
class FloeServer:
    """A running Floe server process and where it keeps its state."""

    url: str
    warehouse_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self) -> str:
        """Return the end of the server's combined stdout/stderr log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<server log unreadable: {exc}>"
        return text[-LOG_TAIL_CHARS:]


SERVER_KEY = pytest.StashKey[FloeServer]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """After a failed run, show the end of the server log."""
    server = config.stash.get(SERVER_KEY, None)
    if server is not None and exitstatus != 0:
        terminalreporter.section(f"Floe server log (tail of {server.log_path})")
        terminalreporter.write_line(server.log_tail())


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show which backend and binary this run exercises."""
    return [
        f"floe backend: {os.environ.get('FLOE_TEST_BACKEND', 'sqlite')}",
        f"floe binary: {_origin_bin()}",
    ]


def _origin_bin() -> Path:
    """Absolute path of the server binary under test."""
    path = Path(os.environ.get("FLOE_BIN", DEFAULT_BIN))
    return path if path.is_absolute() else REPO_ROOT / path


def _free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _psql(admin_url: str, sql: str) -> None:
    """Run one SQL statement with the psql CLI, failing loudly on error."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("the postgres backend needs the psql client on PATH")
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    result = subprocess.run(
        [psql, admin_url, "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        env=env,
        timeout=PSQL_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"psql failed ({sql!r}): {result.stderr.strip()}")


def _with_database(url: str, database: str) -> str:
    """Return ``url`` pointing at ``database`` instead of its own database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def backend() -> str:
    """The catalog database backend under test."""
    name = os.environ.get("FLOE_TEST_BACKEND", "sqlite")
    if name not in BACKENDS:
        pytest.fail(f"FLOE_TEST_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty catalog database for this session."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "catalog.db"
        yield f"sqlite://{path}?mode=rwc"
        return

    admin_url = os.environ.get("FLOE_TEST_PG_URL", DEFAULT_PG_URL)
    database = f"floe_py_{secrets.token_hex(6)}"
    _psql(admin_url, f'CREATE DATABASE "{database}"')
    try:
        yield _with_database(admin_url, database)
    finally:
        _psql(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def floe_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[FloeServer]:
    """Start ``floe serve`` (edge in front of origin) on free ports and wait until it is ready."""
    binary = _origin_bin()
    if not binary.is_file():
        pytest.fail(f"server binary {binary} not found: build it with `cargo build --workspace --bin floe`")

    state_dir = tmp_path_factory.mktemp("floe")
    warehouse = state_dir / "warehouse"
    warehouse.mkdir()
    log_path = state_dir / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(binary),
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--origin-listen",
        f"127.0.0.1:{_free_port()}",
        "--edge-metrics-listen",
        f"127.0.0.1:{_free_port()}",
        "--database-url",
        database_url,
        "--warehouse",
        warehouse.as_uri(),
    ]
    with log_path.open("wb") as log:
        # Small plan pages, so that every server-planned scan is paged.
        env = {**os.environ, "FLOE_CATALOG__PLAN_PAGE_SIZE": "7"}
        process = subprocess.Popen(
            command, cwd=state_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = FloeServer(url=url, warehouse_path=warehouse, log_path=log_path, process=process)
    request.config.stash[SERVER_KEY] = server
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


def _wait_ready(server: FloeServer) -> None:
    """Poll ``/ready`` until it answers 200, the process dies, or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            pytest.fail(f"Floe server exited with code {code} before ready:\n{server.log_tail()}")
        try:
            response = requests.get(f"{server.url}/ready", timeout=2)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        except requests.RequestException as exc:
            last_error = str(exc)
        time.sleep(0.1)
    pytest.fail(f"Floe server not ready after {READY_TIMEOUT_S:.0f}s ({last_error}):\n{server.log_tail()}")


def _stop(server: FloeServer) -> None:
    """Terminate the server, killing it if it does not exit in time."""
    if server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(autouse=True)
def _server_stays_up(floe_server: FloeServer) -> Iterator[None]:
    """Fail the test that was running if the server process died under it."""
    yield
    code = floe_server.process.poll()
    if code is not None:
        pytest.fail(f"Floe server exited with code {code}:\n{floe_server.log_tail()}")


@pytest.fixture(scope="session")
def new_catalog(floe_server: FloeServer) -> Callable[[], Catalog]:
    """Factory for independent PyIceberg REST clients of the Floe server."""

    def make() -> Catalog:
        return load_catalog("floe", **{"type": "rest", "uri": floe_server.url, "warehouse": "default"})

    return make


@pytest.fixture(scope="session")
def catalog(new_catalog: Callable[[], Catalog]) -> Catalog:
    """A shared PyIceberg REST client of the Floe server."""
    return new_catalog()


@pytest.fixture(scope="session")
def warehouse_path(floe_server: FloeServer) -> Path:
    """Local directory backing the server's default warehouse."""
    return floe_server.warehouse_path


@pytest.fixture
def namespace(catalog: Catalog, request: pytest.FixtureRequest) -> str:
    """A new, empty namespace unique to the calling test."""
    stem = re.sub(r"\W+", "_", request.node.name).strip("_")[:40]
    name = f"{stem}_{secrets.token_hex(4)}"
    catalog.create_namespace(name)
    return name
