//! Authentication through the edge: token issuance, verification before the
//! cache answers, revocation through change events, rate limits, malformed
//! input, TLS, request limits and an external OpenID Connect issuer.

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
