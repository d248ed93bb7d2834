//! The route grammar against the Iceberg REST spec the project vendors
//! (`tests/schemathesis/rest-catalog-open-api.yaml`): every operation of the
//! spec is one row of the grammar, with the spec's method, path and
//! `operationId`, and every row naming a spec operation is in the spec.

use std::collections::BTreeSet;
use std::path::Path;

use floe_shared::route::{self, ROUTES};

const METHODS: &[&str] = &["get", "head", "post", "put", "delete", "patch", "options"];

fn spec_operations() -> BTreeSet<(String, String, String)> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/schemathesis/rest-catalog-open-api.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let spec: serde_yaml::Value = serde_yaml::from_str(&text).expect("the spec parses");
    let paths = spec["paths"].as_mapping().expect("the spec has paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("a path is a string");
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                let id = op["operationId"]
                    .as_str()
                    .expect("every operation has an id");
                operations.insert((method.to_uppercase(), path.to_string(), id.to_string()));
            }
        }
    }
    operations
}

#[test]
fn every_spec_operation_is_one_row_of_the_grammar() {
    let spec = spec_operations();
    assert!(spec.len() >= 30, "only {} operations read", spec.len());
    let grammar: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .filter_map(|r| {
            r.operation_id.map(|id| {
                (
                    r.method.to_string(),
                    r.resource.pattern().to_string(),
                    id.to_string(),
                )
            })
        })
        .collect();
    let missing: Vec<_> = spec.difference(&grammar).collect();
    let extra: Vec<_> = grammar.difference(&spec).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not in the grammar: {missing:?}; not in the spec: {extra:?}"
    );
}

#[test]
fn the_advertised_endpoints_are_the_spec_catalog_operations() {
    let advertised: BTreeSet<String> = route::endpoints().collect();
    let spec: BTreeSet<String> = spec_operations()
        .into_iter()
        .filter(|(_, path, _)| path != "/v1/config" && path != "/v1/oauth/tokens")
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    assert_eq!(advertised, spec);
}

#[test]
fn every_spec_path_parses_to_its_operation() {
    for (method, path, id) in spec_operations() {
        let concrete = path
            .replace("{prefix}", "wh")
            .replace("{namespace}", "a%1Fb")
            .replace(['{', '}'], "");
        let parsed = route::parse(&method, &concrete)
            .unwrap_or_else(|| panic!("{method} {concrete} is no route"));
        assert_eq!(
            parsed.spec.operation_id,
            Some(id.as_str()),
            "{method} {path}"
        );
    }
}
