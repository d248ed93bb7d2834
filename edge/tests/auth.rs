//! Authentication through the edge: token issuance, verification before the
//! cache answers, revocation through change events, rate limits, malformed
//! input, TLS, request limits and an external OpenID Connect issuer.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use std::time::Duration;

use base64::Engine;
use floe_shared::auth::{AuthConfig, Grant, Role};
use floe_shared::testkit::{self, grant};
use serde_json::{Value, json};

use support::*;

const TOKENS: &str = "/v1/oauth/tokens";

async fn create_client(origin: &Origin, name: &str, grants: Vec<Grant>) -> String {
    floe_origin::principals::create_client(
        origin.state.catalog.store(),
        origin.state.catalog.events(),
        floe_origin::principals::CreateClientRequest {
            name: name.into(),
            grants,
            oidc_subject: None,
            with_secret: true,
        },
    )
    .await
    .expect("client")
    .client_secret
    .expect("secret")
}

async fn token_request(http: &reqwest::Client, edge: &Edge, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(format!("{}{TOKENS}", edge.url))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn token(http: &reqwest::Client, edge: &Edge, id: &str, secret: &str) -> String {
    let (status, body) = token_request(
        http,
        edge,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "catalog"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

struct Stack {
    origin: Origin,
    edge: Edge,
    auth: AuthConfig,
    _dir: tempfile::TempDir,
}

async fn stack(tweak: impl FnOnce(&mut AuthConfig)) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let mut auth = testkit::auth_config(dir.path());
    tweak(&mut auth);
    let origin_auth = auth.clone();
    let origin = Origin::start_with(
        &sqlite_url(&dir),
        &dir.path().join("wh"),
        free_port(),
        |c| c.auth = origin_auth,
    )
    .await;
    let edge_auth = auth.clone();
    let edge = Edge::start(&[&origin.addr], |c| c.auth = edge_auth).await;
    Stack {
        origin,
        edge,
        auth,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authorization_and_a_warm_cache() {
    let s = stack(|a| a.rate_limit.failures_per_address_per_minute = 10_000).await;
    let http = reqwest::Client::new();
    s.edge.subscribed(&http).await;
    let etl_secret =
        create_client(&s.origin, "etl", vec![grant("default", &[], Role::Writer)]).await;
    let bob_secret = create_client(
        &s.origin,
        "bob",
        vec![grant("default", &["public"], Role::Reader)],
    )
    .await;

    // client_credentials in the form body.
    let (status, body) = token_request(
        &http,
        &s.edge,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "etl"),
            ("client_secret", &etl_secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let etl = body["access_token"].as_str().unwrap().to_string();
    // ... and with HTTP Basic.
    let r = http
        .post(format!("{}{TOKENS}", s.edge.url))
        .basic_auth("bob", Some(&bob_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bob = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // OAuth errors with their statuses.
    for (form, status, error) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "etl"),
                ("client_secret", "wrong"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", "x"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![("grant_type", "password")],
            400,
            "unsupported_grant_type",
        ),
        (vec![("client_id", "etl")], 400, "invalid_request"),
        (
            vec![("grant_type", "client_credentials"), ("client_id", "etl")],
            400,
            "invalid_request",
        ),
    ] {
        let (got, body) = token_request(&http, &s.edge, &form).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{form:?}"
        );
    }

    // A writer fills the cache; a principal without a grant there never reads it.
    let as_etl = |r: reqwest::RequestBuilder| r.bearer_auth(&etl);
    let r = as_etl(http.post(format!("{}/v1/namespaces", s.edge.url)))
        .json(&json!({"namespace": ["finance"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = as_etl(http.post(format!("{}/v1/namespaces/finance/tables", s.edge.url)))
        .json(&table_body("ledger"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let load = format!("{}/v1/namespaces/finance/tables/ledger", s.edge.url);
    for expected in ["miss", "hit"] {
        let r = as_etl(http.get(&load)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-floe-cache"], expected);
    }
    let loads_before = s.origin.load_count(&http).await;
    let r = http.get(&load).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.headers().get("x-floe-cache").is_none(),
        "refused before the cache"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "ForbiddenException");
    let r = http
        .get(&load)
        .bearer_auth(&bob)
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "not even a 304");
    assert_eq!(s.origin.load_count(&http).await, loads_before);

    // 401s: missing, malformed, wrongly signed, expired, internal scope.
    let r = http.get(&load).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"floe\"");
    let other_dir = tempfile::tempdir().unwrap();
    let other = testkit::auth_config(other_dir.path());
    let now = testkit::now();
    for bad in [
        "not-a-token".to_string(),
        format!("{etl}x"),
        testkit::token(&other, "etl", now, now + 60),
        testkit::token(&s.auth, "etl", now - 120, now - 60),
    ] {
        let r = http.get(&load).bearer_auth(&bad).send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"floe\", error=\"invalid_token\""
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "NotAuthorizedException");
    }
    let r = http
        .get(format!("{}/internal/v1/principals/etl", s.edge.url))
        .bearer_auth(&etl)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the internal API is not served to clients");

    // Token exchange (refresh) keeps the principal.
    let (status, body) = token_request(
        &http,
        &s.edge,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &etl),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refreshed = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        http.get(&load)
            .bearer_auth(&refreshed)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // API keys act as their client.
    let key = floe_origin::principals::create_api_key(
        s.origin.state.catalog.store(),
        s.origin.state.catalog.events(),
        "etl",
        Default::default(),
    )
    .await
    .unwrap();
    let r = http
        .get(&load)
        .bearer_auth(&key.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Disabling the client: its tokens, secret and keys stop working at the
    // edge once the change event arrives, warm caches notwithstanding.
    floe_origin::principals::set_disabled(
        s.origin.state.catalog.store(),
        s.origin.state.catalog.events(),
        "etl",
        true,
    )
    .await
    .unwrap();
    wait_for(
        "disabled client refused",
        Duration::from_secs(10),
        async || {
            http.get(&load)
                .bearer_auth(&refreshed)
                .send()
                .await
                .unwrap()
                .status()
                == 401
        },
    )
    .await;
    assert_eq!(
        http.get(&load)
            .bearer_auth(&key.api_key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (status, _) = token_request(
        &http,
        &s.edge,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "etl"),
            ("client_secret", &etl_secret),
        ],
    )
    .await;
    assert_eq!(status, 401);

    // Rotating a secret: the old one stops working, the new one works.
    let rotated = floe_origin::principals::rotate_secret(
        s.origin.state.catalog.store(),
        s.origin.state.catalog.events(),
        "bob",
    )
    .await
    .unwrap()
    .client_secret
    .unwrap();
    wait_for("old secret refused", Duration::from_secs(10), async || {
        token_request(
            &http,
            &s.edge,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "bob"),
                ("client_secret", &bob_secret),
            ],
        )
        .await
        .0 == 401
    })
    .await;
    token(&http, &s.edge, "bob", &rotated).await;

    // Secrets and tokens never reach the metrics.
    let metrics = http
        .get(&s.edge.metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let origin_metrics = http
        .get(format!("http://{}/metrics", s.origin.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for secret in [&etl_secret, &bob_secret, &rotated, &etl, &key.api_key] {
        assert!(!metrics.contains(secret.as_str()) && !origin_metrics.contains(secret.as_str()));
    }
    assert!(metrics.contains("floe_edge_auth_total{result=\"issued\",stage=\"token\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_rate_limited_and_malformed_input_is_refused() {
    let s = stack(|a| {
        a.rate_limit.failures_per_client_per_minute = 3;
        a.rate_limit.failures_per_address_per_minute = 10_000;
    })
    .await;
    let http = reqwest::Client::new();
    let secret = create_client(&s.origin, "target", vec![grant("*", &[], Role::Reader)]).await;
    let guess = [
        ("grant_type", "client_credentials"),
        ("client_id", "target"),
        ("client_secret", "guess"),
    ];
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http
            .post(format!("{}{TOKENS}", s.edge.url))
            .form(&guess)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "60");
        }
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // While limited, even the right secret waits.
    let (status, _) = token_request(
        &http,
        &s.edge,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "target"),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(status, 429);

    // Malformed forms and credentials: OAuth errors, never a 5xx, never a token.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces: &[&[u8]] = &[
        b"grant_type=",
        b"client_credentials",
        b"&client_id=",
        b"&client_secret=",
        b"%",
        b"%ZZ",
        b"%FF",
        b"=",
        b"&",
        b"urn:ietf:params:oauth:grant-type:token-exchange",
        b"&subject_token=",
        b"eyJ",
        b"\xff\xfe",
        b"+",
        b"&scope=catalog",
        b"&scope=admin",
        b"x",
    ];
    for i in 0..300 {
        let mut body = Vec::new();
        for _ in 0..(next() % 8) {
            body.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let mut request = http
            .post(format!("{}{TOKENS}", s.edge.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if i % 3 == 0 {
            let junk: Vec<u8> = (0..(next() % 40))
                .map(|_| b"ab:=+/\x01 "[(next() % 8) as usize])
                .collect();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&junk);
            request = request.header("authorization", format!("Basic {encoded}"));
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let reply: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            matches!(status, 400 | 401 | 429),
            "{status} for {:?}: {reply}",
            String::from_utf8_lossy(&body)
        );
        assert!(reply["error"].is_string() && reply.get("access_token").is_none());
    }
    // Random bearer credentials on the verification path.
    for _ in 0..200 {
        let junk: String = (0..(next() % 120))
            .map(|_| "eyJ.AZaz09-_~floe_"[(next() % 18) as usize..][..1].to_string())
            .collect();
        let r = http
            .get(format!("{}/v1/config", s.edge.url))
            .header("authorization", format!("Bearer {junk}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{junk}");
    }
    // A body over the limit.
    let big = "a".repeat(64 * 1024);
    let r = http
        .post(format!("{}{TOKENS}", s.edge.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_http2_and_request_limits() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let origin = Origin::start(&sqlite_url(&dir), &dir.path().join("wh")).await;
    let tls_port = free_port();
    let edge = Edge::start(&[&origin.addr], |c| {
        c.tls.listen = vec![format!("127.0.0.1:{tls_port}")];
        c.tls.cert_path = cert_path.display().to_string();
        c.tls.key_path = key_path.display().to_string();
        c.limits.max_header_bytes = 8 * 1024;
        c.limits.max_body_bytes = 64 * 1024;
    })
    .await;
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap();
    let url = format!("https://localhost:{tls_port}");
    seed(&https, &url, "tls", "t").await;
    let r = https
        .get(format!("{url}/v1/namespaces/tls/tables/t"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.version(),
        reqwest::Version::HTTP_2,
        "h2 negotiated by ALPN"
    );
    let r = https
        .get(format!("{url}/v1/namespaces/tls/tables/t"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-floe-cache"], "hit");
    // This edge checks no credentials: requests that carry some are never
    // answered from the shared cache (the origin may judge them).
    let r = https
        .get(format!("{url}/v1/namespaces/tls/tables/t"))
        .bearer_auth("someone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-floe-cache").is_none(), "bypassed");

    // Limits, on the plain listener: 431 and 413 with ErrorModel bodies, nothing forwarded.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/v1/namespaces", edge.url))
        .header("x-padding", "p".repeat(9 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 431);
    let huge = json!({"namespace": ["big"], "properties": {"p": "x".repeat(70 * 1024)}});
    let r = http
        .post(format!("{}/v1/namespaces", edge.url))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "PayloadTooLargeException");
    // Streamed without a length: counted as it arrives.
    let status = chunked_post(&edge.url, "/v1/namespaces", huge.to_string().as_bytes()).await;
    assert_eq!(status, 413);
    let r = http
        .get(format!("{}/v1/namespaces/big", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "nothing was created");
}

/// POSTs `body` with `Transfer-Encoding: chunked` on a raw socket; returns the status.
async fn chunked_post(base: &str, path: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(8 * 1024) {
        // The edge may answer and stop reading before the end.
        if socket
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || socket.write_all(chunk).await.is_err()
            || socket.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut reply = vec![0u8; 64];
    let n = socket.read(&mut reply).await.unwrap();
    let line = String::from_utf8_lossy(&reply[..n]).to_string();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_openid_connect_tokens_from_a_jwks_on_loopback() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk, jwk::JwkSet};
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let encoding = EncodingKey::from_ec_der(key_pair.serialized_der());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("idp-1".into());
    let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    // The identity provider's JWKS endpoint, on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || async move { jwks }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let issuer = "https://idp.example.test";
    let s = stack(|a| {
        a.oidc.issuer = issuer.into();
        a.oidc.audience = "floe".into();
        a.oidc.jwks_url = jwks_url.clone();
    })
    .await;
    floe_origin::principals::create_client(
        s.origin.state.catalog.store(),
        s.origin.state.catalog.events(),
        floe_origin::principals::CreateClientRequest {
            name: "analyst".into(),
            grants: vec![grant("default", &[], Role::Reader)],
            oidc_subject: Some("user-42".into()),
            with_secret: false,
        },
    )
    .await
    .unwrap();
    let now = testkit::now();
    let sign = |sub: &str, iss: &str, aud: &str, exp: u64| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("idp-1".into());
        encode(
            &header,
            &json!({"sub": sub, "iss": iss, "aud": aud, "exp": exp, "iat": now}),
            &encoding,
        )
        .unwrap()
    };
    let http = reqwest::Client::new();
    let url = format!("{}/v1/namespaces", s.edge.url);
    let r = http
        .get(&url)
        .bearer_auth(sign("user-42", issuer, "floe", now + 300))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Identity providers often leave out `typ`.
    let mut bare = Header::new(Algorithm::ES256);
    bare.kid = Some("idp-1".into());
    bare.typ = None;
    let claims =
        json!({"sub": "user-42", "iss": issuer, "aud": "floe", "exp": now + 300, "iat": now});
    let r = http
        .get(&url)
        .bearer_auth(encode(&bare, &claims, &encoding).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a token without typ");
    let r = http
        .post(&url)
        .bearer_auth(sign("user-42", issuer, "floe", now + 300))
        .json(&json!({"namespace": ["n"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a reader");
    for (token, why) in [
        (
            sign("user-42", "https://evil.test", "floe", now + 300),
            "issuer",
        ),
        (sign("user-42", issuer, "other", now + 300), "audience"),
        (sign("user-42", issuer, "floe", now - 120), "expired"),
        (sign("user-7", issuer, "floe", now + 300), "unknown subject"),
    ] {
        let r = http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 401, "{why}");
    }
    // The origin checks the same token itself.
    let r = http
        .get(format!("http://{}/v1/namespaces", s.origin.addr))
        .bearer_auth(sign("user-42", issuer, "floe", now + 300))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_origin_reaches_the_others_through_postgres() {
    let db = floe_shared::testkit::PgDb::new("auth").await;
    let dir = tempfile::tempdir().unwrap();
    let auth = testkit::auth_config(dir.path());
    let start = |auth: AuthConfig| {
        let (url, wh) = (db.url.clone(), dir.path().join("wh"));
        async move { Origin::start_with(&url, &wh, free_port(), |c| c.auth = auth).await }
    };
    let a = start(auth.clone()).await;
    let b = start(auth.clone()).await;
    create_client(&a, "svc", vec![grant("*", &[], Role::Reader)]).await;
    let now = testkit::now();
    let token = testkit::token(&auth, "svc", now - 5, now + 600);
    let http = reqwest::Client::new();
    let on_b = format!("http://{}/v1/namespaces", b.addr);
    assert_eq!(
        http.get(&on_b)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    floe_origin::principals::set_disabled(
        a.state.catalog.store(),
        a.state.catalog.events(),
        "svc",
        true,
    )
    .await
    .unwrap();
    wait_for(
        "origin B refuses the disabled client",
        Duration::from_secs(10),
        async || {
            http.get(&on_b)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
                == 401
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_guessing_many_clients_is_limited() {
    let s = stack(|a| {
        a.rate_limit.failures_per_client_per_minute = 1_000;
        a.rate_limit.failures_per_address_per_minute = 4;
    })
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..7 {
        let id = format!("guess-{i}");
        let (status, _) = token_request(
            &http,
            &s.edge,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "x"),
            ],
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..4], &[401, 401, 401, 401], "{statuses:?}");
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
    // Guessing API keys from that address is refused on every route too.
    let r = http
        .get(format!("{}/v1/config", s.edge.url))
        .bearer_auth("floe_0123456789abcdef_guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

// ---- credential changes: CLI and management API, every tier -----------------

/// Documented bound for tiers that hear change events: a serving origin reads
/// the principal change log once a second (what the CLI changed) and relays
/// what it changed itself at once; delivery to edges takes milliseconds.
const EVENT_BOUND: Duration = Duration::from_secs(2);
/// `auth.principal_cache_seconds` in these tests: the documented bound for an
/// edge that missed the change event.
const CACHE_SECONDS: u64 = 5;

/// An origin, an edge subscribed to its change events and one that hears
/// nothing (events off), each with warm caches once a test has used them.
struct Tiers {
    origin: Origin,
    live: Edge,
    deaf: Edge,
    auth: AuthConfig,
    url: String,
    _pg: Option<floe_shared::testkit::PgDb>,
    _dir: tempfile::TempDir,
}

impl Tiers {
    async fn start(postgres: bool) -> Tiers {
        let dir = tempfile::tempdir().unwrap();
        let pg = if postgres {
            Some(floe_shared::testkit::PgDb::new("edge_auth").await)
        } else {
            None
        };
        let url = pg
            .as_ref()
            .map_or_else(|| sqlite_url(&dir), |pg| pg.url.clone());
        let mut auth = testkit::auth_config(dir.path());
        auth.principal_cache_seconds = CACHE_SECONDS;
        auth.rate_limit.failures_per_client_per_minute = 10_000;
        auth.rate_limit.failures_per_address_per_minute = 10_000;
        let origin_auth = auth.clone();
        let origin = Origin::start_with(&url, &dir.path().join("wh"), free_port(), |c| {
            c.auth = origin_auth;
        })
        .await;
        let live_auth = auth.clone();
        let live = Edge::start(&[&origin.addr], |c| c.auth = live_auth).await;
        let deaf_auth = auth.clone();
        let deaf = Edge::start(&[&origin.addr], |c| {
            c.auth = deaf_auth;
            c.events.enabled = false;
        })
        .await;
        live.subscribed(&reqwest::Client::new()).await;
        Tiers {
            origin,
            live,
            deaf,
            auth,
            url,
            _pg: pg,
            _dir: dir,
        }
    }

    fn origin_url(&self) -> String {
        format!("http://{}", self.origin.addr)
    }

    async fn record(&self, id: &str) -> floe_shared::auth::Principal {
        self.origin
            .state
            .catalog
            .store()
            .principal(id)
            .await
            .unwrap()
            .expect("principal")
            .principal
    }
}

/// What `floe-origin client …` / `api-key …` open: a pool and an event bus of
/// their own on the same database (another process id, no stream, no hooks).
struct Cli {
    store: floe_origin::store::Store,
    events: floe_origin::events::EventBus,
}

impl Cli {
    async fn open(url: &str) -> Cli {
        let store = floe_origin::store::Store::connect(&floe_origin::config::DatabaseConfig {
            url: url.to_string(),
            max_connections: 2,
            ..Default::default()
        })
        .await
        .unwrap();
        let events = floe_origin::events::EventBus::start(store.clone(), url);
        Cli { store, events }
    }
}

const LOAD: &str = "/v1/namespaces/ops/tables/t";

async fn token_status(
    http: &reqwest::Client,
    edge: &Edge,
    id: &str,
    secret: &str,
) -> (u16, String) {
    let (status, body) = token_request(
        http,
        edge,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ],
    )
    .await;
    (
        status,
        body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

async fn exchange(http: &reqwest::Client, edge: &Edge, subject: &str) -> (u16, String) {
    let (status, body) = token_request(
        http,
        edge,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    )
    .await;
    (
        status,
        body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Status of a table load; `hit` when the edge answered it from its cache.
async fn load(http: &reqwest::Client, base: &str, credential: &str) -> (u16, bool) {
    let r = http
        .get(format!("{base}{LOAD}"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    let hit = r.headers().get("x-floe-cache").is_some_and(|v| v == "hit");
    (r.status().as_u16(), hit)
}

/// A token as a tier holding `generation`'s record would mint it at `iat`.
fn minted(auth: &AuthConfig, sub: &str, iat: u64, generation: u64) -> String {
    let claims = floe_shared::token::Claims {
        iss: auth.issuer.clone(),
        sub: sub.into(),
        iat,
        exp: iat + 3600,
        jti: String::new(),
        scope: floe_shared::auth::CATALOG_SCOPE.into(),
        generation,
    };
    String::from_utf8(auth.signer().unwrap().issue(&claims).unwrap().to_vec()).unwrap()
}

/// A documented bound, counted from the moment a change was committed.
#[derive(Clone, Copy)]
struct Bound {
    changed: std::time::Instant,
    within: Duration,
}

fn within(changed: std::time::Instant, within: Duration) -> Bound {
    Bound { changed, within }
}

/// Waits until `check` holds, failing once the bound has passed; reports how
/// long after the change it held.
async fn by(bound: Bound, what: &str, mut check: impl AsyncFnMut() -> bool) {
    loop {
        if check().await {
            eprintln!("{what}: {:?} after the change", bound.changed.elapsed());
            return;
        }
        assert!(
            bound.changed.elapsed() < bound.within,
            "{what}: not true {:?} after the change (the documented bound)",
            bound.within
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Seeds `ops.t` with `writer` and loads it through both edges until each
/// answers from its cache.
async fn warm(http: &reqwest::Client, t: &Tiers, writer: &str, readers: &[(&Edge, &str)]) {
    for (path, body) in [
        ("/v1/namespaces", json!({"namespace": ["ops"]})),
        ("/v1/namespaces/ops/tables", table_body("t")),
    ] {
        let r = http
            .post(format!("{}{path}", t.live.url))
            .bearer_auth(writer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(matches!(r.status().as_u16(), 200 | 409), "{}", r.status());
    }
    for (edge, credential) in readers {
        wait_for("a cached load", Duration::from_secs(10), async || {
            load(http, &edge.url, credential).await == (200, true)
        })
        .await;
    }
}

async fn a_cli_rotation_ends_the_old_secret_and_every_token_minted_with_it(postgres: bool) {
    let t = Tiers::start(postgres).await;
    let http = reqwest::Client::new();
    let s0 = create_client(&t.origin, "etl", vec![grant("*", &[], Role::Writer)]).await;
    let live_token = token(&http, &t.live, "etl", &s0).await;
    let deaf_token = token(&http, &t.deaf, "etl", &s0).await;
    let (status, exchanged) = exchange(&http, &t.live, &live_token).await;
    assert_eq!(status, 200);
    warm(
        &http,
        &t,
        &live_token,
        &[(&t.live, &live_token), (&t.deaf, &deaf_token)],
    )
    .await;
    let before = t.record("etl").await;

    // `floe-origin client rotate etl`, from another process.
    let cli = Cli::open(&t.url).await;
    let s1 = floe_origin::principals::rotate_secret(&cli.store, &cli.events, "etl")
        .await
        .unwrap()
        .client_secret
        .unwrap();
    let changed = std::time::Instant::now();
    let after = t.record("etl").await;
    assert!(after.generation > before.generation);
    // What a tier still holding the old record mints in the rotation's own second.
    let same_second = minted(&t.auth, "etl", after.not_before, before.generation);
    // The edge without events still takes the old secret for now, and
    // mints a token with it after the rotation: that token must die too.
    let (_, stale) = token_status(&http, &t.deaf, "etl", &s0).await;

    let (status, fresh) = token_status(&http, &t.live, "etl", &s1).await;
    assert_eq!(status, 200, "the new secret works at once");
    assert_eq!(load(&http, &t.live.url, &fresh).await.0, 200);
    assert_eq!(load(&http, &t.origin_url(), &fresh).await.0, 200);

    let old_tokens = [
        ("the token minted before", live_token.as_str()),
        ("the other edge's token", deaf_token.as_str()),
        ("the exchanged token", exchanged.as_str()),
        ("a token of the rotation's second", same_second.as_str()),
        ("a token minted by a stale edge", stale.as_str()),
    ];
    let deadline = within(changed, EVENT_BOUND);
    by(
        deadline,
        "old secret refused (subscribed edge)",
        async || token_status(&http, &t.live, "etl", &s0).await.0 == 401,
    )
    .await;
    for (what, old) in old_tokens {
        if old.is_empty() {
            continue;
        }
        by(
            deadline,
            &format!("{what}: refused by the subscribed edge"),
            async || load(&http, &t.live.url, old).await.0 == 401,
        )
        .await;
        by(
            deadline,
            &format!("{what}: refused by the origin"),
            async || load(&http, &t.origin_url(), old).await.0 == 401,
        )
        .await;
    }
    by(deadline, "exchanging the old token refused", async || {
        exchange(&http, &t.live, &live_token).await.0 == 400
    })
    .await;
    assert_eq!(exchange(&http, &t.live, &exchanged).await.0, 400);

    // The edge that heard nothing: within principal_cache_seconds, whatever
    // its cache holds (the table load is answered by the edge alone).
    let deadline = within(changed, Duration::from_secs(CACHE_SECONDS));
    by(
        deadline,
        "old secret refused (edge without events)",
        async || token_status(&http, &t.deaf, "etl", &s0).await.0 == 401,
    )
    .await;
    for (what, old) in old_tokens {
        if old.is_empty() {
            continue;
        }
        by(
            deadline,
            &format!("{what}: refused by the edge without events"),
            async || load(&http, &t.deaf.url, old).await.0 == 401,
        )
        .await;
    }
    let (status, deaf_fresh) = token_status(&http, &t.deaf, "etl", &s1).await;
    assert_eq!(status, 200);
    assert_eq!(load(&http, &t.deaf.url, &deaf_fresh).await, (200, true));
    assert_eq!(load(&http, &t.deaf.url, &fresh).await, (200, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_rotation_ends_old_tokens_sqlite() {
    a_cli_rotation_ends_the_old_secret_and_every_token_minted_with_it(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_rotation_ends_old_tokens_postgres() {
    a_cli_rotation_ends_the_old_secret_and_every_token_minted_with_it(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_management_api_rotation_ends_tokens_of_its_second_and_their_exchanges() {
    let t = Tiers::start(false).await;
    let http = reqwest::Client::new();
    let admin_secret = create_client(&t.origin, "ops", vec![grant("*", &[], Role::Admin)]).await;
    let s0 = create_client(&t.origin, "etl", vec![grant("*", &[], Role::Writer)]).await;
    let admin = token(&http, &t.live, "ops", &admin_secret).await;
    let live_token = token(&http, &t.live, "etl", &s0).await;
    let deaf_token = token(&http, &t.deaf, "etl", &s0).await;
    let (_, exchanged) = exchange(&http, &t.live, &live_token).await;
    let (status, exchanged_twice) = exchange(&http, &t.live, &exchanged).await;
    assert_eq!(status, 200);
    warm(
        &http,
        &t,
        &live_token,
        &[(&t.live, &exchanged_twice), (&t.deaf, &deaf_token)],
    )
    .await;
    let before = t.record("etl").await;

    let r = http
        .post(format!("{}/management/v1/clients/etl/rotate", t.live.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s1 = r.json::<Value>().await.unwrap()["client-secret"]
        .as_str()
        .unwrap()
        .to_string();
    let changed = std::time::Instant::now();
    let after = t.record("etl").await;
    let same_second = minted(&t.auth, "etl", after.not_before, before.generation);

    // The edge without events: the new secret works at once (a refused
    // secret makes it read the record again), and from that read on it
    // refuses everything minted with the old one.
    let (status, fresh) = token_status(&http, &t.deaf, "etl", &s1).await;
    assert_eq!(
        status, 200,
        "the new secret works at once on an edge without events"
    );
    assert_eq!(token_status(&http, &t.deaf, "etl", &s0).await.0, 401);
    let old_tokens = [
        ("the token minted before", live_token.as_str()),
        ("the other edge's token", deaf_token.as_str()),
        ("the exchanged token", exchanged.as_str()),
        ("the token exchanged twice", exchanged_twice.as_str()),
        ("a token of the rotation's second", same_second.as_str()),
    ];
    for (what, old) in old_tokens {
        assert_eq!(load(&http, &t.deaf.url, old).await.0, 401, "{what}");
    }
    assert_eq!(load(&http, &t.deaf.url, &fresh).await, (200, true));

    let deadline = within(changed, EVENT_BOUND);
    for (what, old) in old_tokens {
        by(
            deadline,
            &format!("{what}: refused by the subscribed edge"),
            async || load(&http, &t.live.url, old).await.0 == 401,
        )
        .await;
        by(
            deadline,
            &format!("{what}: refused by the origin"),
            async || load(&http, &t.origin_url(), old).await.0 == 401,
        )
        .await;
    }
    for old in [&live_token, &exchanged, &exchanged_twice] {
        assert_eq!(
            exchange(&http, &t.live, old).await.0,
            400,
            "no exchange outlives the revocation of its subject"
        );
    }
    assert_eq!(token_status(&http, &t.live, "etl", &s0).await.0, 401);
    assert_eq!(load(&http, &t.live.url, &fresh).await.0, 200);
    let (status, renewed) = exchange(&http, &t.live, &fresh).await;
    assert_eq!(status, 200);
    assert_eq!(load(&http, &t.origin_url(), &renewed).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_disabling_from_the_cli_reach_every_tier() {
    let t = Tiers::start(false).await;
    let http = reqwest::Client::new();
    let secret = create_client(&t.origin, "etl", vec![grant("*", &[], Role::Writer)]).await;
    let live_token = token(&http, &t.live, "etl", &secret).await;
    let deaf_token = token(&http, &t.deaf, "etl", &secret).await;
    let (_, exchanged) = exchange(&http, &t.live, &live_token).await;
    warm(
        &http,
        &t,
        &live_token,
        &[(&t.live, &live_token), (&t.deaf, &deaf_token)],
    )
    .await;
    let before = t.record("etl").await;
    let cli = Cli::open(&t.url).await;

    floe_origin::principals::revoke_tokens(&cli.store, &cli.events, "etl")
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    let after = t.record("etl").await;
    let same_second = minted(&t.auth, "etl", after.not_before, before.generation);
    let deadline = within(changed, EVENT_BOUND);
    for (what, old) in [
        ("the token minted before", live_token.as_str()),
        ("the exchanged token", exchanged.as_str()),
        ("a token of the revocation's second", same_second.as_str()),
    ] {
        for (tier, base) in [
            ("subscribed edge", t.live.url.clone()),
            ("origin", t.origin_url()),
        ] {
            by(
                deadline,
                &format!("{what}: refused by the {tier}"),
                async || load(&http, &base, old).await.0 == 401,
            )
            .await;
        }
    }
    let deadline = within(changed, Duration::from_secs(CACHE_SECONDS));
    by(
        deadline,
        "revoked token refused by the edge without events",
        async || load(&http, &t.deaf.url, &deaf_token).await.0 == 401,
    )
    .await;
    // The secret still works, for new tokens.
    let renewed = token(&http, &t.live, "etl", &secret).await;
    assert_eq!(load(&http, &t.live.url, &renewed).await.0, 200);
    assert_eq!(load(&http, &t.origin_url(), &renewed).await.0, 200);

    floe_origin::principals::set_disabled(&cli.store, &cli.events, "etl", true)
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    let deadline = within(changed, EVENT_BOUND);
    by(deadline, "disabled client's secret refused", async || {
        token_status(&http, &t.live, "etl", &secret).await.0 == 401
    })
    .await;
    for (tier, base) in [
        ("subscribed edge", t.live.url.clone()),
        ("origin", t.origin_url()),
    ] {
        by(
            deadline,
            &format!("disabled client's token refused by the {tier}"),
            async || load(&http, &base, &renewed).await.0 == 401,
        )
        .await;
    }
    let deadline = within(changed, Duration::from_secs(CACHE_SECONDS));
    by(
        deadline,
        "disabled client refused by the edge without events",
        async || token_status(&http, &t.deaf, "etl", &secret).await.0 == 401,
    )
    .await;
    // Enabling again does not bring the old tokens back.
    floe_origin::principals::set_disabled(&cli.store, &cli.events, "etl", false)
        .await
        .unwrap();
    by(
        within(std::time::Instant::now(), EVENT_BOUND),
        "enabled again",
        async || token_status(&http, &t.live, "etl", &secret).await.0 == 200,
    )
    .await;
    assert_eq!(load(&http, &t.live.url, &renewed).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_rotated_or_revoked_from_the_cli() {
    let t = Tiers::start(false).await;
    let http = reqwest::Client::new();
    let secret = create_client(&t.origin, "etl", vec![grant("*", &[], Role::Writer)]).await;
    let writer = token(&http, &t.live, "etl", &secret).await;
    let key = floe_origin::principals::create_api_key(
        t.origin.state.catalog.store(),
        t.origin.state.catalog.events(),
        "etl",
        Default::default(),
    )
    .await
    .unwrap();
    warm(
        &http,
        &t,
        &writer,
        &[(&t.live, &key.api_key), (&t.deaf, &key.api_key)],
    )
    .await;
    assert_eq!(load(&http, &t.origin_url(), &key.api_key).await.0, 200);
    let cli = Cli::open(&t.url).await;

    let rotated = floe_origin::principals::rotate_api_key(&cli.store, &cli.events, &key.key_id)
        .await
        .unwrap()
        .api_key;
    let changed = std::time::Instant::now();
    // The new key works at once everywhere (a refused key is checked again
    // against a fresh read of its record).
    for base in [&t.deaf.url, &t.live.url, &t.origin_url()] {
        assert_eq!(load(&http, base, &rotated).await.0, 200, "{base}");
    }
    assert_eq!(
        load(&http, &t.deaf.url, &key.api_key).await.0,
        401,
        "the edge that read the new record refuses the old key"
    );
    let deadline = within(changed, EVENT_BOUND);
    for (tier, base) in [
        ("subscribed edge", t.live.url.clone()),
        ("origin", t.origin_url()),
    ] {
        by(
            deadline,
            &format!("old API key refused by the {tier}"),
            async || load(&http, &base, &key.api_key).await.0 == 401,
        )
        .await;
    }

    floe_origin::principals::revoke_api_key(&cli.store, &cli.events, &key.key_id)
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    let deadline = within(changed, EVENT_BOUND);
    for (tier, base) in [
        ("subscribed edge", t.live.url.clone()),
        ("origin", t.origin_url()),
    ] {
        by(
            deadline,
            &format!("revoked API key refused by the {tier}"),
            async || load(&http, &base, &rotated).await.0 == 401,
        )
        .await;
    }
    let deadline = within(changed, Duration::from_secs(CACHE_SECONDS));
    by(
        deadline,
        "revoked API key refused by the edge without events",
        async || load(&http, &t.deaf.url, &rotated).await.0 == 401,
    )
    .await;
}

// ---- guessing: no targeted lockout -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_lock_a_client_out_for_everyone() {
    // The shipped limits: 10 failures per client id and address, 30 per address.
    let s = stack(|_| {}).await;
    let secret = create_client(&s.origin, "etl", vec![grant("*", &[], Role::Reader)]).await;
    let attacker = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(token_status(&attacker, &s.edge, "etl", "guess").await.0);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    let (status, real) = token_status(&client, &s.edge, "etl", &secret).await;
    assert_eq!(
        status, 200,
        "the real client, from its own address, is not locked out"
    );
    let r = client
        .get(format!("{}/v1/namespaces", s.edge.url))
        .bearer_auth(&real)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        token_status(&attacker, &s.edge, "etl", &secret).await.0,
        429,
        "the guessing address stays limited, right secret or not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openid_connect_issuer_without_an_audience_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
    let mut auth = testkit::auth_config(dir.path());
    auth.oidc.issuer = "https://idp.example.test".into();
    auth.oidc.jwks_file = jwks.display().to_string();
    let config = floe_edge::config::EdgeConfig {
        auth: auth.clone(),
        ..Default::default()
    };
    let err = floe_edge::server::build(config, None)
        .err()
        .expect("the edge refuses to start")
        .to_string();
    assert!(err.contains("auth.oidc.audience is required"), "{err}");
    let mut origin = floe_origin::config::Config::default();
    origin.database.url = sqlite_url(&dir);
    origin.warehouse.location = dir.path().join("wh").display().to_string();
    origin.auth = auth;
    let err = floe_origin::server::prepare(&origin)
        .await
        .err()
        .expect("the origin refuses to start")
        .to_string();
    assert!(err.contains("auth.oidc.audience is required"), "{err}");
}
