//! The REST API through the router, against SQLite and PostgreSQL alike.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use support::{Backend, TestApp, append_updates, create_table_body};

both_backends!(
    config_advertises_what_is_implemented,
    namespace_lifecycle,
    nested_namespaces,
    namespace_properties,
    namespace_paging,
    table_lifecycle_and_etags,
    table_paging_and_unprefixed_routes,
    commit_requirements_and_bad_updates,
    snapshots_refs_mode,
    concurrent_commits_lose_nothing,
    contended_appends_conflict_cleanly,
    staged_create_then_commit,
    register_and_overwrite,
    rename_rules,
    drop_with_purge_deletes_files,
    bad_input_changes_nothing,
    management_api_and_prefixes,
    health_ready_and_metrics,
    multi_table_transactions,
    unregister_then_register_elsewhere,
    functions_list_none,
    idempotency_keys_replay_and_never_run_twice,
    names_are_decoded_as_java_clients_encode_them,
);

async fn config_advertises_what_is_implemented(backend: Backend) {
    let app = TestApp::new(backend).await;
    let r = app.get("/v1/config").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["overrides"]["prefix"], "default");
    let endpoints: Vec<&str> = r.body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for e in [
        "GET /v1/{prefix}/namespaces",
        "HEAD /v1/{prefix}/namespaces/{namespace}",
        "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
        "POST /v1/{prefix}/tables/rename",
        "POST /v1/{prefix}/namespaces/{namespace}/register",
    ] {
        assert!(endpoints.contains(&e), "missing {e}");
    }
    assert!(
        endpoints.contains(&"POST /v1/{prefix}/namespaces/{namespace}/register-view"),
        "views are advertised"
    );
    // Every advertised endpoint is routed (not a 404/405/406).
    app.create_namespace(&["cfg"]).await;
    app.create_table("cfg", "t").await;
    for e in &endpoints {
        let (verb, path) = e.split_once(' ').unwrap();
        let uri = path
            .replace("{prefix}", "default")
            .replace("{namespace}", "cfg")
            .replace("{table}", "t")
            .replace("{view}", "v")
            .replace("{plan-id}", "p");
        let method = Method::from_bytes(verb.as_bytes()).unwrap();
        let r = app.call(method, &uri, Some(json!({}))).await;
        assert!(
            ![404, 405, 406].contains(&r.status.as_u16())
                || r.error_type() != "NotFoundException"
                    && r.error_type() != "MethodNotAllowedException"
                    && r.error_type() != "UnsupportedOperationException",
            "{e} -> {} {:?}",
            r.status,
            r.body
        );
    }
    // Warehouse by name or by location; unknown ones are 404.
    let r = app.get("/v1/config?warehouse=default").await;
    assert_eq!(r.body["overrides"]["prefix"], "default");
    let r = app
        .get(&format!("/v1/config?warehouse={}", app.warehouse_url()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.get("/v1/config?warehouse=nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchWarehouseException");
    // Every catalog operation of the route grammar is advertised (the
    // grammar is checked against the spec in shared/tests/route_spec.rs).
    let mut grammar: Vec<String> = floe_shared::route::endpoints().collect();
    grammar.sort_unstable();
    let mut advertised: Vec<String> = endpoints
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    advertised.sort_unstable();
    assert_eq!(advertised, grammar);
}

async fn namespace_lifecycle(backend: Backend) {
    let app = TestApp::new(backend).await;
    let r = app
        .post(
            "/v1/default/namespaces",
            json!({"namespace": ["sales"], "properties": {"owner": "ann"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"namespace": ["sales"], "properties": {"owner": "ann"}})
    );
    let r = app
        .post("/v1/default/namespaces", json!({"namespace": ["sales"]}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    assert_eq!(r.body["error"]["code"], 409);

    let r = app.get("/v1/default/namespaces/sales").await;
    assert_eq!(r.body["properties"]["owner"], "ann");
    assert_eq!(
        app.call(Method::HEAD, "/v1/default/namespaces/sales", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::HEAD, "/v1/default/namespaces/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app.get("/v1/default/namespaces/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");

    app.create_table("sales", "orders").await;
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/sales", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "NamespaceNotEmptyException");
    assert_eq!(
        app.get("/v1/default/namespaces/sales").await.status,
        StatusCode::OK
    );

    let r = app
        .call(
            Method::DELETE,
            "/v1/default/namespaces/sales/tables/orders",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/sales", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/sales", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
}

async fn nested_namespaces(backend: Backend) {
    let app = TestApp::new(backend).await;
    // A child needs its parent.
    let r = app
        .post(
            "/v1/default/namespaces",
            json!({"namespace": ["acct", "tax"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    app.create_namespace(&["acct"]).await;
    app.create_namespace(&["acct", "tax"]).await;
    app.create_namespace(&["acct", "tax", "paid"]).await;
    app.create_namespace(&["acct", "audit"]).await;
    app.create_namespace(&["other"]).await;

    let r = app.get("/v1/default/namespaces").await;
    assert_eq!(r.body["namespaces"], json!([["acct"], ["other"]]));
    let r = app.get("/v1/default/namespaces?parent=acct").await;
    assert_eq!(
        r.body["namespaces"],
        json!([["acct", "audit"], ["acct", "tax"]])
    );
    let r = app.get("/v1/default/namespaces?parent=acct%1Ftax").await;
    assert_eq!(r.body["namespaces"], json!([["acct", "tax", "paid"]]));
    let r = app.get("/v1/default/namespaces?parent=").await;
    assert_eq!(
        r.body["namespaces"],
        json!([["acct"], ["other"]]),
        "empty parent is absent"
    );
    let r = app.get("/v1/default/namespaces?parent=missing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = app.get("/v1/default/namespaces/acct%1Ftax").await;
    assert_eq!(r.body["namespace"], json!(["acct", "tax"]));
    // Tables in nested namespaces.
    app.create_table("acct%1Ftax", "t").await;
    let r = app.get("/v1/default/namespaces/acct%1Ftax/tables").await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["acct", "tax"], "name": "t"}])
    );
    // Parent with children cannot go.
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/acct", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "NamespaceNotEmptyException");
}

async fn namespace_properties(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.post(
        "/v1/default/namespaces",
        json!({"namespace": ["p"], "properties": {"a": "1", "b": "2"}}),
    )
    .await;
    let r = app
        .post(
            "/v1/default/namespaces/p/properties",
            json!({"removals": ["a", "zz"], "updates": {"c": "3", "b": "20"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["updated"], json!(["b", "c"]));
    assert_eq!(r.body["removed"], json!(["a"]));
    assert_eq!(r.body["missing"], json!(["zz"]));
    let r = app.get("/v1/default/namespaces/p").await;
    assert_eq!(r.body["properties"], json!({"b": "20", "c": "3"}));

    let r = app
        .post(
            "/v1/default/namespaces/p/properties",
            json!({"removals": ["b"], "updates": {"b": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_type(), "UnprocessableEntityException");
    let r = app.get("/v1/default/namespaces/p").await;
    assert_eq!(
        r.body["properties"],
        json!({"b": "20", "c": "3"}),
        "422 changed nothing"
    );

    let r = app
        .post(
            "/v1/default/namespaces/none/properties",
            json!({"updates": {"x": "y"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Concurrent updates of different keys all land.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let router = app.router.clone();
        tasks.push(tokio::spawn(async move {
            let req = axum::http::Request::post("/v1/default/namespaces/p/properties")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({"updates": {format!("k{i}"): "v"}}).to_string(),
                ))
                .unwrap();
            tower::ServiceExt::oneshot(router, req)
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let r = app.get("/v1/default/namespaces/p").await;
    for i in 0..12 {
        assert_eq!(r.body["properties"][format!("k{i}")], "v", "{:?}", r.body);
    }
}

async fn namespace_paging(backend: Backend) {
    let app = TestApp::new(backend).await;
    for name in ["e", "a", "d", "c", "b"] {
        app.create_namespace(&[name]).await;
    }
    // No pageToken: everything, next-page-token null.
    let r = app.get("/v1/default/namespaces?pageSize=2").await;
    assert_eq!(r.body["namespaces"].as_array().unwrap().len(), 5);
    assert!(r.body["next-page-token"].is_null());

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let r = app
            .get(&format!(
                "/v1/default/namespaces?pageSize=2&pageToken={token}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        pages += 1;
        for ns in r.body["namespaces"].as_array().unwrap() {
            seen.push(ns[0].as_str().unwrap().to_string());
        }
        match r.body["next-page-token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(seen, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
    let r = app.get("/v1/default/namespaces?pageToken=%%%").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .get("/v1/default/namespaces?pageToken=&pageSize=0")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_type(), "BadRequestException");
}

async fn table_lifecycle_and_etags(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    let created = app.create_table("db", "events").await;
    let location = created.body["metadata-location"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(location.starts_with(&app.warehouse_url()), "{location}");
    assert!(location.contains("/metadata/00000-"), "{location}");
    let path = location.strip_prefix("file://").unwrap();
    assert!(std::path::Path::new(path).exists(), "metadata file written");
    let etag = created.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(created.body["metadata"]["properties"]["owner"], "tests");
    assert_eq!(created.body["metadata"]["format-version"], 2);

    let r = app.get("/v1/default/namespaces/db/tables/events").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["etag"].to_str().unwrap(), etag);
    assert_eq!(r.body["metadata-location"], location.as_str());
    assert_eq!(r.body["metadata"], created.body["metadata"]);

    let req = axum::http::Request::get("/v1/default/namespaces/db/tables/events")
        .header("if-none-match", &etag)
        .body(axum::body::Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.raw.is_empty());

    assert_eq!(
        app.call(
            Method::HEAD,
            "/v1/default/namespaces/db/tables/events",
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let r = app.get("/v1/default/namespaces/db/tables/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchTableException");
    assert_eq!(
        app.call(Method::HEAD, "/v1/default/namespaces/db/tables/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = app
        .post(
            "/v1/default/namespaces/db/tables",
            create_table_body("events"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    let r = app
        .post("/v1/default/namespaces/nope/tables", create_table_body("x"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");

    // A commit moves the ETag; the old one no longer matches.
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/events",
            json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {"k": "v"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new_location = r.body["metadata-location"].as_str().unwrap();
    assert!(new_location.contains("/metadata/00001-"), "{new_location}");
    let new_etag = r.headers["etag"].to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    assert_eq!(
        r.body["metadata"]["metadata-log"][0]["metadata-file"],
        location.as_str()
    );
    let req = axum::http::Request::get("/v1/default/namespaces/db/tables/events")
        .header("if-none-match", &etag)
        .body(axum::body::Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["etag"].to_str().unwrap(), new_etag);
    assert_eq!(r.body["metadata"]["properties"]["k"], "v");
}

async fn table_paging_and_unprefixed_routes(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["n"]).await;
    for t in ["t3", "t1", "t2"] {
        app.create_table("n", t).await;
    }
    let r = app
        .get("/v1/default/namespaces/n/tables?pageToken=&pageSize=2")
        .await;
    assert_eq!(r.body["identifiers"].as_array().unwrap().len(), 2);
    let token = r.body["next-page-token"].as_str().unwrap().to_string();
    let r = app
        .get(&format!(
            "/v1/default/namespaces/n/tables?pageToken={token}&pageSize=2"
        ))
        .await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["n"], "name": "t3"}])
    );
    assert!(r.body["next-page-token"].is_null());
    // The same catalog without a prefix (the default warehouse).
    let r = app.get("/v1/namespaces/n/tables").await;
    assert_eq!(r.body["identifiers"].as_array().unwrap().len(), 3);
    let r = app.get("/v1/namespaces/n/tables/t1").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.get("/v1/namespaces/missing/tables").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    let r = app.get("/v1/unknown-warehouse/namespaces").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchWarehouseException");
}

async fn commit_requirements_and_bad_updates(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["c"]).await;
    let created = app.create_table("c", "t").await;
    let uuid = created.body["metadata"]["table-uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let location = created.body["metadata-location"]
        .as_str()
        .unwrap()
        .to_string();
    let url = "/v1/default/namespaces/c/tables/t";

    let failing = [
        json!({"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}),
        json!({"type": "assert-current-schema-id", "current-schema-id": 7}),
        json!({"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 5}),
        json!({"type": "assert-last-assigned-field-id", "last-assigned-field-id": 99}),
        json!({"type": "assert-default-spec-id", "default-spec-id": 3}),
        json!({"type": "assert-default-sort-order-id", "default-sort-order-id": 3}),
        json!({"type": "assert-last-assigned-partition-id", "last-assigned-partition-id": 5}),
        json!({"type": "assert-create"}),
    ];
    for requirement in failing {
        let r = app
            .post(url, json!({"requirements": [requirement], "updates": [{"action": "set-properties", "updates": {"x": "1"}}]}))
            .await;
        assert_eq!(
            r.status,
            StatusCode::CONFLICT,
            "{requirement}: {:?}",
            r.body
        );
        assert_eq!(r.error_type(), "CommitFailedException");
    }
    let unknown = [
        json!({"requirements": [{"type": "assert-nonsense"}], "updates": []}),
        json!({"requirements": [], "updates": [{"action": "make-it-fast"}]}),
        json!({"requirements": [], "updates": [{"action": "set-properties"}]}),
        json!({"updates": []}),
    ];
    for body in unknown {
        let r = app.post(url, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        assert_eq!(r.error_type(), "BadRequestException");
    }
    // An update the metadata builder refuses: 400, nothing written.
    let r = app
        .post(url, json!({"requirements": [], "updates": [{"action": "set-current-schema", "schema-id": 42}]}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app.get(url).await;
    assert_eq!(
        r.body["metadata-location"],
        location.as_str(),
        "no failed commit changed the table"
    );
    assert!(r.body["metadata"]["properties"].get("x").is_none());
    let metadata_dir = std::path::Path::new(location.strip_prefix("file://").unwrap())
        .parent()
        .unwrap();
    assert_eq!(
        std::fs::read_dir(metadata_dir).unwrap().count(),
        1,
        "no orphan metadata files"
    );

    // Passing requirements and a schema evolution.
    let r = app
        .post(
            url,
            json!({
                "requirements": [
                    {"type": "assert-table-uuid", "uuid": uuid},
                    {"type": "assert-current-schema-id", "current-schema-id": 0},
                    {"type": "assert-last-assigned-field-id", "last-assigned-field-id": 3}
                ],
                "updates": [
                    {"action": "add-schema", "schema": {"type": "struct", "schema-id": 1, "fields": [
                        {"id": 1, "name": "id", "required": true, "type": "long"},
                        {"id": 2, "name": "ts", "required": false, "type": "timestamp"},
                        {"id": 3, "name": "category", "required": false, "type": "string"},
                        {"id": 4, "name": "amount", "required": false, "type": "double"}
                    ]}, "last-column-id": 4},
                    {"action": "set-current-schema", "schema-id": -1},
                    {"action": "set-properties", "updates": {"evolved": "yes"}},
                    {"action": "remove-properties", "removals": ["owner"]}
                ]
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["current-schema-id"], 1);
    assert_eq!(r.body["metadata"]["last-column-id"], 4);
    assert!(r.body["metadata"]["properties"].get("owner").is_none());
    // Identifier in the body must match the path.
    let r = app
        .post(url, json!({"identifier": {"namespace": ["c"], "name": "other"}, "requirements": [], "updates": []}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Commit to a missing table.
    let r = app
        .post(
            "/v1/default/namespaces/c/tables/missing",
            json!({"requirements": [], "updates": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchTableException");
    // set-location outside the warehouse is refused.
    let r = app
        .post(url, json!({"requirements": [], "updates": [{"action": "set-location", "location": "file:///etc/evil"}]}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn snapshots_refs_mode(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["s"]).await;
    app.create_table("s", "t").await;
    let location = app.table_location("s", "t").await;
    let url = "/v1/default/namespaces/s/tables/t";
    let mut parent = None;
    for (i, id) in [11_i64, 12, 13].into_iter().enumerate() {
        let r = app
            .post(
                url,
                json!({"requirements": [], "updates": append_updates(&location, id, parent, i as i64 + 1)}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        parent = Some(id);
    }
    let all = app.get(url).await;
    let refs = app.get(&format!("{url}?snapshots=refs")).await;
    assert_eq!(
        all.body["metadata"]["snapshots"].as_array().unwrap().len(),
        3
    );
    let kept: Vec<i64> = refs.body["metadata"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot-id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![13]);
    assert_eq!(
        all.body["metadata"]["snapshot-log"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let log: Vec<i64> = refs.body["metadata"]["snapshot-log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot-id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        log,
        vec![13],
        "history before a dropped snapshot is cut, as in the Java reference"
    );
    assert_eq!(refs.body["metadata"]["current-snapshot-id"], 13);
    assert_eq!(
        refs.body["metadata-location"],
        all.body["metadata-location"]
    );
    assert_ne!(
        all.headers["etag"], refs.headers["etag"],
        "modes have distinct tags"
    );
    let explicit = app.get(&format!("{url}?snapshots=all")).await;
    assert_eq!(explicit.headers["etag"], all.headers["etag"]);
    let r = app.get(&format!("{url}?snapshots=some")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A tag keeps its snapshot in refs mode.
    let r = app
        .post(
            url,
            json!({"requirements": [], "updates": [
                {"action": "set-snapshot-ref", "ref-name": "v1", "type": "tag", "snapshot-id": 11}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let refs = app.get(&format!("{url}?snapshots=refs")).await;
    assert_eq!(
        refs.body["metadata"]["snapshots"].as_array().unwrap().len(),
        2
    );
}

/// Concurrent commits to one table: those whose requirements hold all land
/// (none lost, none refused), each answered with a version holding its own
/// update; those whose requirement cannot hold get their own 409 and are
/// not applied. Commits running together share a version (group commit):
/// the metadata log gains one entry per version the answers name.
async fn concurrent_commits_lose_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["cc"]).await;
    app.create_table("cc", "t").await;
    let before = app.get("/v1/default/namespaces/cc/tables/t").await;
    let log_before = before.body["metadata"]["metadata-log"]
        .as_array()
        .map_or(0, Vec::len);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let router = app.router.clone();
        tasks.push(tokio::spawn(async move {
            // Every fifth asserts a table UUID no table has.
            let doomed = i % 5 == 4;
            let requirements = if doomed {
                json!([{"type": "assert-table-uuid", "uuid": "00000000-0000-4000-8000-000000000000"}])
            } else {
                json!([])
            };
            let body = json!({"requirements": requirements, "updates": [
                {"action": "set-properties", "updates": {format!("writer-{i}"): "done"}}
            ]});
            let req = axum::http::Request::post("/v1/default/namespaces/cc/tables/t")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = tower::ServiceExt::oneshot(router, req).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            (i, doomed, status, body)
        }));
    }
    let mut versions = std::collections::BTreeSet::new();
    for t in tasks {
        let (i, doomed, status, body) = t.await.unwrap();
        if doomed {
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"]["type"], "CommitFailedException");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        // Its own update is in the version it is answered with.
        assert_eq!(
            body["metadata"]["properties"][format!("writer-{i}")],
            "done"
        );
        versions.insert(body["metadata-location"].as_str().unwrap().to_string());
    }
    let r = app.get("/v1/default/namespaces/cc/tables/t").await;
    for i in 0..20 {
        let value = &r.body["metadata"]["properties"][format!("writer-{i}")];
        if i % 5 == 4 {
            assert!(value.is_null(), "writer-{i} was refused but applied");
        } else {
            assert_eq!(value, "done", "writer-{i} was acknowledged but lost");
        }
    }
    // One new version per group, each named by the answers; the last is current.
    let log = r.body["metadata"]["metadata-log"].as_array().unwrap();
    assert_eq!(log.len() - log_before, versions.len());
    let current = r.body["metadata-location"].as_str().unwrap();
    assert!(versions.contains(current));
    for entry in &log[log_before + 1..] {
        assert!(versions.contains(entry["metadata-file"].as_str().unwrap()));
    }
    // Each commit was in exactly one group (one origin: no lost race).
    let metrics = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.contains("floe_origin_commit_group_size_sum 20\n"),
        "{text}"
    );
}

/// Appends that all assert the same base: exactly one wins, the rest get 409
/// (never 5xx), and the table holds exactly the acknowledged snapshots.
async fn contended_appends_conflict_cleanly(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["ca"]).await;
    app.create_table("ca", "t").await;
    let location = app.table_location("ca", "t").await;
    let mut acknowledged = Vec::new();
    let mut next_id = 100_i64;
    let mut base: Option<i64> = None;
    for seq in 1..=3 {
        let mut tasks = Vec::new();
        for _ in 0..6 {
            next_id += 1;
            let id = next_id;
            let router = app.router.clone();
            let requirement =
                json!({"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": base});
            let body = json!({"requirements": [requirement], "updates": append_updates(&location, id, base, seq)});
            tasks.push(tokio::spawn(async move {
                let req = axum::http::Request::post("/v1/default/namespaces/ca/tables/t")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap();
                (
                    id,
                    tower::ServiceExt::oneshot(router, req)
                        .await
                        .unwrap()
                        .status(),
                )
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (id, status) = t.await.unwrap();
            assert!(
                status == StatusCode::OK || status == StatusCode::CONFLICT,
                "{status}"
            );
            if status == StatusCode::OK {
                winners.push(id);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one append per base wins");
        acknowledged.push(winners[0]);
        base = Some(winners[0]);
    }
    let r = app.get("/v1/default/namespaces/ca/tables/t").await;
    let mut ids: Vec<i64> = r.body["metadata"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot-id"].as_i64().unwrap())
        .collect();
    ids.sort();
    acknowledged.sort();
    assert_eq!(ids, acknowledged);
    let metrics = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.contains("floe_origin_commits_total{outcome=\"conflict\"} 15"),
        "{text}"
    );
}

async fn staged_create_then_commit(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["st"]).await;
    let mut body = create_table_body("staged");
    body["stage-create"] = json!(true);
    let r = app.post("/v1/default/namespaces/st/tables", body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body.get("metadata-location").is_none());
    assert!(r.headers.get("etag").is_none());
    let staged = r.body["metadata"].clone();
    assert_eq!(
        app.get("/v1/default/namespaces/st/tables/staged")
            .await
            .status,
        StatusCode::NOT_FOUND,
        "staging creates nothing"
    );
    let commit = json!({
        "requirements": [{"type": "assert-create"}],
        "updates": [
            {"action": "assign-uuid", "uuid": staged["table-uuid"]},
            {"action": "upgrade-format-version", "format-version": 2},
            {"action": "add-schema", "schema": staged["schemas"][0]},
            {"action": "set-current-schema", "schema-id": -1},
            {"action": "add-spec", "spec": staged["partition-specs"][0]},
            {"action": "set-default-spec", "spec-id": -1},
            {"action": "add-sort-order", "sort-order": staged["sort-orders"][0]},
            {"action": "set-default-sort-order", "sort-order-id": -1},
            {"action": "set-location", "location": staged["location"]},
            {"action": "set-properties", "updates": {"created": "by-transaction"}}
        ]
    });
    let r = app
        .post("/v1/default/namespaces/st/tables/staged", commit.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["table-uuid"], staged["table-uuid"]);
    assert_eq!(
        r.body["metadata"]["properties"]["created"],
        "by-transaction"
    );
    assert_eq!(r.body["metadata"]["default-spec-id"], 0);
    let loaded = app.get("/v1/default/namespaces/st/tables/staged").await;
    assert_eq!(loaded.status, StatusCode::OK);
    // The same create again fails: the table exists now.
    let r = app
        .post("/v1/default/namespaces/st/tables/staged", commit)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "CommitFailedException");
}

async fn register_and_overwrite(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["r"]).await;
    let first = app.create_table("r", "a").await;
    let first_location = first.body["metadata-location"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            "/v1/default/namespaces/r/tables/a",
            json!({"requirements": [], "updates": [
                {"action": "set-properties", "updates": {"v": "2"}}
            ]}),
        )
        .await;
    let second_location = r.body["metadata-location"].as_str().unwrap().to_string();
    // Drop without purge keeps the files; register brings the table back.
    assert_eq!(
        app.call(Method::DELETE, "/v1/default/namespaces/r/tables/a", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(std::path::Path::new(second_location.strip_prefix("file://").unwrap()).exists());
    let r = app
        .post(
            "/v1/default/namespaces/r/register",
            json!({"name": "a", "metadata-location": second_location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["properties"]["v"], "2");
    assert!(r.headers.get("etag").is_some());
    let r = app
        .post(
            "/v1/default/namespaces/r/register",
            json!({"name": "a", "metadata-location": first_location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    let r = app
        .post(
            "/v1/default/namespaces/r/register",
            json!({"name": "a", "metadata-location": first_location, "overwrite": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.get("/v1/default/namespaces/r/tables/a").await;
    assert_eq!(r.body["metadata-location"], first_location.as_str());
    // Commits continue from a registered table.
    let r = app
        .post(
            "/v1/default/namespaces/r/tables/a",
            json!({"requirements": [], "updates": [
                {"action": "set-properties", "updates": {"after": "register"}}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Bad registrations.
    let r = app
        .post(
            "/v1/default/namespaces/r/register",
            json!({"name": "b", "metadata-location": "file:///etc/passwd"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let missing = format!("{}/r/nothing.metadata.json", app.warehouse_url());
    let r = app
        .post(
            "/v1/default/namespaces/r/register",
            json!({"name": "b", "metadata-location": missing}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        app.get("/v1/default/namespaces/r/tables/b").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn rename_rules(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["src"]).await;
    app.create_namespace(&["dst"]).await;
    let created = app.create_table("src", "t").await;
    app.create_table("dst", "taken").await;
    let rename = |from: (&str, &str), to: (&str, &str)| json!({"source": {"namespace": [from.0], "name": from.1}, "destination": {"namespace": [to.0], "name": to.1}});
    let r = app
        .post(
            "/v1/default/tables/rename",
            rename(("src", "t"), ("dst", "taken")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    let r = app
        .post(
            "/v1/default/tables/rename",
            rename(("src", "t"), ("nowhere", "t")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    let r = app
        .post(
            "/v1/default/tables/rename",
            rename(("src", "missing"), ("dst", "x")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app
        .post(
            "/v1/default/tables/rename",
            rename(("src", "t"), ("dst", "moved")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(
        app.get("/v1/default/namespaces/src/tables/t").await.status,
        StatusCode::NOT_FOUND
    );
    let r = app.get("/v1/default/namespaces/dst/tables/moved").await;
    assert_eq!(
        r.body["metadata-location"],
        created.body["metadata-location"]
    );
    // The old name is free again.
    app.create_table("src", "t").await;
}

async fn drop_with_purge_deletes_files(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["pg"]).await;
    let created = app.create_table("pg", "t").await;
    let first = created.body["metadata-location"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .post(
            "/v1/default/namespaces/pg/tables/t",
            json!({"requirements": [], "updates": [
                {"action": "set-properties", "updates": {"a": "b"}}
            ]}),
        )
        .await;
    let second = r.body["metadata-location"].as_str().unwrap().to_string();
    for f in [&first, &second] {
        assert!(std::path::Path::new(f.strip_prefix("file://").unwrap()).exists());
    }
    let r = app
        .call(
            Method::DELETE,
            "/v1/default/namespaces/pg/tables/t?purgeRequested=true",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for f in [&first, &second] {
        assert!(
            !std::path::Path::new(f.strip_prefix("file://").unwrap()).exists(),
            "{f} purged"
        );
    }
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/pg/tables/t", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app
        .call(
            Method::DELETE,
            "/v1/default/namespaces/pg/tables/x?purgeRequested=maybe",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn bad_input_changes_nothing(backend: Backend) {
    let app = TestApp::with(backend, |c| c.server.body_limit_bytes = 4096).await;
    app.create_namespace(&["b"]).await;
    let before = app.get("/v1/default/namespaces").await.body;

    let r = app
        .raw(
            Method::POST,
            "/v1/default/namespaces",
            "{\"namespace\": [\"x\"",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_type(), "BadRequestException");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Malformed")
    );
    let r = app.raw(Method::POST, "/v1/default/namespaces", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post("/v1/default/namespaces", json!({"namespace": "notalist"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let big = json!({"namespace": ["big"], "properties": {"k": "x".repeat(10_000)}});
    let r = app.post("/v1/default/namespaces", big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], 413);

    for bad in [
        json!([]),
        json!([""]),
        json!(["a\u{0}b"]),
        json!(["a/b"]),
        json!([".."]),
        json!(["a\u{1f}b"]),
    ] {
        let r = app
            .post("/v1/default/namespaces", json!({"namespace": bad}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
    let r = app.get("/v1/default/namespaces/a%1F").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post("/v1/default/namespaces/b/tables", create_table_body(""))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut outside = create_table_body("outside");
    outside["location"] = json!("file:///tmp/not-the-warehouse");
    let r = app.post("/v1/default/namespaces/b/tables", outside).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside")
    );
    let mut sneaky = create_table_body("sneaky");
    sneaky["location"] = json!(format!("{}/../escape", app.warehouse_url()));
    let r = app.post("/v1/default/namespaces/b/tables", sneaky).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut bad_schema = create_table_body("bad");
    bad_schema["schema"]["fields"][0]["type"] = json!("no-such-type");
    let r = app
        .post("/v1/default/namespaces/b/tables", bad_schema)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut bad_version = create_table_body("bad");
    bad_version["properties"]["format-version"] = json!("9");
    let r = app
        .post("/v1/default/namespaces/b/tables", bad_version)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // SQL metacharacters are just characters.
    let evil = "x'); DROP TABLE tables; --";
    let r = app
        .post("/v1/default/namespaces", json!({"namespace": [evil]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .post(
            &format!(
                "/v1/default/namespaces/{}/tables",
                "x%27%29%3B%20DROP%20TABLE%20tables%3B%20--"
            ),
            create_table_body(evil),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.get("/v1/default/namespaces").await;
    let names: Vec<&str> = r.body["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n[0].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b", evil]);
    let r = app.get("/v1/default/namespaces/b/tables").await;
    assert_eq!(r.body["identifiers"], json!([]));

    // Unknown routes and methods answer with the error model.
    let r = app.get("/v1/default/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], 404);
    let r = app.call(Method::PUT, "/v1/default/namespaces", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["error"]["code"], 405);

    let after = app.get("/v1/default/namespaces").await.body;
    let before_names: Vec<Value> = before["namespaces"].as_array().unwrap().clone();
    assert_eq!(
        after["namespaces"].as_array().unwrap().len(),
        before_names.len() + 1,
        "only the valid create landed"
    );
}

async fn management_api_and_prefixes(backend: Backend) {
    let app = TestApp::new(backend).await;
    let other = app.db.dir.path().join("second");
    let r = app
        .post(
            "/management/v1/warehouses",
            json!({"name": "second", "location": other.display().to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["location"], format!("file://{}", other.display()));
    let r = app
        .post(
            "/management/v1/warehouses",
            json!({"name": "second", "location": "/tmp/x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .post(
            "/management/v1/warehouses",
            json!({"name": "bad/name", "location": "/tmp/x"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post(
            "/management/v1/warehouses",
            json!({"name": "ftp", "location": "ftp://x/y"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .post(
            "/management/v1/warehouses",
            json!({"name": "lake", "location": "s3://bucket/lake", "s3": {"endpoint": "http://127.0.0.1:1", "secret_access_key": "hush", "access_key_id": "id"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.get("/management/v1/warehouses").await;
    let names: Vec<&str> = r.body["warehouses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["default", "lake", "second"]);
    assert!(
        !String::from_utf8_lossy(&r.raw).contains("hush"),
        "secrets are redacted"
    );

    // Warehouses are separate catalogs.
    let r = app.get("/v1/config?warehouse=second").await;
    assert_eq!(r.body["overrides"]["prefix"], "second");
    let r = app
        .post("/v1/second/namespaces", json!({"namespace": ["only_here"]}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let created = app
        .post(
            "/v1/second/namespaces/only_here/tables",
            create_table_body("t"),
        )
        .await;
    assert!(
        created.body["metadata-location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("file://{}", other.display()))
    );
    assert_eq!(
        app.get("/v1/default/namespaces/only_here").await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .call(Method::DELETE, "/management/v1/warehouses/second", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "non-empty warehouse stays");
    let r = app
        .call(Method::DELETE, "/management/v1/warehouses/lake", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Method::DELETE, "/management/v1/warehouses/lake", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn health_ready_and_metrics(backend: Backend) {
    let app = TestApp::new(backend).await;
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    assert_eq!(app.get("/ready").await.status, StatusCode::OK);
    app.create_namespace(&["m"]).await;
    app.get("/v1/default/namespaces/m").await;
    app.get("/v1/default/namespaces/zzz").await;
    let r = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&r.raw).to_string();
    assert!(text.contains(
        "floe_origin_http_requests_total{method=\"GET\",route=\"/v1/{prefix}/namespaces/{namespace}\",status=\"200\"} 1"
    ), "{text}");
    assert!(text.contains(
        "floe_origin_http_requests_total{method=\"GET\",route=\"/v1/{prefix}/namespaces/{namespace}\",status=\"404\"} 1"
    ));
    assert!(text.contains("floe_origin_http_request_duration_seconds_bucket"));
    assert!(text.contains("floe_origin_db_pool_connections{state=\"open\"}"));
    assert!(text.contains("floe_origin_commit_retries_total"));
    // Response bodies came from the JSON pool and all went back to it.
    let pool = app.state.bodies.pool().stats();
    assert!(pool.hits >= 1 && pool.misses >= 1, "{pool:?}");
    assert_eq!(pool.in_use, 0, "{pool:?}");
    assert!(
        text.contains("floe_pool_buffers_in_use{pool=\"json\"} 0"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "floe_pool_hits_total{{pool=\"json\"}} {}",
            pool.hits
        )),
        "{text}"
    );
    // Not ready once the database is gone.
    app.state.catalog.store().close().await;
    let r = app.get("/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_type(), "ServiceUnavailableException");
}

#[test]
fn shipped_config_file_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/origin.yaml");
    let loaded =
        floe_origin::config::Config::load(Some(&path), &floe_origin::config::StaticEnv(&[]))
            .unwrap();
    assert_eq!(loaded, floe_origin::config::Config::default());
    let pg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/origin-postgres.yaml");
    let loaded =
        floe_origin::config::Config::load(Some(&pg), &floe_origin::config::StaticEnv(&[])).unwrap();
    loaded.validate().unwrap();

    // The production example turns authentication on; with its key file in
    // place it validates.
    let dir = tempfile::tempdir().unwrap();
    let key = floe_shared::testkit::ed25519_key_file(dir.path(), "floe-1.pem");
    let public = format!("{key}.pub");
    let prod =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/production/origin.yaml");
    let text = std::fs::read_to_string(&prod).unwrap();
    assert!(text.contains("/etc/floe/keys/floe-1.pem.pub"));
    let local = dir.path().join("origin.yaml");
    std::fs::write(
        &local,
        text.replace("/etc/floe/keys/floe-1.pem.pub", &public),
    )
    .unwrap();
    let loaded =
        floe_origin::config::Config::load(Some(&local), &floe_origin::config::StaticEnv(&[]))
            .unwrap();
    assert!(loaded.auth.enabled);
    assert_eq!(loaded.auth.verification_keys[0].path, public);
    loaded.validate().unwrap();
    let missing =
        floe_origin::config::Config::load(Some(&prod), &floe_origin::config::StaticEnv(&[]))
            .unwrap();
    assert!(
        missing.validate().is_err(),
        "auth on without its key file does not start"
    );
}

/// All tables of a transaction commit, or none does.
async fn multi_table_transactions(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["tx"]).await;
    let a = app.create_table("tx", "a").await;
    let b = app.create_table("tx", "b").await;
    let change = |name: &str, requirements: Value, k: &str| {
        json!({"identifier": {"namespace": ["tx"], "name": name}, "requirements": requirements,
               "updates": [{"action": "set-properties", "updates": {k: "yes"}}]})
    };
    let r = app
        .post(
            "/v1/default/transactions/commit",
            json!({"table-changes": [change("a", json!([]), "both"), change("b", json!([]), "both")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    for t in ["a", "b"] {
        let r = app
            .get(&format!("/v1/default/namespaces/tx/tables/{t}"))
            .await;
        assert_eq!(r.body["metadata"]["properties"]["both"], "yes");
    }
    let a_now =
        app.get("/v1/default/namespaces/tx/tables/a").await.body["metadata-location"].clone();
    // One failing requirement: 409 and neither table changes, no file left behind.
    let wrong =
        json!([{"type": "assert-table-uuid", "uuid": "00000000-0000-0000-0000-000000000000"}]);
    let r = app
        .post(
            "/v1/default/transactions/commit",
            json!({"table-changes": [change("a", json!([]), "half"), change("b", wrong, "half")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.error_type(), "CommitFailedException");
    let r = app.get("/v1/default/namespaces/tx/tables/a").await;
    assert_eq!(r.body["metadata-location"], a_now);
    assert!(r.body["metadata"]["properties"].get("half").is_none());
    let dir = std::path::Path::new(
        a.body["metadata-location"]
            .as_str()
            .unwrap()
            .strip_prefix("file://")
            .unwrap(),
    )
    .parent()
    .unwrap()
    .to_path_buf();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "versions 0 and 1 only"
    );
    // Bad transactions.
    let r = app
        .post(
            "/v1/default/transactions/commit",
            json!({"table-changes": [change("missing", json!([]), "x")]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchTableException");
    let no_ident = json!({"table-changes": [{"requirements": [], "updates": []}]});
    assert_eq!(
        app.post("/v1/default/transactions/commit", no_ident)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let twice =
        json!({"table-changes": [change("a", json!([]), "x"), change("a", json!([]), "y")]});
    assert_eq!(
        app.post("/v1/default/transactions/commit", twice)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let _ = b;
    // Transactions racing single-table commits: nothing is lost.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let router = app.router.clone();
        let body = if i % 2 == 0 {
            json!({"table-changes": [change("a", json!([]), &format!("t{i}")), change("b", json!([]), &format!("t{i}"))]})
        } else {
            json!({"requirements": [], "updates": [{"action": "set-properties", "updates": {format!("t{i}"): "yes"}}]})
        };
        let uri = if i % 2 == 0 {
            "/v1/default/transactions/commit"
        } else {
            "/v1/default/namespaces/tx/tables/a"
        };
        tasks.push(tokio::spawn(async move {
            let req = axum::http::Request::post(uri)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            tower::ServiceExt::oneshot(router, req)
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_success());
    }
    let a = app.get("/v1/default/namespaces/tx/tables/a").await;
    let b = app.get("/v1/default/namespaces/tx/tables/b").await;
    for i in 0..8 {
        assert_eq!(
            a.body["metadata"]["properties"][format!("t{i}")],
            "yes",
            "{i}"
        );
        if i % 2 == 0 {
            assert_eq!(
                b.body["metadata"]["properties"][format!("t{i}")],
                "yes",
                "{i}"
            );
        }
    }
}

/// Unregister returns the last metadata; the table is gone, its files stay.
async fn unregister_then_register_elsewhere(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["u"]).await;
    app.create_namespace(&["v"]).await;
    app.create_table("u", "t").await;
    let r = app
        .post(
            "/v1/default/namespaces/u/tables/t",
            json!({"requirements": [], "updates": [
                {"action": "set-properties", "updates": {"last": "yes"}}
            ]}),
        )
        .await;
    let location = r.body["metadata-location"].as_str().unwrap().to_string();
    let r = app
        .post("/v1/default/namespaces/u/tables/t/unregister", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata-location"], location.as_str());
    assert_eq!(r.body["metadata"]["properties"]["last"], "yes");
    assert!(std::path::Path::new(location.strip_prefix("file://").unwrap()).exists());
    let r = app.get("/v1/default/namespaces/u/tables/t").await;
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app
        .post(
            "/v1/default/namespaces/u/tables/t",
            json!({"requirements": [], "updates": [
                {"action": "set-properties", "updates": {"after": "no"}}
            ]}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "commits after unregister fail"
    );
    let r = app
        .post("/v1/default/namespaces/u/tables/t/unregister", json!({}))
        .await;
    assert_eq!(
        (r.status, r.error_type()),
        (StatusCode::NOT_FOUND, "NoSuchTableException")
    );
    // Another namespace's location does not hold the files: refused there;
    // back in its own namespace, under a new name, it registers.
    let r = app
        .post(
            "/v1/default/namespaces/v/register",
            json!({"name": "t2", "metadata-location": location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .post(
            "/v1/default/namespaces/u/register",
            json!({"name": "t2", "metadata-location": location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["properties"]["last"], "yes");
}

/// No functions are stored: lists are empty, loads are 404, namespaces are checked.
async fn functions_list_none(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["f"]).await;
    let r = app.get("/v1/default/namespaces/f/functions").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"identifiers": []}));
    let r = app.get("/v1/namespaces/f/functions?pageSize=10").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .get("/v1/default/namespaces/f/functions?pageSize=zero")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get("/v1/default/namespaces/nope/functions").await;
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    let r = app.get("/v1/default/namespaces/f/functions/add_one").await;
    assert_eq!(
        (r.status, r.error_type()),
        (StatusCode::NOT_FOUND, "NoSuchFunctionException")
    );
    let r = app
        .get("/v1/default/namespaces/nope/functions/add_one")
        .await;
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
}

fn keyed(
    app: &TestApp,
    method: Method,
    uri: &str,
    key: &str,
    body: Value,
) -> axum::http::Request<axum::body::Body> {
    let _ = app;
    axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

async fn metadata_log_len(app: &TestApp, table: &str) -> usize {
    let r = app
        .get(&format!("/v1/default/namespaces/idem/tables/{table}"))
        .await;
    r.body["metadata"]["metadata-log"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A keyed mutation runs once: retries get the stored outcome, concurrent
/// duplicates wait for it, final 4xx outcomes replay too, 5xx are not kept.
async fn idempotency_keys_replay_and_never_run_twice(backend: Backend) {
    let app = TestApp::new(backend).await;
    let r = app.get("/v1/config").await;
    assert_eq!(r.body["idempotency-key-lifetime"], "PT1800S");
    let ns_key = "017f22e2-79b0-7cc3-98c4-dc0c0c07398f";
    let create_ns = json!({"namespace": ["idem"]});
    let first = app
        .send(keyed(
            &app,
            Method::POST,
            "/v1/namespaces",
            ns_key,
            create_ns.clone(),
        ))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let again = app
        .send(keyed(
            &app,
            Method::POST,
            "/v1/namespaces",
            ns_key,
            create_ns.clone(),
        ))
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "replayed, not AlreadyExists: {:?}",
        again.body
    );
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = app
        .send(keyed(
            &app,
            Method::POST,
            "/v1/namespaces",
            ns_key,
            json!({"namespace": ["x"]}),
        ))
        .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "one key, one request"
    );
    let bad = app
        .send(keyed(
            &app,
            Method::POST,
            "/v1/namespaces",
            "not-a-uuid",
            create_ns,
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // A final 4xx replays even after the cause went away.
    let missing_key = "017f22e2-79b0-7cc3-98c4-dc0c0c073990";
    let r = app
        .send(keyed(
            &app,
            Method::POST,
            "/v1/namespaces/later/tables",
            missing_key,
            create_table_body("t"),
        ))
        .await;
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    app.create_namespace(&["later"]).await;
    let r = app
        .send(keyed(
            &app,
            Method::POST,
            "/v1/namespaces/later/tables",
            missing_key,
            create_table_body("t"),
        ))
        .await;
    assert_eq!(
        r.error_type(),
        "NoSuchNamespaceException",
        "the stored outcome"
    );

    // Eight concurrent duplicates of one commit: it runs once.
    app.create_table("idem", "t").await;
    let before = metadata_log_len(&app, "t").await;
    let commit_key = "017f22e2-79b0-7cc3-98c4-dc0c0c073991";
    let commit = json!({"requirements": [], "updates": [
        {"action": "set-properties", "updates": {"run": "once"}}
    ]});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let request = keyed(
            &app,
            Method::POST,
            "/v1/namespaces/idem/tables/t",
            commit_key,
            commit.clone(),
        );
        let router = app.router.clone();
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, body)
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every duplicate got the same outcome"
    );
    assert_eq!(
        metadata_log_len(&app, "t").await,
        before + 1,
        "committed exactly once"
    );
}

/// Java clients encode names with `URLEncoder`: a space is `+`, a `+` is `%2B`.
async fn names_are_decoded_as_java_clients_encode_them(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["my ns"]).await;
    app.create_namespace(&["a+b"]).await;
    let r = app.get("/v1/default/namespaces/my+ns").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["namespace"], json!(["my ns"]));
    let r = app.get("/v1/namespaces/my%20ns").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.get("/v1/default/namespaces/a%2Bb").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["namespace"], json!(["a+b"]));
    // A literal `+` means a space, so it names the other namespace.
    let r = app.get("/v1/default/namespaces/a+b").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");

    app.create_table("my+ns", "daily sales").await;
    let r = app.get("/v1/default/namespaces/my%20ns/tables").await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["my ns"], "name": "daily sales"}])
    );
    let r = app
        .get("/v1/default/namespaces/my+ns/tables/daily+sales")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .call(
            Method::HEAD,
            "/v1/namespaces/my%20ns/tables/daily%20sales",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(
            Method::DELETE,
            "/v1/default/namespaces/my+ns/tables/daily+sales",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get("/v1/default/namespaces/my+ns/tables").await;
    assert_eq!(r.body["identifiers"], json!([]));
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("content-length"));
            if data.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("status code");
                return (status, head);
            }
        }
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(n > 0, "connection closed before a whole response: {data:?}");
        data.extend_from_slice(&chunk[..n]);
    }
}

/// A request answered before its body is read (here 405) leaves the
/// connection usable for the next request, as the edge's pooled connections
/// need; a body over the limit gets 413 with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_survive_requests_answered_before_their_body() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::with(Backend::Sqlite, |c| c.server.body_limit_bytes = 1 << 20).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = vec![b'a'; 300_000];
    for (method, path) in [
        ("PATCH", "/v1/default/namespaces"),
        ("QUERY", "/v1/oauth/tokens"),
        ("GET", "/v1/default/namespaces/missing"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: floe\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let (status, head) = read_response(&mut stream).await;
        assert!((400..500).contains(&status), "{method} {path}: {head}");
        assert!(
            !head.contains("connection: close"),
            "{method} {path}: {head}"
        );
        // The same connection serves the next request.
        stream
            .write_all(b"GET /v1/config HTTP/1.1\r\nhost: floe\r\n\r\n")
            .await
            .unwrap();
        let (status, head) = read_response(&mut stream).await;
        assert_eq!(status, 200, "after {method} {path}: {head}");
    }

    let head = format!(
        "POST /v1/default/namespaces HTTP/1.1\r\nhost: floe\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'a'; (1 << 20) + 1]).await.unwrap();
    let (status, head) = read_response(&mut stream).await;
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    server.abort();
}
