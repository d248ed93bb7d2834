//! The route grammar: what an HTTP request to Floe means, written once.
//!
//! [`parse`] reads `(method, path)` into a [`Route`]: the [`Operation`] and
//! the still-encoded names the path carries (warehouse prefix, namespace,
//! table/view/function, plan id, management or internal id). Everything that
//! needs to know what a path means derives it from here: the edge's
//! classification, cache key and metric labels, both tiers' authorization
//! ([`crate::auth::required`]), the origin's name extraction, whether an
//! `Idempotency-Key` applies, and the `endpoints` list `/v1/config`
//! advertises ([`ENDPOINTS`]). A test in the origin checks that its router
//! serves exactly these routes.
//!
//! Catalog routes exist with and without the `{prefix}` segment; a path
//! whose first segment after `/v1/` is `namespaces`, `tables`, `views` or
//! `transactions` has none (its warehouse is the deployment's default one),
//! any other first segment is the prefix.

use crate::wire::decode_path_segment;

/// A path shape: one URL template, whatever the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Resource {
    Config,
    Tokens,
    Namespaces,
    Namespace,
    NamespaceProperties,
    Tables,
    Table,
    Register,
    TableMetrics,
    Unregister,
    Credentials,
    Sign,
    Plan,
    PlanId,
    Tasks,
    RenameTable,
    Transactions,
    Functions,
    Function,
    Views,
    View,
    RenameView,
    RegisterView,
    Warehouses,
    Warehouse,
    Clients,
    Client,
    ClientAction,
    ClientApiKeys,
    ApiKeys,
    ApiKey,
    ApiKeyRotate,
    Cluster,
    Events,
    InternalPrincipal,
    InternalSubject,
    InternalApiKey,
    Health,
    Ready,
    Metrics,
}

impl Resource {
    /// The URL template, as the Iceberg REST spec writes it for catalog routes.
    pub const fn pattern(self) -> &'static str {
        match self {
            Self::Config => "/v1/config",
            Self::Tokens => "/v1/oauth/tokens",
            Self::Namespaces => "/v1/{prefix}/namespaces",
            Self::Namespace => "/v1/{prefix}/namespaces/{namespace}",
            Self::NamespaceProperties => "/v1/{prefix}/namespaces/{namespace}/properties",
            Self::Tables => "/v1/{prefix}/namespaces/{namespace}/tables",
            Self::Table => "/v1/{prefix}/namespaces/{namespace}/tables/{table}",
            Self::Register => "/v1/{prefix}/namespaces/{namespace}/register",
            Self::TableMetrics => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
            Self::Unregister => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/unregister",
            Self::Credentials => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/credentials",
            Self::Sign => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/sign",
            Self::Plan => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/plan",
            Self::PlanId => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/plan/{plan-id}",
            Self::Tasks => "/v1/{prefix}/namespaces/{namespace}/tables/{table}/tasks",
            Self::RenameTable => "/v1/{prefix}/tables/rename",
            Self::Transactions => "/v1/{prefix}/transactions/commit",
            Self::Functions => "/v1/{prefix}/namespaces/{namespace}/functions",
            Self::Function => "/v1/{prefix}/namespaces/{namespace}/functions/{function}",
            Self::Views => "/v1/{prefix}/namespaces/{namespace}/views",
            Self::View => "/v1/{prefix}/namespaces/{namespace}/views/{view}",
            Self::RenameView => "/v1/{prefix}/views/rename",
            Self::RegisterView => "/v1/{prefix}/namespaces/{namespace}/register-view",
            Self::Warehouses => "/management/v1/warehouses",
            Self::Warehouse => "/management/v1/warehouses/{name}",
            Self::Clients => "/management/v1/clients",
            Self::Client => "/management/v1/clients/{id}",
            Self::ClientAction => "/management/v1/clients/{id}/{action}",
            Self::ClientApiKeys => "/management/v1/clients/{id}/api-keys",
            Self::ApiKeys => "/management/v1/api-keys",
            Self::ApiKey => "/management/v1/api-keys/{id}",
            Self::ApiKeyRotate => "/management/v1/api-keys/{id}/rotate",
            Self::Cluster => "/management/v1/cluster",
            Self::Events => crate::events::EVENTS_PATH,
            Self::InternalPrincipal => "/internal/v1/principals/{id}",
            Self::InternalSubject => "/internal/v1/subjects/{subject}",
            Self::InternalApiKey => "/internal/v1/api-keys/{id}",
            Self::Health => "/health",
            Self::Ready => "/ready",
            Self::Metrics => "/metrics",
        }
    }

    /// The part of the product the path belongs to.
    pub const fn area(self) -> Area {
        match self {
            Self::Config | Self::Tokens => Area::Session,
            Self::Warehouses
            | Self::Warehouse
            | Self::Clients
            | Self::Client
            | Self::ClientAction
            | Self::ClientApiKeys
            | Self::ApiKeys
            | Self::ApiKey
            | Self::ApiKeyRotate
            | Self::Cluster => Area::Management,
            Self::Events
            | Self::InternalPrincipal
            | Self::InternalSubject
            | Self::InternalApiKey => Area::Internal,
            Self::Health | Self::Ready | Self::Metrics => Area::Ops,
            _ => Area::Catalog,
        }
    }
}

/// Where a route belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `/v1/config` and the token endpoint.
    Session,
    /// The Iceberg REST catalog: `/v1/[{prefix}/]…`.
    Catalog,
    /// Deployment-wide administration (`/management/v1/…`), admins only.
    Management,
    /// Between the tiers (`/internal/v1/…`), service tokens only.
    Internal,
    /// Health, readiness and metrics.
    Ops,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Operation {
    GetConfig,
    GetToken,
    ListNamespaces,
    CreateNamespace,
    LoadNamespace,
    NamespaceExists,
    DropNamespace,
    UpdateNamespaceProperties,
    ListTables,
    CreateTable,
    LoadTable,
    TableExists,
    UpdateTable,
    DropTable,
    RegisterTable,
    ReportMetrics,
    UnregisterTable,
    LoadCredentials,
    SignRequest,
    PlanTableScan,
    FetchPlanningResult,
    CancelPlanning,
    FetchScanTasks,
    RenameTable,
    CommitTransaction,
    ListFunctions,
    LoadFunction,
    ListViews,
    CreateView,
    LoadView,
    ViewExists,
    ReplaceView,
    DropView,
    RenameView,
    RegisterView,
    ListWarehouses,
    CreateWarehouse,
    DeleteWarehouse,
    ListClients,
    CreateClient,
    GetClient,
    ClientAction,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    RotateApiKey,
    GetCluster,
    Events,
    InternalPrincipal,
    InternalSubject,
    InternalApiKey,
    Health,
    Ready,
    Metrics,
}

/// One row of the grammar: a method on a resource is an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// The path shape.
    pub resource: Resource,
    /// What it does.
    pub operation: Operation,
    /// The Iceberg REST spec's `operationId`, for catalog routes.
    pub operation_id: Option<&'static str>,
}

macro_rules! routes {
    ($($method:literal $resource:ident => $operation:ident $(as $id:literal)?,)*) => {
        /// Every route Floe serves, in one table.
        pub const ROUTES: &[RouteSpec] = &[$(RouteSpec {
            method: $method,
            resource: Resource::$resource,
            operation: Operation::$operation,
            operation_id: routes!(@id $($id)?),
        },)*];
    };
    (@id) => { None };
    (@id $id:literal) => { Some($id) };
}

routes! {
    "GET" Config => GetConfig as "getConfig",
    "POST" Tokens => GetToken as "getToken",
    "GET" Namespaces => ListNamespaces as "listNamespaces",
    "POST" Namespaces => CreateNamespace as "createNamespace",
    "GET" Namespace => LoadNamespace as "loadNamespaceMetadata",
    "HEAD" Namespace => NamespaceExists as "namespaceExists",
    "DELETE" Namespace => DropNamespace as "dropNamespace",
    "POST" NamespaceProperties => UpdateNamespaceProperties as "updateProperties",
    "GET" Tables => ListTables as "listTables",
    "POST" Tables => CreateTable as "createTable",
    "GET" Table => LoadTable as "loadTable",
    "HEAD" Table => TableExists as "tableExists",
    "POST" Table => UpdateTable as "updateTable",
    "DELETE" Table => DropTable as "dropTable",
    "POST" Register => RegisterTable as "registerTable",
    "POST" TableMetrics => ReportMetrics as "reportMetrics",
    "POST" Unregister => UnregisterTable as "unregisterTable",
    "GET" Credentials => LoadCredentials as "loadCredentials",
    "POST" Sign => SignRequest as "signRequest",
    "POST" Plan => PlanTableScan as "planTableScan",
    "GET" PlanId => FetchPlanningResult as "fetchPlanningResult",
    "DELETE" PlanId => CancelPlanning as "cancelPlanning",
    "POST" Tasks => FetchScanTasks as "fetchScanTasks",
    "POST" RenameTable => RenameTable as "renameTable",
    "POST" Transactions => CommitTransaction as "commitTransaction",
    "GET" Functions => ListFunctions as "listFunctions",
    "GET" Function => LoadFunction as "loadFunction",
    "GET" Views => ListViews as "listViews",
    "POST" Views => CreateView as "createView",
    "GET" View => LoadView as "loadView",
    "HEAD" View => ViewExists as "viewExists",
    "POST" View => ReplaceView as "replaceView",
    "DELETE" View => DropView as "dropView",
    "POST" RenameView => RenameView as "renameView",
    "POST" RegisterView => RegisterView as "registerView",
    "GET" Warehouses => ListWarehouses,
    "POST" Warehouses => CreateWarehouse,
    "DELETE" Warehouse => DeleteWarehouse,
    "GET" Clients => ListClients,
    "POST" Clients => CreateClient,
    "GET" Client => GetClient,
    "POST" ClientAction => ClientAction,
    "POST" ClientApiKeys => CreateApiKey,
    "GET" ApiKeys => ListApiKeys,
    "DELETE" ApiKey => RevokeApiKey,
    "POST" ApiKeyRotate => RotateApiKey,
    "GET" Cluster => GetCluster,
    "GET" Events => Events,
    "GET" InternalPrincipal => InternalPrincipal,
    "GET" InternalSubject => InternalSubject,
    "GET" InternalApiKey => InternalApiKey,
    "GET" Health => Health,
    "GET" Ready => Ready,
    "GET" Metrics => Metrics,
}

/// The catalog operations `/v1/config` advertises, as `"METHOD /v1/{prefix}/…"`.
pub fn endpoints() -> impl Iterator<Item = String> {
    ROUTES
        .iter()
        .filter(|r| r.resource.area() == Area::Catalog)
        .map(|r| format!("{} {}", r.method, r.resource.pattern()))
}

/// The names a path carries, still percent-encoded as the client sent them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Names<'a> {
    /// The warehouse prefix; `None` on routes without one (the default warehouse).
    pub prefix: Option<&'a str>,
    /// The namespace segment (levels separated by `%1F`).
    pub namespace: Option<&'a str>,
    /// The table, view or function name.
    pub name: Option<&'a str>,
    /// A scan plan's id.
    pub plan_id: Option<&'a str>,
    /// A management or internal id (warehouse name, client id, key id, subject).
    pub id: Option<&'a str>,
}

impl Names<'_> {
    /// The warehouse the path is on: its decoded prefix, or `default` without one.
    pub fn warehouse(&self, default: &str) -> String {
        self.prefix
            .map_or_else(|| default.to_string(), decode_path_segment)
    }

    /// The decoded namespace levels (empty when the path has none).
    pub fn namespace_levels(&self) -> Vec<String> {
        self.namespace.map(levels).unwrap_or_default()
    }

    /// The decoded table, view or function name.
    pub fn decoded_name(&self) -> Option<String> {
        self.name.map(decode_path_segment)
    }
}

/// The levels of a namespace path segment: decoded, split at the unit
/// separator, empty levels dropped.
pub fn levels(encoded: &str) -> Vec<String> {
    decode_path_segment(encoded)
        .split('\u{1f}')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A path matched to its shape, whatever the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathMatch<'a> {
    /// The shape.
    pub resource: Resource,
    /// The names it carries.
    pub names: Names<'a>,
}

/// A request matched to its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The grammar's row.
    pub spec: &'static RouteSpec,
    /// The names the path carries.
    pub names: Names<'a>,
}

impl Route<'_> {
    /// What the request does.
    pub fn operation(&self) -> Operation {
        self.spec.operation
    }

    /// Whether an `Idempotency-Key` makes the request run at most once:
    /// every catalog mutation (the spec's keyed operations, and the other
    /// POSTs and DELETEs of the catalog, whose replays are as harmless).
    pub fn keyed(&self) -> bool {
        self.spec.resource.area() == Area::Catalog && matches!(self.spec.method, "POST" | "DELETE")
    }
}

/// The first segments after `/v1/` of the catalog routes without a
/// `{prefix}`; no warehouse may be named after them.
pub const UNPREFIXED: [&str; 4] = ["namespaces", "tables", "views", "transactions"];

/// Why a warehouse name cannot be a prefix (the text follows the setting's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Empty, or longer than 128 bytes.
    #[error("must be 1 to 128 characters")]
    Length,
    /// A character other than ASCII letters, digits, `-`, `_` and `.`.
    #[error("may contain only ASCII letters, digits, '-', '_' and '.'")]
    Characters,
    /// A word the REST paths use after the prefix.
    #[error("'{0}' is reserved")]
    Reserved(String),
}

/// Checks that a warehouse name can be the `{prefix}` segment: short, plain
/// characters, and not one of the words that follow `/v1/` without one.
pub fn check_prefix(name: &str) -> Result<(), PrefixError> {
    if name.is_empty() || name.len() > 128 {
        return Err(PrefixError::Length);
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(PrefixError::Characters);
    }
    if UNPREFIXED.contains(&name) {
        return Err(PrefixError::Reserved(name.to_string()));
    }
    Ok(())
}

/// Matches a path to its shape; `None` when Floe serves no such path.
pub fn match_path(path: &str) -> Option<PathMatch<'_>> {
    let rest = path.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let mut names = Names::default();
    let resource = match segments.as_slice() {
        ["health"] => Resource::Health,
        ["ready"] => Resource::Ready,
        ["metrics"] => Resource::Metrics,
        ["v1", "config"] => Resource::Config,
        ["v1", "oauth", "tokens"] => Resource::Tokens,
        ["v1", first, rest @ ..] => {
            let rest = if UNPREFIXED.contains(first) {
                &segments[1..]
            } else {
                names.prefix = Some(first);
                rest
            };
            catalog(rest, &mut names)?
        }
        ["management", "v1", rest @ ..] => match rest {
            ["warehouses"] => Resource::Warehouses,
            ["warehouses", name] => named(&mut names.id, name, Resource::Warehouse),
            ["clients"] => Resource::Clients,
            ["clients", id] => named(&mut names.id, id, Resource::Client),
            ["clients", id, "api-keys"] => named(&mut names.id, id, Resource::ClientApiKeys),
            ["clients", id, _action] => named(&mut names.id, id, Resource::ClientAction),
            ["api-keys"] => Resource::ApiKeys,
            ["api-keys", id] => named(&mut names.id, id, Resource::ApiKey),
            ["api-keys", id, "rotate"] => named(&mut names.id, id, Resource::ApiKeyRotate),
            ["cluster"] => Resource::Cluster,
            _ => return None,
        },
        ["internal", "v1", rest @ ..] => match rest {
            ["events"] => Resource::Events,
            ["principals", id] => named(&mut names.id, id, Resource::InternalPrincipal),
            ["subjects", subject] => named(&mut names.id, subject, Resource::InternalSubject),
            ["api-keys", id] => named(&mut names.id, id, Resource::InternalApiKey),
            _ => return None,
        },
        _ => return None,
    };
    // Names are never empty: `/v1/wh//tables` is no route.
    let all = [
        names.prefix,
        names.namespace,
        names.name,
        names.plan_id,
        names.id,
    ];
    if all.iter().flatten().any(|n| n.is_empty()) {
        return None;
    }
    Some(PathMatch { resource, names })
}

/// `resource`, whose path holds `value` as the name `slot` keeps.
fn named<'a>(slot: &mut Option<&'a str>, value: &'a str, resource: Resource) -> Resource {
    *slot = Some(value);
    resource
}

/// The catalog routes after `/v1/[{prefix}/]`.
fn catalog<'a>(rest: &[&'a str], names: &mut Names<'a>) -> Option<Resource> {
    let resource = match rest {
        ["tables", "rename"] => Resource::RenameTable,
        ["views", "rename"] => Resource::RenameView,
        ["transactions", "commit"] => Resource::Transactions,
        ["namespaces"] => Resource::Namespaces,
        ["namespaces", ns, rest @ ..] => {
            names.namespace = Some(ns);
            match rest {
                [] => Resource::Namespace,
                ["properties"] => Resource::NamespaceProperties,
                ["register"] => Resource::Register,
                ["register-view"] => Resource::RegisterView,
                ["tables"] => Resource::Tables,
                ["functions"] => Resource::Functions,
                ["views"] => Resource::Views,
                ["functions", name] => named(&mut names.name, name, Resource::Function),
                ["views", name] => named(&mut names.name, name, Resource::View),
                ["tables", name, rest @ ..] => {
                    names.name = Some(name);
                    match rest {
                        [] => Resource::Table,
                        ["metrics"] => Resource::TableMetrics,
                        ["unregister"] => Resource::Unregister,
                        ["credentials"] => Resource::Credentials,
                        ["sign"] => Resource::Sign,
                        ["plan"] => Resource::Plan,
                        ["tasks"] => Resource::Tasks,
                        ["plan", id] => named(&mut names.plan_id, id, Resource::PlanId),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(resource)
}

/// Matches a request to its operation; `None` when Floe serves no such
/// path, or not with this method (HEAD is served wherever GET is, as a GET
/// without a body, unless the resource has a HEAD operation of its own).
pub fn parse<'a>(method: &str, path: &'a str) -> Option<Route<'a>> {
    let matched = match_path(path)?;
    let spec = spec_of(method, matched.resource)
        .or_else(|| (method == "HEAD").then(|| spec_of("GET", matched.resource))?)?;
    Some(Route {
        spec,
        names: matched.names,
    })
}

fn spec_of(method: &str, resource: Resource) -> Option<&'static RouteSpec> {
    ROUTES
        .iter()
        .find(|r| r.resource == resource && r.method == method)
}

/// The methods a resource answers (for `Allow` and 405s).
pub fn methods(resource: Resource) -> impl Iterator<Item = &'static str> {
    ROUTES
        .iter()
        .filter(move |r| r.resource == resource)
        .map(|r| r.method)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills a template with sample names: `{prefix}` → `wh`, `{namespace}`
    /// → `a%1Fb`, any other variable → `x`.
    fn sample(pattern: &str, prefixed: bool) -> String {
        let mut out = String::new();
        for segment in pattern.split('/').skip(1) {
            out.push('/');
            match segment {
                "{prefix}" if !prefixed => {
                    out.pop();
                }
                "{prefix}" => out.push_str("wh"),
                "{namespace}" => out.push_str("a%1Fb"),
                s if s.starts_with('{') => out.push('x'),
                s => out.push_str(s),
            }
        }
        out
    }

    #[test]
    fn every_row_parses_back_to_itself_with_and_without_prefix() {
        for row in ROUTES {
            let pattern = row.resource.pattern();
            let forms: &[bool] = if pattern.contains("{prefix}") {
                &[true, false]
            } else {
                &[true]
            };
            for &prefixed in forms {
                let path = sample(pattern, prefixed);
                let route = parse(row.method, &path)
                    .unwrap_or_else(|| panic!("{} {path} does not parse", row.method));
                assert_eq!(route.spec, row, "{} {path}", row.method);
                if pattern.contains("{prefix}") {
                    assert_eq!(route.names.prefix, prefixed.then_some("wh"), "{path}");
                    assert_eq!(
                        route.names.warehouse("dflt"),
                        if prefixed { "wh" } else { "dflt" }
                    );
                }
                if pattern.contains("{namespace}") {
                    assert_eq!(route.names.namespace_levels(), ["a", "b"], "{path}");
                } else {
                    assert_eq!(route.names.namespace, None, "{path}");
                }
                let named = ["{table}", "{view}", "{function}"]
                    .iter()
                    .any(|v| pattern.contains(v));
                assert_eq!(route.names.name.is_some(), named, "{path}");
                assert_eq!(route.names.plan_id.is_some(), pattern.contains("{plan-id}"));
            }
        }
    }

    #[test]
    fn rows_are_unique_and_every_catalog_row_names_its_spec_operation() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.resource == b.resource),
                    "{a:?} twice"
                );
                assert_ne!(a.operation, b.operation, "{a:?} and {b:?}");
            }
            let spec_route = matches!(a.resource.area(), Area::Catalog | Area::Session);
            assert_eq!(a.operation_id.is_some(), spec_route, "{a:?}");
        }
    }

    #[test]
    fn paths_that_are_no_route() {
        for path in [
            "",
            "/",
            "/v1",
            "/v1/",
            "/v1/wh",
            "/v1/wh/namespaces/a/tables/t/extra",
            "/v1/wh/namespaces/a/tables/t/plan/p/q",
            "/v1/wh//tables/rename",
            "/v1/namespaces//tables",
            "/v1/wh/namespaces/a/tables/",
            "/v1/wh/namespaces/a/unknown",
            "/management/v1",
            "/management/v1/clients/c/api-keys/k",
            "/internal/v1/principals",
            "/healthz",
            "v1/config",
        ] {
            assert_eq!(match_path(path), None, "{path:?}");
        }
    }

    #[test]
    fn unprefixed_roots_are_never_read_as_a_prefix() {
        let r = parse("GET", "/v1/namespaces/namespaces").expect("route");
        assert_eq!(r.operation(), Operation::LoadNamespace);
        assert_eq!(r.names.prefix, None);
        let r = parse("GET", "/v1/other/namespaces").expect("route");
        assert_eq!(r.operation(), Operation::ListNamespaces);
        assert_eq!(r.names.prefix, Some("other"));
        let r = parse("POST", "/v1/tables/rename").expect("route");
        assert_eq!(
            (r.operation(), r.names.prefix),
            (Operation::RenameTable, None)
        );
        let r = parse("POST", "/v1/wh/tables/rename").expect("route");
        assert_eq!(r.names.prefix, Some("wh"));
    }

    #[test]
    fn methods_select_the_operation() {
        let path = "/v1/wh/namespaces/a/tables/t";
        let ops: Vec<_> = ["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH"]
            .iter()
            .map(|m| parse(m, path).map(|r| r.operation()))
            .collect();
        assert_eq!(
            ops,
            [
                Some(Operation::LoadTable),
                Some(Operation::TableExists),
                Some(Operation::UpdateTable),
                Some(Operation::DropTable),
                None,
                None
            ]
        );
        // HEAD falls back to GET where the resource has no HEAD of its own.
        let head = parse("HEAD", "/v1/wh/namespaces").expect("route");
        assert_eq!(head.operation(), Operation::ListNamespaces);
        assert_eq!(
            methods(Resource::View).collect::<Vec<_>>(),
            ["GET", "HEAD", "POST", "DELETE"]
        );
    }

    #[test]
    fn management_actions_and_api_keys_are_told_apart() {
        let r = parse("POST", "/management/v1/clients/etl/api-keys").expect("route");
        assert_eq!(
            (r.operation(), r.names.id),
            (Operation::CreateApiKey, Some("etl"))
        );
        let r = parse("POST", "/management/v1/clients/etl/rotate").expect("route");
        assert_eq!(
            (r.operation(), r.names.id),
            (Operation::ClientAction, Some("etl"))
        );
    }

    #[test]
    fn keyed_operations_are_the_catalog_mutations() {
        let keyed: Vec<Operation> = ROUTES
            .iter()
            .filter(|spec| {
                Route {
                    spec,
                    names: Names::default(),
                }
                .keyed()
            })
            .map(|r| r.operation)
            .collect();
        for op in [
            Operation::CreateNamespace,
            Operation::UpdateTable,
            Operation::CommitTransaction,
            Operation::CancelPlanning,
            Operation::DropView,
        ] {
            assert!(keyed.contains(&op), "{op:?}");
        }
        for op in [
            Operation::GetToken,
            Operation::LoadTable,
            Operation::CreateClient,
            Operation::TableExists,
        ] {
            assert!(!keyed.contains(&op), "{op:?}");
        }
    }

    #[test]
    fn endpoints_are_the_catalog_rows() {
        let endpoints: Vec<String> = endpoints().collect();
        assert!(
            endpoints
                .contains(&"GET /v1/{prefix}/namespaces/{namespace}/tables/{table}".to_string())
        );
        assert!(
            !endpoints
                .iter()
                .any(|e| e.contains("config") || e.contains("oauth"))
        );
        assert_eq!(
            endpoints.len(),
            ROUTES
                .iter()
                .filter(|r| r.resource.area() == Area::Catalog)
                .count()
        );
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("default").is_ok());
        assert!(check_prefix("prod_1.eu-west").is_ok());
        assert_eq!(check_prefix(""), Err(PrefixError::Length));
        assert_eq!(check_prefix(&"a".repeat(129)), Err(PrefixError::Length));
        assert_eq!(check_prefix("a/b"), Err(PrefixError::Characters));
        assert_eq!(
            check_prefix("namespaces"),
            Err(PrefixError::Reserved("namespaces".into()))
        );
        assert_eq!(
            check_prefix("namespaces").unwrap_err().to_string(),
            "'namespaces' is reserved"
        );
    }
}
