//! The route policy: what a request needs ([`required`], read from the
//! route grammar in [`crate::route`]) and whether a principal's grants give
//! it ([`allows`], and [`listing`] for listings of a namespace's children).

use super::model::{Grant, Role};

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// Nobody needs to authenticate (health, readiness, metrics, the token endpoint).
    Public,
    /// Any authenticated principal (`/v1/config`, unknown routes).
    Authenticated,
    /// An edge's service token.
    Internal,
    /// A role on a warehouse (`None`: every warehouse, i.e. management) and namespace.
    Access(Access),
    /// A listing of the namespace's children: any authenticated principal
    /// may ask; the origin shows what [`listing`] allows (and refuses with
    /// 403 when that is nothing).
    List(Access),
}

/// A role needed on a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Warehouse name; `None` for deployment-wide management.
    pub warehouse: Option<String>,
    /// Namespace levels; empty for the whole warehouse.
    pub namespace: Vec<String>,
    /// The least role that may.
    pub role: Role,
}

/// Routes anyone may call: health, readiness, metrics and the token endpoint.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics" | "/v1/oauth/tokens")
}

/// What `method path?query` needs; unprefixed routes are on `default_warehouse`.
///
/// Read from the route grammar ([`crate::route`]): a request that is no
/// route needs only authentication (it is answered 404 or 405). Operations
/// whose namespaces come from the body (creating a namespace, renaming,
/// multi-table transactions) need the role on the whole warehouse.
pub fn required(
    method: &str,
    path: &str,
    query: Option<&str>,
    default_warehouse: &str,
) -> Required {
    use crate::route::{Area, Operation as Op};
    let Some(route) = crate::route::parse(method, path) else {
        return Required::Authenticated;
    };
    match route.spec.resource.area() {
        Area::Ops => return Required::Public,
        Area::Internal => return Required::Internal,
        Area::Management => {
            return Required::Access(Access {
                warehouse: None,
                namespace: Vec::new(),
                role: Role::Admin,
            });
        }
        Area::Session if route.operation() == Op::GetToken => return Required::Public,
        Area::Session => return Required::Authenticated,
        Area::Catalog => {}
    }
    let warehouse = Some(route.names.warehouse(default_warehouse));
    let namespace = route.names.namespace_levels();
    let role = match route.operation() {
        Op::ListNamespaces => {
            let parent = query
                .into_iter()
                .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
                .find(|(k, _)| k == "parent")
                .map(|(_, v)| {
                    v.split('\u{1f}')
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Required::List(Access {
                warehouse,
                namespace: parent,
                role: Role::Reader,
            });
        }
        Op::ListTables | Op::ListViews => {
            return Required::List(Access {
                warehouse,
                namespace,
                role: Role::Reader,
            });
        }
        Op::DropNamespace | Op::RegisterTable | Op::RegisterView | Op::UnregisterTable => {
            Role::Admin
        }
        // Scan planning, metrics reports, credentials and signing are part
        // of reading a table (the origin signs writes only for writers).
        Op::LoadNamespace
        | Op::NamespaceExists
        | Op::LoadTable
        | Op::TableExists
        | Op::ReportMetrics
        | Op::LoadCredentials
        | Op::SignRequest
        | Op::PlanTableScan
        | Op::FetchPlanningResult
        | Op::CancelPlanning
        | Op::FetchScanTasks
        | Op::ListFunctions
        | Op::LoadFunction
        | Op::LoadView
        | Op::ViewExists => Role::Reader,
        _ => Role::Writer,
    };
    Required::Access(Access {
        warehouse,
        namespace,
        role,
    })
}

/// Whether `grants` give `access`.
pub fn allows(grants: &[Grant], access: &Access) -> bool {
    grants.iter().any(|g| {
        g.role >= access.role
            && match &access.warehouse {
                None => g.warehouse == "*" && g.namespace.is_empty(),
                Some(w) => {
                    (g.warehouse == "*" || g.warehouse == *w)
                        && access.namespace.starts_with(&g.namespace)
                }
            }
    })
}

/// What a listing of a namespace's children (namespaces, tables, views)
/// may show a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// The principal may read the namespace: every child.
    All,
    /// The principal may read only namespaces below: the children on the
    /// way to them (no tables or views of this namespace).
    OnTheWay(std::collections::BTreeSet<String>),
    /// Nothing here or below: the listing is refused (403).
    Nothing,
}

/// What the principal with `grants` may see when listing `namespace` of
/// `warehouse` (empty: the top level).
pub fn listing(grants: &[Grant], warehouse: &str, namespace: &[String]) -> Listing {
    let read = Access {
        warehouse: Some(warehouse.to_string()),
        namespace: namespace.to_vec(),
        role: Role::Reader,
    };
    if allows(grants, &read) {
        return Listing::All;
    }
    let below: std::collections::BTreeSet<String> = grants
        .iter()
        .filter(|g| {
            (g.warehouse == "*" || g.warehouse == warehouse)
                && g.namespace.len() > namespace.len()
                && g.namespace.starts_with(namespace)
        })
        .map(|g| g.namespace[namespace.len()].clone())
        .collect();
    if below.is_empty() {
        Listing::Nothing
    } else {
        Listing::OnTheWay(below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(w: &str, ns: &[&str], role: Role) -> Grant {
        Grant {
            warehouse: w.into(),
            namespace: ns.iter().map(ToString::to_string).collect(),
            role,
        }
    }

    fn access(r: Required) -> Access {
        match r {
            Required::Access(a) => a,
            other => panic!("expected access, got {other:?}"),
        }
    }

    #[test]
    fn routes_need_the_right_role_on_the_right_place() {
        let a = access(required(
            "GET",
            "/v1/wh/namespaces/a%1Fb/tables/t",
            None,
            "d",
        ));
        assert_eq!(a.warehouse.as_deref(), Some("wh"));
        assert_eq!(a.namespace, vec!["a", "b"]);
        assert_eq!(a.role, Role::Reader);
        let a = access(required("POST", "/v1/namespaces/a/tables/t", None, "d"));
        assert_eq!((a.warehouse.as_deref(), a.role), (Some("d"), Role::Writer));
        let a = access(required(
            "GET",
            "/v1/w+h/namespaces/my+ns/tables/t",
            None,
            "d",
        ));
        assert_eq!(a.warehouse.as_deref(), Some("w h"));
        assert_eq!(a.namespace, vec!["my ns"]);
        let a = access(required("DELETE", "/v1/wh/namespaces/a", None, "d"));
        assert_eq!(a.role, Role::Admin);
        let a = access(required(
            "POST",
            "/v1/wh/namespaces/a/tables/t/metrics",
            None,
            "d",
        ));
        assert_eq!(a.role, Role::Reader);
        let Required::List(a) = required("GET", "/v1/wh/namespaces", Some("parent=a%1Fb"), "d")
        else {
            panic!("a listing");
        };
        assert_eq!((a.namespace.len(), a.role), (2, Role::Reader));
        for path in ["/v1/wh/namespaces/a/tables", "/v1/wh/namespaces/a/views"] {
            assert!(matches!(
                required("GET", path, None, "d"),
                Required::List(Access { ref namespace, .. }) if namespace == &["a"]
            ));
            assert!(matches!(
                required("POST", path, None, "d"),
                Required::Access(Access {
                    role: Role::Writer,
                    ..
                })
            ));
        }
        let a = access(required("POST", "/v1/wh/namespaces", None, "d"));
        assert_eq!((a.namespace.len(), a.role), (0, Role::Writer));
        let a = access(required("POST", "/v1/wh/tables/rename", None, "d"));
        assert_eq!((a.namespace.len(), a.role), (0, Role::Writer));
        let a = access(required("POST", "/v1/wh/namespaces/a/register", None, "d"));
        assert_eq!(a.role, Role::Admin);
        let a = access(required("GET", "/management/v1/warehouses", None, "d"));
        assert_eq!((a.warehouse, a.role), (None, Role::Admin));
        assert_eq!(
            required("GET", "/v1/config", None, "d"),
            Required::Authenticated
        );
        assert_eq!(
            required("POST", "/v1/oauth/tokens", None, "d"),
            Required::Public
        );
        assert_eq!(
            required("GET", "/internal/v1/events", None, "d"),
            Required::Internal
        );
        assert_eq!(required("GET", "/metrics", None, "d"), Required::Public);
        assert_eq!(required("GET", "/nope", None, "d"), Required::Authenticated);
    }

    #[test]
    fn grants_cover_children_and_lower_roles_only() {
        let grants = vec![
            grant("wh", &["a"], Role::Writer),
            grant("*", &[], Role::Reader),
        ];
        let on = |w: &str, ns: &[&str], role| Access {
            warehouse: Some(w.into()),
            namespace: ns.iter().map(ToString::to_string).collect(),
            role,
        };
        assert!(allows(&grants, &on("wh", &["a"], Role::Writer)));
        assert!(allows(&grants, &on("wh", &["a", "b"], Role::Writer)));
        assert!(!allows(&grants, &on("wh", &["ab"], Role::Writer)));
        assert!(!allows(&grants, &on("wh", &[], Role::Writer)));
        assert!(allows(&grants, &on("other", &["x"], Role::Reader)));
        assert!(!allows(&grants, &on("wh", &["a"], Role::Admin)));
        let management = Access {
            warehouse: None,
            namespace: Vec::new(),
            role: Role::Admin,
        };
        assert!(!allows(&grants, &management));
        assert!(!allows(&[grant("wh", &[], Role::Admin)], &management));
        assert!(allows(&[grant("*", &[], Role::Admin)], &management));
        assert!(!allows(&[], &on("wh", &[], Role::Reader)));
    }

    #[test]
    fn listings_show_what_grants_reach() {
        let levels = |ns: &[&str]| ns.iter().map(ToString::to_string).collect::<Vec<_>>();
        let sales = vec![grant("wh", &["corp", "sales"], Role::Reader)];
        assert_eq!(
            listing(&sales, "wh", &[]),
            Listing::OnTheWay(["corp".to_string()].into())
        );
        assert_eq!(
            listing(&sales, "wh", &levels(&["corp"])),
            Listing::OnTheWay(["sales".to_string()].into())
        );
        assert_eq!(
            listing(&sales, "wh", &levels(&["corp", "sales"])),
            Listing::All
        );
        assert_eq!(
            listing(&sales, "wh", &levels(&["corp", "sales", "eu"])),
            Listing::All
        );
        assert_eq!(listing(&sales, "wh", &levels(&["hr"])), Listing::Nothing);
        assert_eq!(listing(&sales, "other", &[]), Listing::Nothing);
        let everywhere = vec![grant("*", &["x", "y"], Role::Writer)];
        assert_eq!(
            listing(&everywhere, "any", &[]),
            Listing::OnTheWay(["x".to_string()].into())
        );
        assert_eq!(
            listing(&[grant("wh", &[], Role::Reader)], "wh", &[]),
            Listing::All
        );
    }
}
