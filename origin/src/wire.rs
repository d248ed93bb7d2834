//! Request bodies that carry the Iceberg metadata model (`iceberg` crate types).

use std::collections::HashMap;

use floe_shared::wire::TableIdentifier;
use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec, ViewVersion};
use iceberg::{TableRequirement, TableUpdate, ViewUpdate};

use serde::Deserialize;

/// `CreateTableRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateTableRequest {
    /// Table name.
    pub name: String,
    /// Explicit location (must lie inside the warehouse).
    #[serde(default)]
    pub location: Option<String>,
    /// Schema; field ids are assigned afresh.
    pub schema: Schema,
    /// Partition spec.
    #[serde(default, rename = "partition-spec")]
    pub partition_spec: Option<UnboundPartitionSpec>,
    /// Sort order.
    #[serde(default, rename = "write-order")]
    pub write_order: Option<SortOrder>,
    /// Return metadata without creating the table (create transaction).
    #[serde(default, rename = "stage-create")]
    pub stage_create: bool,
    /// Table properties (`format-version` selects the format).
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// `CommitTableRequest`: requirements and updates as the `iceberg` crate models
/// them, so an unknown type fails to parse (400) as the spec requires.
#[derive(Debug, Clone, Deserialize)]
pub struct CommitTableRequest {
    /// Must match the path when present.
    #[serde(default)]
    pub identifier: Option<TableIdentifier>,
    /// Assertions on the current metadata.
    pub requirements: Vec<TableRequirement>,
    /// Changes to apply.
    pub updates: Vec<TableUpdate>,
}

/// `CommitTransactionRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct CommitTransactionRequest {
    /// One commit per table, each with its identifier.
    #[serde(rename = "table-changes")]
    pub table_changes: Vec<CommitTableRequest>,
}

/// `CreateViewRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateViewRequest {
    /// View name.
    pub name: String,
    /// Explicit location (must lie inside the warehouse).
    #[serde(default)]
    pub location: Option<String>,
    /// Schema of the view's rows.
    pub schema: Schema,
    /// The first version (its schema id is replaced by the schema's).
    #[serde(rename = "view-version")]
    pub view_version: ViewVersion,
    /// View properties.
    pub properties: HashMap<String, String>,
}

/// `ViewRequirement`: the one assertion the spec defines for views (checked
/// by [`crate::catalog::view_update`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ViewRequirement {
    /// The view's UUID must match (it was not dropped and recreated).
    AssertViewUuid {
        /// Expected UUID.
        uuid: uuid::Uuid,
    },
}

/// `CommitViewRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct CommitViewRequest {
    /// Must match the path when present.
    #[serde(default)]
    pub identifier: Option<TableIdentifier>,
    /// Assertions on the current metadata.
    #[serde(default)]
    pub requirements: Vec<ViewRequirement>,
    /// Changes to apply.
    pub updates: Vec<ViewUpdate>,
}

/// `RegisterViewRequest`.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterViewRequest {
    /// View name.
    pub name: String,
    /// Metadata file to track.
    #[serde(rename = "metadata-location")]
    pub metadata_location: String,
}
