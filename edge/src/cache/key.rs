//! Cache keys: the table a route names (from the route grammar,
//! [`floe_shared::route`]) and the key of one response variant of it.

use floe_shared::route::Names;
use floe_shared::wire::decode_path_segment;

/// Which table a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Warehouse prefix as the client sent it; empty for unprefixed routes.
    pub warehouse: String,
    /// Namespace levels joined by 0x1F.
    pub namespace: String,
    /// Table name.
    pub table: String,
}

/// Separates the namespace levels in [`TableRef::namespace`] (as in the
/// namespace segment of a path, `%1F` decoded).
pub(crate) const NAMESPACE_SEPARATOR: &str = "\u{1f}";

impl TableRef {
    /// The table a route's names carry, in `warehouse` (from [`warehouse`]).
    ///
    /// The cache keys tables by their names as the origin's events carry
    /// them: the decoded prefix ("" for the default warehouse), the decoded
    /// namespace segment (levels joined by the unit separator), the table.
    pub(crate) fn named(warehouse: String, names: &Names<'_>) -> Self {
        Self {
            warehouse,
            namespace: names.namespace.map(decode_path_segment).unwrap_or_default(),
            table: names.decoded_name().unwrap_or_default(),
        }
    }

    fn write_id(&self, out: &mut String) {
        out.push_str(&self.warehouse);
        out.push('\u{1e}');
        out.push_str(&self.namespace);
        out.push('\u{1e}');
        out.push_str(&self.table);
    }

    /// The same table reached without a prefix (the default warehouse).
    pub(crate) fn unprefixed(&self) -> TableRef {
        TableRef {
            warehouse: String::new(),
            ..self.clone()
        }
    }
}

/// The warehouse of a route's names as the cache keys it: the decoded
/// prefix, "" for the default warehouse.
pub(crate) fn warehouse(names: &Names<'_>) -> String {
    names.warehouse("")
}

/// The cache key of one response variant of a table: the load's query string
/// and its `X-Iceberg-Access-Delegation` (both shape the body).
pub fn variant_key(table: &TableRef, query: &str, delegation: &str) -> String {
    let mut key = String::with_capacity(
        table.warehouse.len()
            + table.namespace.len()
            + table.table.len()
            + query.len()
            + delegation.len()
            + 4,
    );
    table.write_id(&mut key);
    key.push('\u{1d}');
    key.push_str(query);
    key.push('\u{1d}');
    key.push_str(delegation);
    key
}

#[cfg(test)]
mod tests {
    use floe_shared::route::match_path;

    use super::*;

    fn named(path: &str) -> TableRef {
        let names = match_path(path).expect("a route").names;
        TableRef::named(warehouse(&names), &names)
    }

    #[test]
    fn tables_are_named_as_events_name_them() {
        let t = named("/v1/w%20h/namespaces/a%1Fb/tables/t");
        assert_eq!(
            (t.warehouse.as_str(), t.namespace.as_str(), t.table.as_str()),
            ("w h", "a\u{1f}b", "t")
        );
        // Names as Java clients encode them: `+` is a space, `%2B` a plus.
        let t = named("/v1/namespaces/my+ns/tables/a%2Bb");
        assert_eq!(
            (t.warehouse.as_str(), t.namespace.as_str(), t.table.as_str()),
            ("", "my ns", "a+b")
        );
        assert_eq!(t, t.unprefixed());
        assert_eq!(named("/v1/w/namespaces/my+ns/tables/a%2Bb").unprefixed(), t);
    }

    #[test]
    fn variants_and_tables_never_share_a_key() {
        let t = named("/v1/w/namespaces/a/tables/t");
        let keys = [
            variant_key(&t, "", ""),
            variant_key(&t, "snapshots=refs", ""),
            variant_key(&t, "", "vended-credentials"),
            variant_key(&t, "snapshots=refs", "vended-credentials"),
            variant_key(&t.unprefixed(), "", ""),
            variant_key(&named("/v1/w/namespaces/a%1Ft/tables/t"), "", ""),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            variant_key(&t, "q", "d"),
            "w\u{1e}a\u{1e}t\u{1d}q\u{1d}d",
            "the key the proxy has always used"
        );
    }
}
