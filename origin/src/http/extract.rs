//! What handlers read from a request: extractors whose rejections are the
//! catalog's own `ErrorModel` (JSON bodies, query parameters, the names in
//! the path), the paging of listings, and what the caller may see and do
//! (listing scope, storage access to delegate).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use floe_shared::auth::Listing;
use floe_shared::route::{self, Names};
use floe_shared::wire::decode_path_segment;

use super::auth::Caller;
use super::state::AppState;
use crate::catalog::{PageRequest, page_request, parse_namespace};
use crate::delegation::{DelegationRequest, Requested, StorageAccess};
use crate::error::CatalogError;

/// A JSON body parsed with serde; any content type is accepted, any parse
/// failure (syntax, unknown update or requirement type, missing field) is a
/// 400 naming the problem, and a body over the limit is a 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = CatalogError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    CatalogError::PayloadTooLarge(format!("Request body is too large: {e}"))
                } else {
                    CatalogError::BadRequest(format!("Cannot read request body: {e}"))
                }
            })?;
        if bytes.is_empty() {
            return Err(CatalogError::BadRequest("Request body is empty".into()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| CatalogError::BadRequest(format!("Malformed request body: {e}")))
    }
}

/// Query parameters, 400 on anything that does not parse.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = CatalogError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| CatalogError::BadRequest(format!("Invalid query parameters: {e}")))
    }
}

/// What the path names: the warehouse (prefix, or the default one when the
/// route has none), the namespace and the table when the route has them.
pub struct Target {
    /// Warehouse name.
    pub prefix: String,
    /// Namespace levels (empty when the route has no namespace).
    pub namespace: Vec<String>,
    /// Table (or view) name (empty when the route has none).
    pub table: String,
}

/// The still-encoded names of the request's path, as the client sent it
/// (before any nesting stripped a prefix), read by the route grammar.
fn raw_names(parts: &Parts) -> Names<'_> {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    route::match_path(uri.path()).map_or_else(Names::default, |m| m.names)
}

impl Target {
    /// The warehouse, namespace and table (or view) name, as the catalog's
    /// calls take them.
    pub fn names(&self) -> (&str, &[String], &str) {
        (&self.prefix, &self.namespace, &self.table)
    }

    /// The names of a catalog path as the router would capture them, for
    /// code that runs before routing (unprefixed paths are on
    /// `default_warehouse`).
    pub fn of_path(path: &str, default_warehouse: &str) -> Result<Self, CatalogError> {
        let raw = route::match_path(path).map_or_else(Names::default, |m| m.names);
        Ok(Target {
            prefix: raw
                .prefix
                .map_or_else(|| default_warehouse.to_string(), decode_path_segment),
            namespace: match raw.namespace {
                Some(namespace) => parse_namespace(&decode_path_segment(namespace))?,
                None => Vec::new(),
            },
            table: raw.name.map(decode_path_segment).unwrap_or_default(),
        })
    }
}

impl FromRequestParts<AppState> for Target {
    type Rejection = CatalogError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| CatalogError::BadRequest(format!("Invalid path: {e}")))?;
        // The router has percent-decoded the captures, which leaves a `+`
        // (a space, as Java clients encode it) indistinguishable from `%2B`:
        // a segment sent with a `+` is decoded again from the path as sent.
        let raw = raw_names(parts);
        let redecode = |decoded: String, raw: Option<&str>| match raw {
            Some(raw) if raw.contains('+') => decode_path_segment(raw),
            _ => decoded,
        };
        let prefix = match params.remove("prefix") {
            Some(decoded) => redecode(decoded, raw.prefix),
            None => state.default_warehouse.clone(),
        };
        let namespace = match params.remove("namespace") {
            Some(decoded) => parse_namespace(&redecode(decoded, raw.namespace))?,
            None => Vec::new(),
        };
        let table = match params.remove("table").or_else(|| params.remove("view")) {
            Some(decoded) => redecode(decoded, raw.name),
            None => String::new(),
        };
        Ok(Target {
            prefix,
            namespace,
            table,
        })
    }
}

/// What storage access a table request asked for, and what its caller may do.
pub(crate) fn delegation(
    headers: &HeaderMap,
    caller: Option<&Caller>,
    target: &Target,
) -> DelegationRequest {
    let requested = Requested::parse(
        headers
            .get(crate::delegation::HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let write = caller.is_some_and(|c| c.may_write(&target.prefix, &target.namespace));
    DelegationRequest {
        requested,
        access: if write {
            StorageAccess::ReadWrite
        } else {
            StorageAccess::ReadOnly
        },
    }
}

/// The paging parameters of a listing (and `parent` of a namespace listing).
#[derive(Deserialize)]
pub(crate) struct ListParams {
    #[serde(rename = "pageToken")]
    pub(crate) page_token: Option<String>,
    #[serde(rename = "pageSize")]
    pub(crate) page_size: Option<String>,
    pub(crate) parent: Option<String>,
}

impl ListParams {
    /// The page asked for, checked against the catalog's limits.
    pub(crate) fn page(&self, state: &AppState) -> Result<PageRequest, CatalogError> {
        page_request(
            self.page_token.as_deref(),
            self.page_size.as_deref(),
            state.catalog.settings(),
        )
    }
}

/// What a listing of `namespace` may show the caller.
pub(crate) fn listing(caller: Option<&Caller>, warehouse: &str, namespace: &[String]) -> Listing {
    match caller {
        Some(Caller::Anyone) => Listing::All,
        Some(Caller::Principal(p)) => floe_shared::auth::listing(&p.grants, warehouse, namespace),
        _ => Listing::Nothing,
    }
}

/// A table request's names, with the storage access to delegate in its
/// answer: what the request asked for, as far as its caller may write.
pub(crate) struct TableAccess {
    /// The names in the path.
    pub(crate) target: Target,
    /// The storage access to delegate.
    pub(crate) delegation: DelegationRequest,
}

impl FromRequestParts<AppState> for TableAccess {
    type Rejection = CatalogError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let target = Target::from_request_parts(parts, state).await?;
        let caller = parts.extensions.get::<Caller>();
        let delegation = delegation(&parts.headers, caller, &target);
        Ok(Self { target, delegation })
    }
}

/// A listing of the tables or views in the path's namespace: the names, the
/// page asked for and what the caller may see there.
pub(crate) struct NamespaceListing {
    /// The names in the path.
    pub(crate) target: Target,
    /// The page asked for.
    pub(crate) page: PageRequest,
    /// What the caller may see.
    pub(crate) listing: Listing,
}

impl FromRequestParts<AppState> for NamespaceListing {
    type Rejection = CatalogError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let target = Target::from_request_parts(parts, state).await?;
        let QueryParams(params) =
            QueryParams::<ListParams>::from_request_parts(parts, state).await?;
        let page = params.page(state)?;
        let caller = parts.extensions.get::<Caller>();
        let listing = listing(caller, &target.prefix, &target.namespace);
        Ok(Self {
            target,
            page,
            listing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn names_come_from_the_path_as_sent() {
        let t = Target::of_path("/v1/wh+1/namespaces/a%1Fmy+ns/tables/t+1/metrics", "d")
            .expect("names");
        assert_eq!(
            (t.prefix.as_str(), t.namespace, t.table.as_str()),
            ("wh 1", vec!["a".to_string(), "my ns".to_string()], "t 1")
        );
        let t = Target::of_path("/v1/namespaces/my+ns/views/v", "d").expect("names");
        assert_eq!((t.prefix.as_str(), t.table.as_str()), ("d", "v"));
        let t = Target::of_path("/v1/namespaces/my+ns/properties", "d").expect("names");
        assert_eq!(
            (t.namespace, t.table.as_str()),
            (vec!["my ns".to_string()], "")
        );
        for path in ["/v1/namespaces", "/health"] {
            let t = Target::of_path(path, "d").expect("names");
            assert!(t.namespace.is_empty() && t.table.is_empty(), "{path}");
        }
    }
}
