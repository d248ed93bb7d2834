//! The optimistic-commit engine: a table commit, a multi-table transaction
//! and a view replace are each a [`Commit`], run by [`Catalog::run_commit`].
//!
//! A round loads the current version(s), checks the requirements, applies
//! the updates and writes the new metadata file(s), staging each file it
//! writes ([`Commit::round`]). The engine then compare-and-sets the
//! pointer(s) and decides what follows:
//!
//! - swapped: [`Commit::committed`] runs the after-commit work and answers;
//! - another commit won the race: the staged files are deleted and the next
//!   round starts, up to `catalog.commit_max_retries` retries, then 409
//!   `CommitFailedException`;
//! - the database refused a new location (400): the staged files are
//!   deleted, nothing changed;
//! - any other failure of the swap: the pointer may have moved, so the files
//!   stay and the answer is `CommitStateUnknownException`.
//!
//! A round that fails, finishes without a swap or asks for another round
//! leaves no staged file behind. Creates are not rounds: a new object's row
//! is inserted once ([`Catalog::insert_new`]), with the same rule for what
//! an unknown outcome is.

use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;
use crate::store::{NamespaceRecord, ObjectKind, Swap, TableDocs};
use crate::warehouse::Warehouse;

use super::Catalog;
use super::documents::delete_quietly;
use super::names::{display, table_display};

/// A new metadata version written to storage, its pointer not yet moved.
pub(crate) struct Staged<T> {
    /// The row whose pointer moves.
    pub(crate) id: String,
    /// The metadata location the row must still point at.
    pub(crate) base: String,
    /// The new documents; their `metadata_location` is the file written.
    pub(crate) docs: TableDocs,
    /// The object's new location, when the version moves it.
    pub(crate) relocated: Option<StoragePath>,
    /// What the commit needs once the pointer moved.
    pub(crate) then: T,
}

impl<T> Staged<T> {
    /// The same version carrying `f(then)` to the commit's end.
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Staged<U> {
        Staged {
            id: self.id,
            base: self.base,
            docs: self.docs,
            relocated: self.relocated,
            then: f(self.then),
        }
    }
}

/// How a round ended.
pub(crate) enum Round<O> {
    /// New versions are staged: swap their pointers.
    Swap,
    /// Finished without a swap (nothing changes, or a create answered).
    Done(O),
    /// Nothing to swap; run another round (a concurrent create).
    Again,
}

/// One optimistic commit, as the engine drives it.
pub(crate) trait Commit {
    /// What a staged version carries to [`Commit::committed`].
    type Then;
    /// The answer.
    type Output;
    /// Counted in the table-commit metrics (`floe_origin_commits_total`,
    /// `floe_origin_commit_retries_total`).
    const METERED: bool;
    /// The pointers move in one database transaction, even a single one.
    const TOGETHER: bool;
    /// What the rivals are called in the 409 after the last lost race.
    const RIVALS: &'static str;

    /// Names the commit in messages (`Commit to db.t`).
    fn subject(&self) -> String;

    /// Loads the current version(s), checks the requirements, applies the
    /// updates and writes the next metadata file(s), each pushed on
    /// `staged` as soon as it is written. `attempt` is 0 on the first round.
    async fn round(
        &mut self,
        attempt: u32,
        staged: &mut Vec<Staged<Self::Then>>,
    ) -> Result<Round<Self::Output>>;

    /// The answer once every staged pointer moved.
    async fn committed(&mut self, staged: Vec<Staged<Self::Then>>) -> Result<Self::Output>;
}

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

/// How an update the `iceberg` crate refuses is answered: `invalid` (400)
/// on the first round; on a retry the requirements held, so the object
/// moved under the client: a conflict, not bad input.
pub(super) fn refusal(
    attempt: u32,
    invalid: fn(iceberg::Error) -> CatalogError,
) -> impl Fn(iceberg::Error) -> CatalogError {
    move |e| {
        if attempt == 0 {
            invalid(e)
        } else {
            CatalogError::commit_failed(e)
        }
    }
}

/// The metrics label of a commit's outcome.
fn outcome<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "committed",
        Err(CatalogError::CommitFailed(_)) => "conflict",
        Err(CatalogError::BadRequest(_)) => "rejected",
        Err(_) => "error",
    }
}

/// Deletes the files of versions that were never committed.
async fn discard<T>(warehouse: &Warehouse, staged: &[Staged<T>]) {
    for version in staged {
        delete_quietly(warehouse, &version.docs.metadata_location).await;
    }
}

impl Catalog {
    /// Runs `commit` to its end: rounds until a swap wins, a round finishes
    /// or fails, or the retries run out.
    pub(crate) async fn run_commit<C: Commit>(
        &self,
        warehouse: &Warehouse,
        commit: &mut C,
    ) -> Result<C::Output> {
        let result = self.rounds(warehouse, commit).await;
        if C::METERED {
            self.metrics.commit(outcome(&result));
        }
        result
    }

    async fn rounds<C: Commit>(&self, warehouse: &Warehouse, commit: &mut C) -> Result<C::Output> {
        let attempts = self.settings.commit_max_retries + 1;
        for attempt in 0..attempts {
            if attempt > 0 && C::METERED {
                self.metrics.commit_retry();
            }
            let mut staged = Vec::new();
            let round = commit.round(attempt, &mut staged).await;
            if !matches!(round, Ok(Round::Swap)) {
                discard(warehouse, &staged).await;
            }
            match round? {
                Round::Swap => {}
                Round::Done(output) => return Ok(output),
                Round::Again => continue,
            }
            match self.swap(&staged, C::TOGETHER).await {
                Ok(true) => return commit.committed(staged).await,
                // Someone else committed first; nothing of ours is visible.
                Ok(false) => discard(warehouse, &staged).await,
                Err(err @ CatalogError::BadRequest(_)) => {
                    // A new location is taken: nothing changed.
                    discard(warehouse, &staged).await;
                    return Err(err);
                }
                Err(err) => {
                    // The pointers may or may not have moved: keep the files.
                    return Err(CatalogError::CommitStateUnknown(format!(
                        "{} has unknown outcome: {err}",
                        commit.subject()
                    )));
                }
            }
        }
        Err(CatalogError::CommitFailed(format!(
            "{} lost {attempts} races with concurrent {}; retry",
            commit.subject(),
            C::RIVALS
        )))
    }

    /// Compare-and-set of the staged pointers: one statement for a single
    /// object's version, one database transaction for several (or when
    /// `together`).
    async fn swap<T>(&self, staged: &[Staged<T>], together: bool) -> Result<bool> {
        match staged {
            [one] if !together => match &one.relocated {
                None => {
                    self.store
                        .swap_table_metadata(&one.id, &one.base, &one.docs)
                        .await
                }
                Some(path) => {
                    self.store
                        .swap_relocated(&one.id, &one.base, &one.docs, path)
                        .await
                }
            },
            all => {
                let swaps: Vec<Swap<'_>> = all
                    .iter()
                    .map(|s| {
                        (
                            s.id.as_str(),
                            s.base.as_str(),
                            &s.docs,
                            s.relocated.as_ref(),
                        )
                    })
                    .collect();
                self.store.swap_many(&swaps).await
            }
        }
    }

    /// The normalized location of an object's next version: a moved one
    /// must meet the rules of a new location (outside every other object's
    /// but its own, row `id`); an unmoved one must still be a storage path.
    /// `what` is `table` or `view`.
    pub(super) async fn version_location(
        &self,
        warehouse: &Warehouse,
        levels: &[String],
        id: &str,
        location: &str,
        moved: bool,
        what: &str,
    ) -> Result<StoragePath> {
        if moved {
            let namespace = self.namespace_record(warehouse, levels).await?;
            return self
                .check_new_location(warehouse, &namespace, location, Some(id))
                .await;
        }
        StoragePath::parse(location).map_err(|e| {
            CatalogError::BadRequest(format!(
                "Storage confinement: the {what}'s location {location} is not an allowed \
                 storage path ({e}); move it with set-location"
            ))
        })
    }

    /// Inserts the row of a new table or view whose first metadata file is
    /// `docs.metadata_location` (written by this request when `written`,
    /// and removed again when the database refused the row). An insert that
    /// may have happened is `CommitStateUnknownException`, the file kept.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn insert_new(
        &self,
        kind: ObjectKind,
        warehouse: &Warehouse,
        namespace: &NamespaceRecord,
        levels: &[String],
        name: &str,
        docs: &TableDocs,
        path: &StoragePath,
        written: bool,
    ) -> Result<()> {
        let Err(err) = self
            .store
            .insert_object(kind, &namespace.id, name, docs, path)
            .await
        else {
            return Ok(());
        };
        if !refused_without_writing(&err) {
            let subject = match kind {
                ObjectKind::Table => table_display(levels, name),
                ObjectKind::View => format!("view {}", table_display(levels, name)),
            };
            return Err(CatalogError::CommitStateUnknown(format!(
                "Create of {subject} has unknown outcome: {err}"
            )));
        }
        if written {
            delete_quietly(warehouse, &docs.metadata_location).await;
        }
        Err(match err {
            CatalogError::AlreadyExists(_) => {
                self.name_taken(&namespace.id, levels, name, kind).await
            }
            CatalogError::NoSuchNamespace(_) => CatalogError::NoSuchNamespace(format!(
                "Namespace does not exist: {}",
                display(levels)
            )),
            other => other,
        })
    }
}
