//! Views through the router, against SQLite and PostgreSQL alike: every
//! operation, the name space shared with tables, replace with its
//! requirement and concurrency, and bad input that changes nothing.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use support::{Backend, TestApp, now_ms};

both_backends!(
    view_lifecycle_and_etags,
    views_and_tables_share_one_name_space,
    replace_with_every_update_and_the_uuid_requirement,
    concurrent_replaces_lose_nothing,
    rename_and_register_views,
    view_paging,
    bad_view_input_changes_nothing,
);

fn view_body(name: &str, sql: &str) -> Value {
    json!({
        "name": name,
        "schema": {"type": "struct", "schema-id": 0, "fields": [
            {"id": 1, "name": "id", "required": false, "type": "long"}
        ]},
        "view-version": version(1, 0, sql),
        "properties": {"owner": "ann"}
    })
}

fn version(id: i64, schema_id: i64, sql: &str) -> Value {
    json!({
        "version-id": id,
        "schema-id": schema_id,
        "timestamp-ms": now_ms(),
        "summary": {"engine-name": "spark", "engine-version": "3.5"},
        "representations": [{"type": "sql", "sql": sql, "dialect": "spark"}],
        "default-namespace": ["db"]
    })
}

async fn create_view(app: &TestApp, ns: &str, name: &str) -> Value {
    let r = app
        .post(
            &format!("/v1/default/namespaces/{ns}/views"),
            view_body(name, "select 1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn metadata_file(app: &TestApp, location: &str) -> Value {
    let path = location.strip_prefix("file://").unwrap();
    assert!(
        path.starts_with(app.db.warehouse_path().to_str().unwrap()),
        "{path}"
    );
    serde_json::from_slice(&std::fs::read(path).expect("metadata file written")).unwrap()
}

async fn view_lifecycle_and_etags(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    let created = create_view(&app, "db", "v").await;
    let location = created["metadata-location"].as_str().unwrap().to_string();
    assert!(location.contains("/metadata/00000-"), "{location}");
    assert!(location.ends_with(".metadata.json"));
    let metadata = &created["metadata"];
    assert_eq!(metadata["format-version"], 1);
    assert_eq!(metadata["current-version-id"], 1);
    assert_eq!(metadata["properties"]["owner"], "ann");
    assert_eq!(
        metadata["versions"][0]["representations"][0]["sql"],
        "select 1"
    );
    // The file holds exactly what the catalog answers.
    assert_eq!(&metadata_file(&app, &location), metadata);

    let r = app.get("/v1/default/namespaces/db/views/v").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["metadata-location"], location.as_str());
    assert_eq!(&r.body["metadata"], metadata);
    assert!(r.body["config"].is_object());
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("\"v1-"), "{etag}");
    // 304 on a matching If-None-Match, 200 after a change.
    let request = axum::http::Request::builder()
        .uri("/v1/default/namespaces/db/views/v")
        .header("if-none-match", &etag)
        .body(axum::body::Body::empty())
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers["etag"].to_str().unwrap(), etag);

    let r = app
        .call(Method::HEAD, "/v1/default/namespaces/db/views/v", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Method::HEAD, "/v1/default/namespaces/db/views/nope", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = app.get("/v1/default/namespaces/db/views").await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["db"], "name": "v"}])
    );
    // A namespace with a view is not empty.
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/db", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "NamespaceNotEmptyException");

    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/db/views/v", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get("/v1/default/namespaces/db/views/v").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchViewException");
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/db/views/v", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchViewException");
    let r = app.get("/v1/default/namespaces/nope/views").await;
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    let r = app
        .post(
            "/v1/default/namespaces/nope/views",
            view_body("v", "select 1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    // Unprefixed routes reach the default warehouse.
    create_view(&app, "db", "w").await;
    let r = app.get("/v1/namespaces/db/views/w").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/db", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

async fn views_and_tables_share_one_name_space(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    create_view(&app, "db", "v").await;

    // A view over a table's name, a table over a view's name: 409, saying which.
    let r = app
        .post(
            "/v1/default/namespaces/db/views",
            view_body("t", "select 1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Table with same name already exists"),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/v1/default/namespaces/db/tables",
            support::create_table_body("v"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("View with same name already exists"),
        "{:?}",
        r.body
    );
    // A create transaction on a view's name is the same clash, not a retry loop.
    let r = app
        .post(
            "/v1/default/namespaces/db/tables/v",
            json!({"requirements": [{"type": "assert-create"}], "updates": [
                {"action": "add-schema", "schema": {"type": "struct", "schema-id": 0, "fields": []}},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    // Loads, drops and existence checks see only their own kind.
    let r = app.get("/v1/default/namespaces/db/tables/v").await;
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app.get("/v1/default/namespaces/db/views/t").await;
    assert_eq!(r.error_type(), "NoSuchViewException");
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/db/tables/v", None)
        .await;
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/db/views/t", None)
        .await;
    assert_eq!(r.error_type(), "NoSuchViewException");
    let r = app
        .call(Method::HEAD, "/v1/default/namespaces/db/tables/v", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Lists keep the kinds apart.
    let r = app.get("/v1/default/namespaces/db/tables").await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["db"], "name": "t"}])
    );
    let r = app.get("/v1/default/namespaces/db/views").await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["db"], "name": "v"}])
    );
    // Renames onto the other kind's name are refused, both ways.
    let rename = |from: &str, to: &str| json!({"source": {"namespace": ["db"], "name": from}, "destination": {"namespace": ["db"], "name": to}});
    let r = app
        .post("/v1/default/tables/rename", rename("t", "v"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("View with same name"),
        "{:?}",
        r.body
    );
    let r = app.post("/v1/default/views/rename", rename("v", "t")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Table with same name"),
        "{:?}",
        r.body
    );
    // A table rename does not move views and the other way round.
    let r = app
        .post("/v1/default/tables/rename", rename("v", "x"))
        .await;
    assert_eq!(r.error_type(), "NoSuchTableException");
    let r = app.post("/v1/default/views/rename", rename("t", "x")).await;
    assert_eq!(r.error_type(), "NoSuchViewException");
    // Registering a table over a view, even with overwrite, is a clash.
    let table = app.get("/v1/default/namespaces/db/tables/t").await;
    let r = app
        .post(
            "/v1/default/namespaces/db/register",
            json!({"name": "v", "metadata-location": table.body["metadata-location"], "overwrite": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    // Once the view is gone, its name is free for a table.
    app.call(Method::DELETE, "/v1/default/namespaces/db/views/v", None)
        .await;
    let r = app
        .post(
            "/v1/default/namespaces/db/tables",
            support::create_table_body("v"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn replace_with_every_update_and_the_uuid_requirement(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    let created = create_view(&app, "db", "v").await;
    let uuid = created["metadata"]["view-uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let first_location = created["metadata-location"].as_str().unwrap().to_string();
    let url = "/v1/default/namespaces/db/views/v";

    // What Java's view builder sends for CREATE OR REPLACE VIEW.
    let r = app
        .post(
            url,
            json!({
                "identifier": {"namespace": ["db"], "name": "v"},
                "requirements": [{"type": "assert-view-uuid", "uuid": uuid}],
                "updates": [
                    {"action": "add-schema", "schema": {"type": "struct", "schema-id": 1, "fields": [
                        {"id": 1, "name": "id", "required": false, "type": "long"},
                        {"id": 2, "name": "name", "required": false, "type": "string"}
                    ]}, "last-column-id": 2},
                    {"action": "add-view-version", "view-version": version(2, -1, "select id, name from t")},
                    {"action": "set-current-view-version", "view-version-id": -1},
                    {"action": "set-properties", "updates": {"comment": "two columns"}},
                    {"action": "remove-properties", "removals": ["owner"]},
                    {"action": "set-location", "location": format!("{}/db/v-moved", app.warehouse_url())},
                    {"action": "upgrade-format-version", "format-version": 1}
                ]
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let m = &r.body["metadata"];
    assert_eq!(m["current-version-id"], 2);
    assert_eq!(m["view-uuid"], uuid.as_str());
    assert_eq!(m["properties"], json!({"comment": "two columns"}));
    assert!(m["location"].as_str().unwrap().ends_with("/db/v-moved"));
    assert_eq!(m["versions"].as_array().unwrap().len(), 2);
    assert_eq!(m["version-log"].as_array().unwrap().len(), 2);
    assert_eq!(m["schemas"].as_array().unwrap().len(), 2);
    let second = r.body["metadata-location"].as_str().unwrap().to_string();
    assert_ne!(second, first_location);
    assert!(second.contains("/db/v-moved/metadata/00001-"), "{second}");
    assert_eq!(&metadata_file(&app, &second), m);
    // The earlier file is still there: its history is the view's.
    metadata_file(&app, &first_location);
    let loaded = app.get(url).await;
    assert_eq!(loaded.body["metadata-location"], second.as_str());

    // Going back to version 1 is a current-version change only.
    let r = app
        .post(
            url,
            json!({"requirements": [], "updates": [
                {"action": "set-current-view-version", "view-version-id": 1}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata"]["current-version-id"], 1);
    let third = r.body["metadata-location"].as_str().unwrap().to_string();

    // A UUID that does not match is a 409 and changes nothing.
    let r = app
        .post(
            url,
            json!({"requirements": [{"type": "assert-view-uuid", "uuid": uuid::Uuid::now_v7().to_string()}],
                   "updates": [{"action": "set-properties", "updates": {"x": "y"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "CommitFailedException");
    // An update the builder refuses is a 400 and changes nothing.
    let r = app
        .post(
            url,
            json!({"requirements": [], "updates": [
                {"action": "set-current-view-version", "view-version-id": 99}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .post(
            url,
            json!({"requirements": [], "updates": [{"action": "add-view-version", "view-version": version(3, 42, "select 3")}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // An identifier that contradicts the path is a 400.
    let r = app
        .post(
            url,
            json!({"identifier": {"namespace": ["db"], "name": "other"}, "updates": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Replacing a view that does not exist is a 404.
    let r = app
        .post(
            "/v1/default/namespaces/db/views/nope",
            json!({"updates": [{"action": "set-properties", "updates": {"x": "y"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "NoSuchViewException");
    let after = app.get(url).await;
    assert_eq!(after.body["metadata-location"], third.as_str());
    assert!(after.body["metadata"]["properties"].get("x").is_none());
    // A change with no effect writes nothing.
    let r = app
        .post(
            url,
            json!({"updates": [{"action": "set-current-view-version", "view-version-id": 1}]}),
        )
        .await;
    assert_eq!(r.body["metadata-location"], third.as_str());
}

async fn concurrent_replaces_lose_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    create_view(&app, "db", "v").await;
    let writers = 8;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let router = app.router.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"updates": [{"action": "set-properties", "updates": {format!("k{i}"): "v"}}]});
            let request = axum::http::Request::builder()
                .method(Method::POST)
                .uri("/v1/default/namespaces/db/views/v")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            use tower::ServiceExt;
            router.oneshot(request).await.unwrap().status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
        if status == StatusCode::OK {
            ok += 1;
        }
    }
    // Updates that do not conflict are retried on the server: all land.
    let r = app.get("/v1/default/namespaces/db/views/v").await;
    let props = r.body["metadata"]["properties"].as_object().unwrap();
    let landed = (0..writers)
        .filter(|i| props.contains_key(&format!("k{i}")))
        .count();
    assert_eq!(landed, ok, "every acknowledged replace is visible");
    assert_eq!(ok, writers, "no conflict among independent property sets");
}

async fn rename_and_register_views(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["a"]).await;
    app.create_namespace(&["b"]).await;
    let created = create_view(&app, "a", "v").await;
    create_view(&app, "b", "taken").await;
    let rename = |from: (&str, &str), to: (&str, &str)| json!({"source": {"namespace": [from.0], "name": from.1}, "destination": {"namespace": [to.0], "name": to.1}});
    let r = app
        .post(
            "/v1/default/views/rename",
            rename(("a", "v"), ("b", "taken")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExistsException");
    let r = app
        .post(
            "/v1/default/views/rename",
            rename(("a", "v"), ("nowhere", "v")),
        )
        .await;
    assert_eq!(r.error_type(), "NoSuchNamespaceException");
    let r = app
        .post(
            "/v1/default/views/rename",
            rename(("a", "missing"), ("b", "x")),
        )
        .await;
    assert_eq!(r.error_type(), "NoSuchViewException");
    let r = app
        .post(
            "/v1/default/views/rename",
            rename(("a", "v"), ("b", "moved")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let moved = app.get("/v1/default/namespaces/b/views/moved").await;
    assert_eq!(
        moved.body["metadata-location"],
        created["metadata-location"]
    );
    assert_eq!(
        app.get("/v1/default/namespaces/a/views/v").await.status,
        StatusCode::NOT_FOUND
    );

    // Register: not while a live view holds the file's location; after a
    // drop (the files stay) under another name; then refused over a taken
    // name, a missing file and a file outside the warehouse.
    let location = created["metadata-location"].as_str().unwrap();
    let r = app
        .post(
            "/v1/default/namespaces/a/register-view",
            json!({"name": "again", "metadata-location": location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .call(Method::DELETE, "/v1/default/namespaces/b/views/moved", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post(
            "/v1/default/namespaces/a/register-view",
            json!({"name": "again", "metadata-location": location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["metadata-location"], location);
    assert_eq!(r.body["metadata"], created["metadata"]);
    let r = app
        .post(
            "/v1/default/namespaces/a/register-view",
            json!({"name": "again", "metadata-location": location}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .post(
            "/v1/default/namespaces/a/register-view",
            json!({"name": "gone", "metadata-location": format!("{}/nope/00000-x.metadata.json", app.warehouse_url())}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .post(
            "/v1/default/namespaces/a/register-view",
            json!({"name": "outside", "metadata-location": "file:///etc/passwd"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // A table's metadata file is not view metadata.
    let table = app.create_table("a", "t").await;
    let r = app
        .post(
            "/v1/default/namespaces/a/register-view",
            json!({"name": "nota", "metadata-location": table.body["metadata-location"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // The registered view replaces like any other.
    let r = app
        .post(
            "/v1/default/namespaces/a/views/again",
            json!({"updates": [{"action": "set-properties", "updates": {"k": "v"}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

async fn view_paging(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    for i in 0..5 {
        create_view(&app, "db", &format!("v{i}")).await;
    }
    app.create_table("db", "a_table").await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = app
            .get(&format!(
                "/v1/default/namespaces/db/views?pageSize=2&pageToken={token}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let ids = r.body["identifiers"].as_array().unwrap();
        assert!(ids.len() <= 2);
        seen.extend(ids.iter().map(|i| i["name"].as_str().unwrap().to_string()));
        match r.body["next-page-token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["v0", "v1", "v2", "v3", "v4"]);
    let r = app.get("/v1/default/namespaces/db/views?pageSize=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn bad_view_input_changes_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["db"]).await;
    create_view(&app, "db", "v").await;
    let before = app.get("/v1/default/namespaces/db/views/v").await;
    let url = "/v1/default/namespaces/db/views";
    let mut bad = vec![
        json!({}),
        json!({"name": "x"}),
        json!({"name": "", "schema": {"type": "struct", "fields": []}, "view-version": version(1, 0, "s"), "properties": {}}),
        json!({"name": "x", "schema": {"type": "struct", "fields": []}, "view-version": {"version-id": 1}, "properties": {}}),
        json!({"name": "x", "schema": "no", "view-version": version(1, 0, "s"), "properties": {}}),
    ];
    let mut outside = view_body("x", "s");
    outside["location"] = json!("file:///tmp/elsewhere");
    bad.push(outside);
    for body in bad {
        let r = app.post(url, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body} -> {:?}", r.body);
        assert_eq!(r.error_type(), "BadRequestException");
    }
    let r = app.raw(Method::POST, url, "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for body in [
        json!({"updates": [{"action": "no-such-action"}]}),
        json!({"requirements": [{"type": "assert-table-uuid", "uuid": "x"}], "updates": []}),
        json!({"requirements": []}),
    ] {
        let r = app.post(&format!("{url}/v"), body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body} -> {:?}", r.body);
    }
    let r = app.get("/v1/default/namespaces/db/views").await;
    assert_eq!(
        r.body["identifiers"],
        json!([{"namespace": ["db"], "name": "v"}])
    );
    let after = app.get("/v1/default/namespaces/db/views/v").await;
    assert_eq!(after.body, before.body);
}
