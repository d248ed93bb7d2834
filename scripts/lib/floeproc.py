"""What Floe's harness scripts share: free loopback ports, a small HTTP helper,
waiting for a condition, starting and stopping the processes a script starts
(by pid, never by name), PostgreSQL databases (one created on a running
server, or a private cluster in a directory), and the tiers' configuration
files.

Standard library only, so that the load harness and deploy/local run without
the test venv. Scripts import it by putting this directory on ``sys.path``:

    sys.path.insert(0, str(Path(__file__).resolve().parents[N] / "scripts" / "lib"))
    import floeproc

Used by benches/load/harness.py, deploy/local/local.py, tests/faults/faults.py,
tests/soak/soak.py, tests/schemathesis/fuzz.py and tests/python/conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class NotReady(Exception):
    """A condition waited for did not hold in time, or the process it
    depended on exited first (the message says which, with its log's end)."""


class CommandFailed(Exception):
    """An external tool (psql, initdb, pg_ctl) exited non-zero."""


# ---- ports and HTTP ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 the kernel says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, bytes]:
    """One request; (status, body) for every HTTP answer, 4xx and 5xx included.
    Connection failures raise OSError."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_json(method: str, url: str, payload: object | None = None,
              timeout: float = 10.0) -> tuple[int, object]:
    """A JSON request; (status, decoded body or None)."""
    body = None if payload is None else json.dumps(payload).encode()
    status, data = http(method, url, body, {"Content-Type": "application/json"}, timeout)
    return status, json.loads(data or b"null")


def answers_200(url: str) -> bool:
    """Whether GET `url` answers 200 now (False when nothing listens)."""
    try:
        return http("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def wait_until(what: str, check: Callable[[], object], timeout: float = READY_TIMEOUT_S,
               interval: float = 0.05, process: Process | None = None) -> None:
    """Polls `check` until it returns a true value. An OSError from `check`
    (connection refused; `requests`' errors are OSErrors too) counts as not
    yet. Raises NotReady after `timeout` seconds, or at once when `process`
    has exited."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if process is not None and process.exited() is not None:
            raise NotReady(f"{what}: {process.name} exited with {process.exited()}:\n{process.log_tail()}")
        try:
            if check():
                return
        except OSError as e:
            last = str(e)
        if time.monotonic() > deadline:
            tail = f"\n{process.log_tail()}" if process is not None else ""
            raise NotReady(f"{what}: not after {timeout:.0f} s ({last}){tail}")
        time.sleep(interval)


# ---- processes ----------------------------------------------------------------------------------


@dataclass
class Process:
    """One process a script starts, its output appended to `log`; stopped by
    its pid only."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # A session of its own: a Ctrl-C in the terminal reaches the launcher only.
    new_session: bool = False
    # What `start_ready` waits for: a URL answering 200.
    ready_url: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, env={**os.environ, **self.env}, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.cwd,
                                         start_new_session=self.new_session)
        return self

    def start_ready(self, timeout: float = READY_TIMEOUT_S) -> Process:
        """`start`, then wait until `ready_url` answers 200 (stopped again
        when it does not: NotReady)."""
        self.start()
        if self.ready_url:
            try:
                self.wait_ready(self.ready_url, timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def exited(self) -> int | None:
        """The exit status once it has exited, else None."""
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"<log unreadable: {e}>"

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Until GET `url` answers 200 (NotReady if the process exits first)."""
        wait_until(f"{self.name} ready", lambda: answers_200(url), timeout, process=self)

    def kill(self) -> None:
        """SIGKILL: nothing is drained."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM without waiting (see `wait_stopped`)."""
        if self.running():
            assert self.proc is not None
            self.proc.terminate()

    def wait_stopped(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Waits for the exit, SIGKILL after `timeout` seconds."""
        if self.proc is not None:
            wait_or_kill(self.proc, timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the tiers drain), then SIGKILL after `timeout` seconds."""
        if self.proc is not None:
            stop_popen(self.proc, timeout)


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> None:
    """Waits for `proc` to exit, SIGKILL after `timeout` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_popen(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stops a process this script started, by its pid: SIGTERM, then SIGKILL
    after `timeout` seconds. Nothing when it has exited already."""
    if proc.poll() is None:
        proc.terminate()
        wait_or_kill(proc, timeout)


def stop_all(processes: list[Process], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to every one at once, then waits for each (SIGKILL after `timeout`)."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait_stopped(timeout)


# ---- PostgreSQL ---------------------------------------------------------------------------------


def redact(url: str) -> str:
    """A database URL with its password hidden."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def with_database(url: str, database: str) -> str:
    """`url` naming `database` instead of its own (query kept)."""
    head, sep, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}{sep}{query}"


def psql(url: str, sql: str, timeout: float = 60.0) -> str:
    """Runs one statement with the psql client; its output, or CommandFailed."""
    binary = shutil.which("psql")
    if binary is None:
        raise CommandFailed("the psql client is not on PATH")
    result = subprocess.run([binary, url, "-X", "-w", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            capture_output=True, text=True, check=False, cwd="/", timeout=timeout,
                            env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
    if result.returncode != 0:
        raise CommandFailed(f"psql on {redact(url)} ({sql!r}): {result.stderr.strip()}")
    return result.stdout.strip()


def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """A new, empty database named `prefix` and a random suffix on the server
    of `admin_url`: (name, its URL). Drop it with `drop_database`."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    psql(admin_url, f'CREATE DATABASE "{name}"')
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drops a database `create_database` made, disconnecting its sessions."""
    psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrivateCluster:
    """A PostgreSQL cluster in a directory of its own on a free port:
    stopping and restarting it touches no other database on the machine."""

    def __init__(self, root: Path) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        if not versions:
            raise CommandFailed("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.bin = versions[-1]
        self.dir = root / "pg"
        self.port = free_port()
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir.mkdir()
        if self.user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.user, str(self.bin / tool), *args], capture_output=True, text=True,
                                cwd="/", check=False)
        if result.returncode != 0:
            raise CommandFailed(f"{tool} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.dir), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop")

    def stop_quietly(self) -> None:
        """`stop`, when the cluster may be down already (end of a run)."""
        try:
            self.stop()
        except CommandFailed:
            pass

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> str:
        """Creates `database`; its URL."""
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-X", "-q",
                  "-c", f"CREATE DATABASE {database}")
        return self.url(database)


# ---- the tiers' configuration -----------------------------------------------------------------


def merge(base: dict, extra: dict) -> dict:
    """`base` with `extra` laid over it, nested sections merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_edge_config(root: Path, name: str, port: int, metrics_port: int, origins: list[str],
                      extra: dict | None = None) -> Path:
    """An edge configuration file `root/<name>.yaml` (JSON is YAML): listening
    on `port`, metrics on `metrics_port`, in front of `origins` (host:port),
    its pid file and upgrade socket in `root`; `extra` merged over it."""
    config = {
        "listen": [f"127.0.0.1:{port}"],
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "origins": origins,
        "server": {"pid_file": str(root / f"{name}.pid"), "upgrade_sock": str(root / f"{name}.sock")},
    }
    path = root / f"{name}.yaml"
    path.write_text(json.dumps(merge(config, extra or {}), indent=2) + "\n")
    return path


def subscribed(metrics_url: str) -> bool:
    """Whether an edge's metrics say its change-event stream is up."""
    return "floe_edge_event_stream_up 1" in http("GET", metrics_url, timeout=2)[1].decode(errors="replace")


def start_origin(bins: Path, root: Path, name: str, args: list[str], env: dict[str, str] | None = None,
                 new_session: bool = False) -> tuple[Process, int]:
    """`floe-origin serve` on a free port with `args` (database, warehouse,
    config), logging to `root/<name>.log`; waits until it is ready:
    (the process, its port)."""
    port = free_port()
    command = [str(bins / "floe-origin"), "serve", "--listen", f"127.0.0.1:{port}", *args]
    process = Process(name, command, root / f"{name}.log", env or {}, new_session=new_session,
                      ready_url=f"http://127.0.0.1:{port}/ready")
    return process.start_ready(), port


def start_edge(bins: Path, root: Path, name: str, origins: list[str], extra: dict | None = None,
               new_session: bool = False) -> tuple[Process, str, str]:
    """`floe-edge` from a configuration `write_edge_config` writes, logging to
    `root/<name>.log`; waits until it is healthy and subscribed to the
    change events: (the process, its URL, its metrics URL)."""
    port, metrics = free_port(), free_port()
    config = write_edge_config(root, name, port, metrics, origins, extra)
    process = Process(name, [str(bins / "floe-edge"), "--config", str(config)], root / f"{name}.log",
                      new_session=new_session, ready_url=f"http://127.0.0.1:{metrics}/health")
    process.start_ready()
    metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    try:
        wait_until(f"{name} subscribed to change events", lambda: subscribed(metrics_url), process=process)
    except BaseException:
        process.stop()
        raise
    return process, f"http://127.0.0.1:{port}", metrics_url


@dataclass
class Tiers:
    """Edges in front of origins that a script starts from the binaries in
    `bins`, their logs and configurations in `root`. `stop()` stops them by
    pid: the edges first (clients stop arriving), then the origins."""

    root: Path
    bins: Path
    origins: list[Process] = field(default_factory=list)
    origin_ports: list[int] = field(default_factory=list)
    origin_urls: list[str] = field(default_factory=list)
    edges: list[Process] = field(default_factory=list)
    edge_urls: list[str] = field(default_factory=list)
    edge_metrics: list[str] = field(default_factory=list)

    def add_origin(self, args: list[str], env: dict[str, str] | None = None, new_session: bool = False) -> str:
        """Starts `origin-<n>` (see `start_origin`); its URL."""
        process, port = start_origin(self.bins, self.root, f"origin-{len(self.origins)}", args, env, new_session)
        self.origins.append(process)
        self.origin_ports.append(port)
        self.origin_urls.append(f"http://127.0.0.1:{port}")
        return self.origin_urls[-1]

    def add_edge(self, origins: list[str] | None = None, extra: dict | None = None, new_session: bool = False) -> str:
        """Starts `edge-<n>` in front of `origins` (default: every origin so
        far; see `start_edge`); its URL."""
        targets = origins if origins is not None else [f"127.0.0.1:{p}" for p in self.origin_ports]
        process, url, metrics_url = start_edge(self.bins, self.root, f"edge-{len(self.edges)}", targets, extra,
                                               new_session)
        self.edges.append(process)
        self.edge_urls.append(url)
        self.edge_metrics.append(metrics_url)
        return url

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        stop_all(self.edges[::-1], timeout)
        stop_all(self.origins, timeout)


def floe_serve(binary: Path, database_url: str, state_dir: Path, env: dict[str, str] | None = None,
               name: str = "floe") -> tuple[str, Process]:
    """Starts the all-in-one `floe serve` (edge in front of origin) on free
    ports with its warehouse in `state_dir/warehouse` and its log in
    `state_dir/server.log`: (its URL, the process). Not yet waited for."""
    warehouse = state_dir / "warehouse"
    warehouse.mkdir(exist_ok=True)
    port = free_port()
    command = [
        str(binary), "serve",
        "--listen", f"127.0.0.1:{port}",
        "--origin-listen", f"127.0.0.1:{free_port()}",
        "--edge-metrics-listen", f"127.0.0.1:{free_port()}",
        "--database-url", database_url,
        "--warehouse", warehouse.as_uri(),
    ]
    process = Process(name, command, state_dir / "server.log", env or {}, cwd=state_dir).start()
    return f"http://127.0.0.1:{port}", process


def client_secret(cli_output: str) -> str:
    """The secret `floe-origin client create` printed."""
    match = re.search(r"client_secret: (\S+)", cli_output)
    if not match:
        raise CommandFailed(f"no client secret in: {cli_output}")
    return match.group(1)
