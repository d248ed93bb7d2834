//! The cacheability rules, in one place: pure decisions the proxy's phases
//! ask. What a request means to the cache, whether a load bypasses it,
//! whether an entry may be served, whether a response may be stored, and
//! what a change event invalidates.

use std::time::Duration;

use floe_shared::events::ChangeEvent;
use http::Method;

use super::key::{self, NAMESPACE_SEPARATOR, TableRef};

/// What a request means to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `GET …/namespaces/{ns}/tables/{t}`.
    Load(TableRef),
    /// A write that changes what loads return.
    Write(Invalidation),
    /// Anything else: forwarded untouched.
    Other,
}

/// What a write invalidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One table (commit, drop).
    Table(TableRef),
    /// A whole warehouse (rename, register, transactions, namespace drop).
    Warehouse(String),
}

/// Classifies a request by method and path, from the route grammar
/// ([`floe_shared::route`]); the second value is the route pattern used as
/// a metrics label (`/v1/other` or `other` for paths that are no route).
///
/// Only table loads (`GET`) are cached. A commit, drop or unregister
/// invalidates its table; a rename, transaction, register or namespace drop
/// its whole warehouse. Views are not cached: their writes are `Other`.
pub fn classify(method: &Method, path: &str) -> (Kind, &'static str) {
    use floe_shared::route::{self, Operation as Op};
    let Some(matched) = route::match_path(path) else {
        let label = if path.starts_with("/v1/") {
            "/v1/other"
        } else {
            "other"
        };
        return (Kind::Other, label);
    };
    let label = matched.resource.pattern();
    let Some(operation) = route::parse(method.as_str(), path).map(|r| r.operation()) else {
        return (Kind::Other, label);
    };
    let names = matched.names;
    let warehouse = key::warehouse(&names);
    let kind = match operation {
        Op::LoadTable if method == Method::GET => Kind::Load(TableRef::named(warehouse, &names)),
        Op::UpdateTable | Op::DropTable | Op::UnregisterTable => {
            Kind::Write(Invalidation::Table(TableRef::named(warehouse, &names)))
        }
        Op::RenameTable | Op::CommitTransaction | Op::RegisterTable | Op::DropNamespace => {
            Kind::Write(Invalidation::Warehouse(warehouse))
        }
        _ => Kind::Other,
    };
    (kind, label)
}

/// Whether a table load bypasses the cache (neither served from it nor
/// stored): the cache is off, or the edge does not authenticate and the
/// request carries credentials, which an origin that checks them may answer
/// differently per principal.
pub fn bypasses(cache_enabled: bool, edge_authenticates: bool, has_authorization: bool) -> bool {
    !cache_enabled || (!edge_authenticates && has_authorization)
}

/// How an entry of the current generations may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// As a hit.
    Fresh,
    /// Only if no origin answers (stale-if-error).
    Stale,
    /// Not at all.
    Expired,
}

/// How an entry `age` old may be served: fresh while the event stream is up
/// (`live`) and within `max_age`; else stale within `stale_for`.
pub fn freshness(age: Duration, live: bool, max_age: Duration, stale_for: Duration) -> Freshness {
    if live && age <= max_age {
        Freshness::Fresh
    } else if age <= stale_for {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// Whether a response to a table load may be stored, from its status and
/// headers: a 200 with an `ETag`, not marked `private` (a response for one
/// principal, such as vended credentials) or `no-store`. Its size is the
/// store's to admit.
pub fn storable(status: u16, cache_control: Option<&str>, etag: Option<&str>) -> bool {
    status == 200 && etag.is_some() && cache_control.is_none_or(shared)
}

/// Whether a `Cache-Control` value lets a shared cache store the response.
fn shared(cache_control: &str) -> bool {
    !cache_control
        .split(',')
        .map(str::trim)
        .any(|d| d.eq_ignore_ascii_case("private") || d.eq_ignore_ascii_case("no-store"))
}

/// What a change event from an origin invalidates: its table (views are not
/// cached: nothing).
pub fn invalidated_by(event: ChangeEvent) -> Option<Invalidation> {
    if event.view {
        return None;
    }
    Some(Invalidation::Table(TableRef {
        warehouse: event.warehouse,
        namespace: event.namespace.join(NAMESPACE_SEPARATOR),
        table: event.table,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(w: &str, ns: &str, name: &str) -> TableRef {
        TableRef {
            warehouse: w.into(),
            namespace: ns.into(),
            table: name.into(),
        }
    }

    #[test]
    fn routes_are_classified() {
        let (kind, _) = classify(&Method::GET, "/v1/wh/namespaces/a%1Fb/tables/t");
        assert_eq!(kind, Kind::Load(t("wh", "a\u{1f}b", "t")));
        let (kind, _) = classify(&Method::GET, "/v1/namespaces/a/tables/t");
        assert_eq!(kind, Kind::Load(t("", "a", "t")));
        // Names as Java clients encode them: `+` is a space, `%2B` a plus,
        // the same table the origin's events name.
        let (kind, _) = classify(&Method::GET, "/v1/namespaces/my+ns/tables/a%2Bb");
        assert_eq!(kind, Kind::Load(t("", "my ns", "a+b")));
        let (kind, _) = classify(&Method::POST, "/v1/wh/namespaces/a/tables/t");
        assert_eq!(kind, Kind::Write(Invalidation::Table(t("wh", "a", "t"))));
        let (kind, _) = classify(&Method::DELETE, "/v1/namespaces/a/tables/t");
        assert_eq!(kind, Kind::Write(Invalidation::Table(t("", "a", "t"))));
        for (m, p) in [
            (Method::POST, "/v1/wh/tables/rename"),
            (Method::POST, "/v1/wh/transactions/commit"),
            (Method::POST, "/v1/wh/namespaces/a/register"),
            (Method::DELETE, "/v1/wh/namespaces/a"),
        ] {
            assert_eq!(
                classify(&m, p).0,
                Kind::Write(Invalidation::Warehouse("wh".into())),
                "{p}"
            );
        }
        assert_eq!(
            classify(&Method::POST, "/v1/tables/rename").0,
            Kind::Write(Invalidation::Warehouse(String::new()))
        );
        for (m, p) in [
            (Method::HEAD, "/v1/wh/namespaces/a/tables/t"),
            (Method::GET, "/v1/config"),
            (Method::GET, "/v1/wh/namespaces"),
            (Method::POST, "/v1/wh/namespaces/a/tables"),
            (Method::POST, "/v1/wh/namespaces/a/tables/t/metrics"),
            (Method::GET, "/metrics"),
            (Method::GET, "/v1/wh/namespaces/a/views/t"),
            (Method::POST, "/v1/wh/namespaces/a/views/t"),
            (Method::DELETE, "/v1/namespaces/a/views/t"),
            (Method::POST, "/v1/views/rename"),
            (Method::POST, "/v1/wh/namespaces/a/register-view"),
        ] {
            assert_eq!(classify(&m, p).0, Kind::Other, "{m} {p}");
        }
        for (m, p, label) in [
            (
                Method::POST,
                "/v1/views/rename",
                "/v1/{prefix}/views/rename",
            ),
            (
                Method::GET,
                "/v1/wh/namespaces/a/views/v",
                "/v1/{prefix}/namespaces/{namespace}/views/{view}",
            ),
            (
                Method::POST,
                "/v1/wh/namespaces/a/tables/t/plan",
                "/v1/{prefix}/namespaces/{namespace}/tables/{table}/plan",
            ),
            (Method::GET, "/v1/nothing/here/at/all", "/v1/other"),
            (Method::GET, "/elsewhere", "other"),
        ] {
            assert_eq!(classify(&m, p).1, label, "{m} {p}");
        }
    }

    #[test]
    fn loads_bypass_when_off_or_credentials_pass_through() {
        // (cache on, edge authenticates, Authorization sent) → bypass
        for (on, authenticates, credentials, bypass) in [
            (true, true, true, false),
            (true, true, false, false),
            (true, false, false, false),
            (true, false, true, true),
            (false, true, false, true),
            (false, false, false, true),
        ] {
            assert_eq!(
                bypasses(on, authenticates, credentials),
                bypass,
                "{on} {authenticates} {credentials}"
            );
        }
    }

    #[test]
    fn entries_are_fresh_while_live_and_young_then_stale_then_expired() {
        let s = Duration::from_secs;
        let (max_age, stale_for) = (s(60), s(300));
        for (age, live, expected) in [
            (s(0), true, Freshness::Fresh),
            (s(60), true, Freshness::Fresh),
            (s(61), true, Freshness::Stale),
            (s(0), false, Freshness::Stale),
            (s(300), false, Freshness::Stale),
            (s(301), true, Freshness::Expired),
            (s(301), false, Freshness::Expired),
        ] {
            assert_eq!(
                freshness(age, live, max_age, stale_for),
                expected,
                "{age:?} {live}"
            );
        }
        // Without stale-if-error, an entry past its age is not served at all.
        assert_eq!(
            freshness(s(61), true, max_age, Duration::ZERO),
            Freshness::Expired
        );
    }

    #[test]
    fn only_shared_200s_with_an_etag_are_stored() {
        let etag = Some("\"e\"");
        for (status, cache_control, etag, stored) in [
            (200, None, etag, true),
            (200, Some("max-age=0"), etag, true),
            (200, Some("public, max-age=60"), etag, true),
            (200, Some("private"), etag, false),
            (200, Some("max-age=60, Private"), etag, false),
            (200, Some("NO-STORE"), etag, false),
            (200, Some("no-cache,no-store"), etag, false),
            (200, Some("private-ish"), etag, true),
            (200, None, None, false),
            (304, None, etag, false),
            (404, None, etag, false),
            (500, None, etag, false),
        ] {
            assert_eq!(
                storable(status, cache_control, etag),
                stored,
                "{status} {cache_control:?} {etag:?}"
            );
        }
    }

    fn event(view: bool) -> ChangeEvent {
        ChangeEvent {
            warehouse: "w".into(),
            namespace: vec!["a".into(), "b".into()],
            table: "t".into(),
            action: "commit".into(),
            metadata_location: None,
            origin: "o".into(),
            view,
        }
    }

    #[test]
    fn a_change_event_invalidates_its_table_and_a_view_nothing() {
        assert_eq!(
            invalidated_by(event(false)),
            Some(Invalidation::Table(t("w", "a\u{1f}b", "t")))
        );
        assert_eq!(invalidated_by(event(true)), None);
        // The table an event names is the one a load of it was keyed under.
        let (Kind::Load(loaded), _) = classify(&Method::GET, "/v1/w/namespaces/a%1Fb/tables/t")
        else {
            panic!("a load");
        };
        assert_eq!(
            invalidated_by(event(false)),
            Some(Invalidation::Table(loaded))
        );
    }
}
