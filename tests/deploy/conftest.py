"""Shared pieces of the deploy/ checks: paths, YAML loading, and a real edge
and origin (debug builds) on PostgreSQL with authentication on, started once
per session and stopped by pid."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
START_TIMEOUT_S = 60
CLI_TIMEOUT_S = 60


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> list[tuple[Path, dict]]:
    """Every Kubernetes object under deploy/kubernetes (kustomization aside)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out.extend((path, doc) for doc in load_all(path))
    return out


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def binary(name: str) -> Path:
    path = target_dir() / "debug" / name
    assert path.is_file(), f"{path} missing: run `cargo build --workspace --bins` first"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout_s: float, interval_s: float = 0.2, log: Path | None = None):
    """Polls ``check`` until it returns a truthy value, or fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except (requests.RequestException, OSError) as e:
            last = e
        time.sleep(interval_s)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} not reached within {timeout_s}s (last: {last!r})\n{tail}")


def stop(process: subprocess.Popen) -> None:
    """Stops a process this suite started, by its pid."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _psql(admin_url: str, sql: str) -> None:
    subprocess.run(["psql", admin_url, "-X", "-w", "-q", "-c", sql], check=True, timeout=60, capture_output=True)


def _with_database(url: str, database: str) -> str:
    """The same server URL with another database name."""
    return re.sub(r"(//[^/]*)/[^?]*", f"\\1/{database}", url, count=1)


@dataclass
class Tiers:
    """A running origin and edge, and what the tests need to talk to them."""

    origin_port: int
    edge_port: int
    edge_metrics_port: int
    client_id: str
    client_secret: str
    state: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def edge(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def token(self) -> str:
        r = requests.post(
            f"{self.edge}/v1/oauth/tokens",
            data={"grant_type": "client_credentials", "client_id": self.client_id,
                  "client_secret": self.client_secret, "scope": "catalog"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]


def _cli(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiers]:
    """floe-origin on a fresh PostgreSQL database and floe-edge in front of
    it, both with authentication on (keys from ``floe-origin keygen``, one
    admin client), on free loopback ports."""
    origin_bin, edge_bin = binary("floe-origin"), binary("floe-edge")
    state = tmp_path_factory.mktemp("tiers")
    admin_url = os.environ.get("FLOE_TEST_PG_URL", DEFAULT_PG_URL)
    database = f"floe_deploy_{uuid.uuid4().hex[:10]}"
    _psql(admin_url, f'CREATE DATABASE "{database}"')
    db_url = _with_database(admin_url, database)
    try:
        key = state / "signing.pem"
        _cli([str(origin_bin), "keygen", "--out", str(key)], state)
        warehouse = state / "warehouse"
        warehouse.mkdir()
        origin_port, edge_port, metrics_port = free_port(), free_port(), free_port()
        origin_yaml = state / "origin.yaml"
        origin_yaml.write_text(
            f"server:\n  listen: 127.0.0.1:{origin_port}\n"
            f"warehouse:\n  name: default\n  location: {warehouse.as_uri()}\n"
            f"auth:\n  enabled: true\n  verification_keys:\n    - kid: k1\n      path: {key}.pub\n"
        )
        edge_yaml = state / "edge.yaml"
        edge_yaml.write_text(
            f"listen: [127.0.0.1:{edge_port}]\nmetrics_listen: 127.0.0.1:{metrics_port}\n"
            f"origins: [127.0.0.1:{origin_port}]\n"
            f"server:\n  pid_file: {state}/edge.pid\n  upgrade_sock: {state}/edge-upgrade.sock\n"
            f"health_check:\n  interval_ms: 200\n"
            f"auth:\n  enabled: true\n  signing_key:\n    kid: k1\n    path: {key}\n"
        )
        env = {**os.environ, "FLOE_DATABASE__URL": db_url}
        env.pop("RUST_LOG", None)
        out = subprocess.run(
            [str(origin_bin), "--config", str(origin_yaml), "client", "create", "--name", "deploy",
             "--role", "admin", "--warehouse", "*"],
            cwd=state, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
        )
        assert out.returncode == 0, out.stderr
        secret = re.search(r"client_secret: (\S+)", out.stdout)
        assert secret, out.stdout
        tiers = Tiers(origin_port, edge_port, metrics_port, "deploy", secret.group(1), state)
        with (state / "origin.log").open("wb") as log:
            tiers.processes.append(subprocess.Popen(
                [str(origin_bin), "--config", str(origin_yaml)], cwd=state, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        try:
            wait_until("origin /ready", lambda: requests.get(
                f"http://127.0.0.1:{origin_port}/ready", timeout=2).status_code == 200,
                START_TIMEOUT_S, log=state / "origin.log")
            with (state / "edge.log").open("wb") as log:
                tiers.processes.append(subprocess.Popen(
                    [str(edge_bin), "--config", str(edge_yaml)], cwd=state,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
            wait_until("edge /ready through to the origin", lambda: requests.get(
                f"{tiers.edge}/ready", timeout=2).status_code == 200,
                START_TIMEOUT_S, log=state / "edge.log")
            yield tiers
        finally:
            for process in reversed(tiers.processes):
                stop(process)
    finally:
        _psql(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
