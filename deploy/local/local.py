"""N edges in front of M origins on one machine, on PostgreSQL.

Real processes on loopback ports: M `floe-origin` on one catalog database
and one warehouse directory, N `floe-edge` with a generated configuration
listing every origin. Prints where each listens, stays in the foreground
until SIGINT (Ctrl-C) or SIGTERM, then stops every process it started, by
pid, and removes what it created (the database, unless given with
--postgres; the state directory, unless given with --dir).

Only Python's standard library: usable without the test venv, and
importable (`LocalCluster`) by other harnesses.

    deploy/local/run --edges 2 --origins 2
    deploy/local/run --edges 1 --origins 3 --postgres postgres://u@db:5432/floe
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""


def redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def with_database(url: str, database: str) -> str:
    """The URL with its path (database name) replaced, query kept."""
    head, _, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


def psql(url: str, sql: str) -> str:
    result = subprocess.run(["psql", url, "-X", "-w", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            capture_output=True, text=True, check=False, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"psql on {redact(url)}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass
class Child:
    """One process of the cluster."""

    name: str
    command: list[str]
    log: Path
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with self.log.open("ab") as out:
            # A session of its own: a Ctrl-C in the terminal reaches the
            # launcher only, which stops the children in order.
            self.proc = subprocess.Popen(self.command, env={**os.environ, **self.env}, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (the tiers drain), then SIGKILL after STOP_TIMEOUT_S."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class StartError(Exception):
    pass


@dataclass
class LocalCluster:
    """N edges × M origins; `start()`, then `stop()` (always)."""

    bins: Path
    edges: int
    origins: int
    postgres: str | None = None
    admin_url: str = DEFAULT_ADMIN_URL
    root: Path | None = None
    log_level: str = "info"
    children: list[Child] = field(default_factory=list)
    origin_urls: list[str] = field(default_factory=list)
    edge_urls: list[str] = field(default_factory=list)
    metrics_urls: list[str] = field(default_factory=list)
    database_url: str = ""
    created_database: str | None = None
    own_root: bool = False
    warehouse: Path = Path()

    def _wait(self, what: str, child: Child, check) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            code = child.exited()
            if code is not None:
                raise StartError(f"{child.name} exited with {code}:\n{child.log_tail()}")
            try:
                if check():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StartError(f"{what}: not after {READY_TIMEOUT_S:.0f} s\n{child.log_tail()}")
            time.sleep(0.1)

    def start(self) -> None:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="floe-local-"))
            self.own_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        if self.postgres:
            self.database_url = self.postgres
        else:
            name = f"floe_local_{os.getpid()}_{secrets.token_hex(3)}"
            psql(self.admin_url, f"CREATE DATABASE {name}")
            self.created_database = name
            self.database_url = with_database(self.admin_url, name)
        self.warehouse = self.root / "warehouse"
        self.warehouse.mkdir(exist_ok=True)

        origin_ports = [free_port() for _ in range(self.origins)]
        for i, port in enumerate(origin_ports):
            url = f"http://127.0.0.1:{port}"
            child = Child(f"origin {i}",
                          [str(self.bins / "floe-origin"), "serve", "--listen", f"127.0.0.1:{port}",
                           "--database-url", self.database_url, "--warehouse", f"file://{self.warehouse}"],
                          self.root / f"origin-{i}.log", f"{url}/ready", {"FLOE_LOG__LEVEL": self.log_level})
            self.children.append(child)
            child.start()
            # One at a time: the first applies the migrations.
            self._wait(f"{child.name} ready", child, lambda c=child: http_get(c.ready_url)[0] == 200)
            self.origin_urls.append(url)

        for e in range(self.edges):
            port, metrics = free_port(), free_port()
            config = self.root / f"edge-{e}.yaml"
            # JSON is YAML: the edge reads it as its configuration file.
            config.write_text(json.dumps({
                "listen": [f"127.0.0.1:{port}"],
                "metrics_listen": f"127.0.0.1:{metrics}",
                "origins": [f"127.0.0.1:{p}" for p in origin_ports],
                "server": {"pid_file": str(self.root / f"edge-{e}.pid"),
                           "upgrade_sock": str(self.root / f"edge-{e}.sock")},
                "log": {"level": self.log_level},
            }, indent=2) + "\n")
            child = Child(f"edge {e}", [str(self.bins / "floe-edge"), "--config", str(config)],
                          self.root / f"edge-{e}.log", f"http://127.0.0.1:{metrics}/health")
            self.children.append(child)
            child.start()
            metrics_url = f"http://127.0.0.1:{metrics}/metrics"
            self._wait(f"{child.name} subscribed to change events", child,
                       lambda u=metrics_url: "floe_edge_event_stream_up 1" in http_get(u)[1])
            self.edge_urls.append(f"http://127.0.0.1:{port}")
            self.metrics_urls.append(metrics_url)

    def describe(self) -> str:
        lines = [f"floe local: {self.edges} edge(s) x {self.origins} origin(s)",
                 f"database: {redact(self.database_url)}"
                 + (" (created for this run, dropped at exit)" if self.created_database else ""),
                 f"warehouse: file://{self.warehouse}", f"state: {self.root}"]
        edges = [c for c in self.children if c.name.startswith("edge")]
        origins = [c for c in self.children if c.name.startswith("origin")]
        for i, (child, url) in enumerate(zip(edges, self.edge_urls)):
            lines.append(f"edge {i}: {url} metrics {self.metrics_urls[i]} pid {child.pid} log {child.log}")
        for i, (child, url) in enumerate(zip(origins, self.origin_urls)):
            lines.append(f"origin {i}: {url} metrics {url}/metrics pid {child.pid} log {child.log}")
        return "\n".join(lines)

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.exited() is not None), None)

    def stop(self) -> None:
        """Edges first (clients stop arriving), then origins; then the
        database and the state directory this run created."""
        threads = [threading.Thread(target=c.stop) for c in reversed(self.children)
                   if c.name.startswith("edge")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        threads = [threading.Thread(target=c.stop) for c in self.children if c.name.startswith("origin")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.created_database:
            try:
                psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.created_database} WITH (FORCE)")
            except RuntimeError as e:
                print(f"floe local: {e}", file=sys.stderr)
            self.created_database = None
        if self.own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=1, help="edge processes (default 1)")
    parser.add_argument("--origins", type=int, default=1, help="origin processes (default 1)")
    parser.add_argument("--postgres", help="catalog database URL to use as it is (default: a database "
                        "created for this run on the local PostgreSQL, dropped at exit)")
    parser.add_argument("--admin-url", default=os.environ.get("FLOE_TEST_PG_URL", DEFAULT_ADMIN_URL),
                        help="where to create the run's database (default: FLOE_TEST_PG_URL or "
                        f"{DEFAULT_ADMIN_URL})")
    parser.add_argument("--dir", type=Path, help="state directory (logs, edge configs, warehouse); "
                        "default: a temporary one, removed at exit")
    parser.add_argument("--bin-dir", type=Path, required=True, help="where floe-origin and floe-edge are")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    if args.edges < 1 or args.origins < 1:
        parser.error("--edges and --origins must be at least 1")

    stop = threading.Event()
    received: list[int] = []

    started = False

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()
        if not started:
            # Still starting: abandon the start; `finally` stops what runs.
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    cluster = LocalCluster(args.bin_dir.resolve(), args.edges, args.origins, args.postgres, args.admin_url,
                           args.dir, args.log_level)
    status = 0
    try:
        cluster.start()
        started = True
        print(cluster.describe(), flush=True)
        print("ready: Ctrl-C or SIGTERM stops everything", flush=True)
        while not stop.wait(0.5):
            gone = cluster.first_exited()
            if gone is not None:
                print(f"floe local: {gone.name} exited with {gone.exited()}:\n{gone.log_tail()}",
                      file=sys.stderr, flush=True)
                status = 1
                break
    except (StartError, RuntimeError) as e:
        print(f"floe local: {e}", file=sys.stderr, flush=True)
        status = 1
    except KeyboardInterrupt:
        status = 130 if not received or received[0] == signal.SIGINT else 143
    finally:
        if received:
            print(f"floe local: signal {received[0]}: stopping", flush=True)
        cluster.stop()
        print("floe local: stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
