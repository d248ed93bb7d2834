"""deploy/container/Dockerfile, linted without a container engine: hadolint
(from PyPI, offline) and checks against the workspace (toolchain pin, the
binaries `cargo build` makes, the ports the configurations listen on)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "container" / "Dockerfile"
SECRET_WORDS = re.compile(r"(KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL)", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def stages() -> list[dict]:
    """Each FROM with its image, tag, name and the instructions below it."""
    out: list[dict] = []
    for word, args in instructions():
        if word == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+?)(?::(\S+))?(?:@(sha256:[0-9a-f]{64}))?(?:\s+AS\s+(\S+))?", args, re.I)
            assert m, f"unparsed FROM {args}"
            out.append({"image": m[1], "tag": m[2], "digest": m[3], "name": m[4], "body": []})
        else:
            assert out, f"{word} before any FROM"
            out[-1]["body"].append((word, args))
    return out


def cargo_metadata(*extra: str) -> dict:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(out.stdout)


def workspace_bins() -> set[str]:
    meta = cargo_metadata("--no-deps")
    return {t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}


def workspace_rust_version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return cargo["workspace"]["package"]["rust-version"]


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        hadolint = Path(shutil.which("hadolint") or "hadolint")
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_a_no_op(tmp_path: Path):
    """The same lint on a Dockerfile with known faults reports them."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\nUSER root\n")
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3002"):
        assert rule in result.stdout, result.stdout


def test_build_stage_uses_the_pinned_toolchain():
    pin = workspace_rust_version()
    exact = pin if pin.count(".") == 2 else pin + ".0"
    build = stages()[0]
    assert build["image"] == "rust", build
    assert build["tag"] and build["tag"].split("-")[0] == exact, (
        f"build image rust:{build['tag']} is not the workspace's rust-version {pin}")
    # The pinned toolchain can build the locked dependency graph: no package
    # asks for a newer Rust than the pin.
    meta = cargo_metadata("--filter-platform", "x86_64-unknown-linux-gnu")
    want = tuple(int(x) for x in exact.split("."))
    newer = [
        f"{p['name']} {p['version']} needs {p['rust_version']}"
        for p in meta["packages"]
        if p.get("rust_version")
        and tuple(int(x) for x in (p["rust_version"] + ".0.0").split(".")[:3]) > want
    ]
    assert not newer, newer


def test_bases_are_pinned_and_runtime_is_slim_debian_of_the_same_release():
    all_stages = stages()
    assert len(all_stages) >= 2, "multi-stage build expected"
    for stage in all_stages:
        assert stage["tag"] and stage["tag"] != "latest", f"{stage['image']} not pinned"
        assert re.match(r"\d+\.\d+", stage["tag"]), f"{stage['image']}:{stage['tag']} is not a version tag"
    runtime = all_stages[-1]
    assert runtime["image"] == "debian" and runtime["tag"].endswith("-slim"), runtime
    release = {"12": "bookworm", "13": "trixie"}[runtime["tag"].split(".")[0]]
    assert all_stages[0]["tag"].endswith(f"-{release}"), "build and runtime on different Debian releases (glibc)"


def test_runs_as_a_non_root_user():
    runtime = stages()[-1]
    users = [args for word, args in runtime["body"] if word == "USER"]
    assert users, "runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    words = [word for word, _ in runtime["body"]]
    assert words.index("USER") < words.index("CMD")


def test_no_secrets_in_the_image():
    for word, args in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(args), f"{word} {args}"
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.(pem|key)\b|\.env\b", args), f"{word} {args}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in ("target/", ".venv/", ".git/", "*.pem", "*.key"):
        assert pattern in ignored, f".dockerignore lacks {pattern}"


def test_copies_the_binaries_cargo_builds():
    bins = workspace_bins()
    assert {"floe", "floe-edge", "floe-origin"} <= bins, bins
    all_stages = stages()
    build = all_stages[0]
    runs = " ".join(args for word, args in build["body"] if word == "RUN")
    workdir = [args for word, args in build["body"] if word == "WORKDIR"][-1]
    m = re.search(r"cargo build ([^&;]*)", runs)
    assert m, "no cargo build in the build stage"
    argv = shlex.split(m[1])
    assert "--release" in argv and "--locked" in argv, argv
    built = {argv[i + 1] for i, a in enumerate(argv) if a == "--bin"}
    assert built == bins, f"builds {built}, workspace has {bins}"
    copied = {}
    for word, args in all_stages[-1]["body"]:
        if word == "COPY" and args.startswith(f"--from={build['name']}"):
            src, dst = args.split()[1:3]
            copied[src] = dst
    want = {f"{workdir}/target/release/{b}" for b in bins}
    assert set(copied) == want, f"copies {sorted(copied)}, cargo build --release makes {sorted(want)}"
    for src, dst in copied.items():
        assert Path(dst).name == Path(src).name, (src, dst)


def test_exposed_ports_are_the_configured_ones():
    edge = yaml.safe_load((ROOT / "conf/edge.yaml").read_text())
    prod_edge = yaml.safe_load((ROOT / "conf/production/edge.yaml").read_text())
    prod_origin = yaml.safe_load((ROOT / "conf/production/origin.yaml").read_text())
    want = {port(a) for a in edge["listen"]} | {port(edge["metrics_listen"]), port(prod_edge["metrics_listen"])}
    want |= {port(a) for a in prod_edge["tls"]["listen"]} | {port(prod_origin["server"]["listen"])}
    exposed = {int(p.split("/")[0]) for word, args in instructions() if word == "EXPOSE" for p in args.split()}
    assert exposed == want


def test_healthcheck_asks_the_edge_metrics_listener_for_health():
    edge = yaml.safe_load((ROOT / "conf/edge.yaml").read_text())
    checks = [args for word, args in instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert f"/dev/tcp/127.0.0.1/{port(edge['metrics_listen'])}" in checks[0]
    assert "GET /health " in checks[0]
    # The default command reads the configurations the image ships.
    cmd = json.loads([args for word, args in instructions() if word == "CMD"][-1])
    copied = " ".join(args for word, args in instructions() if word == "COPY")
    assert cmd[0] in workspace_bins()
    for arg in cmd:
        if arg.startswith("/etc/floe/"):
            assert f"conf/{Path(arg).name}" in copied, arg
