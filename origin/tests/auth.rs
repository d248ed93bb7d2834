//! Authentication and authorization at the origin, against SQLite and
//! PostgreSQL alike: tokens, API keys, roles per warehouse and namespace,
//! revocation, and the management API for clients and keys.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use floe_shared::auth::{AuthConfig, Grant, Role};
use floe_shared::testkit::{self, grant};
use serde_json::{Value, json};

use support::{Backend, Reply, TestApp, create_table_body};

both_backends!(
    tokens_are_required_and_verified,
    roles_bound_what_principals_do,
    clients_and_api_keys_through_the_management_api,
    idempotency_keys_belong_to_their_principal,
    the_cli_changes_credentials_for_a_running_origin,
);

async fn send(
    app: &TestApp,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    app.send(builder.body(body).expect("request")).await
}

async fn authed_app(backend: Backend) -> (TestApp, AuthConfig, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("tempdir");
    let auth = testkit::auth_config(keys.path());
    let cfg = auth.clone();
    let app = TestApp::with(backend, move |c| c.auth = cfg).await;
    (app, auth, keys)
}

async fn client(app: &TestApp, name: &str, grants: Vec<Grant>) -> String {
    floe_origin::principals::create_client(
        app.state.catalog.store(),
        app.state.catalog.events(),
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

fn bearer(auth: &AuthConfig, sub: &str) -> String {
    let now = testkit::now();
    format!("Bearer {}", testkit::token(auth, sub, now, now + 600))
}

async fn tokens_are_required_and_verified(backend: Backend) {
    let (app, auth, _keys) = authed_app(backend).await;
    client(&app, "ops", vec![grant("*", &[], Role::Admin)]).await;
    let good = bearer(&auth, "ops");

    let r = send(&app, Method::GET, "/v1/config", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_type(), "NotAuthorizedException");
    assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"floe\"");

    let now = testkit::now();
    let other_key = testkit::auth_config(app.db.dir.path());
    let cases = [
        ("Bearer not.a.token".to_string(), "malformed"),
        ("Basic b3BzOng=".to_string(), "wrong scheme"),
        (
            format!(
                "Bearer {}",
                testkit::token(&auth, "ops", now - 100, now - 1)
            ),
            "expired",
        ),
        (
            format!(
                "Bearer {}",
                testkit::token(&other_key, "ops", now, now + 60)
            ),
            "foreign key",
        ),
        (
            format!("Bearer {}", testkit::token(&auth, "nobody", now, now + 60)),
            "unknown principal",
        ),
    ];
    for (header, why) in &cases {
        let r = send(&app, Method::GET, "/v1/config", Some(header), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {:?}", r.body);
        assert_eq!(
            r.headers["www-authenticate"], "Bearer realm=\"floe\", error=\"invalid_token\"",
            "{why}"
        );
    }
    let r = send(&app, Method::GET, "/v1/config", Some(&good), None).await;
    assert_eq!(r.status, StatusCode::OK);

    // Health, readiness and metrics stay open; the internal API needs a service token.
    for open in ["/health", "/ready", "/metrics"] {
        assert_eq!(
            send(&app, Method::GET, open, None, None).await.status,
            StatusCode::OK,
            "{open}"
        );
    }
    let r = send(
        &app,
        Method::GET,
        "/internal/v1/principals/ops",
        Some(&good),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "client tokens are not service tokens"
    );
    let service = auth
        .signer()
        .unwrap()
        .issue(&floe_shared::auth::service_claims("floe", now, 60))
        .unwrap();
    let service = format!("Bearer {}", std::str::from_utf8(&service).unwrap());
    let r = send(
        &app,
        Method::GET,
        "/internal/v1/principals/ops",
        Some(&service),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["secret_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$")
    );
    assert_eq!(r.body["default_warehouse"], "default");
    let r = send(&app, Method::GET, "/v1/config", Some(&service), None).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "service tokens act on nothing else"
    );

    // Revoking tokens refuses those issued before; disabling refuses all.
    let store = app.state.catalog.store();
    let events = app.state.catalog.events();
    let old = format!(
        "Bearer {}",
        testkit::token(&auth, "ops", now - 10, now + 600)
    );
    floe_origin::principals::revoke_tokens(store, events, "ops")
        .await
        .unwrap();
    let r = send(&app, Method::GET, "/v1/config", Some(&old), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "revoked before now");
    // A token minted after the revocation carries the new credential
    // generation; one of the old generation is refused whatever its iat.
    let generation = record(&app, "ops").await.generation;
    let stale = minted(&auth, "ops", now + 1, generation - 1);
    assert_eq!(
        send(&app, Method::GET, "/v1/config", Some(&stale), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "minted from the record before the revocation"
    );
    let fresh = minted(&auth, "ops", now, generation);
    assert_eq!(
        send(&app, Method::GET, "/v1/config", Some(&fresh), None)
            .await
            .status,
        StatusCode::OK
    );
    floe_origin::principals::set_disabled(store, events, "ops", true)
        .await
        .unwrap();
    let r = send(&app, Method::GET, "/v1/config", Some(&fresh), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "disabled");
}

async fn roles_bound_what_principals_do(backend: Backend) {
    let (app, auth, _keys) = authed_app(backend).await;
    client(&app, "admin", vec![grant("*", &[], Role::Admin)]).await;
    client(&app, "etl", vec![grant("default", &[], Role::Writer)]).await;
    client(
        &app,
        "sales-reader",
        vec![grant("default", &["sales"], Role::Reader)],
    )
    .await;
    client(
        &app,
        "sales-writer",
        vec![grant("default", &["sales"], Role::Writer)],
    )
    .await;
    let (admin, etl, reader, writer) = (
        bearer(&auth, "admin"),
        bearer(&auth, "etl"),
        bearer(&auth, "sales-reader"),
        bearer(&auth, "sales-writer"),
    );
    for ns in ["sales", "hr"] {
        let r = send(
            &app,
            Method::POST,
            "/v1/namespaces",
            Some(&etl),
            Some(json!({"namespace": [ns]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let r = send(
        &app,
        Method::POST,
        "/v1/namespaces",
        Some(&writer),
        Some(json!({"namespace": ["x"]})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a namespace grant does not cover the warehouse"
    );
    assert_eq!(r.error_type(), "ForbiddenException");

    let r = send(
        &app,
        Method::POST,
        "/v1/default/namespaces/sales/tables",
        Some(&writer),
        Some(create_table_body("orders")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = send(
        &app,
        Method::POST,
        "/v1/default/namespaces/hr/tables",
        Some(&writer),
        Some(create_table_body("pay")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Method::GET,
        "/v1/namespaces/hr/tables",
        Some(&etl),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "no table was created: {:?}",
        r.body
    );
    assert_eq!(r.body["identifiers"], json!([]));

    let load = "/v1/default/namespaces/sales/tables/orders";
    assert_eq!(
        send(&app, Method::GET, load, Some(&reader), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&app, Method::HEAD, load, Some(&reader), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = send(&app, Method::DELETE, load, Some(&reader), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "readers do not drop");
    assert_eq!(
        send(&app, Method::GET, load, Some(&reader), None)
            .await
            .status,
        StatusCode::OK,
        "still there"
    );
    let r = send(&app, Method::GET, "/v1/namespaces/hr", Some(&reader), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Method::GET,
        "/v1/namespaces?parent=sales",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "listing below a granted namespace"
    );
    // The warehouse root lists only what the reader may read.
    let r = send(&app, Method::GET, "/v1/namespaces", Some(&reader), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["namespaces"], json!([["sales"]]));

    // Dropping a namespace and the management API need admin.
    let r = send(&app, Method::DELETE, "/v1/namespaces/hr", Some(&etl), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Method::GET,
        "/management/v1/warehouses",
        Some(&etl),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        Method::DELETE,
        "/v1/namespaces/hr",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(
        &app,
        Method::GET,
        "/management/v1/warehouses",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // A grant taken away applies at once.
    floe_origin::principals::revoke_grant(
        app.state.catalog.store(),
        app.state.catalog.events(),
        "sales-reader",
        grant("default", &["sales"], Role::Reader),
    )
    .await
    .unwrap();
    assert_eq!(
        send(&app, Method::GET, load, Some(&reader), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

async fn clients_and_api_keys_through_the_management_api(backend: Backend) {
    let (app, auth, _keys) = authed_app(backend).await;
    client(&app, "admin", vec![grant("*", &[], Role::Admin)]).await;
    let admin = bearer(&auth, "admin");
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients",
        Some(&admin),
        Some(json!({"name": "robot", "grants": [{"warehouse": "default", "role": "reader"}]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let secret = r.body["client-secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 43);

    // Bad input: clear errors, nothing created.
    for (body, why) in [
        (json!({"name": "floe-edge"}), "reserved name"),
        (json!({"name": "a b"}), "bad characters"),
        (
            json!({"name": "x", "grants": [{"warehouse": "default", "role": "owner"}]}),
            "unknown role",
        ),
        (
            json!({"name": "x", "grants": [{"warehouse": "", "role": "reader"}]}),
            "no warehouse",
        ),
        (json!({"name": "robot"}), "duplicate"),
    ] {
        let r = send(
            &app,
            Method::POST,
            "/management/v1/clients",
            Some(&admin),
            Some(body),
        )
        .await;
        assert!(
            matches!(r.status.as_u16(), 400 | 409),
            "{why}: {:?}",
            r.body
        );
    }
    let r = send(
        &app,
        Method::GET,
        "/management/v1/clients",
        Some(&admin),
        None,
    )
    .await;
    let ids: Vec<&str> = r.body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client-id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["admin", "robot"]);
    assert!(
        !r.raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "secrets are never listed"
    );
    assert!(
        !String::from_utf8_lossy(&r.raw).contains("argon2"),
        "nor their hashes"
    );

    // API keys act as their client, until rotated or revoked.
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients/robot/api-keys",
        Some(&admin),
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let key = r.body["api-key"].as_str().unwrap().to_string();
    let key_id = r.body["key-id"].as_str().unwrap().to_string();
    let as_key = format!("Bearer {key}");
    assert_eq!(
        send(&app, Method::GET, "/v1/namespaces", Some(&as_key), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = send(
        &app,
        Method::POST,
        "/v1/namespaces",
        Some(&as_key),
        Some(json!({"namespace": ["n"]})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the key has the client's reader role"
    );
    let wrong = format!("Bearer floe_{key_id}_wrongsecret");
    assert_eq!(
        send(&app, Method::GET, "/v1/namespaces", Some(&wrong), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let r = send(
        &app,
        Method::POST,
        &format!("/management/v1/api-keys/{key_id}/rotate"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let rotated = format!("Bearer {}", r.body["api-key"].as_str().unwrap());
    assert_eq!(
        send(&app, Method::GET, "/v1/namespaces", Some(&as_key), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "old key"
    );
    assert_eq!(
        send(&app, Method::GET, "/v1/namespaces", Some(&rotated), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = send(
        &app,
        Method::GET,
        "/management/v1/api-keys",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.body["api-keys"][0]["key-id"], key_id.as_str());
    assert!(!String::from_utf8_lossy(&r.raw).contains("argon2"));
    let r = send(
        &app,
        Method::DELETE,
        &format!("/management/v1/api-keys/{key_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&app, Method::GET, "/v1/namespaces", Some(&rotated), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "revoked"
    );

    // Client actions.
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients/robot/grant",
        Some(&admin),
        Some(json!({"warehouse": "default", "role": "writer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grants"][0]["role"], "writer");
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients/robot/rotate",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.body["client-secret"].as_str().unwrap(), secret);
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients/robot/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["disabled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients/ghost/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(
        &app,
        Method::POST,
        "/management/v1/clients/robot/explode",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The same `Idempotency-Key` and request from another principal is not a
/// retry: it never gets the first principal's stored answer.
async fn idempotency_keys_belong_to_their_principal(backend: Backend) {
    let (app, auth, _keys) = authed_app(backend).await;
    for name in ["etl-a", "etl-b"] {
        client(&app, name, vec![grant("default", &[], Role::Writer)]).await;
    }
    let key = "0b6a1a52-5c1e-4b5e-9d47-2f4a3c8e9a10";
    let keyed = |who: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/default/namespaces")
            .header("content-type", "application/json")
            .header("authorization", bearer(&auth, who))
            .header("idempotency-key", key)
            .body(Body::from(
                json!({"namespace": ["shared"], "properties": {"by": who}}).to_string(),
            ))
            .expect("request")
    };
    let first = app.send(keyed("etl-a")).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let retry = app.send(keyed("etl-a")).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.headers["cache-control"], "private, no-store");
    assert_eq!(retry.body, first.body);
    let other = app.send(keyed("etl-b")).await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        other.body
    );
    assert!(other.headers.get("idempotent-replayed").is_none());
    // Nothing changed: the namespace is still the first principal's.
    let r = send(
        &app,
        Method::GET,
        "/v1/default/namespaces/shared",
        Some(&bearer(&auth, "etl-a")),
        None,
    )
    .await;
    assert_eq!(r.body["properties"]["by"], "etl-a");
}

/// Documented bound for an origin to act on a change another process (the
/// CLI) made: it reads the principal change log once a second.
const CLI_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the real `floe-origin` binary on the test's database, as an operator
/// would; returns its output.
fn floe_origin(app: &TestApp, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floe-origin"))
        .args(["--database-url", &app.db.url])
        .args(args)
        .current_dir(app.db.dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("floe-origin runs");
    assert!(
        out.status.success(),
        "floe-origin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn printed<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {out}"))
        .trim()
}

async fn record(app: &TestApp, id: &str) -> floe_shared::auth::Principal {
    app.state
        .catalog
        .store()
        .principal(id)
        .await
        .unwrap()
        .expect("principal")
        .principal
}

/// `Bearer` header of a token as a tier holding `generation`'s record mints it.
fn minted(auth: &AuthConfig, sub: &str, iat: u64, generation: u64) -> String {
    let claims = floe_shared::token::Claims {
        iss: auth.issuer.clone(),
        sub: sub.into(),
        iat,
        exp: iat + 600,
        jti: String::new(),
        scope: floe_shared::auth::CATALOG_SCOPE.into(),
        generation,
    };
    let token = auth.signer().unwrap().issue(&claims).unwrap();
    format!("Bearer {}", std::str::from_utf8(&token).unwrap())
}

async fn status(app: &TestApp, credential: &str) -> StatusCode {
    send(app, Method::GET, "/v1/namespaces", Some(credential), None)
        .await
        .status
}

/// Waits until `credential` gets `expected`, failing `CLI_BOUND` after `changed`.
async fn within_bound(
    app: &TestApp,
    changed: std::time::Instant,
    what: &str,
    credential: &str,
    expected: StatusCode,
) {
    loop {
        if status(app, credential).await == expected {
            eprintln!("{what}: {:?} after the change", changed.elapsed());
            return;
        }
        assert!(
            changed.elapsed() < CLI_BOUND,
            "{what}: not {expected} {CLI_BOUND:?} after the change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `floe-origin client rotate | revoke-tokens | disable` and `api-key rotate`
/// from another process: a running origin (cache warm) refuses what they end
/// within the bound, including tokens minted in the change's own second, and
/// takes the new credentials at once.
async fn the_cli_changes_credentials_for_a_running_origin(backend: Backend) {
    let (app, auth, _keys) = authed_app(backend).await;
    client(&app, "etl", vec![grant("*", &[], Role::Writer)]).await;
    let key = floe_origin::principals::create_api_key(
        app.state.catalog.store(),
        app.state.catalog.events(),
        "etl",
        Default::default(),
    )
    .await
    .unwrap();
    let key = format!("Bearer {}", key.api_key);
    let g0 = record(&app, "etl").await.generation;
    let now = testkit::now();
    let before = minted(&auth, "etl", now, g0);
    assert_eq!(status(&app, &before).await, StatusCode::OK);
    assert_eq!(status(&app, &key).await, StatusCode::OK);

    let out = floe_origin(&app, &["client", "rotate", "etl"]);
    let changed = std::time::Instant::now();
    assert_eq!(printed(&out, "client_secret:").len(), 43);
    let rotated = record(&app, "etl").await;
    assert_eq!(rotated.generation, g0 + 1);
    let new = minted(&auth, "etl", rotated.not_before, rotated.generation);
    assert_eq!(status(&app, &new).await, StatusCode::OK, "at once");
    let same_second = minted(&auth, "etl", rotated.not_before, g0);
    for (what, old) in [("old token", &before), ("same-second token", &same_second)] {
        within_bound(&app, changed, what, old, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(
        status(&app, &key).await,
        StatusCode::OK,
        "keys are not tokens"
    );

    let key_id = key
        .trim_start_matches("Bearer floe_")
        .split('_')
        .next()
        .unwrap()
        .to_string();
    let out = floe_origin(&app, &["api-key", "rotate", &key_id]);
    let changed = std::time::Instant::now();
    let new_key = format!("Bearer {}", printed(&out, "api_key:"));
    assert_eq!(
        status(&app, &new_key).await,
        StatusCode::OK,
        "the new key works at once (a refused key is checked against a fresh read)"
    );
    within_bound(&app, changed, "old API key", &key, StatusCode::UNAUTHORIZED).await;

    floe_origin(&app, &["client", "revoke-tokens", "etl"]);
    let changed = std::time::Instant::now();
    let revoked = record(&app, "etl").await;
    assert_eq!(revoked.generation, rotated.generation + 1);
    let same_second = minted(&auth, "etl", revoked.not_before, rotated.generation);
    for (what, old) in [("revoked token", &new), ("same-second token", &same_second)] {
        within_bound(&app, changed, what, old, StatusCode::UNAUTHORIZED).await;
    }
    let after = minted(&auth, "etl", revoked.not_before, revoked.generation);
    assert_eq!(status(&app, &after).await, StatusCode::OK);

    floe_origin(&app, &["client", "disable", "etl"]);
    let changed = std::time::Instant::now();
    for (what, credential) in [("token", &after), ("API key", &new_key)] {
        within_bound(&app, changed, what, credential, StatusCode::UNAUTHORIZED).await;
    }
}

/// argon2id on the origin's own API-key path runs on at most one blocking
/// thread per core, however many wrong keys arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bad_api_keys_never_run_more_argon2_than_cores() {
    let (app, _auth, _keys) = authed_app(Backend::Sqlite).await;
    client(&app, "etl", vec![grant("*", &[], Role::Reader)]).await;
    let key = floe_origin::principals::create_api_key(
        app.state.catalog.store(),
        app.state.catalog.events(),
        "etl",
        Default::default(),
    )
    .await
    .unwrap();
    let guesses: Vec<String> = (0..64)
        .map(|i| format!("Bearer floe_{}_wrong{i}", key.key_id))
        .collect();
    let statuses =
        futures::future::join_all(guesses.iter().map(|g| status(&app, g.as_str()))).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let stats = app
        .state
        .auth
        .hashing_stats()
        .expect("authentication is on");
    assert!(
        stats.peak >= 1 && stats.peak <= stats.limit,
        "argon2id checks at once: {stats:?}"
    );
    assert_eq!(stats.running, 0);
    assert_eq!(
        status(&app, &format!("Bearer {}", key.api_key)).await,
        StatusCode::OK
    );
}
