"""Floe's fault suite: real edges and origins on a PostgreSQL of the suite's
own, concurrent committers and readers, one fault per scenario, and a
history check at the end of each.

Every client records (table, key, answer). When the scenario is over and
every part is back, each table is read from an origin and checked: every
key answered 200 is in it (none lost), every key refused (409, 503 "nothing
was changed", any other 4xx) is not (none applied), keys answered
CommitStateUnknownException may be either; and every metadata file the
table names (its current one and its metadata log) exists and parses.

One line per scenario:

    fault <scenario>: requests N, errors-avoidable 0, state-unknown K, acknowledged-lost 0, refused-applied 0, refused-as-required R

The committers of the contended table send every fourth commit with a
requirement that cannot hold (a table UUID no table has), so concurrent
commits sharing one version (group commit) are checked both ways: R such
commits answered 409, none of them applied or acknowledged.

An avoidable error is one a retry inside Floe could have prevented, given
what the scenario breaks: with an origin killed, any 503 or any failed read
or keyed write; with PostgreSQL restarting, anything but 503 "database
unreachable" or "state unknown"; and so on (see each scenario). The run
fails when any count but state-unknown is above 0.

    tests/faults/run --short            a few seconds per scenario (scripts/test)
    tests/faults/run                    60 s per scenario
    tests/faults/run --only origin-kill one scenario (repeatable)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "lib"))
from floeproc import PrivateCluster, Tiers, answers_200, free_port, wait_until  # noqa: E402

REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_MS = 500
RETRIES = 2


# ---- a TCP proxy that breaks on command ---------------------------------------------------------


class FaultProxy:
    """Forwards one port to an origin. `drop()` makes the link silent, as a
    partition does: open connections stop passing bytes, and new ones are
    never accepted, with the listen queue kept full so their SYNs go
    unanswered and connects time out. `drop_events()` does that to the
    change-event stream alone. `heal()` restores everything."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(1)
        self.mode = "pass"
        self.accepting = threading.Event()
        self.accepting.set()
        self.fillers: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            self.accepting.wait()
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._link, args=(client,), daemon=True).start()

    def _link(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        first = client.recv(65536, socket.MSG_PEEK)
        events = first.startswith(b"GET /internal/v1/events")
        silent = lambda: self.mode == "drop" or (self.mode == "events" and events)  # noqa: E731

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if silent():
                        continue  # swallowed, as a dropped packet
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(client, server), daemon=True).start()
        pump(server, client)

    def drop(self) -> None:
        with self.lock:
            self.mode = "drop"
            self.accepting.clear()
            # Fill the listen queue: further SYNs are dropped by the kernel.
            for _ in range(16):
                filler = socket.socket()
                filler.settimeout(0.2)
                try:
                    filler.connect(("127.0.0.1", self.port))
                except OSError:
                    filler.close()
                    break
                self.fillers.append(filler)

    def drop_events(self) -> None:
        with self.lock:
            self.mode = "events"

    def heal(self) -> None:
        with self.lock:
            self.mode = "pass"
            for filler in self.fillers:
                filler.close()
            self.fillers.clear()
            self.accepting.set()


# ---- Floe's processes ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Cluster(Tiers):
    """N edges in front of M origins on one PostgreSQL database."""

    pg: PrivateCluster
    proxies: dict[int, list[FaultProxy]] = field(default_factory=dict)
    warehouse: Path = Path()

    def start(self, origins: int, edges: int, proxied: set[int]) -> None:
        database = self.pg.create("floe")
        self.warehouse = self.root / "warehouse"
        self.warehouse.mkdir(exist_ok=True)
        for _ in range(origins):
            self.add_origin(["--database-url", database, "--warehouse", f"file://{self.warehouse}"],
                            {"FLOE_LOG__LEVEL": "warn", "FLOE_DATABASE__MAX_CONNECTIONS": "8"})
        for e in range(edges):
            targets = None
            if e in proxied:
                self.proxies[e] = [FaultProxy(("127.0.0.1", p)) for p in self.origin_ports]
                targets = [proxy.address for proxy in self.proxies[e]]
            self.add_edge(targets, {
                "server": {"threads": 1, "grace_period_seconds": 0},
                "health_check": {"interval_ms": 200},
                "upstream": {"connect_timeout_ms": CONNECT_TIMEOUT_MS, "retries": RETRIES},
                "log": {"level": "warn"},
            })

    def origin_url(self) -> str:
        for process, url in zip(self.origins, self.origin_urls):
            if process.running():
                return url
        raise SystemExit("no origin running")


# ---- clients and their history -----------------------------------------------------------------


@dataclass
class Answer:
    kind: str  # "write" or "read"
    table: str
    key: str
    status: int
    type: str
    edge: int
    seconds: float  # how long it took
    at: float  # when it was answered (monotonic)
    cache: str = ""
    doomed: bool = False  # sent with a requirement that cannot hold


class History:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.lock = threading.Lock()

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)


def error_type(response: requests.Response) -> str:
    try:
        return response.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return ""


# A table UUID no table has: a commit asserting it must be refused (409).
WRONG_UUID = "00000000-0000-4000-8000-000000000000"


def committer(urls: list[str], table: str, name: str, keyed: bool, stop: threading.Event,
              history: History, doom_every: int = 0) -> None:
    """Commits set-properties with a key of its own, one after the other;
    with `doom_every`, every n-th commit also asserts a table UUID that
    cannot hold, so that commits refused among accepted ones (a group
    commit's members) are checked as well."""
    session = requests.Session()
    i = 0
    while not stop.is_set():
        edge = i % len(urls)
        key = f"{name}-{i}"
        headers = {"Idempotency-Key": f"0190b000-0000-7000-8000-{abs(hash((name, i))) % 10**12:012d}"} if keyed else {}
        doomed = doom_every > 0 and i % doom_every == doom_every - 1
        requirements = [{"type": "assert-table-uuid", "uuid": WRONG_UUID}] if doomed else []
        body = {"requirements": requirements, "updates": [{"action": "set-properties", "updates": {key: "v"}}]}
        started = time.monotonic()
        try:
            r = session.post(f"{urls[edge]}/v1/namespaces/faults/tables/{table}", json=body, headers=headers,
                             timeout=REQUEST_TIMEOUT_S)
            history.add(Answer("write", table, key, r.status_code, error_type(r) if r.status_code >= 300 else "",
                               edge, time.monotonic() - started, time.monotonic(), doomed=doomed))
        except requests.RequestException as e:
            history.add(Answer("write", table, key, 0, type(e).__name__, edge, time.monotonic() - started,
                               time.monotonic(), doomed=doomed))
        i += 1


def reader(urls: list[str], table: str, stop: threading.Event, history: History, edges: list[int]) -> None:
    session = requests.Session()
    i = 0
    while not stop.is_set():
        edge = edges[i % len(edges)]
        started = time.monotonic()
        try:
            r = session.get(f"{urls[edge]}/v1/namespaces/faults/tables/{table}", timeout=REQUEST_TIMEOUT_S)
            history.add(Answer("read", table, "", r.status_code, error_type(r) if r.status_code >= 300 else "",
                               edge, time.monotonic() - started, time.monotonic(), r.headers.get("x-floe-cache", "")))
        except requests.RequestException as e:
            history.add(Answer("read", table, "", 0, type(e).__name__, edge, time.monotonic() - started,
                               time.monotonic()))
        i += 1


# ---- checks --------------------------------------------------------------------------------------


REFUSED = {409, 400, 403, 404, 422, 503}


def state_unknown(a: Answer) -> bool:
    return a.type == "CommitStateUnknownException" or (a.status == 0 and a.kind == "write")


def check_history(cluster: Cluster, history: History, tables: list[str]) -> tuple[int, int, list[str]]:
    """(acknowledged-lost, refused-applied, problems with metadata files)."""
    base = cluster.origin_url()
    properties: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for table in tables:
        r = requests.get(f"{base}/v1/namespaces/faults/tables/{table}", timeout=REQUEST_TIMEOUT_S)
        r.raise_for_status()
        body = r.json()
        properties[table] = body["metadata"].get("properties", {})
        files = [body["metadata-location"], *(e["metadata-file"] for e in body["metadata"].get("metadata-log", []))]
        for location in files:
            path = Path(location.removeprefix("file://"))
            try:
                json.loads(path.read_text())
            except (OSError, ValueError) as e:
                problems.append(f"{table}: {location}: {e}")
    lost = applied = 0
    for a in history.answers:
        if a.kind != "write":
            continue
        present = a.key in properties[a.table]
        if a.doomed and (a.status == 200 or present):
            applied += 1  # its requirement cannot hold: never applied, never acknowledged
        elif a.status == 200 and not present:
            lost += 1
        elif a.status in REFUSED and not state_unknown(a) and present:
            applied += 1
    return lost, applied, problems


# ---- scenarios -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    origins: int
    edges: int
    keyed: bool
    inject: Callable[[Cluster, float, "Window"], None]
    avoidable: Callable[[Answer, "Window"], bool]
    proxied: set[int] = field(default_factory=set)


@dataclass
class Window:
    """When the fault was in force (monotonic seconds), so answers can be
    judged by what was broken when they were asked."""

    start: float = 0.0
    end: float = 0.0

    def during(self, a: Answer, grace: float = 0.0) -> bool:
        """Whether `a` was in flight while the fault was in force (or within
        `grace` seconds after, the time recovery takes)."""
        return a.at - a.seconds <= self.end + grace and a.at >= self.start


def plain_errors(a: Answer, keyed: bool) -> bool:
    """Errors no fault in these scenarios excuses: a failed read, a failed keyed
    write, any 5xx that is not 'state unknown', any 503."""
    if a.status == 200 or a.status == 409:
        return False
    if a.kind == "write" and not keyed and state_unknown(a):
        return False
    return True


def origin_kill(cluster: Cluster, duration: float, window: Window) -> None:
    time.sleep(duration / 3)
    window.start = time.monotonic()
    cluster.origins[0].kill()
    time.sleep(duration / 3)
    cluster.origins[0].start_ready()
    window.end = time.monotonic()


def postgres_restart(cluster: Cluster, duration: float, window: Window) -> None:
    time.sleep(duration / 3)
    window.start = time.monotonic()
    cluster.pg.stop()
    time.sleep(min(2.0, duration / 3))
    cluster.pg.start()
    window.end = time.monotonic()


def cut_edge_1(cluster: Cluster, window: Window, before: float, hold: float,
               cut: Callable[[FaultProxy], None]) -> None:
    """After `before` seconds, `cut` every link of edge 1 to the origins for
    `hold` seconds, then heal them."""
    time.sleep(before)
    window.start = time.monotonic()
    for proxy in cluster.proxies[1]:
        cut(proxy)
    time.sleep(hold)
    for proxy in cluster.proxies[1]:
        proxy.heal()
    window.end = time.monotonic()


def edge_partition(cluster: Cluster, duration: float, window: Window) -> None:
    # Long enough for the edge to find its event stream lost (15 s of
    # silence): its cached loads are then served as stale-if-error.
    cut_edge_1(cluster, window, duration / 3, max(duration / 3, 18.0), FaultProxy.drop)


def events_cut(cluster: Cluster, duration: float, window: Window) -> None:
    # The edge's documented rule: a stream silent for 15 s is lost.
    cut_edge_1(cluster, window, duration / 4, max(duration / 2, 17.0), FaultProxy.drop_events)


# How long recovery may take after a fault ends: an origin's restart is seen
# by the edges' health checks (200 ms) and their pools; the database's by
# the origins' probes (250 ms).
RECOVERY_S = 3.0
CONNECT_BOUND_S = (CONNECT_TIMEOUT_MS / 1000) * (RETRIES + 1) + 1.0


def database_down(a: Answer, w: Window) -> bool:
    """While PostgreSQL is down, what needs it is refused at once."""
    return w.during(a, RECOVERY_S) and a.status == 503 and a.type == "ServiceUnavailableException"


def cut_off(a: Answer, w: Window) -> bool:
    """Through the cut-off edge, while cut off: writes are refused within the
    connect timeouts (cached loads must still be served)."""
    return (a.edge == 1 and a.kind == "write" and a.status == 503 and a.seconds <= CONNECT_BOUND_S
            and w.during(a, RECOVERY_S))


SCENARIOS = {
    "origin-kill": Scenario("origin-kill", 2, 2, False, origin_kill, lambda a, w: plain_errors(a, False)),
    "origin-kill-keyed": Scenario("origin-kill-keyed", 2, 2, True, origin_kill, lambda a, w: plain_errors(a, True)),
    "postgres-restart": Scenario("postgres-restart", 2, 2, False, postgres_restart,
                                 lambda a, w: plain_errors(a, False) and not database_down(a, w)),
    "edge-partition": Scenario("edge-partition", 2, 2, False, edge_partition,
                               lambda a, w: plain_errors(a, False) and not cut_off(a, w), proxied={1}),
    "events-cut": Scenario("events-cut", 2, 2, False, events_cut, lambda a, w: plain_errors(a, False), proxied={1}),
}


def run(scenario: Scenario, cluster: Cluster, duration: float, writers: int) -> bool:
    cluster.start(scenario.origins, scenario.edges, scenario.proxied)
    urls = cluster.edge_urls
    seed = requests.Session()
    r = seed.post(f"{cluster.origin_url()}/v1/namespaces", json={"namespace": ["faults"]}, timeout=REQUEST_TIMEOUT_S)
    assert r.status_code == 200, r.text
    tables = ["contended", "cached", *(f"own-{i}" for i in range(writers))]
    schema = {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "a", "required": False, "type": "int"}]}
    for table in tables:
        r = seed.post(f"{cluster.origin_url()}/v1/namespaces/faults/tables", json={"name": table, "schema": schema},
                      timeout=REQUEST_TIMEOUT_S)
        assert r.status_code == 200, r.text
    for url in urls:  # the read-only table is in every edge's cache
        seed.get(f"{url}/v1/namespaces/faults/tables/cached", timeout=REQUEST_TIMEOUT_S)
    history = History()
    stop = threading.Event()
    threads = [threading.Thread(target=committer, args=(urls, f"own-{i}", f"w{i}", scenario.keyed, stop, history))
               for i in range(writers)]
    threads += [threading.Thread(target=committer, args=(urls, "contended", f"c{i}", scenario.keyed, stop, history, 4))
                for i in range(writers)]
    threads += [threading.Thread(target=reader, args=(urls, "cached", stop, history, [e]))
                for e in range(len(urls))]
    for t in threads:
        t.start()
    window = Window()
    scenario.inject(cluster, duration, window)
    time.sleep(max(duration / 4, RECOVERY_S + 1.0))
    stop.set()
    for t in threads:
        t.join()
    # Every part is back: the final state is read from an origin.
    wait_until("an origin ready after the fault", lambda: answers_200(f"{cluster.origin_url()}/ready"))
    lost, applied, problems = check_history(cluster, history, tables)
    writes = [a for a in history.answers if a.kind == "write"]
    avoidable = [a for a in history.answers if scenario.avoidable(a, window)]
    unknown = sum(1 for a in writes if state_unknown(a))
    doomed = sum(1 for a in writes if a.doomed and a.status == 409)
    extra = ""
    edge1_reads = [a for a in history.answers if a.kind == "read" and a.edge == 1]
    if scenario.name == "edge-partition":
        stale = sum(1 for a in edge1_reads if a.cache == "stale")
        # Once its health checks have failed (1 s of silence), the cut-off
        # edge refuses writes within the connect timeouts: none waits for a
        # read timeout on a pooled connection gone mute.
        settled = window.start + 2.0
        slow = [a for a in history.answers if a.kind == "write" and a.edge == 1
                and a.at - a.seconds >= settled and a.at <= window.end and not cut_off(a, window)]
        extra = f", stale-served {stale}, slow-refusals {len(slow)}"
        if stale == 0:
            problems.append("the cut-off edge served no cached load stale")
        if slow:
            problems.append(f"{len(slow)} writes through the cut-off edge not refused within {CONNECT_BOUND_S} s")
    if scenario.name == "events-cut":
        # The documented rule: once its stream has been silent for 15 s, the
        # edge serves nothing from its cache (it asks an origin), and serves
        # hits again once it has resubscribed.
        silent_from = window.start + 16.0
        cut_hits = sum(1 for a in edge1_reads
                       if a.cache == "hit" and silent_from <= a.at - a.seconds and a.at <= window.end)
        after = sum(1 for a in edge1_reads if a.cache == "hit" and a.at - a.seconds > window.end + RECOVERY_S)
        extra = f", hits-while-lost {cut_hits}, hits-after {after}"
        if cut_hits:
            problems.append(f"{cut_hits} cached loads served while the event stream was lost")
        if not after:
            problems.append("no cached load served after the stream came back")
    print(f"fault {scenario.name}: requests {len(history.answers)}, errors-avoidable {len(avoidable)}, "
          f"state-unknown {unknown}, acknowledged-lost {lost}, refused-applied {applied}, "
          f"refused-as-required {doomed}{extra}", flush=True)
    for a in avoidable[:5]:
        print(f"  avoidable: {a}", flush=True)
    for p in problems[:5]:
        print(f"  problem: {p}", flush=True)
    return not avoidable and lost == 0 and applied == 0 and not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="a few seconds per scenario")
    parser.add_argument("--only", action="append", default=[], choices=sorted(SCENARIOS))
    parser.add_argument("--bin-dir", default=str(REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"))
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    duration = args.seconds or (6.0 if args.short else 60.0)
    writers = 3 if args.short else 8
    names = args.only or list(SCENARIOS)
    failed = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"floe-fault-{name}-") as tmp:
            root = Path(tmp)
            os.chmod(root, 0o755)
            pg = PrivateCluster(root)
            pg.start()
            cluster = Cluster(root, Path(args.bin_dir), pg=pg)
            try:
                if not run(SCENARIOS[name], cluster, duration, writers):
                    failed.append(name)
                    for log in sorted(root.glob("*.log")):
                        print(f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-2000:]}")
            finally:
                cluster.stop()
                pg.stop_quietly()
    if failed:
        print(f"fault suite: failed: {', '.join(failed)}")
        return 1
    print("fault suite: every scenario passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
