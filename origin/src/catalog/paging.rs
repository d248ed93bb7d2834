//! Listings: `pageToken`/`pageSize` into a keyset page, the page's next
//! token, which children a caller's grants let a listing show, and the
//! one listing of a namespace's tables or views.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use floe_shared::auth::Listing;
use floe_shared::wire::{ListTablesResponse, TableIdentifier};

use super::Catalog;
use super::names::display;
use crate::config::CatalogSettings;
use crate::error::{CatalogError, Result};
use crate::store::ObjectKind;

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Keyset: return names after this one.
    pub after: Option<String>,
    /// At most this many; `None` = everything (no `pageToken` sent).
    pub limit: Option<u32>,
}

/// The children a listing may show: `None` for all of them, else only
/// these names; 403 when the caller may see nothing here or below.
pub(crate) fn visible<'a>(
    listing: &'a Listing,
    levels: &[String],
    what: &str,
) -> Result<Option<&'a std::collections::BTreeSet<String>>> {
    match listing {
        Listing::All => Ok(None),
        Listing::OnTheWay(children) => Ok(Some(children)),
        Listing::Nothing => Err(CatalogError::Forbidden(format!(
            "No grant to list {what} of {}",
            if levels.is_empty() {
                "this warehouse".to_string()
            } else {
                format!("namespace {}", display(levels))
            }
        ))),
    }
}

/// Builds the page request from `pageToken` / `pageSize`.
pub fn page_request(
    token: Option<&str>,
    size: Option<&str>,
    settings: &CatalogSettings,
) -> Result<PageRequest> {
    let size = match size {
        None | Some("") => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n.min(settings.max_page_size)),
            _ => {
                return Err(CatalogError::BadRequest(format!(
                    "pageSize must be a positive integer, got {s:?}"
                )));
            }
        },
    };
    let Some(token) = token else {
        return Ok(PageRequest::default());
    };
    let after = if token.is_empty() {
        None
    } else {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CatalogError::BadRequest("Invalid pageToken".into()))?;
        Some(
            String::from_utf8(bytes)
                .map_err(|_| CatalogError::BadRequest("Invalid pageToken".into()))?,
        )
    };
    Ok(PageRequest {
        after,
        limit: Some(size.unwrap_or(settings.default_page_size)),
    })
}

/// Splits one extra fetched row off into a next-page token.
pub(crate) fn finish_page<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    match page.limit {
        Some(limit) if items.len() > limit as usize => {
            items.truncate(limit as usize);
            let token = items.last().map(|last| URL_SAFE_NO_PAD.encode(key(last)));
            (items, token)
        }
        _ => (items, None),
    }
}

/// Fetch size for a page: one more than asked, to know whether more follow.
pub(crate) fn fetch_limit(page: &PageRequest) -> Option<u32> {
    page.limit.map(|l| l.saturating_add(1))
}

impl Catalog {
    /// One page of a namespace's tables or views. A caller who may read
    /// only namespaces below this one sees none of them.
    pub(super) async fn list_objects(
        &self,
        kind: ObjectKind,
        prefix: &str,
        levels: &[String],
        page: PageRequest,
        listing: &Listing,
    ) -> Result<ListTablesResponse> {
        let what = format!("{}s", kind.as_str());
        let on_the_way = visible(listing, levels, &what)?.is_some();
        let warehouse = self.warehouse(prefix).await?;
        let namespace = self.namespace_record(&warehouse, levels).await?;
        let names = if on_the_way {
            Vec::new()
        } else {
            self.store
                .list_objects(
                    kind,
                    &namespace.id,
                    page.after.as_deref(),
                    fetch_limit(&page),
                )
                .await?
        };
        let (names, next_page_token) = finish_page(names, &page, Clone::clone);
        Ok(ListTablesResponse {
            next_page_token,
            identifiers: names
                .into_iter()
                .map(|name| TableIdentifier {
                    namespace: levels.to_vec(),
                    name,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CatalogSettings {
        CatalogSettings::default()
    }

    #[test]
    fn no_token_means_everything() {
        let page = page_request(None, Some("5"), &settings()).unwrap();
        assert_eq!(page, PageRequest::default());
    }

    #[test]
    fn empty_token_starts_paging() {
        let page = page_request(Some(""), Some("5"), &settings()).unwrap();
        assert_eq!(page.limit, Some(5));
        assert_eq!(page.after, None);
        let page = page_request(Some(""), None, &settings()).unwrap();
        assert_eq!(page.limit, Some(settings().default_page_size));
        let page = page_request(Some(""), Some("1000000"), &settings()).unwrap();
        assert_eq!(page.limit, Some(settings().max_page_size));
    }

    #[test]
    fn bad_paging_input_is_400() {
        assert!(page_request(Some("!!"), None, &settings()).is_err());
        assert!(page_request(Some(""), Some("0"), &settings()).is_err());
        assert!(page_request(Some(""), Some("-1"), &settings()).is_err());
        assert!(page_request(Some(""), Some("x"), &settings()).is_err());
    }

    #[test]
    fn pages_round_trip_tokens() {
        let page = PageRequest {
            after: None,
            limit: Some(2),
        };
        let (items, token) = finish_page(
            vec!["a".to_string(), "b".into(), "c".into()],
            &page,
            Clone::clone,
        );
        assert_eq!(items, vec!["a", "b"]);
        let next = page_request(token.as_deref(), Some("2"), &settings()).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        let (items, token) = finish_page(vec!["c".to_string()], &next, Clone::clone);
        assert_eq!(items, vec!["c"]);
        assert_eq!(token, None);
    }
}
