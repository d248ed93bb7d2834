//! The catalog service: validate → business logic → store, one function per
//! operation. Handlers call these and nothing else.
//!
//! The room holds one `impl Catalog` per concern. A reader starts here (the
//! [`Catalog`] struct, its constructor and accessors, `GET /v1/config`),
//! then goes to the operation's file:
//!
//! - [`namespaces`](self::namespaces): namespaces;
//! - `tables`: table loads, credentials and signing, create, drop, rename;
//! - `table_commits`: table commits and multi-table transactions;
//! - [`views`] (with [`view_update`]): views;
//! - `register`, `purge`: registering a table, deleting a dropped table's files;
//! - `commit`: the optimistic-commit engine the commits above run on;
//!   `group`: concurrent commits to one table sharing one version;
//! - `documents`: metadata documents and files; `confinement`: locations and
//!   the paths a table may touch; `names`, `paging`: request input;
//! - `running`: the scan plans this process runs (planning is
//!   [`crate::planning`], above the catalog).

mod commit;
mod confinement;
mod documents;
mod group;
mod names;
mod namespaces;
mod paging;
mod purge;
mod register;
pub(crate) mod running;
mod table_commits;
mod tables;
pub mod view_update;
pub mod views;

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_shared::json::JsonBodies;
use floe_shared::wire::CatalogConfig;

pub(crate) use self::confinement::check_update_paths;
pub(crate) use self::documents::{documents, next_metadata_location, parse_stored_metadata};
pub(crate) use self::names::{check_identifier, path_segment, table_display, validate_name};
pub use self::names::{parse_namespace, validate_namespace};
pub use self::paging::{PageRequest, page_request};
pub(crate) use self::table_commits::apply_commit;
pub use self::tables::TableResponse;
pub use self::views::ViewResponse;

use crate::config::CatalogSettings;
use crate::error::{CatalogError, Result};
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::warehouse::{Warehouse, WarehouseCache};

/// The catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
    warehouses: Arc<WarehouseCache>,
    settings: CatalogSettings,
    metrics: Metrics,
    bodies: JsonBodies,
    events: EventBus,
    plans: Arc<running::Running>,
    groups: Arc<group::Groups>,
}

impl Catalog {
    /// A catalog over `store`.
    pub fn new(
        store: Store,
        settings: CatalogSettings,
        metrics: Metrics,
        bodies: JsonBodies,
        events: EventBus,
    ) -> Self {
        Self {
            store,
            warehouses: Arc::new(WarehouseCache::default()),
            settings,
            metrics,
            bodies,
            events,
            plans: Arc::default(),
            groups: Arc::default(),
        }
    }

    /// Scan planning tasks running in this process.
    pub(crate) fn running_plans(&self) -> &Arc<running::Running> {
        &self.plans
    }

    /// The change publisher.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The store (for health checks and management).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Pooled serialization of response bodies.
    pub(crate) fn bodies(&self) -> &JsonBodies {
        &self.bodies
    }

    /// Paging settings.
    pub fn settings(&self) -> &CatalogSettings {
        &self.settings
    }

    /// The warehouse for a URL prefix.
    pub async fn warehouse(&self, prefix: &str) -> Result<Arc<Warehouse>> {
        self.warehouses.get(&self.store, prefix).await
    }

    /// Forgets a cached warehouse after a management change.
    pub fn invalidate_warehouse(&self, name: &str) {
        self.warehouses.invalidate(name);
    }

    // ---- config -----------------------------------------------------------

    /// `GET /v1/config`.
    pub async fn config(
        &self,
        warehouse: Option<&str>,
        default_warehouse: &str,
        endpoints: Vec<String>,
    ) -> Result<CatalogConfig> {
        let requested = warehouse
            .filter(|w| !w.is_empty())
            .unwrap_or(default_warehouse);
        let name = match self.warehouses.get(&self.store, requested).await {
            Ok(w) => w.record.name.clone(),
            Err(CatalogError::NoSuchWarehouse(msg)) => {
                // Clients may name a warehouse by its location.
                let wanted = requested.trim_end_matches('/');
                self.store
                    .list_warehouses()
                    .await?
                    .into_iter()
                    .find(|w| w.location == wanted)
                    .map(|w| w.name)
                    .ok_or(CatalogError::NoSuchWarehouse(msg))?
            }
            Err(e) => return Err(e),
        };
        Ok(CatalogConfig {
            defaults: BTreeMap::new(),
            overrides: BTreeMap::from([("prefix".to_string(), name)]),
            endpoints,
            idempotency_key_lifetime: None,
        })
    }
}
