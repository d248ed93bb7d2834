"""Floe's soak mode: two edges in front of two origins on a PostgreSQL of the
run's own, authentication on, a mixed load at a bounded rate for N minutes,
and every process's memory watched.

Every sampling interval (a minute; 10 s in runs under 5 minutes) it reads
VmRSS of every Floe process from /proc/<pid>/status and scrapes its metrics
(pool gauges, requests by status). At the end, after the load has stopped and
every client has its answer, it waits (with a deadline) for
`floe_pool_buffers_in_use` to be 0 for every pool of every process.

Verdicts (the run exits 1 when one fails):
  - every process is up at every sample and at the end;
  - no 5xx, in the processes' own counts and in the clients' answers, and no
    answer outside what each request expects (a 404 where a 404 is meant);
  - every pooled buffer back: `floe_pool_buffers_in_use` 0 everywhere;
  - RSS flat (runs of 10 minutes or more): after a warm-up of the first third
    of the run, the least-squares line through each process's RSS samples
    grows over the measured window by no more than 10 % of the RSS at the
    window's start, floored at 4 MiB and capped at 16 MiB (see README, "Soak").

    tests/soak/run                    30 minutes, debug build
    tests/soak/run --release          30 minutes, release build (BENCHMARKS.md "Soak")
    tests/soak/run --minutes 1        the smoke run of scripts/test
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
from floeproc import PrivateCluster, Process, Tiers, client_secret  # noqa: E402

WAREHOUSE = "soak"
CLIENT = "soak"
REQUEST_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
MIB = 1024 * 1024
RSS_FLOOR_MIB = 4.0
RSS_CAP_MIB = 16.0
RSS_FRACTION = 0.10
HOT_TABLES = 8
LISTED_NAMESPACES = 10
# The edges' table-load cache, small enough to fill during the warm-up: the
# load creates tables without end (each cached until evicted), and a cache
# still filling towards its bound (256 MiB by default) grows the RSS by
# design. Full, it evicts as it stores, which the soak then exercises.
EDGE_CACHE_BYTES = 512 * 1024
# Metadata kept per table: hot tables see thousands of commits, and without
# these each would keep every previous metadata file and log entry.
BOUNDED = {"write.metadata.previous-versions-max": "3", "write.metadata.delete-after-commit.enabled": "true"}
SCHEMA = {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "a", "required": False, "type": "long"}]}


# ---- the processes --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Cluster(Tiers):
    """Edges in front of origins on the run's own PostgreSQL, authentication on."""

    pg: PrivateCluster
    secret: str = ""

    def cli(self, *args: str) -> str:
        result = subprocess.run([str(self.bins / "floe-origin"), *args], capture_output=True, text=True,
                                timeout=60, check=False, cwd=self.root)
        if result.returncode != 0:
            raise SystemExit(f"floe-origin {args[0]}: {result.stderr}")
        return result.stdout

    def start(self, origins: int, edges: int, cache_bytes: int) -> None:
        database = self.pg.create("floe")
        warehouse = self.root / "warehouse"
        warehouse.mkdir()
        key = self.root / "signing.pem"
        self.cli("keygen", "--out", str(key))
        auth = {"enabled": True, "signing_key": {"kid": "soak-1", "path": str(key)}}
        config = self.root / "origin.yaml"
        config.write_text(json.dumps({"warehouse": {"name": WAREHOUSE, "location": warehouse.as_uri()},
                                      "auth": auth, "log": {"level": "warn"}}))
        common = ["--config", str(config), "--database-url", database]
        out = self.cli("client", "create", "--name", CLIENT, "--role", "admin", "--warehouse", "*", *common)
        self.secret = client_secret(out)
        for _ in range(origins):
            self.add_origin(common, {"FLOE_DATABASE__MAX_CONNECTIONS": "8"})
        for _ in range(edges):
            self.add_edge(extra={"server": {"grace_period_seconds": 0}, "auth": auth, "log": {"level": "warn"},
                                 "cache": {"max_bytes": cache_bytes, "max_entry_bytes": cache_bytes // 4}})

    def processes(self) -> list[tuple[Process, str]]:
        """Every Floe process and its metrics address."""
        return [*zip(self.edges, self.edge_metrics), *((o, f"{u}/metrics") for o, u in zip(self.origins,
                                                                                          self.origin_urls))]


# ---- metrics ------------------------------------------------------------------------------------------

# Label values hold braces (route="/v1/{prefix}/..."): the labels run to the last brace.
SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def scrape(url: str) -> dict[str, float]:
    """`name{labels}` -> value, for the families the soak reads."""
    text = requests.get(url, timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = SAMPLE_LINE.match(line)
        if m and (m.group(1).startswith("floe_pool_") or m.group(1).endswith("_http_requests_total")
                  or m.group(1) == "floe_edge_cache_bytes"):
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


def requests_served(values: dict[str, float]) -> tuple[int, int]:
    """(requests, 5xx) in a process's own counts."""
    total = errors = 0
    for key, value in values.items():
        if "_http_requests_total" in key:
            total += int(value)
            if 'status="5' in key:
                errors += int(value)
    return total, errors


def pool_gauge(values: dict[str, float], name: str) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if key.startswith(name + "{"):
            out[re.search(r'pool="([^"]*)"', key).group(1)] = value  # type: ignore[union-attr]
    return out


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


# ---- clients --------------------------------------------------------------------------------------------


class Tally:
    """Answers by operation and status, and the unexpected ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_op: Counter[tuple[str, str]] = Counter()
        self.total = 0
        self.unexpected: list[str] = []
        self.unexpected_count = 0
        self.server_errors = 0
        self.cache: Counter[str] = Counter()

    def add(self, op: str, status: str, expected: bool, detail: str = "") -> None:
        with self.lock:
            self.by_op[(op, status)] += 1
            self.total += 1
            if status.startswith("5"):
                self.server_errors += 1
            if not expected:
                self.unexpected_count += 1
                if len(self.unexpected) < 20:
                    self.unexpected.append(f"{op}: {status} {detail[:300]}")


class Load:
    """The mixed load: each worker runs one kind of step at a bounded rate."""

    def __init__(self, cluster: Cluster, tally: Tally, stop: threading.Event) -> None:
        self.cluster = cluster
        self.urls = cluster.edge_urls
        self.tally = tally
        self.stop = stop
        self.hot = [f"t{i}" for i in range(HOT_TABLES)]
        self.etags: dict[tuple[int, str], str] = {}
        self.sequence = 0
        self.lock = threading.Lock()

    def next_id(self) -> int:
        with self.lock:
            self.sequence += 1
            return self.sequence

    def token(self, session: requests.Session, edge: int, basic: bool = False) -> str:
        data = {"grant_type": "client_credentials", "scope": "catalog"}
        if basic:
            r = session.post(f"{self.urls[edge]}/v1/oauth/tokens", data=data, auth=(CLIENT, self.cluster.secret),
                             timeout=REQUEST_TIMEOUT_S)
        else:
            r = session.post(f"{self.urls[edge]}/v1/oauth/tokens",
                             data={**data, "client_id": CLIENT, "client_secret": self.cluster.secret},
                             timeout=REQUEST_TIMEOUT_S)
        self.tally.add("token", str(r.status_code), r.status_code == 200, r.text)
        r.raise_for_status()
        return r.json()["access_token"]

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token(session, 0)}"
        return session

    def call(self, session: requests.Session, op: str, method: str, path: str, expect: set[int], edge: int,
             **kwargs: object) -> requests.Response | None:
        try:
            r = session.request(method, f"{self.urls[edge]}{path}", timeout=REQUEST_TIMEOUT_S, **kwargs)
        except requests.RequestException as e:
            self.tally.add(op, type(e).__name__, False, str(e))
            return None
        self.tally.add(op, str(r.status_code), r.status_code in expect, r.text)
        cache = r.headers.get("x-floe-cache")
        if cache:
            with self.tally.lock:
                self.tally.cache[cache] += 1
        return r

    def paced(self, rate: float, step: Callable[[requests.Session, int], None]) -> Callable[[], None]:
        """A worker calling `step` `rate` times a second at most (never in bursts to catch up)."""

        def run() -> None:
            session = self.session()
            i = 0
            next_at = time.monotonic()
            while not self.stop.is_set():
                try:
                    step(session, i)
                except Exception as e:  # noqa: BLE001 - any failure of a step is a finding, not a crash
                    self.tally.add(step.__name__, type(e).__name__, False, repr(e))
                i += 1
                next_at += 1.0 / rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                else:
                    next_at = time.monotonic()

        return run

    # -- the steps ------------------------------------------------------------------------------------

    def seed(self) -> None:
        session = self.session()
        for ns in ["hot", "churn", "appends", *(f"listed{i:02d}" for i in range(LISTED_NAMESPACES))]:
            self.call(session, "seed", "POST", "/v1/namespaces", {200}, 0, json={"namespace": [ns]})
        for table in self.hot:
            self.call(session, "seed", "POST", "/v1/namespaces/hot/tables", {200}, 0,
                      json={"name": table, "schema": SCHEMA, "properties": BOUNDED})

    def read_cached(self, session: requests.Session, i: int) -> None:
        """Table loads of the hot tables through both edges, every other one
        with the ETag it was last given (a 304 when still current)."""
        edge = i % len(self.urls)
        table = self.hot[(i // 2) % len(self.hot)]
        headers = {}
        etag = self.etags.get((edge, table))
        if etag and i % 4 < 2:
            headers["If-None-Match"] = etag
        r = self.call(session, "load", "GET", f"/v1/namespaces/hot/tables/{table}", {200, 304} if headers else {200},
                      edge, headers=headers)
        if r is not None and r.headers.get("etag"):
            self.etags[(edge, table)] = r.headers["etag"]

    def commit_hot(self, worker: int) -> Callable[[requests.Session, int], None]:
        """Property commits on this worker's half of the hot tables (a bounded
        set of keys), each followed by a load that cannot be cached yet."""
        tables = self.hot[worker::2]

        def commit(session: requests.Session, i: int) -> None:
            edge = i % len(self.urls)
            table = tables[i % len(tables)]
            headers = {"Idempotency-Key": str(uuid.uuid4())} if i % 2 else {}
            body = {"requirements": [], "updates": [{"action": "set-properties",
                                                     "updates": {f"p{i % 16}": str(i)}}]}
            self.call(session, "commit", "POST", f"/v1/namespaces/hot/tables/{table}", {200}, edge, json=body,
                      headers=headers)
            self.call(session, "load-after-commit", "GET", f"/v1/namespaces/hot/tables/{table}", {200}, edge)

        commit.__name__ = "commit"
        return commit

    def list_paged(self, session: requests.Session, i: int) -> None:
        """Namespace and table listings, walked page by page."""
        edge = i % len(self.urls)
        for op, path in (("list-namespaces", "/v1/namespaces"), ("list-tables", "/v1/namespaces/hot/tables")):
            token = None
            for _ in range(100):
                params = {"pageSize": "3", **({"pageToken": token} if token else {})}
                r = self.call(session, op, "GET", path, {200}, edge, params=params)
                if r is None or r.status_code != 200:
                    break
                token = r.json().get("next-page-token")
                if not token:
                    break

    def churn(self, session: requests.Session, i: int) -> None:
        """A table's life: create, load, a schema change, property commits, a
        scan plan, a purge; and a namespace created and dropped."""
        n = self.next_id()
        edge = i % len(self.urls)
        path = f"/v1/namespaces/churn/tables/c{n}"
        self.call(session, "create", "POST", "/v1/namespaces/churn/tables", {200}, edge,
                  json={"name": f"c{n}", "schema": SCHEMA, "properties": BOUNDED})
        self.call(session, "load", "GET", path, {200}, edge)
        schema = {"type": "struct", "schema-id": 1, "fields": [*SCHEMA["fields"],  # type: ignore[misc]
                                                             {"id": 2, "name": "b", "required": False,
                                                              "type": "string"}]}
        self.call(session, "schema-add", "POST", path, {200}, edge, json={
            "requirements": [{"type": "assert-current-schema-id", "current-schema-id": 0},
                             {"type": "assert-last-assigned-field-id", "last-assigned-field-id": 1}],
            "updates": [{"action": "add-schema", "schema": schema, "last-column-id": 2},
                        {"action": "set-current-schema", "schema-id": -1}]})
        for k in range(3):
            self.call(session, "commit", "POST", path, {200}, 1 - edge, json={
                "requirements": [], "updates": [{"action": "set-properties", "updates": {f"k{k}": str(n)}}]})
        self.call(session, "plan", "POST", f"{path}/plan", {200}, edge, json={})
        self.call(session, "load", "GET", path, {200}, 1 - edge)
        self.call(session, "drop", "DELETE", path, {204}, edge, params={"purgeRequested": "true"})
        # Through the edge that forwarded the drop (it invalidates before
        # forwarding); the other edge hears of it by change event.
        self.call(session, "load-dropped", "GET", path, {404}, edge)
        self.call(session, "namespace-create", "POST", "/v1/namespaces", {200}, edge,
                  json={"namespace": [f"n{n}"], "properties": {"owner": "soak"}})
        self.call(session, "namespace-drop", "DELETE", f"/v1/namespaces/n{n}", {204}, 1 - edge)

    def errors(self, session: requests.Session, i: int) -> None:
        """Error paths, each answered with its ErrorModel status."""
        edge = i % len(self.urls)
        hot = f"/v1/namespaces/hot/tables/{self.hot[0]}"
        cases: list[tuple[str, str, str, set[int], dict[str, object]]] = [
            ("404-table", "GET", "/v1/namespaces/hot/tables/missing", {404}, {}),
            ("404-namespace", "GET", "/v1/namespaces/missing", {404}, {}),
            ("409-create", "POST", "/v1/namespaces/hot/tables", {409},
             {"json": {"name": self.hot[0], "schema": SCHEMA}}),
            ("409-requirement", "POST", hot, {409},
             {"json": {"requirements": [{"type": "assert-table-uuid", "uuid": str(uuid.uuid4())}],
                       "updates": [{"action": "set-properties", "updates": {"never": "x"}}]}}),
            ("400-body", "POST", hot, {400}, {"data": b"{not json", "headers": {"Content-Type": "application/json"}}),
            ("400-action", "POST", hot, {400}, {"json": {"requirements": [], "updates": [{"action": "no-such"}]}}),
            ("400-namespace", "POST", "/v1/namespaces", {400}, {"json": {"namespace": 5}}),
            ("401-bad-token", "GET", hot, {401}, {"headers": {"Authorization": "Bearer not.a.token"}}),
            ("409-namespace", "POST", "/v1/namespaces", {409}, {"json": {"namespace": ["hot"]}}),
        ]
        op, method, path, expect, kwargs = cases[i % len(cases)]
        self.call(session, op, method, path, expect, edge, **kwargs)  # type: ignore[arg-type]

    def tokens(self, session: requests.Session, i: int) -> None:
        """Token issuance (form and HTTP Basic), each token used at once; now
        and then a wrong secret (401), well under the rate limit."""
        edge = i % len(self.urls)
        token = self.token(session, edge, basic=(i // 2) % 2 == 1)
        self.call(session, "load-new-token", "GET", f"/v1/namespaces/hot/tables/{self.hot[i % len(self.hot)]}",
                  {200}, edge, headers={"Authorization": f"Bearer {token}"})
        if i % 10 == 0:
            # Each edge in turn, one every 10 s: under its limit of 10 a minute.
            r = session.post(f"{self.urls[(i // 10) % len(self.urls)]}/v1/oauth/tokens", timeout=REQUEST_TIMEOUT_S,
                             data={"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "wrong"})
            self.tally.add("401-token", str(r.status_code), r.status_code == 401, r.text)
        self.call(session, "401-no-token", "GET", "/v1/namespaces", {401}, edge, headers={"Authorization": ""})

    def appender(self, edge: int) -> Callable[[], None]:
        """PyIceberg through one edge: a table created, rows appended (real
        data and manifest files, snapshot commits through the REST API),
        planned on the server, read back, purged."""

        def run() -> None:
            import pyarrow as pa
            from pyiceberg.catalog import load_catalog

            catalog = load_catalog(f"soak-{edge}", **{"type": "rest", "uri": self.urls[edge], "warehouse": WAREHOUSE,
                                                      "credential": f"{CLIENT}:{self.cluster.secret}"})
            session = self.session()
            rows = pa.table({"a": pa.array([1, 2, 3], pa.int64())})
            while not self.stop.is_set():
                name = f"appends.a{self.next_id()}"
                try:
                    table = catalog.create_table(name, schema=pa.schema([pa.field("a", pa.int64())]),
                                                 properties=BOUNDED)
                    for _ in range(3):
                        table.append(rows)
                    path = f"/v1/namespaces/appends/tables/{name.split('.')[1]}"
                    r = self.call(session, "plan", "POST", f"{path}/plan", {200}, edge, json={})
                    if r is not None and r.status_code == 200 and len(r.json().get("file-scan-tasks", [])) != 3:
                        self.tally.add("plan-files", "wrong", False, r.text)
                    count = len(table.scan().to_arrow())
                    self.tally.add("append-read", "ok" if count == 9 else "wrong", count == 9, str(count))
                    catalog.purge_table(name)
                    self.tally.add("append-cycle", "ok", True)
                except Exception as e:  # noqa: BLE001 - a failed cycle is a finding
                    self.tally.add("append-cycle", type(e).__name__, False, repr(e))
                    self.stop.wait(1.0)

        return run

    def workers(self) -> list[Callable[[], None]]:
        return [
            self.paced(60, self.read_cached),
            self.paced(60, self.read_cached),
            self.paced(8, self.commit_hot(0)),
            self.paced(8, self.commit_hot(1)),
            self.paced(3, self.list_paged),
            self.paced(1.5, self.churn),
            self.paced(6, self.errors),
            self.paced(2, self.tokens),
            self.appender(0),
            self.appender(1),
        ]


# ---- the run --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    minute: float
    rss: dict[str, int]
    requests: dict[str, int]
    errors: dict[str, int]
    in_use: dict[str, float]
    idle: dict[str, float]
    client_total: int
    cache: dict[str, float] = field(default_factory=dict)


def take_sample(cluster: Cluster, started: float, tally: Tally) -> Sample:
    sample = Sample((time.monotonic() - started) / 60, {}, {}, {}, {}, {}, tally.total)
    for process, url in cluster.processes():
        assert process.proc is not None
        if process.proc.poll() is not None:
            raise SystemExit(f"{process.name} exited (status {process.proc.returncode}):\n"
                             f"{process.log.read_text(errors='replace')[-3000:]}")
        sample.rss[process.name] = rss_bytes(process.proc.pid)
        values = scrape(url)
        sample.requests[process.name], sample.errors[process.name] = requests_served(values)
        sample.in_use[process.name] = sum(pool_gauge(values, "floe_pool_buffers_in_use").values())
        sample.idle[process.name] = sum(pool_gauge(values, "floe_pool_idle_bytes").values())
        if "floe_edge_cache_bytes" in values:
            sample.cache[process.name] = values["floe_edge_cache_bytes"]
    return sample


def fitted_growth(points: list[tuple[float, float]]) -> float:
    """Growth over the points' span along their least-squares line."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope * (points[-1][0] - points[0][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--bin-dir", default=str(REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"))
    parser.add_argument("--report-dir", default=str(REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "soak"))
    parser.add_argument("--label", default="", help="what was run (printed in the report)")
    parser.add_argument("--edge-cache-bytes", type=int, default=EDGE_CACHE_BYTES,
                        help="the edges' cache.max_bytes (default: 512 KiB, full within minutes)")
    args = parser.parse_args()
    interval = 60.0 if args.minutes >= 5 else 10.0
    judge_rss = args.minutes >= 10
    duration = args.minutes * 60
    random.seed(1)

    with tempfile.TemporaryDirectory(prefix="floe-soak-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        pg = PrivateCluster(root)
        pg.start()
        cluster = Cluster(root, Path(args.bin_dir).resolve(), pg=pg)
        try:
            return soak(cluster, args, interval, judge_rss, duration)
        finally:
            cluster.stop()
            pg.stop_quietly()


def soak(cluster: Cluster, args: argparse.Namespace, interval: float, judge_rss: bool, duration: float) -> int:
    cluster.start(origins=2, edges=2, cache_bytes=args.edge_cache_bytes)
    tally = Tally()
    stop = threading.Event()
    load = Load(cluster, tally, stop)
    load.seed()
    names = [p.name for p, _ in cluster.processes()]
    threads = [threading.Thread(target=w, daemon=True) for w in load.workers()]
    started = time.monotonic()
    samples = [take_sample(cluster, started, tally)]
    for t in threads:
        t.start()
    print(f"soak: {args.minutes:g} min, sampling every {interval:.0f} s; processes "
          + ", ".join(f"{p.name} (pid {p.proc.pid})" for p, _ in cluster.processes() if p.proc), flush=True)
    header = f"{'min':>5} " + " ".join(f"{n + ' MiB':>14}" for n in names) + f" {'req/s':>7} {'5xx':>4} {'in-use':>6}"
    print(header, flush=True)

    def show(s: Sample, prev: Sample | None) -> None:
        rate = (s.client_total - prev.client_total) / ((s.minute - prev.minute) * 60) if prev else 0.0
        print(f"{s.minute:5.1f} " + " ".join(f"{s.rss[n] / MIB:14.1f}" for n in names)
              + f" {rate:7.1f} {sum(s.errors.values()):4d} {sum(s.in_use.values()):6.0f}", flush=True)

    show(samples[0], None)
    while True:
        next_at = started + len(samples) * interval
        if next_at > started + duration + 0.5:
            break
        stop.wait(max(0.0, next_at - time.monotonic()))
        samples.append(take_sample(cluster, started, tally))
        show(samples[-1], samples[-2])
    stop.set()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S * 3)
    stuck = [t for t in threads if t.is_alive()]
    # In-flight requests are done: every pooled buffer must come back.
    drained: dict[str, dict[str, float]] = {}

    def all_returned() -> bool:
        drained.clear()
        for process, url in cluster.processes():
            drained[process.name] = pool_gauge(scrape(url), "floe_pool_buffers_in_use")
        return all(v == 0 for pools in drained.values() for v in pools.values())

    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    returned = False
    while time.monotonic() < deadline:
        try:
            if all_returned():
                returned = True
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    final = take_sample(cluster, started, tally)
    return report(args, names, samples, final, tally, drained, returned, stuck, interval, judge_rss)


def report(args: argparse.Namespace, names: list[str], samples: list[Sample], final: Sample, tally: Tally,
           drained: dict[str, dict[str, float]], returned: bool, stuck: list[threading.Thread], interval: float,
           judge_rss: bool) -> int:
    lines: list[str] = []
    out = lines.append
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out(f"# Floe soak {stamp}")
    out("")
    out(f"Run: {args.label or ' '.join(sys.argv)}; {args.minutes:g} min of load, samples every {interval:.0f} s; "
        f"2 edges x 2 origins on PostgreSQL, authentication on, edge cache.max_bytes "
        f"{args.edge_cache_bytes / MIB:g} MiB.")
    out("")
    out("| min | " + " | ".join(f"{n} RSS MiB" for n in names) + " | client req/s | requests (processes) | 5xx | "
        "pool buffers in use | pool idle KiB | edge cache KiB |")
    out("|" + "---|" * (len(names) + 7))
    prev = None
    for s in samples:
        rate = (s.client_total - prev.client_total) / ((s.minute - prev.minute) * 60) if prev else 0.0
        out(f"| {s.minute:.1f} | " + " | ".join(f"{s.rss[n] / MIB:.1f}" for n in names)
            + f" | {rate:.0f} | {sum(s.requests.values())} | {sum(s.errors.values())} | "
            f"{sum(s.in_use.values()):.0f} | {sum(s.idle.values()) / 1024:.0f} | "
            + " / ".join(f"{v / 1024:.0f}" for v in s.cache.values()) + " |")
        prev = s
    out("")
    failures: list[str] = []
    warmup = args.minutes / 3
    window = [s for s in samples if s.minute >= warmup - 1e-6]
    out(f"RSS after a warm-up of {warmup:.1f} min (the first third), minutes {window[0].minute:.1f}-"
        f"{window[-1].minute:.1f}; bound: least-squares growth over the window <= 10 % of the RSS at its start, "
        f"at least {RSS_FLOOR_MIB:g} MiB, at most {RSS_CAP_MIB:g} MiB.")
    out("")
    out("| process | RSS at window start MiB | end MiB | min | max | fitted growth MiB | bound MiB | verdict |")
    out("|---|---|---|---|---|---|---|---|")
    for n in names:
        points = [(s.minute, s.rss[n] / MIB) for s in window]
        growth = fitted_growth(points)
        start = points[0][1]
        bound = min(RSS_CAP_MIB, max(RSS_FLOOR_MIB, RSS_FRACTION * start))
        ok = growth <= bound
        verdict = ("flat" if ok else "GROWS") if judge_rss else "not judged (run under 10 min)"
        if judge_rss and not ok:
            failures.append(f"{n}: RSS grew {growth:.1f} MiB over the window (bound {bound:.1f} MiB)")
        values = [y for _, y in points]
        out(f"| {n} | {start:.1f} | {points[-1][1]:.1f} | {min(values):.1f} | {max(values):.1f} | {growth:+.1f} | "
            f"{bound:.1f} | {verdict} |")
    out("")
    served = sum(final.requests.values())
    errors = sum(final.errors.values())
    out(f"Requests: {tally.total} answered to the clients ({tally.total / (args.minutes * 60):.0f}/s); "
        f"{served} served by the processes (edges and origins each count theirs); edge cache "
        + ", ".join(f"{k} {v}" for k, v in sorted(tally.cache.items())) + ".")
    out("")
    out("| operation | status | count |")
    out("|---|---|---|")
    for (op, status), count in sorted(tally.by_op.items()):
        out(f"| {op} | {status} | {count} |")
    out("")
    pools = "; ".join(f"{n}: " + ", ".join(f"{p} {v:.0f}" for p, v in sorted(drained.get(n, {}).items()))
                      for n in names)
    out(f"Pool buffers in use after the load stopped: {pools} -> "
        + ("all returned" if returned else f"NOT all returned within {DRAIN_TIMEOUT_S:.0f} s"))
    if not returned:
        failures.append("pool buffers still in use after the load stopped")
    out(f"5xx counted by the processes: {errors}; by the clients: {tally.server_errors}")
    if errors or tally.server_errors:
        failures.append(f"5xx answers: {errors} (processes), {tally.server_errors} (clients)")
    out(f"Unexpected answers: {tally.unexpected_count}")
    for u in tally.unexpected:
        out(f"  - {u}")
    if tally.unexpected_count:
        failures.append(f"{tally.unexpected_count} unexpected answers")
    if stuck:
        failures.append(f"{len(stuck)} load workers did not finish")
    out("Processes: all up at every sample and at the end.")
    out("")
    out("Verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    text = "\n".join(lines)
    print()
    print(text, flush=True)
    directory = Path(args.report_dir)
    directory.mkdir(parents=True, exist_ok=True)
    md = directory / f"soak-{stamp}.md"
    md.write_text(text + "\n")
    csv_path = directory / f"soak-{stamp}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minute", *(f"{n}_rss_bytes" for n in names), "client_requests", "process_requests", "5xx",
                    "pool_buffers_in_use", "pool_idle_bytes"])
        for s in samples:
            w.writerow([f"{s.minute:.2f}", *(s.rss[n] for n in names), s.client_total, sum(s.requests.values()),
                        sum(s.errors.values()), int(sum(s.in_use.values())), int(sum(s.idle.values()))])
    print(f"soak report: {md} (per-minute table also in {csv_path})", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
