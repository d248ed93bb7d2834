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
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog, load_catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts" / "lib"))
import floeproc  # noqa: E402

DEFAULT_BIN = "target/debug/floe"
BACKENDS = ("sqlite", "postgres")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
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


# Also used by test_auth.py, which starts servers of its own.
_free_port = floeproc.free_port


@pytest.fixture(scope="session")
def backend() -> str:
    """The catalog database backend under test."""
    name = os.environ.get("FLOE_TEST_BACKEND", "sqlite")
    if name not in BACKENDS:
        pytest.fail(f"FLOE_TEST_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


@pytest.fixture(scope="session")
def make_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Makes another fresh, empty catalog database on each call (for a
    server of a module's own); those of PostgreSQL are dropped at the end."""
    admin_url = os.environ.get("FLOE_TEST_PG_URL", floeproc.DEFAULT_ADMIN_URL)
    made: list[str] = []

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite://{tmp_path_factory.mktemp('sqlite') / 'catalog.db'}?mode=rwc"
        try:
            database, url = floeproc.create_database(admin_url, "floe_py")
        except floeproc.CommandFailed as exc:
            pytest.fail(f"the postgres backend needs a database: {exc}")
        made.append(database)
        return url

    try:
        yield make
    finally:
        for database in made:
            floeproc.drop_database(admin_url, database)


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[], str]) -> str:
    """A fresh, empty catalog database for this session."""
    return make_database()


@pytest.fixture(scope="session")
def floe_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[FloeServer]:
    """Start ``floe serve`` (edge in front of origin) on free ports and wait until it is ready."""
    binary = _origin_bin()
    if not binary.is_file():
        pytest.fail(f"server binary {binary} not found: build it with `cargo build --workspace --bin floe`")

    state_dir = tmp_path_factory.mktemp("floe")
    # Small plan pages, so that every server-planned scan is paged.
    url, process = floeproc.floe_serve(binary, database_url, state_dir, {"FLOE_CATALOG__PLAN_PAGE_SIZE": "7"})
    assert process.proc is not None
    server = FloeServer(url=url, warehouse_path=state_dir / "warehouse", log_path=process.log, process=process.proc)
    request.config.stash[SERVER_KEY] = server
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


def _wait_ready(server: FloeServer) -> None:
    """Poll ``/ready`` until it answers 200, the process dies, or time runs out."""

    def ready() -> bool:
        code = server.process.poll()
        if code is not None:
            pytest.fail(f"Floe server exited with code {code} before ready:\n{server.log_tail()}")
        return floeproc.answers_200(f"{server.url}/ready")

    try:
        floeproc.wait_until("Floe server ready", ready, READY_TIMEOUT_S, interval=0.1)
    except floeproc.NotReady as exc:
        pytest.fail(f"{exc}:\n{server.log_tail()}")


def _stop(server: FloeServer) -> None:
    """Terminate the server, killing it if it does not exit in time."""
    floeproc.stop_popen(server.process, STOP_TIMEOUT_S)


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
