"""Remote signing signs only what a client of the table needs (issue 14, point 3).

Each attack is sent through the real ``POST …/tables/{t}/sign`` endpoint, with
authentication on, by a writer granted only namespace ``mine``; ``theirs.t`` is
an admin's table and ``floe-other`` a bucket the catalog's key may also read.
Each test shows the request shape, asserts the catalog refuses to sign it, and
checks with the catalog's own key that the victim object is intact. Where the
catalog refuses, a direct call with the catalog's key shows that the S3 server
would have accepted the shape had it been signed (so the test means something).

The S3 server is moto with IAM authentication enforced, plus two checks that
real S3 makes and moto does not (see ``_RealS3Checks``): a hexadecimal
``x-amz-content-sha256`` must be the SHA-256 of the body, and every ``x-amz-*``
header must be signed.

Run as a script (``python test_security_signing.py --s3 HOST PORT``) this file
serves that S3 server; the fixture starts it so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.io.fsspec import S3V4RestSigner
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from conftest import READY_TIMEOUT_S, _free_port, _origin_bin

BUCKET = "floe-secure"
OTHER_BUCKET = "floe-other"
REGION = "us-east-1"
SCHEMA = Schema(NestedField(1, "id", LongType(), required=False))
CLI_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0


# ---- the S3 server ---------------------------------------------------------------------------


class _RealS3Checks:
    """WSGI middleware in front of moto: two checks of real S3 that moto skips.

    - ``XAmzContentSHA256Mismatch`` (400): a hexadecimal ``x-amz-content-sha256``
      that is not the SHA-256 of the body received.
    - ``AccessDenied`` (403, "headers present in the request which were not
      signed"): an ``x-amz-*`` header outside ``SignedHeaders``.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if auth.startswith("AWS4-HMAC-SHA256"):
            signed = set(auth.partition("SignedHeaders=")[2].partition(",")[0].split(";"))
            present = {k[5:].replace("_", "-").lower() for k in environ if k.startswith("HTTP_X_AMZ_")}
            unsigned = sorted(present - signed)
            if unsigned:
                return self._error(start_response, "403 Forbidden", "AccessDenied",
                                   f"There were headers present in the request which were not signed: {unsigned}")
            claimed = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "")
            if re.fullmatch("[0-9a-f]{64}", claimed):
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
                if hashlib.sha256(body).hexdigest() != claimed:
                    return self._error(start_response, "400 Bad Request", "XAmzContentSHA256Mismatch",
                                       "The provided 'x-amz-content-sha256' header does not match what was computed.")
        return self.app(environ, start_response)

    @staticmethod
    def _error(start_response: Callable[..., Any], status: str, code: str, message: str) -> list[bytes]:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


def _serve_s3(host: str, port: int) -> None:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, _RealS3Checks(app), threaded=True, request_handler=MotoRequestHandler)


# ---- the stack -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    s3: str
    url: str
    catalog_key: dict[str, str]
    secrets: dict[str, str]

    def catalog_s3(self) -> Any:
        """boto3 with the catalog's own key: for checking victims and showing shapes."""
        return boto3.client("s3", endpoint_url=self.s3, region_name=REGION,
                            aws_access_key_id=self.catalog_key["AccessKeyId"],
                            aws_secret_access_key=self.catalog_key["SecretAccessKey"],
                            config=Config(s3={"addressing_style": "path"}))

    def token(self, client: str) -> str:
        r = requests.post(f"{self.url}/v1/oauth/tokens", data={
            "grant_type": "client_credentials", "client_id": client, "client_secret": self.secrets[client],
        }, timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def catalog(self, client: str) -> Catalog:
        return load_catalog(f"signing-{client}", **{
            "type": "rest", "uri": self.url, "warehouse": "default",
            "credential": f"{client}:{self.secrets[client]}",
        })


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
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


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([str(_origin_bin()), *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=CLI_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """S3 (moto + real-S3 checks, signatures enforced), then Floe with auth on and remote signing."""
    state = tmp_path_factory.mktemp("signing")
    s3_port = _free_port()
    s3 = f"http://127.0.0.1:{s3_port}"
    s3_log = state / "s3.log"
    with s3_log.open("wb") as out:
        server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--s3", "127.0.0.1", str(s3_port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    procs = [server]
    try:
        _wait("s3", lambda: requests.get(f"{s3}/moto-api/", timeout=2).status_code == 200, server, s3_log)
        admin = {"endpoint_url": s3, "region_name": REGION, "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="floe-catalog")
        # The catalog's key is the powerful one: everything in both buckets.
        iam.put_user_policy(UserName="floe-catalog", PolicyName="catalog", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": [
                f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*",
                f"arn:aws:s3:::{OTHER_BUCKET}", f"arn:aws:s3:::{OTHER_BUCKET}/*"]}],
        }))
        key = iam.create_access_key(UserName="floe-catalog")["AccessKey"]
        root = boto3.client("s3", **admin)
        root.create_bucket(Bucket=BUCKET)
        root.create_bucket(Bucket=OTHER_BUCKET)
        root.put_object(Bucket=OTHER_BUCKET, Key="secret.csv", Body=b"id,salary\n1,1000000\n")
        assert requests.post(f"{s3}/moto-api/reset-auth", data=b"0", timeout=5).status_code == 200

        signing_key = state / "signing.pem"
        env = {
            **os.environ,
            "FLOE_WAREHOUSE__S3__ENDPOINT": s3,
            "FLOE_WAREHOUSE__S3__REGION": REGION,
            "FLOE_WAREHOUSE__S3__PATH_STYLE_ACCESS": "true",
            "FLOE_WAREHOUSE__S3__ACCESS_KEY_ID": key["AccessKeyId"],
            "FLOE_WAREHOUSE__S3__SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "FLOE_WAREHOUSE__S3__DELEGATION__REMOTE_SIGNING": "true",
        }
        _cli(["keygen", "--out", str(signing_key)], state, env)
        auth = f"auth:\n  enabled: true\n  signing_key:\n    kid: k1\n    path: {signing_key}\n"
        (state / "origin.yaml").write_text(auth)
        (state / "edge.yaml").write_text(auth)
        common = ["--config", str(state / "origin.yaml"), "--database-url", f"sqlite://{state / 'catalog.db'}?mode=rwc"]
        secrets: dict[str, str] = {}
        for name, role, place in (("admin", "admin", ["--warehouse", "*"]),
                                  ("writer", "writer", ["--warehouse", "default", "--namespace", "mine"])):
            out = _cli(["client", "create", "--name", name, "--role", role, *place, *common], state, env)
            match = re.search(r"client_secret: (\S+)", out)
            assert match, out
            secrets[name] = match.group(1)

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = state / "floe.log"
        command = [str(_origin_bin()), "serve", *common, "--edge-config", str(state / "edge.yaml"),
                   "--listen", f"127.0.0.1:{port}", "--origin-listen", f"127.0.0.1:{_free_port()}",
                   "--edge-metrics-listen", f"127.0.0.1:{_free_port()}", "--warehouse", f"s3://{BUCKET}/wh"]
        with log.open("wb") as out:
            floe = subprocess.Popen(command, cwd=state, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        procs.append(floe)
        _wait("floe", lambda: requests.get(f"{url}/ready", timeout=2).status_code == 200, floe, log)
        yield Stack(s3=s3, url=url, catalog_key=key, secrets=secrets)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Tables:
    """The writer's table ``mine.x`` and the admin's ``theirs.t``."""

    sign_path: str  # mine.x's …/sign endpoint, below the catalog root
    folder: str  # mine.x's key prefix and its slash
    victim: str  # theirs.t's current metadata file (a key in BUCKET)
    writer: str  # the writer's bearer token


@pytest.fixture(scope="module")
def tables(stack: Stack) -> Tables:
    admin = stack.catalog("admin")
    admin.create_namespace("mine")
    admin.create_namespace("theirs")
    theirs = admin.create_table("theirs.t", SCHEMA)
    victim = theirs.metadata_location.removeprefix(f"s3://{BUCKET}/")
    stack.catalog("writer").create_table("mine.x", SCHEMA)
    writer = stack.token("writer")
    r = requests.get(f"{stack.url}/v1/default/namespaces/mine/tables/x", timeout=HTTP_TIMEOUT_S,
                     headers={"Authorization": f"Bearer {writer}", "X-Iceberg-Access-Delegation": "remote-signing"})
    assert r.status_code == 200, r.text
    config = r.json()["config"]
    assert config["s3.remote-signing-enabled"] == "true"
    folder = r.json()["metadata"]["location"].removeprefix(f"s3://{BUCKET}/") + "/"
    assert folder.startswith("wh/mine/x") and not victim.startswith(folder)
    return Tables(sign_path=config["s3.signer.endpoint"], folder=folder, victim=victim, writer=writer)


def _sign(stack: Stack, tables: Tables, method: str, uri: str, headers: dict[str, str] | None = None,
          body: str | None = None) -> requests.Response:
    """Asks the catalog, as the writer, to sign a request for mine.x."""
    payload: dict[str, Any] = {"region": REGION, "uri": uri, "method": method,
                               "headers": {k: [v] for k, v in (headers or {}).items()}}
    if body is not None:
        payload["body"] = body
    return requests.post(f"{stack.url}/{tables.sign_path}", json=payload, timeout=HTTP_TIMEOUT_S,
                         headers={"Authorization": f"Bearer {tables.writer}"})


def _refused(response: requests.Response, rule: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["type"] == "ForbiddenException", error
    assert error["message"].startswith("Signing refused: ") and rule in error["message"], error


def _send(method: str, uri: str, headers: dict[str, str], signed: requests.Response,
          data: bytes | None = None) -> requests.Response:
    """Sends a request with the headers the catalog returned (as PyIceberg merges them)."""
    assert signed.status_code == 200, signed.text
    merged = dict(headers)
    for name, values in signed.json()["headers"].items():
        merged[name] = ", ".join(values)
    return requests.request(method, signed.json()["uri"], headers=merged, data=data, timeout=HTTP_TIMEOUT_S)


def _signed_by_catalog_key(stack: Stack, method: str, url: str, headers: dict[str, str],
                           body: bytes = b"", payload_signing: bool = True) -> dict[str, str]:
    """What an unchecked signer holding the catalog's key would return (for showing shapes)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    request.context["client_config"] = Config(s3={"payload_signing_enabled": payload_signing})
    S3SigV4Auth(Credentials(stack.catalog_key["AccessKeyId"], stack.catalog_key["SecretAccessKey"]),
                "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def _delete_body(*keys: str) -> str:
    objects = "".join(f"<Object><Key>{k}</Key></Object>" for k in keys)
    return (f'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{objects}<Quiet>false</Quiet></Delete>")


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _assert_intact(stack: Stack, bucket: str, key: str, content: bytes | None = None) -> None:
    got = stack.catalog_s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    if content is not None:
        assert got == content


# ---- attacks ---------------------------------------------------------------------------------


def test_copy_source_is_refused(stack: Stack, tables: Tables) -> None:
    """A PUT into the table's folder carrying x-amz-copy-source is CopyObject: a private object
    of another bucket, or another table's metadata file, would be copied into the table."""
    target = f"{stack.s3}/{BUCKET}/{tables.folder}data/stolen.csv"
    s3 = stack.catalog_s3()
    secret = s3.get_object(Bucket=OTHER_BUCKET, Key="secret.csv")["Body"].read()
    # The shape works when signed with the catalog's key: S3 copies the object.
    s3.copy_object(Bucket=BUCKET, Key=f"{tables.folder}data/shape.csv",
                   CopySource={"Bucket": OTHER_BUCKET, "Key": "secret.csv"})
    assert s3.get_object(Bucket=BUCKET, Key=f"{tables.folder}data/shape.csv")["Body"].read() == secret
    s3.delete_object(Bucket=BUCKET, Key=f"{tables.folder}data/shape.csv")

    for source in (f"{OTHER_BUCKET}/secret.csv", f"/{BUCKET}/{tables.victim}"):
        for name in ("x-amz-copy-source", "X-Amz-Copy-Source"):
            _refused(_sign(stack, tables, "PUT", target, {name: source}), "names a second object")
        _refused(_sign(stack, tables, "PUT", f"{target}?partNumber=1&uploadId=u",
                       {"x-amz-copy-source": source, "x-amz-copy-source-range": "bytes=0-9"}),
                 "names a second object")
    # A plain PUT is signed, but S3 refuses the copy header added after signing.
    headers = {"Content-Type": "text/csv"}
    signed = _sign(stack, tables, "PUT", target, headers)
    added = _send("PUT", target, {**headers, "x-amz-copy-source": f"{OTHER_BUCKET}/secret.csv"}, signed)
    assert added.status_code == 403, added.text
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key=f"{tables.folder}data/stolen.csv")
    _assert_intact(stack, OTHER_BUCKET, "secret.csv", secret)
    _assert_intact(stack, BUCKET, tables.victim)


def test_delete_objects_with_an_unsigned_payload_is_refused(stack: Stack, tables: Tables) -> None:
    """DeleteObjects signed with UNSIGNED-PAYLOAD for a body naming the table's key: the client
    then sends another body naming theirs.t's metadata file."""
    s3 = stack.catalog_s3()
    own = f"{tables.folder}data/own.bin"
    s3.put_object(Bucket=BUCKET, Key=own, Body=b"own")
    s3.put_object(Bucket=BUCKET, Key="wh/decoy/object", Body=b"decoy")
    url = f"{stack.s3}/{BUCKET}?delete"
    checked = _delete_body(own)
    swapped = _delete_body("wh/decoy/object").encode()
    # The shape works when signed with the catalog's key: S3 deletes what the other body names.
    headers = {"Content-Type": "application/xml"}
    shape = _signed_by_catalog_key(stack, "POST", url, headers, checked.encode(), payload_signing=False)
    assert shape["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    r = requests.post(url, headers=shape, data=swapped, timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 200 and "<Deleted>" in r.text, r.text
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key="wh/decoy/object")

    for payload in ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
        _refused(_sign(stack, tables, "POST", url, {**headers, "x-amz-content-sha256": payload}, checked),
                 "is not allowed on DeleteObjects")
    # A hash of another body, no body, a body naming the victim: refused too.
    _refused(_sign(stack, tables, "POST", url, {"x-amz-content-sha256": _sha256(swapped)}, checked),
             "not the SHA-256 of the DeleteObjects body")
    _refused(_sign(stack, tables, "POST", url, headers), "needs its body")
    _refused(_sign(stack, tables, "POST", url, headers, _delete_body(own, tables.victim)),
             "outside the table's location")
    _refused(_sign(stack, tables, "POST", url, headers, "<Delete></Delete>"), "names no key")
    _refused(_sign(stack, tables, "POST", url, headers, "not xml"), "does not parse")
    _assert_intact(stack, BUCKET, tables.victim)
    _assert_intact(stack, BUCKET, own, b"own")


def test_delete_objects_is_bound_to_its_body(stack: Stack, tables: Tables) -> None:
    """A correctly bound DeleteObjects deletes the table's own keys; replaying its signature
    with another body naming the victim is refused by S3."""
    s3 = stack.catalog_s3()
    url = f"{stack.s3}/{BUCKET}?delete"
    own = [f"{tables.folder}data/a.bin", f"{tables.folder}data/b.bin"]
    for key in own:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    body = _delete_body(*own)
    # As Java's S3FileIO asks (no hash: the catalog adds the body's), and as botocore would (hash sent).
    for headers in ({"Content-Type": "application/xml"},
                    {"Content-Type": "application/xml", "x-amz-content-sha256": _sha256(body)}):
        signed = _sign(stack, tables, "POST", url, headers, body)
        assert signed.status_code == 200, signed.text
        assert signed.json()["headers"].get("x-amz-content-sha256", [_sha256(body)]) == [_sha256(body)]
        auth = signed.json()["headers"]["authorization"][0]
        assert "x-amz-content-sha256" in auth.partition("SignedHeaders=")[2].partition(",")[0].split(";")

        replayed = _delete_body(tables.victim)
        sent = {**headers, **{k: ", ".join(v) for k, v in signed.json()["headers"].items()}}
        # The same headers, another body: S3 checks the body against the signed hash.
        r = requests.post(url, headers=sent, data=replayed.encode(), timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 400 and "XAmzContentSHA256Mismatch" in r.text, r.text
        # The other body's hash instead: the signature no longer matches.
        r = requests.post(url, headers={**sent, "x-amz-content-sha256": _sha256(replayed)},
                          data=replayed.encode(), timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, r.text
        # Or unsigned: refused as well.
        r = requests.post(url, headers={**sent, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
                          data=replayed.encode(), timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 403, r.text
        _assert_intact(stack, BUCKET, tables.victim)

        # The body that was signed deletes the table's own keys.
        r = requests.post(url, headers=sent, data=body.encode(), timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200 and r.text.count("<Deleted>") == 2, r.text
        for key in own:
            with pytest.raises(s3.exceptions.NoSuchKey):
                s3.get_object(Bucket=BUCKET, Key=key)
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    _assert_intact(stack, BUCKET, tables.victim)


def test_acls_and_bucket_sub_resources_are_refused(stack: Stack, tables: Tables) -> None:
    """Object ?acl reads and writes, x-amz-acl: public-read, and bucket-level ?policy, ?acl,
    ?versioning, ?uploads with a prefix inside the table."""
    s3 = stack.catalog_s3()
    key = f"{tables.folder}data/private.bin"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"private")
    grants_before = s3.get_object_acl(Bucket=BUCKET, Key=key)["Grants"]
    # The shapes work with the catalog's key.
    s3.get_bucket_acl(Bucket=BUCKET)
    s3.get_bucket_versioning(Bucket=BUCKET)
    s3.list_multipart_uploads(Bucket=BUCKET, Prefix=tables.folder)

    object_uri = f"{stack.s3}/{BUCKET}/{key}"
    _refused(_sign(stack, tables, "GET", f"{object_uri}?acl"), 'sub-resource ?"acl"')
    _refused(_sign(stack, tables, "PUT", f"{object_uri}?acl", {"x-amz-acl": "public-read"}), 'sub-resource ?"acl"')
    _refused(_sign(stack, tables, "PUT", object_uri, {"x-amz-acl": "public-read"}),
             "header x-amz-acl sets permissions")
    _refused(_sign(stack, tables, "PUT", object_uri,
                   {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'}),
             "sets permissions")
    bucket = f"{stack.s3}/{BUCKET}"
    for sub in ("policy", "acl", "versioning", "uploads", "versions", "tagging", "lifecycle", "cors", "website"):
        _refused(_sign(stack, tables, "GET", f"{bucket}?{sub}&prefix={tables.folder}"), f'sub-resource ?"{sub}"')
    for sub in ("tagging", "retention", "legal-hold", "torrent", "attributes"):
        _refused(_sign(stack, tables, "GET", f"{object_uri}?{sub}"), f'sub-resource ?"{sub}"')
    _refused(_sign(stack, tables, "HEAD", bucket), "HeadBucket")
    _refused(_sign(stack, tables, "GET", f"{object_uri}?unknown=1"), 'query parameter ?"unknown"')
    for header, value in (("x-amz-website-redirect-location", "/x"), ("x-amz-object-lock-mode", "COMPLIANCE"),
                          ("x-amz-bypass-governance-retention", "true"), ("x-amz-metadata-directive", "REPLACE")):
        r = _sign(stack, tables, "PUT", object_uri, {header: value})
        assert r.status_code == 403 and header in r.json()["error"]["message"], r.text
    assert s3.get_object_acl(Bucket=BUCKET, Key=key)["Grants"] == grants_before
    _assert_intact(stack, BUCKET, key, b"private")


def test_keys_and_listings_stay_in_the_table_folder(stack: Stack, tables: Tables) -> None:
    """Listing prefixes must be the table's folder (a prefix without the slash would list
    siblings such as …/x10-…), keys with dot segments or another bucket are refused."""
    s3 = stack.catalog_s3()
    sibling = tables.folder.rstrip("/") + "0/data/f.bin"
    s3.put_object(Bucket=BUCKET, Key=sibling, Body=b"sibling")
    bucket = f"{stack.s3}/{BUCKET}"
    # The shape works with the catalog's key: the prefix without its slash lists the sibling.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=tables.folder.rstrip("/"))
    assert sibling in [o["Key"] for o in listed.get("Contents", [])]

    _refused(_sign(stack, tables, "GET", f"{bucket}?list-type=2&prefix={tables.folder.rstrip('/')}"),
             "start with the table's location and a slash")
    _refused(_sign(stack, tables, "GET", f"{bucket}?list-type=2&prefix=wh/"), "start with the table's location")
    _refused(_sign(stack, tables, "GET", f"{bucket}?list-type=2"), "ListObjectsV2 needs ?prefix")
    for path in (f"{tables.folder}../../theirs/", f"{tables.folder}%2e%2e/%2E%2E/theirs/", f"{tables.folder}..%5C"):
        _refused(_sign(stack, tables, "GET", f"{bucket}/{path}x"), "segment" if "5C" not in path else "backslash")
    _refused(_sign(stack, tables, "GET", f"{bucket}/{sibling}"), "outside the table's location")
    _refused(_sign(stack, tables, "DELETE", f"{bucket}/{tables.victim}"), "outside the table's location")
    _refused(_sign(stack, tables, "GET", f"{stack.s3}/{OTHER_BUCKET}/secret.csv"),
             "not the warehouse's endpoint and bucket")
    # Virtual-hosted for another bucket, with our bucket in the path.
    endpoint = stack.s3.removeprefix("http://")
    _refused(_sign(stack, tables, "GET", f"http://{OTHER_BUCKET}.{endpoint}/{BUCKET}/{tables.folder}f"),
             "not the warehouse's endpoint and bucket")
    _refused(_sign(stack, tables, "GET", f"http://u:p@{endpoint}/{BUCKET}/{tables.folder}f"),
             "user information")
    r = requests.post(f"{stack.url}/{tables.sign_path}", timeout=HTTP_TIMEOUT_S,
                      headers={"Authorization": f"Bearer {tables.writer}"},
                      json={"region": "eu-west-1", "method": "GET", "headers": {},
                            "uri": f"{bucket}/{tables.folder}f"})
    _refused(r, "warehouse's region")

    # The table's own folder is listed, and S3 accepts the signature.
    headers: dict[str, str] = {}
    uri = f"{bucket}?list-type=2&prefix={quote(tables.folder, safe='')}"
    listed = _send("GET", uri, headers, _sign(stack, tables, "GET", uri, headers))
    assert listed.status_code == 200 and f"<Key>{tables.folder}metadata/" in listed.text, listed.text
    assert sibling not in listed.text
    _assert_intact(stack, BUCKET, tables.victim)


def test_a_real_client_keeps_working(stack: Stack, tables: Tables) -> None:
    """botocore with PyIceberg's own remote signer (as PyIceberg's fsspec FileIO uses it): reads
    with Range, HEAD, PUT, multipart upload, listing the table's folder, delete."""
    signer = S3V4RestSigner({"uri": stack.url, "s3.signer.endpoint": tables.sign_path, "token": tables.writer})
    client = boto3.client("s3", endpoint_url=stack.s3, region_name=REGION,
                          config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))
    client.meta.events.register("before-sign.s3", signer)
    key = f"{tables.folder}data/client.bin"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"0123456789", ContentType="application/octet-stream")
    assert client.get_object(Bucket=BUCKET, Key=key, Range="bytes=2-5")["Body"].read() == b"2345"
    assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 10
    big = f"{tables.folder}data/multipart.bin"
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=big)["UploadId"]
    part = client.upload_part(Bucket=BUCKET, Key=big, UploadId=upload, PartNumber=1, Body=b"p" * 1024)
    assert client.list_parts(Bucket=BUCKET, Key=big, UploadId=upload)["Parts"][0]["PartNumber"] == 1
    client.complete_multipart_upload(Bucket=BUCKET, Key=big, UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    aborted = client.create_multipart_upload(Bucket=BUCKET, Key=f"{big}.2")["UploadId"]
    client.abort_multipart_upload(Bucket=BUCKET, Key=f"{big}.2", UploadId=aborted)
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{tables.folder}data/")
    assert {key, big} <= {o["Key"] for o in listed["Contents"]}
    client.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(client.exceptions.ClientError):
        client.head_object(Bucket=BUCKET, Key=key)
    # What the signer refuses surfaces as an error of the client, and S3 is never reached.
    with pytest.raises(Exception, match="403"):
        client.copy_object(Bucket=BUCKET, Key=f"{tables.folder}data/copy.csv",
                           CopySource={"Bucket": OTHER_BUCKET, "Key": "secret.csv"})
    with pytest.raises(Exception, match="403"):
        client.get_object(Bucket=BUCKET, Key=tables.victim)
    _assert_intact(stack, BUCKET, tables.victim)


def test_tables_never_claim_another_tables_storage(stack: Stack, tables: Tables) -> None:
    """Issue 14: the writer of ``mine`` created ``mine.root`` at the warehouse root and
    ``mine.evil`` at ``theirs.t``'s location, and their sign endpoints then signed reads and
    deletes of ``theirs.t``'s files. Every such location is refused now; nothing is created."""
    theirs = stack.catalog("admin").load_table("theirs.t").location()
    warehouse = f"s3://{BUCKET}/wh"
    headers = {"Authorization": f"Bearer {tables.writer}"}
    for name, location in (("root", warehouse), ("root2", f"{warehouse}/"), ("evil", theirs),
                           ("inside", f"{theirs}/data"), ("ns", f"{warehouse}/mine"),
                           ("next", f"{warehouse}/theirs/next"), ("up", f"{warehouse}/mine/../theirs/x"),
                           ("bucket", f"s3://{OTHER_BUCKET}/wh/mine/x")):
        body = {"name": name, "location": location,
                "schema": {"type": "struct", "schema-id": 0, "fields": [
                    {"id": 1, "name": "id", "required": False, "type": "long"}]}}
        r = requests.post(f"{stack.url}/v1/default/namespaces/mine/tables", json=body, headers=headers,
                          timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 400, (location, r.text)
        assert "Storage confinement" in r.json()["error"]["message"], r.text
        r = requests.get(f"{stack.url}/v1/default/namespaces/mine/tables/{name}", headers=headers,
                         timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 404, r.text
    # The writer's own table, at a location it may have, works as before.
    own = stack.catalog("writer").create_table("mine.placed", SCHEMA, location=f"{warehouse}/mine/placed")
    assert own.location() == f"{warehouse}/mine/placed"
    _assert_intact(stack, BUCKET, tables.victim)


def test_a_reader_of_one_namespace_lists_what_it_may_read(stack: Stack, tables: Tables) -> None:
    """PyIceberg's ``list_namespaces`` works for a principal granted one namespace (it was 403),
    and shows nothing else; listing another namespace's tables stays refused."""
    writer = stack.catalog("writer")
    assert writer.list_namespaces() == [("mine",)]
    assert ("mine", "x") in writer.list_tables("mine")
    with pytest.raises(Exception, match="Forbidden|403"):
        writer.list_tables("theirs")
    assert ("theirs",) in stack.catalog("admin").list_namespaces()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--s3":
        _serve_s3(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"usage: {sys.argv[0]} --s3 HOST PORT")
