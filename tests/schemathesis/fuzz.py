"""Fuzz a real Floe server with Schemathesis against the official Iceberg REST spec.

For one catalog backend: start the all-in-one ``floe`` binary (edge in front of
origin) on free loopback ports with a fresh data directory (and, for postgres,
a private database created and dropped on ``FLOE_TEST_PG_URL``), check that the
spec's operations are exactly the ones the server advertises, seed a
namespace, tables and a view, run ``st run`` over every operation with the
settings of ``schemathesis.toml`` beside this file, and stop the server by pid.

Failures not listed in ``baseline.json`` (each entry with a ``reason``) fail
the run. Prints one summary line:
``schemathesis <backend>: operations N, cases M, failures F``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "scripts" / "lib"))
import floeproc  # noqa: E402

SPEC = HERE / "rest-catalog-open-api.yaml"
CONFIG = HERE / "schemathesis.toml"
BASELINE = HERE / "baseline.json"
WAREHOUSE = "default"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
METHODS = ("get", "put", "post", "delete", "head", "patch", "options")
# Operations the spec has that are not catalog endpoints, so never in the
# config response's `endpoints`: the config itself and the token endpoint.
NOT_ADVERTISED = {"GET /v1/config", "POST /v1/oauth/tokens"}

# The seeded objects the fuzzer is pointed at (see schemathesis.toml).
NAMESPACE = "st"
DROP_NAMESPACE = "st_drop"
TABLE = "t1"
DROP_TABLE = "t_drop"
UNREGISTER_TABLE = "t_unregister"
VIEW = "v1"
DROP_VIEW = "v_drop"


class RunError(Exception):
    """The run could not be carried out (as opposed to a finding)."""


def start_server(binary: Path, database_url: str, state_dir: Path) -> tuple[str, floeproc.Process]:
    """``floe serve`` (edge + origin) on free ports, ready: (its URL, the process)."""
    url, process = floeproc.floe_serve(binary, database_url, state_dir)
    try:
        process.wait_ready(f"{url}/ready", READY_TIMEOUT_S)
    except floeproc.NotReady as exc:
        process.stop(STOP_TIMEOUT_S)
        raise RunError(str(exc)) from exc
    return url, process


def spec_operations() -> set[str]:
    """Every operation of the vendored spec, as ``METHOD /path``."""
    spec = yaml.safe_load(SPEC.read_text())
    return {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item if method in METHODS}


def call(method: str, url: str, expect: int, **kwargs: object) -> requests.Response:
    """One seeding request that must answer ``expect``."""
    response = requests.request(method, url, timeout=HTTP_TIMEOUT_S, **kwargs)
    if response.status_code != expect:
        raise RunError(f"{method} {url}: expected {expect}, got {response.status_code}: {response.text[:500]}")
    return response


def check_operations(base: str) -> tuple[str, int]:
    """Compare the spec's operations with the server's; return the prefix and the operation count."""
    config = call("GET", f"{base}/v1/config", 200, params={"warehouse": WAREHOUSE}).json()
    advertised = set(config.get("endpoints") or [])
    spec = spec_operations()
    expected = spec - NOT_ADVERTISED
    if advertised != expected:
        raise RunError(
            "the server's advertised endpoints differ from the spec's operations:\n"
            f"  in the spec only: {sorted(expected - advertised)}\n"
            f"  advertised only: {sorted(advertised - expected)}"
        )
    # The two operations not advertised are served all the same (the token
    # endpoint refuses a bad grant with an OAuth error, not 404 or 405).
    token = requests.post(f"{base}/v1/oauth/tokens", data={"grant_type": "nonsense"}, timeout=HTTP_TIMEOUT_S)
    if token.status_code in (404, 405) or token.status_code >= 500:
        raise RunError(f"POST /v1/oauth/tokens is not served: HTTP {token.status_code}")
    prefix = (config.get("overrides") or {}).get("prefix") or (config.get("defaults") or {}).get("prefix")
    if not prefix:
        raise RunError(f"the config response names no prefix: {config}")
    return prefix, len(spec)


def seed(base: str, prefix: str) -> None:
    """Create the namespace, tables and views the fuzzer is pointed at."""
    root = f"{base}/v1/{prefix}"
    for name in (NAMESPACE, DROP_NAMESPACE):
        call("POST", f"{root}/namespaces", 200, json={"namespace": [name], "properties": {"owner": "st"}})
    schema = {
        "type": "struct",
        "schema-id": 0,
        "fields": [
            {"id": 1, "name": "id", "type": "long", "required": True},
            {"id": 2, "name": "name", "type": "string", "required": False},
        ],
    }
    for name in (TABLE, DROP_TABLE, UNREGISTER_TABLE):
        call("POST", f"{root}/namespaces/{NAMESPACE}/tables", 200, json={"name": name, "schema": schema})
    for name in (VIEW, DROP_VIEW):
        view = {
            "name": name,
            "schema": schema,
            "view-version": {
                "version-id": 1,
                "timestamp-ms": int(time.time() * 1000),
                "schema-id": 0,
                "summary": {"engine-name": "schemathesis"},
                "representations": [{"type": "sql", "sql": "SELECT id, name FROM t1", "dialect": "spark"}],
                "default-namespace": [NAMESPACE],
            },
            "properties": {},
        }
        call("POST", f"{root}/namespaces/{NAMESPACE}/views", 200, json=view)


Key = tuple[str, str, str]


def load_baseline(path: Path) -> dict[Key, list[dict]]:
    """The accepted deviations by (operation, check, failure kind); each must say why and bound itself.

    Schemathesis matches a failure to an entry coarsely (for a schema violation, by
    the failing keyword alone), so every entry also names the response ``status``
    codes and ``error_type`` values (``error.type`` of the body) it covers, and
    ``check_baselined`` fails any matched failure outside them.
    """
    entries: dict[Key, list[dict]] = {}
    for entry in json.loads(path.read_text()).get("entries", []):
        name = f"baseline entry {entry.get('operation')} {entry.get('check')} {entry.get('signature')}"
        if not str(entry.get("reason", "")).strip():
            raise RunError(f"{name} has no reason")
        statuses = entry.get("status")
        if not statuses or not all(isinstance(code, int) for code in statuses):
            raise RunError(f"{name} names no response status codes")
        if not entry.get("error_type"):
            raise RunError(f"{name} names no error types")
        entries.setdefault((entry["operation"], entry["check"], entry["failure"]), []).append(entry)
    return entries


def error_type(content: dict | None) -> str | None:
    """``error.type`` of a recorded response body, if it has one."""
    if not content or "$base64" not in content:
        return None
    try:
        body = json.loads(base64.b64decode(content["$base64"]))
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None


def check_baselined(ndjson: Path, entries: dict[Key, list[dict]]) -> list[str]:
    """Failures that match a baseline entry but fall outside its status codes or error types."""
    problems: list[str] = []
    with ndjson.open() as events:
        for line in events:
            if '"ScenarioFinished"' not in line[:40]:
                continue
            recorder = json.loads(line)["ScenarioFinished"].get("recorder") or {}
            interactions = recorder.get("interactions") or {}
            for case_id, checks in (recorder.get("checks") or {}).items():
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    candidates = entries.get((failure.get("operation"), check.get("name"), failure.get("type")))
                    if not candidates:
                        continue  # Not baselined: Schemathesis counts it as a new failure.
                    response = (interactions.get(case_id) or {}).get("response") or {}
                    status = response.get("status_code")
                    kind = error_type(response.get("content"))
                    if not any(status in e["status"] and kind in e["error_type"] for e in candidates):
                        problems.append(
                            f"{failure.get('operation')} {check.get('name')} (case {case_id}): HTTP {status}"
                            f" {kind} is outside its baseline entries: {str(failure.get('message')).splitlines()[0]}"
                        )
    return problems


def run_schemathesis(base: str, prefix: str, args: argparse.Namespace, report_dir: Path) -> tuple[int, dict]:
    """Run ``st run``; return its exit code and its JSON report."""
    env = {
        **os.environ,
        "FLOE_ST_PREFIX": prefix,
        "FLOE_ST_NAMESPACE": NAMESPACE,
        "FLOE_ST_DROP_NAMESPACE": DROP_NAMESPACE,
        "FLOE_ST_TABLE": TABLE,
        "FLOE_ST_DROP_TABLE": DROP_TABLE,
        "FLOE_ST_UNREGISTER_TABLE": UNREGISTER_TABLE,
        "FLOE_ST_VIEW": VIEW,
        "FLOE_ST_DROP_VIEW": DROP_VIEW,
    }
    report = report_dir / "report.json"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(CONFIG),
        "run",
        str(SPEC),
        "--url",
        base,
        "--seed",
        str(args.seed),
        "--max-examples",
        str(args.examples),
        "--baseline",
        str(args.baseline),
        "--report",
        "json,ndjson",
        "--report-json-path",
        str(report),
        "--report-ndjson-path",
        str(report_dir / "events.ndjson"),
        "--no-color",
    ]
    if args.baseline_update:
        command.append("--baseline-update")
    print("+ " + " ".join(command), flush=True)
    code = subprocess.run(command, env=env, check=False).returncode
    try:
        return code, json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"Schemathesis wrote no readable report (exit {code}): {exc}") from exc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    parser.add_argument("--bin", type=Path, required=True, help="the floe binary")
    parser.add_argument("--examples", type=int, default=int(os.environ.get("FLOE_SCHEMATHESIS_EXAMPLES", "10")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FLOE_SCHEMATHESIS_SEED", "20251203")))
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="accepted deviations (default: %(default)s)")
    parser.add_argument(
        "--baseline-update", action="store_true", help="record this run's failures in --baseline (then add reasons)"
    )
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) still stops the server and drops the database.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    entries = {} if args.baseline_update else load_baseline(args.baseline)
    state_dir = Path(tempfile.mkdtemp(prefix=f"floe-st-{args.backend}-"))
    database = None
    admin_url = os.environ.get("FLOE_TEST_PG_URL", floeproc.DEFAULT_ADMIN_URL)
    server = None
    keep = True
    try:
        if args.backend == "sqlite":
            database_url = f"sqlite://{state_dir / 'catalog.db'}?mode=rwc"
        else:
            try:
                database, database_url = floeproc.create_database(admin_url, "floe_st")
            except floeproc.CommandFailed as exc:
                raise RunError(str(exc)) from exc
        base, server = start_server(args.bin, database_url, state_dir)
        prefix, operations = check_operations(base)
        seed(base, prefix)
        code, report = run_schemathesis(base, prefix, args, state_dir)
        alive = server.running()
        if not alive:
            print(f"floe exited during the run:\n{server.log_tail(6000)}", file=sys.stderr)
        tested = (report.get("operations") or {}).get("tested", 0)
        cases = report["test_cases"]["generated"]
        baseline = report.get("baseline") or {}
        failures = baseline.get("new", report["test_cases"]["unique_failures"])
        stray = check_baselined(state_dir / "events.ndjson", entries)
        for problem in stray:
            print(f"baselined failure out of bounds: {problem}", file=sys.stderr)
        failures += len(stray)
        if stray:
            code = code or 1
        errors = sum(error["count"] for error in report.get("errors") or [])
        if tested != operations:
            print(f"Schemathesis tested {tested} of the spec's {operations} operations", file=sys.stderr)
            code = code or 1
        print(
            f"schemathesis {args.backend}: operations {tested}, cases {cases}, failures {failures}"
            f" (baselined {baseline.get('known', 0)}), errors {errors}",
            flush=True,
        )
        if code != 0 or not alive:
            print(f"server log and reports kept in {state_dir}", file=sys.stderr)
            return 1
        keep = False
        return 0
    except RunError as exc:
        print(f"schemathesis {args.backend}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop(STOP_TIMEOUT_S)
        if database is not None:
            floeproc.drop_database(admin_url, database)
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
