"""Floe's load harness (run it through benches/load/run).

Starts a PostgreSQL-backed floe-origin and floe-edge from conf/ files on
loopback (authentication on, as in production), seeds a warehouse through the
public API, then drives wrk at fixed connection counts against, side by side:
nginx serving the exact bytes of a loadTable response (the machine's limit),
the edge (cache hit, 304, the full body of a 10,000-snapshot table, token
issuance, commits) and the origin directly (loadTable, getNamespace,
listNamespaces). Prints a markdown report ending in `ratio …` lines and, in
full mode, appends it to BENCHMARKS.md.

Standard library only; wrk and nginx come from Debian's packages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("FLOE_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what: str, check, timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


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


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


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


class Stack:
    """Processes of one run; stopped on exit."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wrk(url: str, conns: int, seconds: int, token: str, extra: list[str] | None = None, env: dict[str, str] | None = None, mode: str = "get") -> dict:
    command = [
        "wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / "floe.lua"),
        "-H", f"Authorization: Bearer {token}", *(extra or []), url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FLOE_AUTH": token, "FLOE_MODE": mode, **(env or {})}, check=True).stdout
    match = re.search(r"^FLOE_RESULT (\{.*\})$", out, re.MULTILINE)
    if not match:
        raise SystemExit(f"wrk printed no result:\n{out}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--short", action="store_true", help="smoke mode: 2 s per step, nothing recorded")
    parser.add_argument("--only", metavar="STEP", action="append", help="run only the steps whose label starts with STEP (repeatable); nothing is recorded")
    parser.add_argument("--perf", metavar="STEP", help="record the serving process with perf during the steps whose label starts with STEP; prints the hottest symbols")
    args = parser.parse_args()
    seconds = 2 if args.short else 10
    conn_counts = [16, 64]
    bins = (REPO / args.bin_dir).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="floe-load-"))
    # nginx workers run as an unprivileged user: they must read the files.
    tmp.chmod(0o755)
    database = f"floe_bench_{secrets.token_hex(4)}"
    db_url = urllib.parse.urlunsplit(urllib.parse.urlsplit(PG_URL)._replace(path=f"/{database}"))
    psql(PG_URL, f'CREATE DATABASE "{database}"')
    stack = Stack(tmp)
    try:
        run(args, seconds, conn_counts, bins, tmp, db_url, stack)
    finally:
        stack.stop()
        psql(PG_URL, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, seconds: int, conn_counts: list[int], bins: Path, tmp: Path, db_url: str, stack: Stack) -> None:
    origin_bin, edge_bin = str(bins / "floe-origin"), str(bins / "floe-edge")
    key = tmp / "signing.pem"
    subprocess.run([origin_bin, "keygen", "--out", str(key)], check=True, capture_output=True)
    origin_port, edge_port, edge_metrics, nginx_port = free_port(), free_port(), free_port(), free_port()
    auth = {"ENABLED": "true", "SIGNING_KEY__KID": "bench", "SIGNING_KEY__PATH": str(key)}
    origin_env = {
        "FLOE_DATABASE__URL": db_url,
        "FLOE_SERVER__LISTEN": f"127.0.0.1:{origin_port}",
        "FLOE_WAREHOUSE__LOCATION": str(tmp / "warehouse"),
        "FLOE_LOG__LEVEL": "warn",
        **{f"FLOE_AUTH__{k}": v for k, v in auth.items()},
    }
    origin_cmd = [origin_bin, "--config", str(REPO / "conf/origin-postgres.yaml")]
    created = subprocess.run(
        [*origin_cmd, "client", "create", "--name", "bench", "--role", "admin", "--warehouse", "*"],
        env={**os.environ, **origin_env}, capture_output=True, text=True, check=True,
    ).stdout
    secret = re.search(r"client_secret: (\S+)", created).group(1)
    origin = stack.start("origin", [*origin_cmd, "serve"], origin_env)
    origin_url = f"http://127.0.0.1:{origin_port}"
    wait_until("origin", lambda: answers(f"{origin_url}/ready"))
    edge_env = {
        "FLOE_EDGE_METRICS_LISTEN": f"127.0.0.1:{edge_metrics}",
        "FLOE_EDGE_SERVER__PID_FILE": str(tmp / "edge.pid"),
        "FLOE_EDGE_SERVER__UPGRADE_SOCK": str(tmp / "edge-upgrade.sock"),
        "FLOE_EDGE_LOG__LEVEL": "warn",
        "FLOE_EDGE_AUTH__RATE_LIMIT__FAILURES_PER_ADDRESS_PER_MINUTE": "1000000",
        **{f"FLOE_EDGE_AUTH__{k}": v for k, v in auth.items()},
    }
    edge = stack.start(
        "edge",
        [edge_bin, "--config", str(REPO / "conf/edge.yaml"), "--listen", f"127.0.0.1:{edge_port}", "--origin", f"127.0.0.1:{origin_port}"],
        edge_env,
    )
    edge_url = f"http://127.0.0.1:{edge_port}"
    metrics_url = f"http://127.0.0.1:{edge_metrics}/metrics"
    wait_until("edge", lambda: answers(f"http://127.0.0.1:{edge_metrics}/health"))
    wait_until("edge events", lambda: "floe_edge_event_stream_up 1" in http("GET", metrics_url)[1].decode())

    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "bench", "client_secret": secret}).encode()
    status, body = http("POST", f"{edge_url}/v1/oauth/tokens", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    token = json.loads(body)["access_token"]
    auth_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(path: str, payload: bytes) -> bytes:
        status, reply = http("POST", f"{edge_url}{path}", payload, auth_headers)
        assert status in (200, 204), (path, status, reply[:300])
        return reply

    # Seed: namespaces, 20- and 200-column tables with one snapshot, a
    # 10,000-snapshot table, and tables to commit to.
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

    # nginx serves the exact bytes the edge serves.
    root = tmp / "www"
    root.mkdir()
    sizes = {}
    for name in ("t20", "h10k"):
        status, data = http("GET", f"{edge_url}/v1/namespaces/bench/tables/{name}", headers=auth_headers)
        assert status == 200
        (root / f"{name}.json").write_bytes(data)
        sizes[name] = len(data)
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
    nginx = stack.start("nginx", [nginx_bin, "-c", str(nginx_conf), "-p", str(tmp)], {})
    nginx_url = f"http://127.0.0.1:{nginx_port}"
    wait_until("nginx", lambda: answers(f"{nginx_url}/t20.json"))
    # The framework's floor: a bare Pingora proxy answering the same bytes
    # with the edge's server settings (edge/examples/pingora_floor.rs), and
    # the same answer from pingora-core's server loop without the proxy layer.
    edge_conf = (REPO / "conf/edge.yaml").read_text()
    threads = re.search(r"^\s+threads:\s*(\d+)", edge_conf, re.MULTILINE).group(1)
    stealing = re.search(r"^\s+work_stealing:\s*(\w+)", edge_conf, re.MULTILINE).group(1)
    floor_port = free_port()
    floor = stack.start("floor", [str(bins / "examples" / "pingora_floor"), f"127.0.0.1:{floor_port}", str(root / "t20.json"), threads, stealing], {})
    floor_url = f"http://127.0.0.1:{floor_port}"
    wait_until("pingora floor", lambda: answers(f"{floor_url}/t20.json"))
    core_port = free_port()
    core = stack.start("core-floor", [str(bins / "examples" / "pingora_floor"), f"127.0.0.1:{core_port}", str(root / "t20.json"), threads, stealing, "server"], {})
    core_url = f"http://127.0.0.1:{core_port}"
    wait_until("pingora-core floor", lambda: answers(f"{core_url}/t20.json"))
    request = urllib.request.Request(f"{edge_url}/v1/namespaces/bench/tables/t20", headers=auth_headers)
    with urllib.request.urlopen(request) as response:
        etag = response.headers["ETag"]

    pids = {"origin": origin.pid, "edge": edge.pid, "nginx": nginx.pid, "floor": floor.pid, "core-floor": core.pid}
    idle = {name: rss_kib(pid) for name, pid in pids.items()}
    peak = dict(idle)
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.25):
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    steps = [
        ("nginx: static loadTable bytes (t20)", f"{nginx_url}/t20.json", [], {}, "get"),
        ("pingora floor: bare proxy answering the t20 bytes", f"{floor_url}/t20.json", [], {}, "get"),
        ("pingora-core floor: bare HTTP server answering the t20 bytes", f"{core_url}/t20.json", [], {}, "get"),
        ("edge: loadTable, cache hit (t20)", f"{edge_url}/v1/namespaces/bench/tables/t20", [], {}, "get"),
        ("edge: loadTable, 304 (t20)", f"{edge_url}/v1/namespaces/bench/tables/t20", ["-H", f"If-None-Match: {etag}"], {}, "get"),
        ("origin: loadTable (t20)", f"{origin_url}/v1/namespaces/bench/tables/t20", [], {}, "get"),
        ("origin: loadTable refs, 1 snapshot (t20)", f"{origin_url}/v1/namespaces/bench/tables/t20?snapshots=refs", [], {}, "get"),
        ("origin: loadTable refs, 10,000 snapshots (h10k)", f"{origin_url}/v1/namespaces/bench/tables/h10k?snapshots=refs", [], {}, "get"),
        ("origin: getNamespace", f"{origin_url}/v1/namespaces/bench", [], {}, "get"),
        ("origin: listNamespaces", f"{origin_url}/v1/namespaces", [], {}, "get"),
        (f"nginx: static bytes of h10k ({sizes['h10k'] // 1024} KiB)", f"{nginx_url}/h10k.json", [], {}, "get"),
        ("edge: loadTable full body, cache hit (h10k)", f"{edge_url}/v1/namespaces/bench/tables/h10k", [], {}, "get"),
        ("edge: token issuance (repeat client)", f"{edge_url}/v1/oauth/tokens", [], {"FLOE_FORM": form.decode()}, "token"),
        ("edge: commits, 64 tables", f"{edge_url}/v1/namespaces/bench/tables/c%d", [], {"FLOE_TABLES": "64"}, "commit"),
        ("edge: commits, one contended table", f"{edge_url}/v1/namespaces/bench/tables/c%d", [], {"FLOE_TABLES": "1"}, "commit"),
    ]
    results: list[tuple[str, int, dict]] = []
    if args.only:
        steps = [s for s in steps if any(s[0].startswith(prefix) for prefix in args.only)]
    for label, url, extra, env, mode in steps:
        for conns in conn_counts:
            target = url.replace("%d", "0") if mode == "commit" else url
            if mode == "commit":
                env = {**env, "FLOE_PATH": urllib.parse.urlsplit(url).path}
            recorder = None
            if args.perf and label.startswith(args.perf):
                process = {"nginx": "nginx", "pingora floor": "floor", "pingora-core floor": "core-floor"}.get(label.split(":")[0], label.split(":")[0])
                recorder = subprocess.Popen(
                    ["perf", "record", "-F", "999", "-g", "-p", str(pids[process]), "-o", str(tmp / "perf.data")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            result = wrk(target, conns, seconds, token, extra, env, mode)
            if recorder is not None:
                recorder.send_signal(signal.SIGINT)
                recorder.wait()
                top = subprocess.run(
                    ["perf", "report", "-i", str(tmp / "perf.data"), "--stdio", "--no-children", "--percent-limit", "1.5", "-g", "none"],
                    capture_output=True, text=True,
                ).stdout
                print(f"--- perf: {label} c={conns} ---\n{top}", file=sys.stderr)
            results.append((label, conns, result))
            print(f"{label} c={conns}: {result['rps']:.0f} req/s p99 {result['p99'] / 1000:.2f} ms", file=sys.stderr)
    sampling.set()
    sampler.join()

    def pool_idle(url: str) -> int:
        text = http("GET", url)[1].decode()
        return sum(int(float(v)) for v in re.findall(r"^floe_pool_idle_bytes\{[^}]*\} (\S+)$", text, re.MULTILINE))

    pool = {"origin": pool_idle(f"{origin_url}/metrics"), "edge": pool_idle(metrics_url)}
    report(args, seconds, results, idle, peak, pool, sizes)


def rps(results, label_start: str, conns: int) -> float:
    for label, c, r in results:
        if label.startswith(label_start) and c == conns:
            return r["rps"]
    return float("nan")


def report(args, seconds: int, results, idle, peak, pool, sizes) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.machine())
    lines = [
        f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}{' (dirty)' if dirty else ''}, {'short' if args.short else 'full'} mode",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB; "
        f"wrk (2 threads) shares the cores with the servers; {seconds} s per step; PostgreSQL on the same machine; "
        f"authentication on (every request carries a bearer token). Bodies: t20 {sizes['t20']} B, h10k {sizes['h10k']} B.",
        "",
        "| Step | Conns | req/s | p50 ms | p99 ms | p99.9 ms | socket errors | non-2xx/3xx | 409 | 5xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, conns, r in results:
        lines.append(
            f"| {label} | {conns} | {r['rps']:.0f} | {r['p50'] / 1000:.2f} | {r['p99'] / 1000:.2f} | {r['p999'] / 1000:.2f} | "
            f"{r['errors']} | {r['status_errors']} | {r.get('c409', 0)} | {r.get('c5xx', 0)} |"
        )
    lines += [
        "",
        "| Process | RSS idle (MiB) | RSS peak under load (MiB) | pool idle bytes after load |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("origin", "edge", "nginx", "floor", "core-floor"):
        lines.append(f"| {name} | {idle[name] / 1024:.1f} | {peak[name] / 1024:.1f} | {pool.get(name, '')} |")
    c = 64
    ratios = [
        ("edge-hit/nginx", rps(results, "edge: loadTable, cache hit", c) / rps(results, "nginx: static loadTable", c)),
        ("edge-hit/pingora-floor", rps(results, "edge: loadTable, cache hit", c) / rps(results, "pingora floor", c)),
        ("pingora-floor/nginx", rps(results, "pingora floor", c) / rps(results, "nginx: static loadTable", c)),
        ("pingora-core-floor/nginx", rps(results, "pingora-core floor", c) / rps(results, "nginx: static loadTable", c)),
        ("edge-hit/origin", rps(results, "edge: loadTable, cache hit", c) / rps(results, "origin: loadTable (t20)", c)),
        (
            "load-10k-snapshots/load-1-snapshot",
            rps(results, "origin: loadTable refs, 1 snapshot", c) / rps(results, "origin: loadTable refs, 10,000", c),
        ),
        ("edge-304/nginx", rps(results, "edge: loadTable, 304", c) / rps(results, "nginx: static loadTable", c)),
        ("edge-hit-10k-snapshots/nginx", rps(results, "edge: loadTable full body", c) / rps(results, "nginx: static bytes of h10k", c)),
    ]
    lines += ["", "Ratios at 64 connections (load-10k/load-1 is time per request: higher is slower):", "", "```"]
    lines += [f"ratio {name}: {value:.2f}" for name, value in ratios]
    lines += ["```", ""]
    text = "\n".join(lines)
    print(text)
    fives = sum(r.get("c5xx", 0) for _, _, r in results)
    if fives:
        raise SystemExit(f"{fives} responses were 5xx")
    if not args.short and not args.only:
        with (REPO / "BENCHMARKS.md").open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
