//! Names: validation of namespace levels and table or view names, their
//! display, identifiers in bodies, and storage-safe path segments.

use floe_shared::wire::TableIdentifier;
use sha2::Digest;

use crate::error::{CatalogError, Result};
use crate::store::{NAMESPACE_SEPARATOR, ObjectKind};

/// The 404 for a table or view that does not exist.
pub(crate) fn no_such(kind: ObjectKind, levels: &[String], name: &str) -> CatalogError {
    let name = table_display(levels, name);
    match kind {
        ObjectKind::Table => CatalogError::NoSuchTable(format!("Table does not exist: {name}")),
        ObjectKind::View => CatalogError::NoSuchView(format!("View does not exist: {name}")),
    }
}

/// Checks one namespace level or table name.
pub(crate) fn validate_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(CatalogError::BadRequest(format!(
            "{kind} must not be empty"
        )));
    }
    if name.len() > 255 {
        return Err(CatalogError::BadRequest(format!(
            "{kind} is longer than 255 bytes"
        )));
    }
    if name == "." || name == ".." {
        return Err(CatalogError::BadRequest(format!(
            "{kind} must not be '.' or '..'"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || *c == '/' || *c == '\\')
    {
        return Err(CatalogError::BadRequest(format!(
            "{kind} contains an invalid character {c:?}: {name:?}"
        )));
    }
    Ok(())
}

/// Checks a namespace identifier.
pub fn validate_namespace(levels: &[String]) -> Result<()> {
    if levels.is_empty() {
        return Err(CatalogError::BadRequest(
            "Namespace must have at least one level".into(),
        ));
    }
    if levels.len() > 16 {
        return Err(CatalogError::BadRequest(
            "Namespace has more than 16 levels".into(),
        ));
    }
    levels
        .iter()
        .try_for_each(|l| validate_name("Namespace level", l))
}

/// Parses a namespace path parameter (`a%1Fb`, already percent-decoded).
pub fn parse_namespace(raw: &str) -> Result<Vec<String>> {
    let levels: Vec<String> = raw.split(NAMESPACE_SEPARATOR).map(str::to_string).collect();
    validate_namespace(&levels)?;
    Ok(levels)
}

pub(crate) fn display(levels: &[String]) -> String {
    levels.join(".")
}

pub(crate) fn table_display(namespace: &[String], name: &str) -> String {
    format!("{}.{name}", display(namespace))
}

/// A 400 when a body's identifier contradicts the path.
pub(crate) fn check_identifier(
    ident: Option<&TableIdentifier>,
    levels: &[String],
    name: &str,
) -> Result<()> {
    match ident {
        Some(ident) if ident.namespace != levels || ident.name != name => {
            Err(CatalogError::BadRequest(format!(
                "Identifier in body ({}) does not match the path ({})",
                table_display(&ident.namespace, &ident.name),
                table_display(levels, name)
            )))
        }
        _ => Ok(()),
    }
}

/// A path segment safe in every storage URL: the name itself when it is
/// made of ASCII letters, digits, `-`, `_` and `.`; else those characters
/// with `_` for the others and a digest of the whole name, so two names
/// never share a directory (`a b` and `a_b`, or two names in another
/// script, would otherwise both be `a_b` or `__`).
pub(crate) fn path_segment(name: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.chars().all(safe) {
        return name.to_string();
    }
    let replaced: String = name
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    let digest = sha2::Sha256::digest(name.as_bytes());
    format!("{replaced}-{}", &floe_shared::auth::hex(&digest)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("t", "ok_name-1").is_ok());
        assert!(validate_name("t", "quote'; DROP TABLE tables;--").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b", "a\u{1f}b", "a\0b"] {
            assert!(validate_name("t", bad).is_err(), "{bad:?}");
        }
        assert!(parse_namespace("a\u{1f}b").unwrap() == vec!["a", "b"]);
        assert!(parse_namespace("a\u{1f}").is_err());
        assert!(parse_namespace("").is_err());
    }

    #[test]
    fn path_segments_are_storage_safe_and_distinct() {
        assert_eq!(path_segment("sales_2024"), "sales_2024");
        let unsafe_name = path_segment("a b#c?d%");
        assert!(unsafe_name.starts_with("a_b_c_d_-"), "{unsafe_name}");
        assert!(
            unsafe_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_ne!(path_segment("a b"), path_segment("a_b"));
        assert_ne!(path_segment("销售"), path_segment("人事"));
        assert_eq!(path_segment("销售"), path_segment("销售"));
    }
}
