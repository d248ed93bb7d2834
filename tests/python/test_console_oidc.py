"""The console's OpenID Connect sign-in (authorization code with PKCE) in
Debian's chromium, against an identity provider on loopback that checks
what a real one checks: the client id, the redirect URI, the state's round
trip (in the console) and the PKCE verifier against its S256 challenge."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from test_auth import WAREHOUSE, SecureFloe, secure_server
from test_console import _page, _shot, _token, browser  # noqa: F401  (fixture)

CLIENT_ID = "floe-console"
AUDIENCE = "floe"
SUBJECT = "user-42"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Provider:
    """An OpenID Connect provider with one user, who is always signed in."""

    url: str = ""
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def jwks(self) -> dict:
        public = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": _b64url(public), "kid": "idp-1", "alg": "EdDSA", "use": "sig"}]}

    def access_token(self) -> str:
        now = int(time.time())
        header = _b64url(json.dumps({"alg": "EdDSA", "kid": "idp-1", "typ": "JWT"}).encode())
        claims = _b64url(json.dumps({"sub": SUBJECT, "iss": self.url, "aud": AUDIENCE, "iat": now, "exp": now + 300}).encode())
        signature = _b64url(self.key.sign(f"{header}.{claims}".encode()))
        return f"{header}.{claims}.{signature}"

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict]:
        wanted = {"response_type": "code", "client_id": CLIENT_ID, "code_challenge_method": "S256"}
        if any(query.get(k) != v for k, v in wanted.items()) or not query.get("code_challenge") or not query.get("state"):
            return 400, {}, {"error": "invalid_request"}
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = query
        return 302, {"Location": f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"}, {}

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        with self.lock:
            asked = self.codes.pop(form.get("code", ""), None)
            self.exchanges.append(form.get("code", ""))
        if asked is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        if form.get("client_id") != asked["client_id"] or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "client or redirect URI differs"}
        if _b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest()) != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        return 200, {"access_token": self.access_token(), "token_type": "Bearer", "expires_in": 300}


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            # The console calls discovery and the token endpoint from the page.
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._answer(200, {
                    "issuer": provider.url,
                    "authorization_endpoint": f"{provider.url}/authorize",
                    "token_endpoint": f"{provider.url}/token",
                    "jwks_uri": f"{provider.url}/jwks",
                    "code_challenge_methods_supported": ["S256"],
                })
            elif url.path == "/jwks":
                self._answer(200, provider.jwks())
            elif url.path == "/authorize":
                status, headers, body = provider.authorize({k: v[0] for k, v in parse_qs(url.query).items()})
                self._answer(status, body, headers)
            else:
                self._answer(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlparse(self.path).path == "/token":
                self._answer(*provider.token(form))
            else:
                self._answer(404, {"error": "not_found"})

    return Handler


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    idp = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(idp))
    idp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sso(make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[SecureFloe]:
    oidc = (
        f"  oidc:\n    issuer: {provider.url}\n    audience: {AUDIENCE}\n"
        f"    jwks_url: {provider.url}/jwks\n    console_client_id: {CLIENT_ID}\n"
    )
    with secure_server(make_database(), tmp_path_factory.mktemp("sso"), oidc) as floe:
        floe.cli(["client", "create", "--name", "analyst", "--role", "reader", "--warehouse", WAREHOUSE,
                  "--oidc-subject", SUBJECT, "--no-secret"])
        headers = {"Authorization": f"Bearer {_token(floe, 'admin')}"}
        made = requests.post(f"{floe.server.url}/v1/{WAREHOUSE}/namespaces", json={"namespace": ["sso_sales"]}, headers=headers, timeout=10)
        assert made.status_code == 200, made.text
        yield floe


def test_single_sign_on_with_pkce(sso: SecureFloe, provider: Provider, browser: object) -> None:  # noqa: F811
    csp = requests.get(f"{sso.server.url}/ui/", timeout=10).headers["content-security-policy"]
    assert f"connect-src 'self' {provider.url};" in csp

    page = _page(browser)
    page.goto(f"{sso.server.url}/ui/")
    host = provider.url.removeprefix("http://")
    _shot(page, "sign-in-sso")
    page.get_by_role("button", name=f"Sign in with {host}").click()
    page.get_by_text(f"Signed in: {SUBJECT}").wait_for()
    assert page.url == f"{sso.server.url}/ui/#/", page.url
    names = page.locator("section[aria-label='Namespaces'] li")
    names.first.wait_for()
    assert "sso_sales" in names.all_inner_texts()
    # A reader: no administration.
    assert page.get_by_role("link", name="Administration").is_hidden()
    assert len(provider.exchanges) == 1
    page.close()


def test_a_return_this_tab_did_not_start_is_refused(sso: SecureFloe, provider: Provider, browser: object) -> None:  # noqa: F811
    exchanges = len(provider.exchanges)
    page = _page(browser)
    page.goto(f"{sso.server.url}/ui/?code=stolen&state=forged")
    page.get_by_text("That sign-in was not started from this tab; sign in again.").wait_for()
    page.get_by_role("heading", name="Sign in to Floe").wait_for()
    assert page.get_by_text("Signed in:").count() == 0
    assert "code=" not in page.url
    # The code was never sent to the provider.
    assert len(provider.exchanges) == exchanges
    page.close()


def test_a_token_for_another_audience_is_not_accepted(sso: SecureFloe, provider: Provider) -> None:
    token = provider.access_token()
    assert requests.get(f"{sso.server.url}/v1/config", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    header, claims, _ = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    body["aud"] = "another-app"
    forged = f"{header}.{_b64url(json.dumps(body).encode())}"
    forged += "." + _b64url(provider.key.sign(forged.encode()))
    assert requests.get(f"{sso.server.url}/v1/config", headers={"Authorization": f"Bearer {forged}"}, timeout=10).status_code == 401
