"""deploy/prometheus and deploy/grafana against the real thing: promtool
checks and unit tests of the rules, then a real Prometheus (Debian's package)
scraping a real edge and origin that took a little traffic; every metric the
alerts and the dashboard name has samples from the tier it belongs to, every
rule evaluates without error and every dashboard expression runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from conftest import DEPLOY, Tiers, free_port, stop, wait_until

PROM = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "floe.json"
SCRAPE_TIMEOUT_S = 90
# Grafana's interval variable, replaced for queries made outside Grafana.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s"}
METRIC = re.compile(r"\b(floe_[a-z0-9_]+|up)\b")
JOBS = {"edge": "floe-edge", "origin": "floe-origin"}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: scripts/test installs Debian's prometheus package"
    return path


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for child in [panel, *panel.get("panels", [])]:
            for target in child.get("targets", []):
                out.append((child["title"], target["expr"]))
    return out


def metric_names(expr: str) -> set[str]:
    # Label names inside {...} and by (...) are not metrics.
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)
    return set(METRIC.findall(bare))


def expected_jobs(metric: str) -> set[str]:
    if metric.startswith("floe_edge_"):
        return {JOBS["edge"]}
    if metric.startswith("floe_origin_"):
        return {JOBS["origin"]}
    return set(JOBS.values())  # floe_pool_*, up: both tiers


def test_promtool_checks_the_shipped_configuration_and_rules():
    promtool = tool("promtool")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_every_alert_has_a_unit_test():
    tested = {case["alertname"] for test in yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_scrape_targets_are_the_configured_addresses():
    conf = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert set(jobs) == set(JOBS.values())
    edge = yaml.safe_load((DEPLOY.parent / "conf/production/edge.yaml").read_text())
    origin_targets = {t for sc in jobs["floe-origin"]["static_configs"] for t in sc["targets"]}
    assert origin_targets == set(edge["origins"])
    metrics_port = edge["metrics_listen"].rsplit(":", 1)[1]
    assert all(t.endswith(f":{metrics_port}") for sc in jobs["floe-edge"]["static_configs"] for t in sc["targets"])


def _traffic(tiers: Tiers) -> None:
    """Tokens (one refused), a namespace and a table, loads (miss, hit, 304), a commit."""
    bad = requests.post(f"{tiers.edge}/v1/oauth/tokens", data={
        "grant_type": "client_credentials", "client_id": tiers.client_id, "client_secret": "wrong"}, timeout=10)
    assert bad.status_code == 401, bad.text
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {tiers.token()}"
    base = f"{tiers.edge}/v1/namespaces"
    r = s.post(base, json={"namespace": ["deploy_checks"]}, timeout=10)
    assert r.status_code == 200, r.text
    schema = {"type": "struct", "schema-id": 0,
              "fields": [{"id": 1, "name": "id", "required": False, "type": "long"}]}
    r = s.post(f"{base}/deploy_checks/tables", json={"name": "t", "schema": schema}, timeout=10)
    assert r.status_code == 200, r.text
    table = f"{base}/deploy_checks/tables/t"
    first = s.get(table, timeout=10)
    assert first.status_code == 200, first.text
    assert s.get(table, timeout=10).status_code == 200
    etag = first.headers.get("ETag")
    assert etag, first.headers
    assert s.get(table, headers={"If-None-Match": etag}, timeout=10).status_code == 304
    r = s.post(table, json={"requirements": [], "updates": [
        {"action": "set-properties", "updates": {"owner": "deploy"}}]}, timeout=10)
    assert r.status_code == 200, r.text
    assert s.get(table, timeout=10).status_code == 200


@pytest.fixture(scope="module")
def prometheus(tiers: Tiers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on a free loopback port, scraping the edge and the
    origin every second with the shipped alert rules loaded."""
    state = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROM / "alerts.yml")],
        "scrape_configs": [
            {"job_name": JOBS["edge"], "static_configs": [{"targets": [f"127.0.0.1:{tiers.edge_metrics_port}"]}]},
            {"job_name": JOBS["origin"], "static_configs": [{"targets": [f"127.0.0.1:{tiers.origin_port}"]}]},
        ],
    }
    (state / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = state / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={state / 'prometheus.yml'}",
             f"--storage.tsdb.path={state / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            cwd=state, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("Prometheus ready", lambda: requests.get(f"{url}/-/ready", timeout=2).status_code == 200,
                   SCRAPE_TIMEOUT_S, log=log_path)
        _traffic(tiers)
        yield url
    finally:
        stop(process)


def query(url: str, expr: str) -> dict:
    r = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body.get('error', body)}"
    return body["data"]


def _jobs_with_samples(url: str) -> dict[str, set[str]]:
    data = query(url, 'count by (__name__, job) ({__name__=~"floe_.+|up", job=~"floe-.+"})')
    out: dict[str, set[str]] = {}
    for item in data["result"]:
        out.setdefault(item["metric"]["__name__"], set()).add(item["metric"]["job"])
    return out


def test_every_metric_used_has_samples_from_its_tier(prometheus: str):
    used = {m for rule in alert_rules() for m in metric_names(rule["expr"])}
    used |= {m for _, expr in dashboard_exprs() for m in metric_names(expr)}
    assert "floe_origin_db_pool_max_connections" in used and "floe_pool_discards_total" in used

    def missing() -> list[str]:
        have = _jobs_with_samples(prometheus)
        return [f"{m} (jobs {sorted(expected_jobs(m) - have.get(m, set()))})"
                for m in sorted(used) if not expected_jobs(m) <= have.get(m, set())]

    last: list[str] = []

    def complete() -> bool:
        last[:] = missing()
        return not last

    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while not complete() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not last, f"no samples within {SCRAPE_TIMEOUT_S}s: {last}"


def test_every_alert_rule_evaluates_without_error(prometheus: str):
    names = {rule["alert"] for rule in alert_rules()}

    def healthy() -> dict | None:
        groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        done = set(rules) == names and all(
            r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules.values())
        return rules if done else None

    rules = wait_until("every rule evaluated", healthy, SCRAPE_TIMEOUT_S, interval_s=0.5)
    assert all(r["health"] == "ok" for r in rules.values())


def test_every_dashboard_expression_runs(prometheus: str):
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for title, expr in exprs:
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{title}: unreplaced variable in {expr}"
        data = query(prometheus, expr)
        # Gauges and counters read as they are (no rate window to fill) have values now.
        if not re.search(r"\b(rate|increase|histogram_quantile)\(", expr):
            assert data["result"], f"{title}: {expr} is empty"
    # The API does refuse an expression that does not parse.
    r = requests.get(f"{prometheus}/api/v1/query", params={"query": "sum(rate(floe_edge_http_requests_total[1m])"},
                     timeout=10)
    assert r.status_code == 400 and r.json()["errorType"] == "bad_data"


def test_dashboard_covers_what_operators_watch():
    used = {m for _, expr in dashboard_exprs() for m in metric_names(expr)}
    for metric in ("floe_edge_http_requests_total", "floe_origin_http_requests_total",
                   "floe_edge_http_request_duration_seconds_bucket", "floe_origin_http_request_duration_seconds_bucket",
                   "floe_edge_cache_requests_total", "floe_edge_invalidations_total", "floe_edge_event_stream_up",
                   "floe_origin_commits_total", "floe_pool_idle_bytes", "floe_origin_db_pool_connections",
                   "floe_edge_auth_total"):
        assert metric in used, metric
