//! The optimistic-commit engine shared by table commits, transactions and
//! view replaces.

use crate::error::CatalogError;

/// Whether an insert that failed with `err` provably wrote nothing (the
/// database refused it), so the metadata file written for it may go.
pub(crate) fn refused_without_writing(err: &CatalogError) -> bool {
    matches!(
        err,
        CatalogError::AlreadyExists(_)
            | CatalogError::NoSuchNamespace(_)
            | CatalogError::BadRequest(_)
    )
}
