//! A view commit described as data: the spec's view requirements and updates,
//! applied through the `iceberg` crate's `ViewMetadataBuilder` (the crate
//! models `ViewUpdate` but has no `apply` for it; this is that, in one place).

use iceberg::ViewUpdate;
use iceberg::spec::{ViewMetadata, ViewMetadataBuilder};
use uuid::Uuid;

use crate::wire::ViewRequirement;

/// A view requirement that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementFailed {
    /// The view's UUID is not the one the client read.
    #[error("Requirement failed: view UUID does not match: expected {expected} != {actual}")]
    ViewUuid {
        /// The UUID the requirement asserts.
        expected: Uuid,
        /// The view's UUID.
        actual: Uuid,
    },
}

impl ViewRequirement {
    /// Checks the requirement against the current metadata.
    pub fn check(&self, metadata: &ViewMetadata) -> Result<(), RequirementFailed> {
        match self {
            Self::AssertViewUuid { uuid } if *uuid != metadata.uuid() => {
                Err(RequirementFailed::ViewUuid {
                    expected: *uuid,
                    actual: metadata.uuid(),
                })
            }
            Self::AssertViewUuid { .. } => Ok(()),
        }
    }
}

/// Applies one update to the builder, as the Java reference does.
pub fn apply(
    builder: ViewMetadataBuilder,
    update: ViewUpdate,
) -> iceberg::Result<ViewMetadataBuilder> {
    match update {
        ViewUpdate::AssignUuid { uuid } => Ok(builder.assign_uuid(uuid)),
        ViewUpdate::UpgradeFormatVersion { format_version } => {
            builder.upgrade_format_version(format_version)
        }
        ViewUpdate::AddSchema { schema, .. } => Ok(builder.add_schema(schema)),
        ViewUpdate::SetLocation { location } => Ok(builder.set_location(location)),
        ViewUpdate::SetProperties { updates } => builder.set_properties(updates),
        ViewUpdate::RemoveProperties { removals } => Ok(builder.remove_properties(&removals)),
        ViewUpdate::AddViewVersion { view_version } => builder.add_version(view_version),
        ViewUpdate::SetCurrentViewVersion { view_version_id } => {
            builder.set_current_version_id(view_version_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type, ViewFormatVersion, ViewVersion};

    use super::*;

    fn schema(id: i32, fields: &[&str]) -> Schema {
        Schema::builder()
            .with_schema_id(id)
            .with_fields(fields.iter().enumerate().map(|(i, name)| {
                NestedField::optional(i as i32 + 1, *name, Type::Primitive(PrimitiveType::Long))
                    .into()
            }))
            .build()
            .unwrap()
    }

    fn version(id: i32, schema_id: i32, sql: &str, ts: i64) -> ViewVersion {
        serde_json::from_value(serde_json::json!({
            "version-id": id,
            "schema-id": schema_id,
            "timestamp-ms": ts,
            "summary": {"engine-name": "spark"},
            "default-namespace": ["db"],
            "representations": [{"type": "sql", "sql": sql, "dialect": "spark"}]
        }))
        .unwrap()
    }

    fn base() -> ViewMetadata {
        let now = chrono_now();
        ViewMetadataBuilder::new(
            "file:///w/db/v".into(),
            schema(0, &["a"]),
            version(1, 0, "select 1", now),
            ViewFormatVersion::V1,
            HashMap::from([("owner".to_string(), "me".to_string())]),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata
    }

    fn chrono_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    fn run(updates: Vec<ViewUpdate>) -> iceberg::Result<ViewMetadata> {
        let mut builder = base().into_builder();
        for u in updates {
            builder = apply(builder, u)?;
        }
        Ok(builder.build()?.metadata)
    }

    #[test]
    fn assign_uuid() {
        let uuid = Uuid::now_v7();
        assert_eq!(
            run(vec![ViewUpdate::AssignUuid { uuid }]).unwrap().uuid(),
            uuid
        );
    }

    #[test]
    fn upgrade_format_version_to_the_same_version_is_a_no_op() {
        let m = run(vec![ViewUpdate::UpgradeFormatVersion {
            format_version: ViewFormatVersion::V1,
        }])
        .unwrap();
        assert_eq!(m.format_version(), ViewFormatVersion::V1);
    }

    #[test]
    fn add_schema_then_a_version_on_it_then_make_it_current() {
        let m = run(vec![
            ViewUpdate::AddSchema {
                schema: schema(1, &["a", "b"]),
                last_column_id: Some(2),
            },
            ViewUpdate::AddViewVersion {
                view_version: version(2, -1, "select a, b from t", chrono_now()),
            },
            ViewUpdate::SetCurrentViewVersion {
                view_version_id: -1,
            },
        ])
        .unwrap();
        assert_eq!(m.current_version_id(), 2);
        assert_eq!(m.current_schema().as_struct().fields().len(), 2);
        assert_eq!(m.versions().len(), 2);
        assert_eq!(m.history().len(), 2);
    }

    #[test]
    fn set_current_to_an_unknown_version_is_refused() {
        assert!(
            run(vec![ViewUpdate::SetCurrentViewVersion {
                view_version_id: 42
            }])
            .is_err()
        );
    }

    #[test]
    fn a_version_on_an_unknown_schema_is_refused() {
        assert!(
            run(vec![ViewUpdate::AddViewVersion {
                view_version: version(2, 7, "select 2", chrono_now()),
            }])
            .is_err()
        );
    }

    #[test]
    fn set_location() {
        let m = run(vec![ViewUpdate::SetLocation {
            location: "file:///w/db/v2".into(),
        }])
        .unwrap();
        assert_eq!(m.location(), "file:///w/db/v2");
    }

    #[test]
    fn set_and_remove_properties() {
        let m = run(vec![
            ViewUpdate::SetProperties {
                updates: HashMap::from([("k".to_string(), "v".to_string())]),
            },
            ViewUpdate::RemoveProperties {
                removals: vec!["owner".into()],
            },
        ])
        .unwrap();
        assert_eq!(m.properties().get("k").map(String::as_str), Some("v"));
        assert!(!m.properties().contains_key("owner"));
    }

    #[test]
    fn the_uuid_requirement() {
        let m = base();
        assert!(
            ViewRequirement::AssertViewUuid { uuid: m.uuid() }
                .check(&m)
                .is_ok()
        );
        let other = Uuid::now_v7();
        let failed = ViewRequirement::AssertViewUuid { uuid: other }
            .check(&m)
            .unwrap_err();
        assert_eq!(
            failed,
            RequirementFailed::ViewUuid {
                expected: other,
                actual: m.uuid()
            }
        );
        assert_eq!(
            failed.to_string(),
            format!(
                "Requirement failed: view UUID does not match: expected {other} != {}",
                m.uuid()
            )
        );
        let parsed: ViewRequirement = serde_json::from_value(serde_json::json!({
            "type": "assert-view-uuid",
            "uuid": m.uuid().to_string(),
        }))
        .unwrap();
        assert!(parsed.check(&m).is_ok());
        assert!(
            serde_json::from_value::<ViewRequirement>(
                serde_json::json!({"type": "assert-table-uuid", "uuid": m.uuid().to_string()})
            )
            .is_err()
        );
    }

    #[test]
    fn updates_parse_from_the_spec_wire_form() {
        let updates: Vec<ViewUpdate> = serde_json::from_value(serde_json::json!([
            {"action": "assign-uuid", "uuid": Uuid::now_v7().to_string()},
            {"action": "upgrade-format-version", "format-version": 1},
            {"action": "set-location", "location": "file:///w/db/v3"},
            {"action": "set-properties", "updates": {"a": "b"}},
            {"action": "remove-properties", "removals": ["a"]},
            {"action": "set-current-view-version", "view-version-id": 1}
        ]))
        .unwrap();
        let m = run(updates).unwrap();
        assert_eq!(m.location(), "file:///w/db/v3");
    }
}
