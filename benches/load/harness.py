"""Floe's load harness (run it through benches/load/run).

Starts a PostgreSQL-backed floe-origin and floe-edge from conf/ files on
loopback (authentication on, as in production), seeds a warehouse through the
public API, then drives wrk at fixed connection counts against, side by side:
nginx serving the exact bytes of a loadTable response (the machine's limit),
the Pingora floors, the edge (cache hit, 304, the full body of a
10,000-snapshot table, token issuance, commits) and the origin directly
(loadTable, getNamespace, listNamespaces).

The steps are measured in rounds (3 in full mode): each round runs every step
once, so the steps compared by a ratio run minutes apart at most and drift of
the machine reaches both. Each figure is the median over the rounds, with its
spread (min–max); each ratio is the quotient of medians, with the range of the
per-round quotients, and says so when that range is wider than ±10 %.

With --baseline-bin-dir, a second origin and edge from another build run
beside the first (a database of their own, seeded the same way), and every
edge and origin step is measured on both, one after the other in each round
(the order swapped every round), ending in `ratio after/before …` lines: a
change's before and after from one run on one machine.

Prints a markdown report ending in `figure …` and `ratio …` lines and, in full
mode, adds it to BENCHMARKS.md. Standard library only; wrk and nginx come from
Debian's packages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO / "scripts" / "lib"))
import floeproc  # noqa: E402
from floeproc import Process, free_port, http, wait_until  # noqa: E402

PG_URL = os.environ.get("FLOE_TEST_PG_URL", floeproc.DEFAULT_ADMIN_URL)
SEED_TIMEOUT_S = 120.0
# A ratio whose per-round values leave this band around it is flagged.
RATIO_BAND = 0.10
CURRENT, BEFORE = "after", "before"


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (nginx workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def table_body(name: str, columns: int) -> bytes:
    fields = [{"id": 1, "name": "id", "required": True, "type": "long"}]
    types = ["string", "double", "long", "timestamp", "boolean", "date", "int"]
    for i in range(2, columns + 1):
        fields.append({"id": i, "name": f"c{i}", "required": False, "type": types[i % len(types)]})
    return json.dumps({"name": name, "schema": {"type": "struct", "schema-id": 0, "fields": fields}}).encode()


def snapshots(location: str, count: int, start_ms: int) -> list[dict]:
    updates: list[dict] = []
    for i in range(1, count + 1):
        snap = {
            "snapshot-id": i,
            "sequence-number": i,
            "timestamp-ms": start_ms + i,
            "manifest-list": f"{location}/metadata/snap-{i}-1-00000000-0000-0000-0000-000000000000.avro",
            "summary": {"operation": "append", "added-data-files": "1", "added-records": "100"},
            "schema-id": 0,
        }
        if i > 1:
            snap["parent-snapshot-id"] = i - 1
        updates.append({"action": "add-snapshot", "snapshot": snap})
    updates.append({"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": count})
    return updates


def wrk(url: str, conns: int, seconds: int, token: str, extra: list[str], env: dict[str, str], mode: str) -> dict:
    command = [
        "wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "floe.lua"),
        "-H", f"Authorization: Bearer {token}", *extra, url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FLOE_AUTH": token, "FLOE_MODE": mode, **env}, check=True).stdout
    match = re.search(r"^FLOE_RESULT (\{.*\})$", out, re.MULTILINE)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{out}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


# ---- an origin and an edge from one build -------------------------------------------------------


@dataclass
class Pair:
    """floe-origin and floe-edge from one build directory, on a database of
    their own, seeded; `tag` is CURRENT or BEFORE (the baseline build)."""

    tag: str
    bins: Path
    dir: Path
    database_url: str
    processes: list[Process] = field(default_factory=list)
    origin_url: str = ""
    edge_url: str = ""
    metrics_url: str = ""
    token: str = ""
    form: str = ""
    bodies: dict[str, bytes] = field(default_factory=dict)
    etag: str = ""

    def name(self, process: str) -> str:
        return process if self.tag == CURRENT else f"{process} ({BEFORE})"

    def start(self) -> None:
        origin_bin, edge_bin = str(self.bins / "floe-origin"), str(self.bins / "floe-edge")
        key = self.dir / "signing.pem"
        subprocess.run([origin_bin, "keygen", "--out", str(key)], check=True, capture_output=True)
        origin_port, edge_port, edge_metrics = free_port(), free_port(), free_port()
        auth = {"ENABLED": "true", "SIGNING_KEY__KID": "bench", "SIGNING_KEY__PATH": str(key)}
        origin_env = {
            "FLOE_DATABASE__URL": self.database_url,
            "FLOE_SERVER__LISTEN": f"127.0.0.1:{origin_port}",
            "FLOE_WAREHOUSE__LOCATION": str(self.dir / "warehouse"),
            "FLOE_LOG__LEVEL": "warn",
            **{f"FLOE_AUTH__{k}": v for k, v in auth.items()},
        }
        origin_cmd = [origin_bin, "--config", str(REPO / "conf/origin-postgres.yaml")]
        created = subprocess.run(
            [*origin_cmd, "client", "create", "--name", "bench", "--role", "admin", "--warehouse", "*"],
            env={**os.environ, **origin_env}, capture_output=True, text=True, check=True,
        ).stdout
        secret = floeproc.client_secret(created)
        self.origin_url = f"http://127.0.0.1:{origin_port}"
        origin = Process(self.name("origin"), [*origin_cmd, "serve"], self.dir / "origin.log", origin_env, cwd=self.dir)
        self.processes.append(origin.start())
        origin.wait_ready(f"{self.origin_url}/ready")
        edge_env = {
            "FLOE_EDGE_METRICS_LISTEN": f"127.0.0.1:{edge_metrics}",
            "FLOE_EDGE_SERVER__PID_FILE": str(self.dir / "edge.pid"),
            "FLOE_EDGE_SERVER__UPGRADE_SOCK": str(self.dir / "edge-upgrade.sock"),
            "FLOE_EDGE_LOG__LEVEL": "warn",
            "FLOE_EDGE_AUTH__RATE_LIMIT__FAILURES_PER_ADDRESS_PER_MINUTE": "1000000",
            **{f"FLOE_EDGE_AUTH__{k}": v for k, v in auth.items()},
        }
        edge = Process(
            self.name("edge"),
            [edge_bin, "--config", str(REPO / "conf/edge.yaml"), "--listen", f"127.0.0.1:{edge_port}", "--origin", f"127.0.0.1:{origin_port}"],
            self.dir / "edge.log", edge_env, cwd=self.dir,
        )
        self.processes.append(edge.start())
        self.edge_url = f"http://127.0.0.1:{edge_port}"
        self.metrics_url = f"http://127.0.0.1:{edge_metrics}/metrics"
        edge.wait_ready(f"http://127.0.0.1:{edge_metrics}/health")
        wait_until(f"{edge.name} subscribed to events", lambda: floeproc.subscribed(self.metrics_url), process=edge)
        self.form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "bench", "client_secret": secret})
        status, body = http("POST", f"{self.edge_url}/v1/oauth/tokens", self.form.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, body
        self.token = json.loads(body)["access_token"]

    def seed(self) -> None:
        """Namespaces, 20- and 200-column tables with one snapshot, a
        10,000-snapshot table, and tables to commit to; then t20 and h10k
        loaded through the edge (cached there; their bytes kept)."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

        def post(path: str, payload: bytes) -> bytes:
            status, reply = http("POST", f"{self.edge_url}{path}", payload, headers, SEED_TIMEOUT_S)
            assert status in (200, 204), (path, status, reply[:300])
            return reply

        for i in range(20):
            post("/v1/namespaces", json.dumps({"namespace": [f"ns{i:02d}"], "properties": {"owner": "bench"}}).encode())
        post("/v1/namespaces", json.dumps({"namespace": ["bench"], "properties": {"owner": "bench"}}).encode())
        now_ms = int(time.time() * 1000)
        for name, columns, count in (("t20", 20, 1), ("t200", 200, 1), ("h10k", 20, 10_000)):
            location = json.loads(post("/v1/namespaces/bench/tables", table_body(name, columns)))["metadata"]["location"]
            updates = snapshots(location, count, now_ms)
            post(f"/v1/namespaces/bench/tables/{name}", json.dumps({"requirements": [], "updates": updates}).encode())
        for i in range(64):
            post("/v1/namespaces/bench/tables", table_body(f"c{i}", 20))
        for name in ("t20", "h10k"):
            status, data = http("GET", f"{self.edge_url}/v1/namespaces/bench/tables/{name}", headers=headers, timeout=SEED_TIMEOUT_S)
            assert status == 200
            self.bodies[name] = data
        request = urllib.request.Request(f"{self.edge_url}/v1/namespaces/bench/tables/t20", headers=headers)
        with urllib.request.urlopen(request) as response:
            self.etag = response.headers["ETag"]

    def pool_idle(self) -> dict[str, int]:
        def total(url: str) -> int:
            text = http("GET", url)[1].decode()
            return sum(int(float(v)) for v in re.findall(r"^floe_pool_idle_bytes\{[^}]*\} (\S+)$", text, re.MULTILINE))

        return {self.name("origin"): total(f"{self.origin_url}/metrics"), self.name("edge"): total(self.metrics_url)}


# ---- steps, rounds and their statistics ---------------------------------------------------------


@dataclass
class Step:
    """One wrk workload. `server` is who answers: nginx, floor, core-floor
    (shared by both builds) or edge, origin (one per build)."""

    key: str
    label: str
    server: str
    path: str
    mode: str = "get"
    env: dict[str, str] = field(default_factory=dict)
    # Sends the ETag the build's edge gave for t20 (If-None-Match).
    conditional: bool = False

    def per_build(self) -> bool:
        return self.server in ("edge", "origin")


def steps(h10k_kib: int) -> list[Step]:
    t20, h10k = "/v1/namespaces/bench/tables/t20", "/v1/namespaces/bench/tables/h10k"
    return [
        Step("nginx-t20", "nginx: static loadTable bytes (t20)", "nginx", "/t20.json"),
        Step("pingora-floor", "pingora floor: bare proxy answering the t20 bytes", "floor", "/t20.json"),
        Step("pingora-core-floor", "pingora-core floor: bare HTTP server answering the t20 bytes", "core-floor", "/t20.json"),
        Step("edge-hit", "edge: loadTable, cache hit (t20)", "edge", t20),
        Step("edge-304", "edge: loadTable, 304 (t20)", "edge", t20, conditional=True),
        Step("origin-load", "origin: loadTable (t20)", "origin", t20),
        Step("origin-refs-1", "origin: loadTable refs, 1 snapshot (t20)", "origin", f"{t20}?snapshots=refs"),
        Step("origin-refs-10k", "origin: loadTable refs, 10,000 snapshots (h10k)", "origin", f"{h10k}?snapshots=refs"),
        Step("origin-get-namespace", "origin: getNamespace", "origin", "/v1/namespaces/bench"),
        Step("origin-list-namespaces", "origin: listNamespaces", "origin", "/v1/namespaces"),
        Step("nginx-h10k", f"nginx: static bytes of h10k ({h10k_kib} KiB)", "nginx", "/h10k.json"),
        Step("edge-hit-10k", "edge: loadTable full body, cache hit (h10k)", "edge", h10k),
        Step("edge-token", "edge: token issuance (repeat client)", "edge", "/v1/oauth/tokens", mode="token"),
        Step("commit-floor", "commit floor: file created and synced, one PostgreSQL UPDATE (t20 bytes), 64 tables", "commit-floor", "/v1/namespaces/bench/tables/c%d", mode="commit", env={"FLOE_TABLES": "64"}),
        Step("commits-64-tables", "edge: commits, 64 tables", "edge", "/v1/namespaces/bench/tables/c%d", mode="commit", env={"FLOE_TABLES": "64"}),
        Step("commits-one-table", "edge: commits, one contended table", "edge", "/v1/namespaces/bench/tables/c%d", mode="commit", env={"FLOE_TABLES": "1"}),
    ]


# Ratios from the current build: (name, numerator step, denominator step).
# load-10k/load-1 is time per request: the 1-snapshot rate over the 10k one.
RATIOS_64 = [
    ("edge-hit/nginx", "edge-hit", "nginx-t20"),
    ("edge-hit/pingora-floor", "edge-hit", "pingora-floor"),
    ("pingora-floor/nginx", "pingora-floor", "nginx-t20"),
    ("pingora-core-floor/nginx", "pingora-core-floor", "nginx-t20"),
    ("edge-hit/origin", "edge-hit", "origin-load"),
    ("load-10k-snapshots/load-1-snapshot", "origin-refs-1", "origin-refs-10k"),
    ("edge-304/nginx", "edge-304", "nginx-t20"),
    ("edge-hit-10k-snapshots/nginx", "edge-hit-10k", "nginx-h10k"),
]
RATIOS_16 = [
    ("commits-one-table/commits-64-tables", "commits-one-table", "commits-64-tables"),
    ("edge-hit/pingora-core-floor", "edge-hit", "pingora-core-floor"),
    ("commits-64-tables/commit-floor", "commits-64-tables", "commit-floor"),
]
# Figures (req/s medians) from the current build: (name, step).
FIGURES_16 = [("commits-64-tables", "commits-64-tables")]


class Results:
    """wrk results by (step key, build tag, connections), one per round in order."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str, int], list[dict]] = defaultdict(list)

    def add(self, key: str, tag: str, conns: int, result: dict) -> None:
        self.runs[(key, tag, conns)].append(result)

    def rps(self, key: str, tag: str, conns: int) -> list[float]:
        return [r["rps"] for r in self.runs.get((key, tag, conns), [])]

    def all(self) -> list[dict]:
        return [r for runs in self.runs.values() for r in runs]


def span(values: list[float], digits: int) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


def ratio_line(name: str, num: list[float], den: list[float]) -> str | None:
    """`ratio NAME: X (range LO–HI)` from medians; the range is that of the
    per-round quotients (both figures of a round measured minutes apart)."""
    if not num or not den or len(num) != len(den) or min(den) <= 0:
        return None
    value = statistics.median(num) / statistics.median(den)
    rounds = [a / b for a, b in zip(num, den)]
    if len(rounds) == 1:
        return f"ratio {name}: {value:.2f} (one round: no range)"
    wide = min(rounds) < value * (1 - RATIO_BAND) or max(rounds) > value * (1 + RATIO_BAND)
    note = f", wider than ±{RATIO_BAND:.0%}".replace("%", " %") if wide else ""
    return f"ratio {name}: {value:.2f} (range {span(rounds, 2)}{note})"


# ---- the run ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--short", action="store_true", help="smoke mode: 1 round of 2 s per step, nothing recorded")
    parser.add_argument("--rounds", type=int, help="rounds of every step (default 3; 1 with --short)")
    parser.add_argument("--seconds", type=int, help="seconds per step and round (default 10; 2 with --short)")
    parser.add_argument("--baseline-bin-dir", metavar="DIR", help="another build's floe-origin and floe-edge: "
                        "measure its edge and origin steps beside this build's, in the same rounds, and print "
                        "`ratio after/before …` lines")
    parser.add_argument("--only", metavar="STEP", action="append", help="run only the steps whose label starts with STEP (repeatable); nothing is recorded")
    parser.add_argument("--perf", metavar="STEP", help="record the serving process with perf during the steps whose label starts with STEP (first round); prints the hottest symbols")
    parser.add_argument("--perf-keep", metavar="DIR", help="with --perf: keep each recording as DIR/<step>-c<conns>.data, for perf report with call graphs")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.short else 3)
    args.seconds = args.seconds or (2 if args.short else 10)
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    bins = (REPO / args.bin_dir).resolve()
    baseline = (REPO / args.baseline_bin_dir).resolve() if args.baseline_bin_dir else None
    for directory in filter(None, (bins, baseline)):
        for binary in ("floe-origin", "floe-edge"):
            if not (directory / binary).is_file():
                parser.error(f"{directory / binary} not found")
    tmp = Path(tempfile.mkdtemp(prefix="floe-load-"))
    # nginx workers run as an unprivileged user: they must read the files.
    tmp.chmod(0o755)
    processes: list[Process] = []
    databases: list[str] = []
    try:
        pairs = []
        for tag, directory in ((CURRENT, bins), (BEFORE, baseline)):
            if directory is None:
                continue
            name, url = floeproc.create_database(PG_URL, "floe_bench")
            databases.append(name)
            (tmp / tag).mkdir()
            pair = Pair(tag, directory, tmp / tag, url, processes)
            pair.start()
            pair.seed()
            pairs.append(pair)
        # The commit floor's pointer rows live in a database of their own.
        name, floor_url = floeproc.create_database(PG_URL, "floe_floor")
        databases.append(name)
        run(args, bins, tmp, pairs, processes, floor_url)
    finally:
        floeproc.stop_all(processes)
        for name in databases:
            floeproc.drop_database(PG_URL, name)
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, bins: Path, tmp: Path, pairs: list[Pair], processes: list[Process], floor_url: str) -> None:
    current = pairs[0]
    # nginx serves the exact bytes the edge serves.
    root = tmp / "www"
    root.mkdir()
    for name, data in current.bodies.items():
        (root / f"{name}.json").write_bytes(data)
    sizes = {name: len(data) for name, data in current.bodies.items()}
    nginx_port = free_port()
    nginx_conf = tmp / "nginx.conf"
    nginx_conf.write_text(f"""
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/json;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  server {{ listen 127.0.0.1:{nginx_port}; root {root}; }}
}}
""")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    shared = {"nginx": Process("nginx", [nginx_bin, "-c", str(nginx_conf), "-p", str(tmp)], tmp / "nginx.log", cwd=tmp)}
    # The framework's floor: a bare Pingora proxy answering the same bytes
    # with the edge's server settings (edge/examples/pingora_floor.rs), and
    # the same answer from pingora-core's server loop without the proxy layer.
    edge_conf = (REPO / "conf/edge.yaml").read_text()
    threads = re.search(r"^\s+threads:\s*(\d+)", edge_conf, re.MULTILINE).group(1)
    stealing = re.search(r"^\s+work_stealing:\s*(\w+)", edge_conf, re.MULTILINE).group(1)
    floor_bin = str(bins / "examples" / "pingora_floor")
    floor_port, core_port = free_port(), free_port()
    shared["floor"] = Process("floor", [floor_bin, f"127.0.0.1:{floor_port}", str(root / "t20.json"), threads, stealing], tmp / "floor.log", cwd=tmp)
    shared["core-floor"] = Process("core-floor", [floor_bin, f"127.0.0.1:{core_port}", str(root / "t20.json"), threads, stealing, "server"], tmp / "core-floor.log", cwd=tmp)
    # The storage floor of a commit: a new file synced to disk and one
    # compare-and-set UPDATE in PostgreSQL per request, nothing else
    # (origin/examples/commit_floor.rs), on the same disk and database server.
    commit_floor_port = free_port()
    (tmp / "commit-floor").mkdir()
    shared["commit-floor"] = Process(
        "commit-floor",
        [str(bins / "examples" / "commit_floor"), f"127.0.0.1:{commit_floor_port}", floor_url, str(tmp / "commit-floor"), str(root / "t20.json")],
        tmp / "commit-floor.log", cwd=tmp,
    )
    ports = {"nginx": nginx_port, "floor": floor_port, "core-floor": core_port, "commit-floor": commit_floor_port}
    for name, process in shared.items():
        processes.append(process.start())
        ready = "/ready" if name == "commit-floor" else "/t20.json"
        process.wait_ready(f"http://127.0.0.1:{ports[name]}{ready}")

    pids = {p.name: p.pid for p in processes}
    idle = {name: rss_kib(pid) for name, pid in pids.items()}
    peak = dict(idle)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    plan = steps(sizes["h10k"] // 1024)
    if args.only:
        plan = [s for s in plan if any(s.label.startswith(prefix) for prefix in args.only)]
    conn_counts = [16, 64]
    results = Results()

    def measure(step: Step, pair: Pair, conns: int, round_index: int) -> None:
        if step.per_build():
            base = pair.edge_url if step.server == "edge" else pair.origin_url
        else:
            base = f"http://127.0.0.1:{ports[step.server]}"
        env = dict(step.env)
        extra = ["-H", f"If-None-Match: {pair.etag}"] if step.conditional else []
        target = base + step.path
        if step.mode == "commit":
            env["FLOE_PATH"] = step.path
            target = base + step.path.replace("%d", "0")
        elif step.mode == "token":
            env["FLOE_FORM"] = pair.form
        recorder = None
        if args.perf and step.label.startswith(args.perf) and pair.tag == CURRENT and round_index == 0:
            process = pair.name(step.server) if step.per_build() else step.server
            recorder = subprocess.Popen(
                ["perf", "record", "-F", "999", "-g", "-p", str(pids[process]), "-o", str(tmp / "perf.data")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        result = wrk(target, conns, args.seconds, pair.token, extra, env, step.mode)
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait()
            top = subprocess.run(
                ["perf", "report", "-i", str(tmp / "perf.data"), "--stdio", "--no-children", "--percent-limit", "1.5", "-g", "none"],
                capture_output=True, text=True,
            ).stdout
            print(f"--- perf: {step.label} c={conns} ---\n{top}", file=sys.stderr)
            if args.perf_keep:
                kept = Path(args.perf_keep)
                kept.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(tmp / "perf.data", kept / f"{step.key}-c{conns}.data")
        results.add(step.key, pair.tag, conns, result)
        label = step.label if pair.tag == CURRENT else f"{step.label} [{BEFORE}]"
        print(f"round {round_index + 1}/{args.rounds} {label} c={conns}: {result['rps']:.0f} req/s p99 {result['p99'] / 1000:.2f} ms", file=sys.stderr)

    for round_index in range(args.rounds):
        # Builds measured one after the other, the order swapped every
        # round so that neither always runs first.
        order = pairs if round_index % 2 == 0 else pairs[::-1]
        for step in plan:
            for conns in conn_counts:
                for pair in order if step.per_build() else [current]:
                    measure(step, pair, conns, round_index)
    sampling.set()
    sampler.join()

    pool: dict[str, int] = {}
    for pair in pairs:
        pool.update(pair.pool_idle())
    report(args, plan, conn_counts, pairs, results, idle, peak, pool, sizes)


def report(args, plan: list[Step], conn_counts: list[int], pairs: list[Pair], results: Results, idle, peak, pool, sizes) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.machine())
    against = f", against the build in {args.baseline_bin_dir} ({BEFORE})" if len(pairs) > 1 else ""
    rounds = (f"{args.rounds} rounds of {args.seconds} s per step (each round runs every step once; "
              "figures are medians over the rounds, with their min–max)") if args.rounds > 1 else f"{args.seconds} s per step"
    lines = [
        f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}{' (dirty)' if dirty else ''}, {'short' if args.short else 'full'} mode{against}",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB; "
        f"wrk (2 threads) shares the cores with the servers; {rounds}; PostgreSQL on the same machine; "
        f"authentication on (every request carries a bearer token). Bodies: t20 {sizes['t20']} B, h10k {sizes['h10k']} B.",
        "",
        "| Step | Conns | req/s | req/s min–max | p50 ms | p99 ms | p99.9 ms | socket errors | non-2xx/3xx | 409 | 5xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for step in plan:
        for conns in conn_counts:
            for pair in pairs if step.per_build() else pairs[:1]:
                runs = results.runs.get((step.key, pair.tag, conns))
                if not runs:
                    continue
                label = step.label if pair.tag == CURRENT else f"{step.label} [{BEFORE}]"

                def med(field_name: str) -> float:
                    return statistics.median(r[field_name] for r in runs) / 1000

                def total(field_name: str) -> int:
                    return sum(r.get(field_name, 0) for r in runs)

                rps = [r["rps"] for r in runs]
                lines.append(
                    f"| {label} | {conns} | {statistics.median(rps):.0f} | {span(rps, 0)} | {med('p50'):.2f} | {med('p99'):.2f} | {med('p999'):.2f} | "
                    f"{total('errors')} | {total('status_errors')} | {total('c409')} | {total('c5xx')} |"
                )
    lines += [
        "",
        "| Process | RSS idle (MiB) | RSS peak under load (MiB) | pool idle bytes after load |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in idle:
        lines.append(f"| {name} | {idle[name] / 1024:.1f} | {peak[name] / 1024:.1f} | {pool.get(name, '')} |")

    def ratios(table: list[tuple[str, str, str]], conns: int) -> list[str]:
        out = [ratio_line(name, results.rps(num, CURRENT, conns), results.rps(den, CURRENT, conns)) for name, num, den in table]
        return [line for line in out if line]

    figures = []
    for name, key in FIGURES_16:
        values = results.rps(key, CURRENT, 16)
        if values:
            spread = f" (range {span(values, 0)})" if len(values) > 1 else ""
            figures.append(f"figure {name}: {statistics.median(values):.0f}{spread}")
    lines += [
        "",
        "Ratios at 64 connections (load-10k/load-1 is time per request: higher is slower); each is the quotient of the "
        "medians, and its range that of the rounds' own quotients:",
        "",
        "```",
        *ratios(RATIOS_64, 64),
        "```",
        "",
        "At 16 connections (figures in requests, here commits, per second):",
        "",
        "```",
        *figures,
        *ratios(RATIOS_16, 16),
        "```",
        "",
    ]
    if len(pairs) > 1:
        after_before = [
            ratio_line(f"after/before {step.key} c={conns}", results.rps(step.key, CURRENT, conns), results.rps(step.key, BEFORE, conns))
            for step in plan if step.per_build() for conns in conn_counts
        ]
        lines += [
            f"This build (after) against {args.baseline_bin_dir} (before), same steps in the same rounds, req/s:",
            "",
            "```",
            *[line for line in after_before if line],
            "```",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    fives = sum(r.get("c5xx", 0) for r in results.all())
    if fives:
        raise SystemExit(f"{fives} responses were 5xx")
    if not args.short and not args.only:
        record(text)


def record(text: str) -> None:
    """Adds the report to BENCHMARKS.md after the last load run: before the
    "## Soak" section when there is one, at the end otherwise."""
    path = REPO / "BENCHMARKS.md"
    content = path.read_text()
    marker = "\n## Soak\n"
    at = content.find(marker)
    if at < 0:
        content = content + "\n" + text
    else:
        content = content[:at] + "\n" + text + content[at:]
    path.write_text(content)


if __name__ == "__main__":
    main()
