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
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "lib"))
import floeproc  # noqa: E402
from floeproc import Process, redact  # noqa: E402

STOP_TIMEOUT_S = 30.0


@dataclass
class LocalCluster:
    """N edges × M origins; `start()`, then `stop()` (always)."""

    bins: Path
    edges: int
    origins: int
    postgres: str | None = None
    admin_url: str = floeproc.DEFAULT_ADMIN_URL
    root: Path | None = None
    log_level: str = "info"
    children: list[Process] = field(default_factory=list)
    origin_urls: list[str] = field(default_factory=list)
    edge_urls: list[str] = field(default_factory=list)
    metrics_urls: list[str] = field(default_factory=list)
    database_url: str = ""
    created_database: str | None = None
    own_root: bool = False
    warehouse: Path = Path()

    def start(self) -> None:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="floe-local-"))
            self.own_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        if self.postgres:
            self.database_url = self.postgres
        else:
            self.created_database, self.database_url = floeproc.create_database(
                self.admin_url, f"floe_local_{os.getpid()}")
        self.warehouse = self.root / "warehouse"
        self.warehouse.mkdir(exist_ok=True)

        origin_ports = []
        for i in range(self.origins):
            # One at a time: the first applies the migrations. Each in a
            # session of its own: a Ctrl-C in the terminal reaches the
            # launcher only, which stops the children in order.
            child, port = floeproc.start_origin(
                self.bins, self.root, f"origin-{i}",
                ["--database-url", self.database_url, "--warehouse", f"file://{self.warehouse}"],
                {"FLOE_LOG__LEVEL": self.log_level}, new_session=True)
            self.children.append(child)
            origin_ports.append(port)
            self.origin_urls.append(f"http://127.0.0.1:{port}")

        for e in range(self.edges):
            child, url, metrics_url = floeproc.start_edge(
                self.bins, self.root, f"edge-{e}", [f"127.0.0.1:{p}" for p in origin_ports],
                {"log": {"level": self.log_level}}, new_session=True)
            self.children.append(child)
            self.edge_urls.append(url)
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

    def first_exited(self) -> Process | None:
        return next((c for c in self.children if c.exited() is not None), None)

    def stop(self) -> None:
        """Edges first (clients stop arriving), then origins; then the
        database and the state directory this run created."""
        floeproc.stop_all([c for c in reversed(self.children) if c.name.startswith("edge")], STOP_TIMEOUT_S)
        floeproc.stop_all([c for c in self.children if c.name.startswith("origin")], STOP_TIMEOUT_S)
        if self.created_database:
            try:
                floeproc.drop_database(self.admin_url, self.created_database)
            except floeproc.CommandFailed as e:
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
    parser.add_argument("--admin-url", default=os.environ.get("FLOE_TEST_PG_URL", floeproc.DEFAULT_ADMIN_URL),
                        help="where to create the run's database (default: FLOE_TEST_PG_URL or "
                        f"{floeproc.DEFAULT_ADMIN_URL})")
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
    except (floeproc.NotReady, floeproc.CommandFailed) as e:
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
