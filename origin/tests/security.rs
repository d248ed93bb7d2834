//! Storage confinement, attack by attack, against SQLite and PostgreSQL:
//! no request reaches a byte outside its own table's location. Each test
//! sends the request shape that deleted, read or claimed someone else's
//! files before locations were confined, then checks that it is refused and
//! that the victim is intact.
#![allow(
    clippy::unwrap_used,
    reason = "a test stops at the first unexpected value"
)]

mod support;

use axum::http::{Method, StatusCode};
use floe_shared::auth::{AuthConfig, Grant, Role};
use floe_shared::testkit::{self, grant};
use serde_json::{Value, json};

use support::{Backend, Reply, TestApp, create_table_body};

both_backends!(
    statistics_outside_the_table_are_refused_and_never_purged,
    commits_naming_paths_outside_the_table_are_refused,
    table_and_view_locations_never_overlap,
    concurrent_creates_never_share_a_location,
    set_location_moves_within_the_rules,
    register_reads_only_inside_its_namespace,
    rows_from_before_confinement_never_reach_other_tables,
    planning_never_opens_files_outside_the_table,
    namespace_locations_need_the_warehouse_writer,
    links_in_a_local_warehouse_never_lead_a_purge_out,
    lists_show_what_the_caller_may_read,
    scan_planning_is_bounded_per_principal,
);

const T: &str = "/v1/default/namespaces";

fn commit(updates: Value) -> Value {
    json!({"requirements": [], "updates": updates})
}

fn statistics(path: &str) -> Value {
    json!([{"action": "set-statistics", "snapshot-id": 1, "statistics": {
        "snapshot-id": 1, "statistics-path": path, "file-size-in-bytes": 1,
        "file-footer-size-in-bytes": 1, "blob-metadata": []}}])
}

fn refused(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {:?}", r.body);
    assert_eq!(r.error_type(), "BadRequestException", "{what}");
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Storage confinement") || message.contains("outside warehouse"),
        "{what}: the error names the rule: {message}"
    );
}

/// `file:///…` of a local path.
fn url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

/// A file outside the warehouse, and a table `hr.secret` whose metadata
/// file is the other victim.
struct Victims {
    outside: std::path::PathBuf,
    hr_location: String,
    hr_metadata: String,
}

impl Victims {
    async fn plant(app: &TestApp) -> Self {
        let outside = app.db.dir.path().join("victim");
        std::fs::write(&outside, b"secret").expect("victim");
        app.create_namespace(&["hr"]).await;
        let r = app.create_table("hr", "secret").await;
        Victims {
            outside,
            hr_location: r.body["metadata"]["location"].as_str().unwrap().into(),
            hr_metadata: r.body["metadata-location"].as_str().unwrap().into(),
        }
    }

    fn hr_metadata_path(&self) -> std::path::PathBuf {
        self.hr_metadata
            .strip_prefix("file://")
            .expect("file url")
            .into()
    }

    async fn assert_intact(&self, app: &TestApp) {
        assert_eq!(
            std::fs::read(&self.outside).expect("outside victim"),
            b"secret"
        );
        assert!(
            self.hr_metadata_path().exists(),
            "hr.secret's metadata file is gone"
        );
        let r = app.get(&format!("{T}/hr/tables/secret")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["metadata-location"], self.hr_metadata.as_str());
    }
}

/// The attack of the issue: statistics that name another file, then a purge.
async fn statistics_outside_the_table_are_refused_and_never_purged(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["p"]).await;
    let t = app.create_table("p", "t").await;
    let location = t.body["metadata"]["location"].as_str().unwrap().to_string();
    let before = t.body["metadata-location"].clone();
    let catalog_db = url(&app.db.dir.path().join("catalog.db"));
    for path in [
        url(&victims.outside),
        victims.hr_metadata.clone(),
        catalog_db,
        format!("{location}/../../hr/x"),
        format!("{location}/%2e%2e/%2e%2e/hr/x"),
        format!("{location}x/stats.puffin"),
        format!("{location}/a\\..\\..\\x"),
        "s3://other-bucket/secret.puffin".to_string(),
    ] {
        let r = app
            .post(&format!("{T}/p/tables/t"), commit(statistics(&path)))
            .await;
        refused(&r, &path);
    }
    let r = app.get(&format!("{T}/p/tables/t")).await;
    assert_eq!(r.body["metadata-location"], before, "nothing changed");
    assert!(
        r.body["metadata"]["statistics"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{:?}",
        r.body["metadata"]["statistics"]
    );
    // Inside the table: accepted.
    let own = format!("{location}/metadata/stats-1.puffin");
    let r = app
        .post(&format!("{T}/p/tables/t"), commit(statistics(&own)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let r = app
        .call(
            Method::DELETE,
            &format!("{T}/p/tables/t?purgeRequested=true"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    victims.assert_intact(&app).await;
}

async fn commits_naming_paths_outside_the_table_are_refused(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["p"]).await;
    let t = app.create_table("p", "t").await;
    let location = t.body["metadata"]["location"].as_str().unwrap().to_string();
    let before = t.body["metadata-location"].clone();
    let outside = &victims.hr_location;
    let attacks = [
        json!([{"action": "set-partition-statistics", "partition-statistics": {
            "snapshot-id": 1, "statistics-path": format!("{outside}/p.parquet"),
            "file-size-in-bytes": 1}}]),
        json!([{"action": "add-snapshot", "snapshot": {
            "snapshot-id": 7, "sequence-number": 1, "timestamp-ms": support::now_ms(),
            "manifest-list": format!("{outside}/metadata/snap.avro"),
            "summary": {"operation": "append"}, "schema-id": 0}}]),
        json!([{"action": "set-properties", "updates": {"write.data.path": outside}}]),
        json!([{"action": "set-properties", "updates": {"write.metadata.path": format!("{outside}/metadata")}}]),
        json!([{"action": "set-properties", "updates": {"write.object-storage.path": url(&victims.outside)}}]),
        json!([{"action": "set-properties", "updates": {"write.delete.path": outside}}]),
        json!([{"action": "set-location", "location": "file:///etc"}]),
        json!([{"action": "set-location", "location": outside}]),
    ];
    for updates in attacks {
        let r = app
            .post(&format!("{T}/p/tables/t"), commit(updates.clone()))
            .await;
        refused(&r, &updates.to_string());
    }
    let r = app.get(&format!("{T}/p/tables/t")).await;
    assert_eq!(r.body["metadata-location"], before, "nothing changed");

    // A create that names paths outside is refused too, and creates nothing.
    let mut body = create_table_body("u");
    body["properties"] = json!({"write.data.path": outside});
    refused(&app.post(&format!("{T}/p/tables"), body).await, "create");
    assert_eq!(
        app.get(&format!("{T}/p/tables/u")).await.status,
        StatusCode::NOT_FOUND
    );

    // The same properties inside the table's location are fine.
    let r = app
        .post(
            &format!("{T}/p/tables/t"),
            commit(json!([{"action": "set-properties", "updates": {
                "write.data.path": format!("{location}/data"),
                "write.metadata.path": format!("{location}/metadata")}}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    victims.assert_intact(&app).await;
}

async fn table_and_view_locations_never_overlap(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["sales"]).await;
    let wh = app.warehouse_url();
    let create = |name: &str, location: &str| {
        let mut body = create_table_body(name);
        body["location"] = json!(location);
        body
    };
    let hr = &victims.hr_location;
    for (name, location) in [
        ("root", wh.clone()),
        ("root2", format!("{wh}/")),
        ("evil", hr.clone()),
        ("inhr", format!("{hr}/data")),
        ("above", format!("{wh}/hr")),
        ("ns", format!("{wh}/sales")),
        ("sneaky", format!("{wh}/sales/../hr/x")),
        ("encoded", format!("{wh}/sales/%2e%2e/hr/x")),
        ("elsewhere", "file:///tmp/floe-elsewhere".to_string()),
        ("wild", format!("{wh}/sales/*")),
        ("var", format!("{wh}/sales/${{aws:username}}")),
        ("deep", format!("{wh}/sales/{}", "a/".repeat(100_000))),
    ] {
        let r = app
            .post(&format!("{T}/sales/tables"), create(name, &location))
            .await;
        refused(&r, &location);
        assert_eq!(
            app.get(&format!("{T}/sales/tables/{name}")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    // Segment boundaries: t1 and t10 are neighbours, not nested.
    let t1 = format!("{wh}/sales/t1");
    for (name, location) in [("t1", t1.clone()), ("t10", format!("{wh}/sales/t10"))] {
        let r = app
            .post(&format!("{T}/sales/tables"), create(name, &location))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{location}: {:?}", r.body);
    }
    for location in [
        format!("{t1}/x"),
        format!("{wh}/sales//t1/x"),
        format!("{wh}/sales/%74%31/x"),
        format!("{t1}/"),
    ] {
        let r = app
            .post(&format!("{T}/sales/tables"), create("x", &location))
            .await;
        refused(&r, &location);
    }
    // A staged create is checked before anything is staged, and the
    // create transaction again when it commits.
    let mut staged = create("staged", hr);
    staged["stage-create"] = json!(true);
    refused(
        &app.post(&format!("{T}/sales/tables"), staged).await,
        "stage",
    );
    let schema = create_table_body("c")["schema"].clone();
    let r = app
        .post(
            &format!("{T}/sales/tables/c"),
            json!({"requirements": [{"type": "assert-create"}], "updates": [
                {"action": "assign-uuid", "uuid": uuid::Uuid::new_v4().to_string()},
                {"action": "upgrade-format-version", "format-version": 2},
                {"action": "add-schema", "schema": schema},
                {"action": "set-current-schema", "schema-id": -1},
                {"action": "set-location", "location": t1.clone()}]}),
        )
        .await;
    refused(&r, "create transaction");

    // Views follow the same rules, against tables and each other.
    let view = |name: &str, location: &str| {
        json!({"name": name, "location": location,
            "schema": {"type": "struct", "schema-id": 0, "fields": [
                {"id": 1, "name": "a", "required": false, "type": "int"}]},
            "view-version": {"version-id": 1, "schema-id": 0, "timestamp-ms": support::now_ms(),
                "summary": {}, "default-namespace": ["sales"],
                "representations": [{"type": "sql", "sql": "select 1", "dialect": "spark"}]},
            "properties": {}})
    };
    refused(
        &app.post(&format!("{T}/sales/views"), view("v", hr)).await,
        "view at a table's location",
    );
    let r = app
        .post(
            &format!("{T}/sales/views"),
            view("v", &format!("{wh}/sales/v")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    refused(
        &app.post(
            &format!("{T}/sales/tables"),
            create("inview", &format!("{wh}/sales/v/t")),
        )
        .await,
        "table inside a view",
    );

    // A rename keeps the location, and the location stays claimed.
    app.create_namespace(&["archive"]).await;
    let r = app
        .post(
            "/v1/default/tables/rename",
            json!({"source": {"namespace": ["sales"], "name": "t1"},
                   "destination": {"namespace": ["archive"], "name": "t1"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let moved = app.table_location("archive", "t1").await;
    assert_eq!(moved, t1);
    refused(
        &app.post(&format!("{T}/sales/tables"), create("again", &t1))
            .await,
        "renamed table's location",
    );
    // Dropped, the location is free again.
    let r = app
        .call(Method::DELETE, &format!("{T}/archive/tables/t1"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post(&format!("{T}/sales/tables"), create("again", &t1))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    victims.assert_intact(&app).await;
}

/// Creates racing for one location: exactly one wins.
async fn concurrent_creates_never_share_a_location(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.create_namespace(&["race"]).await;
    let location = format!("{}/race/shared", app.warehouse_url());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let router = app.router.clone();
        let mut body = create_table_body(&format!("t{i}"));
        body["location"] = json!(location);
        tasks.push(tokio::spawn(async move {
            let req = axum::http::Request::post(format!("{T}/race/tables"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            tower::ServiceExt::oneshot(router, req)
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((won, lost), (1, 7), "{statuses:?}");
}

async fn set_location_moves_within_the_rules(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["s"]).await;
    app.create_table("s", "a").await;
    let b = app.create_table("s", "b").await;
    let b_location = b.body["metadata"]["location"].as_str().unwrap().to_string();
    let wh = app.warehouse_url();
    let move_to =
        |location: &str| commit(json!([{"action": "set-location", "location": location}]));
    for location in [
        victims.hr_location.clone(),
        b_location.clone(),
        format!("{b_location}/inside"),
        format!("{wh}/s"),
        wh.clone(),
        format!("{wh}/hr/mine"),
    ] {
        refused(
            &app.post(&format!("{T}/s/tables/a"), move_to(&location))
                .await,
            &location,
        );
    }
    // A move inside the namespace: the next metadata file is written in
    // the new location, and the old location is released.
    let old = app.table_location("s", "a").await;
    let new = format!("{wh}/s/a-moved");
    let r = app.post(&format!("{T}/s/tables/a"), move_to(&new)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let file = r.body["metadata-location"].as_str().unwrap();
    assert!(file.starts_with(&format!("{new}/metadata/")), "{file}");
    let mut body = create_table_body("c");
    body["location"] = json!(old);
    let r = app.post(&format!("{T}/s/tables"), body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // And the new one is claimed.
    let mut body = create_table_body("d");
    body["location"] = json!(new);
    refused(&app.post(&format!("{T}/s/tables"), body).await, "claimed");
    // Two tables of one transaction never get one place either.
    let r = app
        .post(
            "/v1/default/transactions/commit",
            json!({"table-changes": [
                {"identifier": {"namespace": ["s"], "name": "a"}, "requirements": [],
                 "updates": [{"action": "set-location", "location": format!("{wh}/s/same")}]},
                {"identifier": {"namespace": ["s"], "name": "b"}, "requirements": [],
                 "updates": [{"action": "set-location", "location": format!("{wh}/s/same/inner")}]}]}),
        )
        .await;
    refused(&r, "two tables onto one place");
    assert_eq!(app.table_location("s", "a").await, new, "nothing moved");
    // In a multi-table transaction too.
    let r = app
        .post(
            "/v1/default/transactions/commit",
            json!({"table-changes": [{"identifier": {"namespace": ["s"], "name": "b"},
                "requirements": [], "updates": [{"action": "set-location", "location": victims.hr_location}]}]}),
        )
        .await;
    refused(&r, "transaction");
    victims.assert_intact(&app).await;
}

async fn register_reads_only_inside_its_namespace(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["sales"]).await;
    let register = |name: &str, file: &str| json!({"name": name, "metadata-location": file});
    for file in [
        victims.hr_metadata.clone(),
        url(&victims.outside),
        "file:///etc/passwd".to_string(),
        format!("{}/sales/../hr/x.metadata.json", app.warehouse_url()),
    ] {
        let r = app
            .post(&format!("{T}/sales/register"), register("stolen", &file))
            .await;
        refused(&r, &file);
        let r = app
            .post(
                &format!("{T}/sales/register-view"),
                register("stolen", &file),
            )
            .await;
        refused(&r, &file);
    }
    assert_eq!(
        app.get(&format!("{T}/sales/tables/stolen")).await.status,
        StatusCode::NOT_FOUND
    );
    // Inside the namespace: a missing file and a file that is not metadata
    // get the same answer, with no storage error text.
    let dir = app.db.warehouse_path().join("sales").join("junk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("present.json"), b"not metadata").unwrap();
    let mut messages = Vec::new();
    for file in ["present.json", "missing.json"] {
        let location = url(&dir.join(file));
        let r = app
            .post(&format!("{T}/sales/register"), register("x", &location))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("No such file"), "{message}");
        messages.push(message.replace(&location, "<file>"));
    }
    assert_eq!(messages[0], messages[1]);

    // A table's own metadata, after a drop that kept the files, registers again.
    let t = app.create_table("sales", "t").await;
    let file = t.body["metadata-location"].as_str().unwrap().to_string();
    let r = app
        .call(Method::DELETE, &format!("{T}/sales/tables/t"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .post(&format!("{T}/sales/register"), register("t", &file))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // But not into another namespace, whose location does not hold it.
    app.create_namespace(&["other"]).await;
    let r = app
        .call(Method::DELETE, &format!("{T}/sales/tables/t"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    refused(
        &app.post(&format!("{T}/other/register"), register("t", &file))
            .await,
        "another namespace",
    );
    victims.assert_intact(&app).await;
}

/// Rewrites a table row as a catalog before confinement could have left it:
/// `edit` changes its metadata document; the location key is recomputed by
/// the start-up backfill, as for rows written before the column existed.
async fn make_legacy(app: &TestApp, ns: &str, name: &str, edit: impl FnOnce(&mut Value)) {
    let pool = sqlx::AnyPool::connect(&app.db.url).await.expect("database");
    let row: (String, String) = sqlx::query_as(
        "SELECT t.id, t.metadata FROM tables t JOIN namespaces n ON t.namespace_id = n.id \
         WHERE n.name = $1 AND t.name = $2",
    )
    .bind(ns)
    .bind(name)
    .fetch_one(&pool)
    .await
    .expect("row");
    let mut metadata: Value = serde_json::from_str(&row.1).unwrap();
    edit(&mut metadata);
    sqlx::query(
        "UPDATE tables SET metadata = $1, metadata_refs = NULL, location_key = NULL WHERE id = $2",
    )
    .bind(metadata.to_string())
    .bind(&row.0)
    .execute(&pool)
    .await
    .expect("update");
    pool.close().await;
    app.state.catalog.store().migrate().await.expect("backfill");
}

async fn rows_from_before_confinement_never_reach_other_tables(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["sales"]).await;
    let wh = app.warehouse_url();
    let stats = |path: &str| {
        json!({"snapshot-id": 1, "statistics-path": path, "file-size-in-bytes": 1,
            "file-footer-size-in-bytes": 1, "blob-metadata": []})
    };
    // A table at the warehouse root whose statistics name hr.secret's
    // metadata file and a file outside the warehouse.
    app.create_table("sales", "root").await;
    let (hr_metadata, outside) = (victims.hr_metadata.clone(), url(&victims.outside));
    make_legacy(&app, "sales", "root", |m| {
        m["location"] = json!(wh);
        m["statistics"] = json!([stats(&hr_metadata), stats(&outside)]);
    })
    .await;
    // Located at the root, it overlaps every table: no storage access, no
    // planning.
    let r = app.get(&format!("{T}/sales/tables/root/credentials")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = app
        .post(&format!("{T}/sales/tables/root/plan"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = app
        .call(
            Method::DELETE,
            &format!("{T}/sales/tables/root?purgeRequested=true"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    victims.assert_intact(&app).await;

    // A table inside hr.secret's directory, statistics on its metadata file.
    app.create_table("sales", "inhr").await;
    let hr_location = victims.hr_location.clone();
    let hr_metadata = victims.hr_metadata.clone();
    make_legacy(&app, "sales", "inhr", |m| {
        m["location"] = json!(hr_location);
        m["statistics"] = json!([stats(&hr_metadata)]);
    })
    .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{T}/sales/tables/inhr?purgeRequested=true"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    victims.assert_intact(&app).await;

    // A location that is not a path at all is backfilled, and its purge
    // touches nothing.
    app.create_table("sales", "odd").await;
    let outside = url(&victims.outside);
    make_legacy(&app, "sales", "odd", |m| {
        m["location"] = json!(format!("{wh}/sales/../.."));
        m["statistics"] = json!([stats(&outside)]);
    })
    .await;
    let r = app
        .call(
            Method::DELETE,
            &format!("{T}/sales/tables/odd?purgeRequested=true"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    victims.assert_intact(&app).await;
}

async fn planning_never_opens_files_outside_the_table(backend: Backend) {
    let app = TestApp::with(backend, |c| c.catalog.plan_sync_budget_ms = 30_000).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let location = app.table_location("db", "t").await;
    let r = app
        .post(
            &format!("{T}/db/tables/t"),
            commit(support::append_updates(&location, 1, None, 1)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Its manifest list now names hr.secret's metadata file.
    let hr_metadata = victims.hr_metadata.clone();
    make_legacy(&app, "db", "t", |m| {
        m["snapshots"][0]["manifest-list"] = json!(hr_metadata);
    })
    .await;
    let r = app.post(&format!("{T}/db/tables/t/plan"), json!({})).await;
    refused(&r, "plan");
    victims.assert_intact(&app).await;
}

fn bearer(auth: &AuthConfig, sub: &str) -> String {
    let now = testkit::now();
    format!("Bearer {}", testkit::token(auth, sub, now, now + 600))
}

async fn client(app: &TestApp, name: &str, grants: Vec<Grant>) {
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
    .expect("client");
}

async fn send(app: &TestApp, uri: &str, auth: &str, body: Value) -> Reply {
    let request = axum::http::Request::post(uri)
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    app.send(request).await
}

/// A writer on one namespace may not point it at another namespace's
/// directory (and so create tables there): the location of a namespace is
/// the warehouse's layout, decided by whoever may create namespaces.
async fn namespace_locations_need_the_warehouse_writer(backend: Backend) {
    let keys = tempfile::tempdir().expect("tempdir");
    let auth = testkit::auth_config(keys.path());
    let cfg = auth.clone();
    let app = TestApp::with(backend, move |c| c.auth = cfg).await;
    client(&app, "ops", vec![grant("*", &[], Role::Admin)]).await;
    client(&app, "etl", vec![grant("default", &["mine"], Role::Writer)]).await;
    let (ops, etl) = (bearer(&auth, "ops"), bearer(&auth, "etl"));
    for ns in ["mine", "theirs"] {
        let r = send(&app, T, &ops, json!({"namespace": [ns]})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let theirs = format!("{}/theirs", app.warehouse_url());
    let r = send(
        &app,
        &format!("{T}/mine/properties"),
        &etl,
        json!({"updates": {"location": theirs}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = send(
        &app,
        &format!("{T}/mine/properties"),
        &etl,
        json!({"removals": ["location"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // Other properties are the namespace writer's to change.
    let r = send(
        &app,
        &format!("{T}/mine/properties"),
        &etl,
        json!({"updates": {"owner": "etl"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Nor can the writer place a table in the other namespace's directory.
    let mut body = create_table_body("x");
    body["location"] = json!(format!("{theirs}/x"));
    let r = send(&app, &format!("{T}/mine/tables"), &etl, body).await;
    refused(&r, "table in another namespace's directory");
    // The warehouse writer may.
    let r = send(
        &app,
        &format!("{T}/mine/properties"),
        &ops,
        json!({"updates": {"location": format!("{}/elsewhere", app.warehouse_url())}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

async fn get_as(app: &TestApp, uri: &str, auth: &str) -> Reply {
    let request = axum::http::Request::get(uri)
        .header("authorization", auth)
        .body(axum::body::Body::empty())
        .expect("request");
    app.send(request).await
}

fn names(r: &Reply, key: &str) -> Vec<String> {
    r.body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {:?}", r.body))
        .iter()
        .map(|n| match n {
            Value::Array(levels) => levels
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect::<Vec<_>>()
                .join("."),
            other => other["name"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// A reader of one namespace lists what it may read, and the parents on
/// the way to it; never 403 for a listing that holds something it may see,
/// never an entry it may not; paging counts only what it sees.
async fn lists_show_what_the_caller_may_read(backend: Backend) {
    let keys = tempfile::tempdir().expect("tempdir");
    let auth = testkit::auth_config(keys.path());
    let cfg = auth.clone();
    let app = TestApp::with(backend, move |c| c.auth = cfg).await;
    client(&app, "ops", vec![grant("*", &[], Role::Admin)]).await;
    let ops = bearer(&auth, "ops");
    let mut namespaces = vec![
        vec!["corp".to_string()],
        vec!["corp".into(), "sales".into()],
        vec!["corp".into(), "sales".into(), "eu".into()],
        vec!["corp".into(), "hr".into()],
        vec!["finance".into()],
    ];
    namespaces.extend((0..20).map(|i| vec![format!("p{i:02}")]));
    for ns in namespaces {
        let r = send(&app, T, &ops, json!({"namespace": ns})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    for (ns, table) in [
        ("corp", "top"),
        ("corp%1Fsales", "orders"),
        ("corp%1Fhr", "salaries"),
    ] {
        let r = send(
            &app,
            &format!("{T}/{ns}/tables"),
            &ops,
            create_table_body(table),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let mut grants = vec![grant("default", &["corp", "sales"], Role::Reader)];
    for i in 0..5 {
        grants.push(grant("default", &[&format!("p{i:02}")], Role::Reader));
    }
    client(&app, "bi", grants).await;
    let bi = bearer(&auth, "bi");

    let r = get_as(&app, T, &bi).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        names(&r, "namespaces"),
        ["corp", "p00", "p01", "p02", "p03", "p04"]
    );
    let r = get_as(&app, &format!("{T}?parent=corp"), &bi).await;
    assert_eq!(names(&r, "namespaces"), ["corp.sales"]);
    let r = get_as(&app, &format!("{T}?parent=corp%1Fsales"), &bi).await;
    assert_eq!(names(&r, "namespaces"), ["corp.sales.eu"]);
    for forbidden in [
        format!("{T}?parent=corp%1Fhr"),
        format!("{T}?parent=finance"),
        format!("{T}/corp%1Fhr/tables"),
        format!("{T}/finance/views"),
    ] {
        let r = get_as(&app, &forbidden, &bi).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{forbidden}: {:?}", r.body);
    }
    let r = get_as(&app, &format!("{T}/corp/tables"), &bi).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        names(&r, "identifiers").is_empty(),
        "corp's own tables stay hidden"
    );
    let r = get_as(&app, &format!("{T}/corp%1Fsales/tables"), &bi).await;
    assert_eq!(names(&r, "identifiers"), ["orders"]);

    // Paging walks the visible entries only.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &token {
            Some(t) => format!("{T}?pageSize=2&pageToken={t}"),
            None => format!("{T}?pageSize=2&pageToken="),
        };
        let r = get_as(&app, &uri, &bi).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let page = names(&r, "namespaces");
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        match r.body["next-page-token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["corp", "p00", "p01", "p02", "p03", "p04"]);
    assert_eq!(pages, 3);
}

/// An S3-compatible endpoint that stores nothing: every write succeeds and
/// every read waits forever (until its connection is dropped), so a plan
/// that reads stays running as long as the test wants.
async fn stalling_s3() -> String {
    use axum::routing::any;
    let app = axum::Router::new().fallback(any(|method: Method| async move {
        if method == Method::GET || method == Method::HEAD {
            std::future::pending::<()>().await;
        }
        (StatusCode::OK, [("etag", "\"0\"")], "")
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

/// Each principal has at most `plan_max_running_per_principal` plans
/// running on an origin; the next is 429 until one ends.
async fn scan_planning_is_bounded_per_principal(backend: Backend) {
    let endpoint = stalling_s3().await;
    let app = TestApp::with(backend, |c| {
        c.catalog.plan_sync_budget_ms = 0;
        c.catalog.plan_max_running_per_principal = 1;
        c.warehouse.location = "s3://stall/wh".into();
        c.warehouse.s3.endpoint = Some(endpoint);
        c.warehouse.s3.region = Some("us-east-1".into());
        c.warehouse.s3.path_style_access = true;
        c.warehouse.s3.access_key_id = Some("test".into());
        c.warehouse.s3.secret_access_key = Some("test".into());
    })
    .await;
    app.create_namespace(&["db"]).await;
    app.create_table("db", "t").await;
    let location = app.table_location("db", "t").await;
    let r = app
        .post(
            &format!("{T}/db/tables/t"),
            commit(support::append_updates(&location, 1, None, 1)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let plan = format!("{T}/db/tables/t/plan");
    let first = app.post(&plan, json!({})).await;
    assert_eq!(first.body["status"], "submitted", "{:?}", first.body);
    let id = first.body["plan-id"].as_str().unwrap().to_string();
    let second = app.post(&plan, json!({})).await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        second.body
    );
    assert_eq!(second.error_type(), "TooManyRequestsException");
    // Cancelling the running plan frees its place.
    let r = app
        .call(Method::DELETE, &format!("{plan}/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let third = loop {
        let r = app.post(&plan, json!({})).await;
        if r.status != StatusCode::TOO_MANY_REQUESTS || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(third.body["status"], "submitted", "{:?}", third.body);
    let id = third.body["plan-id"].as_str().unwrap().to_string();
    let r = app
        .call(Method::DELETE, &format!("{plan}/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

/// Clients of a local warehouse write its files directly: a link they plant
/// in their own table's folder must not lead the catalog (which may run as
/// a more powerful user) to another file.
async fn links_in_a_local_warehouse_never_lead_a_purge_out(backend: Backend) {
    let app = TestApp::new(backend).await;
    let victims = Victims::plant(&app).await;
    app.create_namespace(&["p"]).await;
    let location = app.create_table("p", "t").await.body["metadata"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = std::path::PathBuf::from(location.strip_prefix("file://").unwrap());
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let hr_file = victims.hr_metadata_path();
    let hr_dir = hr_file.parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink(&hr_dir, dir.join("data").join("hr")).unwrap();
    std::os::unix::fs::symlink(&victims.outside, dir.join("data").join("outside")).unwrap();
    let through_link = format!(
        "{location}/data/hr/{}",
        hr_file.file_name().unwrap().to_str().unwrap()
    );
    // Inside the table as named: the commit is accepted...
    let r = app
        .post(
            &format!("{T}/p/tables/t"),
            commit(json!([
                statistics(&through_link)[0].clone(),
                {"action": "set-statistics", "snapshot-id": 2, "statistics": {
                    "snapshot-id": 2, "statistics-path": format!("{location}/data/outside"),
                    "file-size-in-bytes": 1, "file-footer-size-in-bytes": 1, "blob-metadata": []}}
            ])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // ...and the purge follows neither link.
    let r = app
        .call(
            Method::DELETE,
            &format!("{T}/p/tables/t?purgeRequested=true"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    victims.assert_intact(&app).await;
    // The catalog's own metadata writes do not follow one either.
    app.create_table("p", "u").await;
    let u = app.table_location("p", "u").await;
    let metadata = std::path::PathBuf::from(u.strip_prefix("file://").unwrap()).join("metadata");
    std::fs::remove_dir_all(&metadata).unwrap();
    let elsewhere = app.db.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &metadata).unwrap();
    let r = app
        .post(
            &format!("{T}/p/tables/u"),
            commit(json!([{"action": "set-properties", "updates": {"k": "v"}}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
