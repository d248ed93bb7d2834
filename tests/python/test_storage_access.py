"""Vended credentials and remote signing against an S3-compatible server that
checks every signature (moto on loopback, with IAM authentication enforced).

The catalog holds one IAM user's key; clients never see it. With
``vended-credentials`` PyIceberg gets short-lived STS credentials of a role
and writes and reads its table with them; with ``remote-signing`` the catalog
signs requests that the S3 server then accepts, for the table's objects only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
import requests
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from conftest import READY_TIMEOUT_S, _free_port, _origin_bin

ACCOUNT = "123456789012"
BUCKET = "floe-secure"
REGION = "us-east-1"
ROLE = "floe-vended"
SCHEMA = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "name", StringType(), required=False))


@dataclass(frozen=True)
class SecureStack:
    s3: str
    catalog_url: str
    catalog_key: str
    log: Path


def _wait(what: str, check, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} not ready after {READY_TIMEOUT_S:.0f}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    state = tmp_path_factory.mktemp("secure")
    s3_port = _free_port()
    s3 = f"http://127.0.0.1:{s3_port}"
    moto_log = state / "moto.log"
    moto_bin = Path(sys.executable).parent / "moto_server"
    with moto_log.open("wb") as out:
        moto = subprocess.Popen([str(moto_bin), "-H", "127.0.0.1", "-p", str(s3_port)], stdout=out, stderr=subprocess.STDOUT)
    procs = [moto]
    try:
        _wait("moto", lambda: requests.get(f"{s3}/moto-api/", timeout=2).status_code == 200, moto, moto_log)
        admin = {"endpoint_url": s3, "region_name": REGION, "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="floe-catalog")
        iam.put_user_policy(UserName="floe-catalog", PolicyName="catalog", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]},
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"},
            ],
        }))
        key = iam.create_access_key(UserName="floe-catalog")["AccessKey"]
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/floe-catalog"},
                           "Action": "sts:AssumeRole"}],
        }))
        iam.put_role_policy(RoleName=ROLE, PolicyName="tables", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*",
                           "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}],
        }))
        boto3.client("s3", **admin).create_bucket(Bucket=BUCKET)
        # From now on moto checks every request's signature and policies.
        assert requests.post(f"{s3}/moto-api/reset-auth", data=b"0", timeout=5).status_code == 200
        stranger = boto3.client("s3", **admin)
        with pytest.raises(stranger.exceptions.ClientError) as refused:
            stranger.list_objects_v2(Bucket=BUCKET)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, "unknown keys are refused"

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = state / "floe.log"
        env = {
            **os.environ,
            "FLOE_WAREHOUSE__S3__ENDPOINT": s3,
            "FLOE_WAREHOUSE__S3__REGION": REGION,
            "FLOE_WAREHOUSE__S3__PATH_STYLE_ACCESS": "true",
            "FLOE_WAREHOUSE__S3__ACCESS_KEY_ID": key["AccessKeyId"],
            "FLOE_WAREHOUSE__S3__SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "FLOE_WAREHOUSE__S3__DELEGATION__VENDED": "assume-role",
            "FLOE_WAREHOUSE__S3__DELEGATION__ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{ROLE}",
            "FLOE_WAREHOUSE__S3__DELEGATION__STS_ENDPOINT": s3,
            "FLOE_WAREHOUSE__S3__DELEGATION__DURATION_SECONDS": "900",
            "FLOE_WAREHOUSE__S3__DELEGATION__REMOTE_SIGNING": "true",
        }
        command = [
            str(_origin_bin()), "serve",
            "--listen", f"127.0.0.1:{port}",
            "--origin-listen", f"127.0.0.1:{_free_port()}",
            "--edge-metrics-listen", f"127.0.0.1:{_free_port()}",
            "--database-url", f"sqlite://{state / 'catalog.db'}?mode=rwc",
            "--warehouse", f"s3://{BUCKET}/wh",
        ]
        with log.open("wb") as out:
            floe = subprocess.Popen(command, cwd=state, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(floe)
        _wait("floe", lambda: requests.get(f"{url}/ready", timeout=2).status_code == 200, floe, log)
        yield SecureStack(s3=s3, catalog_url=url, catalog_key=key["AccessKeyId"], log=log)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def catalog_for(stack: SecureStack, **props: str) -> Catalog:
    return load_catalog("secure", **{"type": "rest", "uri": stack.catalog_url, "warehouse": "default", **props})


def test_vended_credentials_write_and_read(stack: SecureStack) -> None:
    catalog = catalog_for(stack)  # PyIceberg asks for vended-credentials by default
    catalog.create_namespace("vend")
    table = catalog.create_table("vend.events", SCHEMA)
    rows = pa.Table.from_pydict({"id": list(range(100)), "name": [f"n{i}" for i in range(100)]},
                                schema=pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())]))
    table.append(rows)
    table.append(rows)
    again = catalog_for(stack).load_table("vend.events")
    assert again.scan().to_arrow().num_rows == 200

    base = f"{stack.catalog_url}/v1/default/namespaces/vend/tables/events"
    r = requests.get(base, headers={"X-Iceberg-Access-Delegation": "vended-credentials"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    config = body["config"]
    assert config["s3.access-key-id"].startswith("ASIA"), "STS credentials, not a long-lived key"
    assert config["s3.access-key-id"] != stack.catalog_key
    assert config["s3.session-token"]
    assert int(config["s3.session-token-expires-at-ms"]) > time.time() * 1000
    [credential] = body["storage-credentials"]
    assert credential["prefix"] == body["metadata"]["location"]
    assert credential["config"]["s3.session-token"] == config["s3.session-token"]
    assert "private" in r.headers["Cache-Control"] and "no-store" in r.headers["Cache-Control"]
    # Without the header: no secrets in the answer, and a different ETag.
    plain = requests.get(base, timeout=10)
    assert "s3.access-key-id" not in plain.json()["config"]
    assert "storage-credentials" not in plain.json()
    assert plain.headers["ETag"] != r.headers["ETag"]
    assert stack.catalog_key not in plain.text and stack.catalog_key not in r.text

    # The credentials endpoint, through PyIceberg.
    vended = catalog.load_credentials("vend.events", body["metadata"]["location"])
    assert vended["s3.access-key-id"].startswith("ASIA")
    # They work against the checking server, on the table's objects.
    s3 = boto3.client("s3", endpoint_url=stack.s3, region_name=REGION,
                      aws_access_key_id=vended["s3.access-key-id"],
                      aws_secret_access_key=vended["s3.secret-access-key"],
                      aws_session_token=vended["s3.session-token"])
    prefix = body["metadata"]["location"].removeprefix(f"s3://{BUCKET}/")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/metadata/")
    assert listed["KeyCount"] > 0


def _send_signed(stack: SecureStack, table_path: str, method: str, uri: str, headers: dict[str, str],
                 data: bytes | None = None, delegation_headers: dict[str, str] | None = None) -> requests.Response:
    sign = requests.post(f"{stack.catalog_url}/{table_path}/sign", json={
        "region": REGION, "uri": uri, "method": method,
        "headers": {k: [v] for k, v in headers.items()},
    }, headers=delegation_headers or {}, timeout=10)
    assert sign.status_code == 200, sign.text
    assert sign.headers["Cache-Control"] == "no-cache"
    signed = sign.json()
    merged = dict(headers)
    for k, values in signed["headers"].items():
        merged[k] = ", ".join(values)
    return requests.request(method, signed["uri"], headers=merged, data=data, timeout=10)


def test_remote_signing_is_accepted_by_the_server(stack: SecureStack) -> None:
    catalog = catalog_for(stack, **{"header.X-Iceberg-Access-Delegation": "remote-signing"})
    catalog.create_namespace("sign")
    catalog.create_table("sign.t", SCHEMA)
    base = f"{stack.catalog_url}/v1/default/namespaces/sign/tables/t"
    r = requests.get(base, headers={"X-Iceberg-Access-Delegation": "remote-signing"}, timeout=10)
    config = r.json()["config"]
    assert config["s3.remote-signing-enabled"] == "true"
    assert config["s3.signer.endpoint"] == "v1/default/namespaces/sign/tables/t/sign"
    assert "s3.access-key-id" not in config
    location = r.json()["metadata"]["location"]
    key = location.removeprefix(f"s3://{BUCKET}/") + "/data/signed.txt"
    object_uri = f"{stack.s3}/{BUCKET}/{key}"
    table_path = config["s3.signer.endpoint"].removesuffix("/sign")

    put = _send_signed(stack, table_path, "PUT", object_uri, {"Content-Type": "text/plain"}, data=b"hello")
    assert put.status_code == 200, put.text
    got = _send_signed(stack, table_path, "GET", object_uri, {})
    assert got.status_code == 200 and got.content == b"hello"
    # A signature is bound to what it signed: another object is refused by S3.
    sign = requests.post(f"{stack.catalog_url}/{table_path}/sign", json={
        "region": REGION, "uri": object_uri, "method": "GET", "headers": {}}, timeout=10).json()
    tampered = requests.get(object_uri.replace("signed.txt", "other.txt"),
                            headers={k: ", ".join(v) for k, v in sign["headers"].items()}, timeout=10)
    assert tampered.status_code == 403
    # The catalog signs nothing outside the table.
    outside = requests.post(f"{stack.catalog_url}/{table_path}/sign", json={
        "region": REGION, "uri": f"{stack.s3}/{BUCKET}/wh/elsewhere/x", "method": "GET", "headers": {}}, timeout=10)
    assert outside.status_code == 403
    assert outside.json()["error"]["type"] == "ForbiddenException"
