//! The router, built from the route grammar ([`floe_shared::route::ROUTES`])
//! with one exhaustive match from each [`Operation`] to its handler: adding
//! an operation to the grammar does not compile until it is served here, and
//! nothing is served that the grammar does not name.
//!
//! The handlers are thin (extract, call the catalog, shape the answer; no
//! SQL and no JSON surgery), one file per concern: [`catalog`] (namespaces,
//! tables, transactions), [`views`], [`planning`], [`management`],
//! [`internal`] (between the tiers) and [`ops`] (config, health, readiness,
//! metrics).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{MethodRouter, delete, get, head, post};
use floe_shared::route::{Operation, ROUTES};

use super::state::AppState;
use super::{auth, idempotency, layers};
use crate::error::CatalogError;

mod catalog;
mod internal;
mod management;
mod ops;
mod planning;
mod views;

/// The handler of each operation of the route grammar
/// ([`floe_shared::route::ROUTES`]); the router is built from the grammar,
/// so the two cannot disagree about what Floe serves.
fn handler(operation: Operation) -> MethodRouter<AppState> {
    use Operation as Op;
    match operation {
        Op::GetConfig => get(ops::get_config),
        Op::GetToken => post(unsupported),
        Op::ListNamespaces => get(catalog::list_namespaces),
        Op::CreateNamespace => post(catalog::create_namespace),
        Op::LoadNamespace => get(catalog::load_namespace),
        Op::NamespaceExists => head(catalog::namespace_exists),
        Op::DropNamespace => delete(catalog::drop_namespace),
        Op::UpdateNamespaceProperties => post(catalog::update_properties),
        Op::ListTables => get(catalog::list_tables),
        Op::CreateTable => post(catalog::create_table),
        Op::LoadTable => get(catalog::load_table),
        Op::TableExists => head(catalog::table_exists),
        Op::UpdateTable => post(catalog::commit_table),
        Op::DropTable => delete(catalog::drop_table),
        Op::RegisterTable => post(catalog::register_table),
        Op::ReportMetrics => post(catalog::report_metrics),
        Op::UnregisterTable => post(catalog::unregister_table),
        Op::LoadCredentials => get(catalog::load_credentials),
        Op::SignRequest => post(catalog::sign_request),
        Op::PlanTableScan => post(planning::plan_table_scan),
        Op::FetchPlanningResult => get(planning::fetch_planning_result),
        Op::CancelPlanning => delete(planning::cancel_planning),
        Op::FetchScanTasks => post(planning::fetch_scan_tasks),
        Op::RenameTable => post(catalog::rename_table),
        Op::CommitTransaction => post(catalog::commit_transaction),
        Op::ListFunctions => get(catalog::list_functions),
        Op::LoadFunction => get(catalog::load_function),
        Op::ListViews => get(views::list_views),
        Op::CreateView => post(views::create_view),
        Op::LoadView => get(views::load_view),
        Op::ViewExists => head(views::view_exists),
        Op::ReplaceView => post(views::replace_view),
        Op::DropView => delete(views::drop_view),
        Op::RenameView => post(views::rename_view),
        Op::RegisterView => post(views::register_view),
        Op::ListWarehouses => get(management::list_warehouses),
        Op::CreateWarehouse => post(management::create_warehouse),
        Op::DeleteWarehouse => delete(management::delete_warehouse),
        Op::ListClients => get(management::list_clients),
        Op::CreateClient => post(management::create_client),
        Op::GetClient => get(management::get_client),
        Op::ClientAction => post(management::client_action),
        Op::CreateApiKey => post(management::create_api_key),
        Op::ListApiKeys => get(management::list_api_keys),
        Op::RevokeApiKey => delete(management::revoke_api_key),
        Op::RotateApiKey => post(management::rotate_api_key),
        Op::GetCluster => get(ops::cluster),
        Op::Events => get(internal::events),
        Op::InternalPrincipal | Op::InternalSubject => get(internal::principal),
        Op::InternalApiKey => get(internal::api_key),
        Op::Health => get(ops::health),
        Op::Ready => get(ops::ready),
        Op::Metrics => get(ops::metrics),
    }
}

/// Builds the whole application from the route grammar: the REST API (with
/// and without prefix), management, internal, health and metrics.
pub fn app(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let mut paths: Vec<(String, MethodRouter<AppState>)> = Vec::new();
    for spec in ROUTES {
        let pattern = spec.resource.pattern();
        let mut forms = vec![pattern.to_string()];
        if pattern.contains("/{prefix}") {
            forms.push(pattern.replacen("/{prefix}", "", 1));
        }
        for path in forms {
            match paths.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => {
                    *methods = std::mem::take(methods).merge(handler(spec.operation));
                }
                None => paths.push((path, handler(spec.operation))),
            }
        }
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&path, methods)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            layers::database_gate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), layers::track))
        .with_state(state)
}

async fn unsupported(method: Method, uri: Uri) -> CatalogError {
    CatalogError::Unsupported(format!(
        "Operation not supported yet: {method} {}",
        uri.path()
    ))
}

async fn not_found(uri: Uri) -> CatalogError {
    CatalogError::NotFound(format!("No route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> CatalogError {
    CatalogError::MethodNotAllowed(format!("Method {method} is not allowed on {}", uri.path()))
}
