//! Storage delegation settings and endpoints through the router, on both
//! backends (the signatures themselves are checked against an S3 server by
//! tests/python/test_storage_access.py).
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;

use support::{Backend, TestApp};

both_backends!(
    delegation_settings_are_checked_and_redacted,
    local_tables_get_no_credentials_and_no_signatures,
);

async fn delegation_settings_are_checked_and_redacted(backend: Backend) {
    let app = TestApp::new(backend).await;
    for bad in [
        json!({"vended": "assume-role"}),
        json!({"vended": "static", "client_access_key_id": "k"}),
        json!({"vended": "assume-role", "role_arn": "arn:aws:iam::1:role/r", "duration_seconds": 60}),
        json!({"vended": "sometimes"}),
    ] {
        let r = app
            .post(
                "/management/v1/warehouses",
                json!({"name": "w", "location": "s3://b/w", "s3": {"delegation": bad}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad} -> {:?}", r.body);
    }
    assert_eq!(
        app.get("/management/v1/warehouses").await.body["warehouses"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing was created"
    );
    let r = app
        .post(
            "/management/v1/warehouses",
            json!({"name": "w", "location": "s3://b/w", "s3": {
                "endpoint": "http://127.0.0.1:9",
                "access_key_id": "catalog",
                "secret_access_key": "catalog-secret",
                "delegation": {
                    "vended": "static",
                    "client_access_key_id": "client",
                    "client_secret_access_key": "client-secret",
                    "remote_signing": true
                }
            }}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let listed = app.get("/management/v1/warehouses").await;
    let text = listed.body.to_string();
    assert!(
        !text.contains("client-secret") && !text.contains("catalog-secret"),
        "{text}"
    );
    assert!(text.contains("floe.vended-credentials"), "{text}");
}

async fn local_tables_get_no_credentials_and_no_signatures(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let r = app
        .get("/v1/default/namespaces/db/tables/t/credentials")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"storage-credentials": []}));
    assert_eq!(r.headers["cache-control"], "private, no-store");
    let r = app
        .get("/v1/default/namespaces/db/tables/nope/credentials")
        .await;
    assert_eq!(r.error_type(), "NoSuchTableException");
    // The default warehouse offers no remote signing.
    let sign = json!({"region": "us-east-1", "method": "GET", "headers": {},
                      "uri": "http://127.0.0.1:9/b/x"});
    let r = app
        .post("/v1/default/namespaces/db/tables/t/sign", sign.clone())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.error_type(), "ForbiddenException");
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/t/sign",
            json!({"uri": "x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Loads that ask for delegation from a warehouse that offers none are
    // answered as without it: no secrets, cacheable, the same ETag.
    let plain = app.get("/v1/default/namespaces/db/tables/t").await;
    let request = axum::http::Request::builder()
        .method(Method::GET)
        .uri("/v1/default/namespaces/db/tables/t")
        .header(
            "x-iceberg-access-delegation",
            "vended-credentials,remote-signing",
        )
        .body(axum::body::Body::empty())
        .unwrap();
    let asked = app.send(request).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert_eq!(asked.body, plain.body);
    assert_eq!(asked.headers["etag"], plain.headers["etag"]);
    assert!(asked.headers.get("cache-control").is_none());
}
