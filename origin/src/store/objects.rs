//! Tables and views (one name space, one `tables` table): reads, creates
//! that claim a storage location, pointer compare-and-sets, renames, drops,
//! and the query for locations that overlap.

use sqlx::{FromRow, Row};

use super::exec::{Arg, constraint, statement, write_in};
use super::idempotency::current_key;
use super::{Store, join_levels, new_id, now_ms};
use crate::error::{CatalogError, Result};
use crate::storage::StoragePath;

/// The compare-and-set of a table's metadata pointer ($5 = id, $6 = expected location).
const SWAP_POINTER: &str = "UPDATE tables SET metadata_location = $1, metadata = $2, \
     metadata_refs = $3, version = version + 1, updated_at = $4 \
     WHERE id = $5 AND metadata_location = $6";

/// The arguments of [`SWAP_POINTER`]: move object `id` from `expected` to `docs`.
fn swap_args<'a>(id: &'a str, expected: &'a str, docs: &'a TableDocs, now: i64) -> [Arg<'a>; 6] {
    [
        (&docs.metadata_location).into(),
        (&docs.metadata).into(),
        docs.metadata_refs.as_deref().into(),
        now.into(),
        id.into(),
        expected.into(),
    ]
}

/// A table row: its pointer and the current metadata document beside it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TableRecord {
    /// Surrogate id.
    pub id: String,
    /// Owning namespace.
    pub namespace_id: String,
    /// Table name.
    pub name: String,
    /// Location of the current metadata file.
    pub metadata_location: String,
    /// The current metadata document (JSON), or its `snapshots=refs` form when asked.
    pub metadata: String,
    /// Commit counter.
    pub version: i64,
}

/// What a catalog object is: tables and views share one name space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An Iceberg table.
    Table,
    /// An Iceberg view.
    View,
}

impl ObjectKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::View => "view",
        }
    }

    fn parse(stored: &str) -> Result<Self> {
        match stored {
            "table" => Ok(Self::Table),
            "view" => Ok(Self::View),
            other => Err(CatalogError::internal(format!(
                "unknown object kind in database: {other}"
            ))),
        }
    }
}

/// A new metadata version to store.
#[derive(Debug, Clone)]
pub struct TableDocs {
    /// Location of the metadata file just written.
    pub metadata_location: String,
    /// Full metadata JSON.
    pub metadata: String,
    /// `snapshots=refs` JSON when it differs from the full document.
    pub metadata_refs: Option<String>,
}

/// The 400 for a location another live object's location overlaps.
pub(crate) fn overlap_error(location: &str) -> CatalogError {
    CatalogError::BadRequest(format!(
        "Storage confinement: location {location} overlaps the location of another table or \
         view (a location may neither contain nor lie inside another's)"
    ))
}

/// One compare-and-set of [`Store::swap_many`]: object id, expected
/// metadata location, the new documents, and the new location when it moves.
pub type Swap<'a> = (&'a str, &'a str, &'a TableDocs, Option<&'a StoragePath>);

/// The query for live objects overlapping `location` (its binds, in order):
/// every key of a path containing it, or any key in `[key, key')` where
/// `key'` follows every key that starts with `key`.
fn overlap_query(location: &StoragePath, except: Option<&str>) -> (String, Vec<String>) {
    let ancestors = location.ancestor_keys();
    let key = location.key();
    let mut upper = key.clone();
    upper.pop();
    upper.push('0'); // the byte after '/'
    let mut binds = Vec::with_capacity(ancestors.len() + 3);
    let mut placeholders = Vec::with_capacity(ancestors.len());
    for ancestor in ancestors {
        binds.push(ancestor);
        placeholders.push(format!("${}", binds.len()));
    }
    binds.push(key);
    let low = binds.len();
    binds.push(upper);
    let high = binds.len();
    let mut sql = format!(
        "SELECT location_key FROM tables WHERE (location_key IN ({}) \
         OR (location_key >= ${low} AND location_key < ${high}))",
        placeholders.join(", ")
    );
    if let Some(except) = except {
        binds.push(except.to_string());
        sql.push_str(&format!(" AND id <> ${}", binds.len()));
    }
    (sql, binds)
}

impl Store {
    /// One table with its full document (or its `snapshots=refs` form).
    pub async fn table(
        &self,
        warehouse_id: &str,
        namespace: &[String],
        name: &str,
        refs_only: bool,
    ) -> Result<Option<TableRecord>> {
        self.object(ObjectKind::Table, warehouse_id, namespace, name, refs_only)
            .await
    }

    /// One view with its metadata document.
    pub async fn view(
        &self,
        warehouse_id: &str,
        namespace: &[String],
        name: &str,
    ) -> Result<Option<TableRecord>> {
        self.object(ObjectKind::View, warehouse_id, namespace, name, false)
            .await
    }

    /// What a name of a namespace is, if anything.
    pub async fn kind_of(&self, namespace_id: &str, name: &str) -> Result<Option<ObjectKind>> {
        let row = statement(
            "SELECT kind FROM tables WHERE namespace_id = $1 AND name = $2",
            &[namespace_id.into(), name.into()],
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => ObjectKind::parse(&row.try_get::<String, _>("kind")?).map(Some),
        }
    }

    async fn object(
        &self,
        kind: ObjectKind,
        warehouse_id: &str,
        namespace: &[String],
        name: &str,
        refs_only: bool,
    ) -> Result<Option<TableRecord>> {
        let document = if refs_only {
            "COALESCE(t.metadata_refs, t.metadata)"
        } else {
            "t.metadata"
        };
        let sql = format!(
            "SELECT t.id, t.namespace_id, t.name, t.metadata_location, {document} AS metadata, \
             t.version FROM tables t JOIN namespaces n ON t.namespace_id = n.id \
             WHERE n.warehouse_id = $1 AND n.name = $2 AND t.name = $3 AND t.kind = $4"
        );
        let namespace = join_levels(namespace);
        let args = [
            warehouse_id.into(),
            (&namespace).into(),
            name.into(),
            kind.as_str().into(),
        ];
        let row = statement(&sql, &args).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(TableRecord::from_row).transpose()?)
    }

    /// Creates a table row pointing at an already written metadata file.
    pub async fn insert_table(
        &self,
        namespace_id: &str,
        name: &str,
        docs: &TableDocs,
        location: &StoragePath,
    ) -> Result<String> {
        self.insert_object(ObjectKind::Table, namespace_id, name, docs, location)
            .await
    }

    /// Creates a table or view row pointing at an already written metadata
    /// file, claiming `location`. `AlreadyExists` when the name is taken, by
    /// either kind; `BadRequest` when the location overlaps another live
    /// object's. Claim and insert are one transaction behind the locations
    /// lock, so two creates never both find a place free.
    pub async fn insert_object(
        &self,
        kind: ObjectKind,
        namespace_id: &str,
        name: &str,
        docs: &TableDocs,
        location: &StoragePath,
    ) -> Result<String> {
        let id = new_id();
        let now = now_ms();
        let key = location.key();
        let mut tx = self.pool.begin().await?;
        Self::claim(&mut tx, location, None).await?;
        let query = statement(
            "INSERT INTO tables (id, namespace_id, name, kind, metadata_location, metadata, \
             metadata_refs, version, created_at, updated_at, location_key) \
             VALUES ($1, $2, $3, $8, $4, $5, $6, 1, $7, $7, $9)",
            &[
                (&id).into(),
                namespace_id.into(),
                name.into(),
                (&docs.metadata_location).into(),
                (&docs.metadata).into(),
                docs.metadata_refs.as_deref().into(),
                now.into(),
                kind.as_str().into(),
                (&key).into(),
            ],
        );
        write_in(&mut *tx, query).await.map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Name already taken: {name}")),
                || CatalogError::NoSuchNamespace("Namespace does not exist".into()),
            )
        })?;
        if let Some(key) = current_key() {
            Self::mark_applied(&mut tx, &key, &docs.metadata_location).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Takes the locations lock and fails with `BadRequest` when `location`
    /// overlaps the location of a live object other than `except`.
    async fn claim(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        location: &StoragePath,
        except: Option<&str>,
    ) -> Result<()> {
        // A write first: PostgreSQL queues on the row, SQLite takes its
        // write lock, so the check below sees every earlier claim.
        sqlx::query("UPDATE locks SET taken = taken + 1 WHERE name = 'locations'")
            .execute(&mut **tx)
            .await?;
        let (sql, binds) = overlap_query(location, except);
        let args: Vec<Arg<'_>> = binds.iter().map(Arg::from).collect();
        if statement(&sql, &args)
            .fetch_optional(&mut **tx)
            .await?
            .is_some()
        {
            return Err(overlap_error(&location.to_string()));
        }
        Ok(())
    }

    /// Locations of the live objects, other than `except`, whose location
    /// contains `location` or lies inside it.
    pub async fn overlapping(
        &self,
        location: &StoragePath,
        except: Option<&str>,
    ) -> Result<Vec<StoragePath>> {
        let (sql, binds) = overlap_query(location, except);
        let args: Vec<Arg<'_>> = binds.iter().map(Arg::from).collect();
        let rows = statement(&sql, &args).fetch_all(&self.pool).await?;
        let mut found = Vec::new();
        for row in rows {
            let key: String = row.try_get("location_key")?;
            found.extend(StoragePath::from_key(&key));
        }
        Ok(found)
    }

    /// Table names of a namespace, by name, after `after`, at most `limit`.
    pub async fn list_tables(
        &self,
        namespace_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>> {
        self.list_objects(ObjectKind::Table, namespace_id, after, limit)
            .await
    }

    /// Names of a namespace's tables or views, by name, after `after`, at
    /// most `limit`.
    pub async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace_id: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<String>> {
        let args = [
            namespace_id.into(),
            after.into(),
            limit.map_or(i64::MAX, i64::from).into(),
            kind.as_str().into(),
        ];
        let rows = statement(
            "SELECT name FROM tables WHERE namespace_id = $1 AND kind = $4 \
             AND ($2 IS NULL OR name > $2) ORDER BY name LIMIT $3",
            &args,
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("name")?))
            .collect()
    }

    /// Compare-and-set of the metadata pointer: true when the table still
    /// pointed at `expected_location` and now points at the new version.
    pub async fn swap_table_metadata(
        &self,
        id: &str,
        expected_location: &str,
        docs: &TableDocs,
    ) -> Result<bool> {
        let args = swap_args(id, expected_location, docs, now_ms());
        let swapped = self
            .effect(statement(SWAP_POINTER, &args), &docs.metadata_location)
            .await?;
        Ok(swapped)
    }

    /// Compare-and-set of a table's pointer for a group of commits: as
    /// [`Store::swap_table_metadata`], and in the same database transaction
    /// every keyed request of the group (`keys`, their Idempotency-Keys) is
    /// marked as applied.
    pub async fn swap_table_metadata_for(
        &self,
        id: &str,
        expected_location: &str,
        docs: &TableDocs,
        keys: &[String],
    ) -> Result<bool> {
        let args = swap_args(id, expected_location, docs, now_ms());
        if keys.is_empty() {
            return Ok(write_in(&self.pool, statement(SWAP_POINTER, &args)).await?);
        }
        let mut tx = self.pool.begin().await?;
        if !write_in(&mut *tx, statement(SWAP_POINTER, &args)).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        for key in keys {
            Self::mark_applied(&mut tx, key, &docs.metadata_location).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Compare-and-set of the pointer of an object whose location moves to
    /// `location`: the new location is claimed in the same transaction
    /// (`BadRequest`, nothing changed, when another object holds it).
    pub async fn swap_relocated(
        &self,
        id: &str,
        expected_location: &str,
        docs: &TableDocs,
        location: &StoragePath,
    ) -> Result<bool> {
        self.swap_many(&[(id, expected_location, docs, Some(location))])
            .await
    }

    /// Compare-and-set of several pointers in one database transaction:
    /// true when every table still pointed at its expected location and all
    /// moved; false (and nothing changed) otherwise.
    /// A swap with a location moves the object there, claimed as
    /// [`Store::insert_object`] claims.
    pub async fn swap_many(&self, swaps: &[Swap<'_>]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // Each new location is claimed, then recorded, before the next is
        // checked: two tables of one transaction never get one place.
        for (id, _, _, location) in swaps {
            if let Some(location) = location {
                Self::claim(&mut tx, location, Some(id)).await?;
                let key = location.key();
                let args = [(&key).into(), (*id).into()];
                let query = statement("UPDATE tables SET location_key = $1 WHERE id = $2", &args);
                query.execute(&mut *tx).await?;
            }
        }
        for (id, expected, docs, _) in swaps {
            // Writes only: SQLite takes its write lock at the first statement.
            let args = swap_args(id, expected, docs, now);
            if !write_in(&mut *tx, statement(SWAP_POINTER, &args)).await? {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        if let Some(key) = current_key() {
            let mark = match swaps {
                [(_, _, docs, _)] => docs.metadata_location.as_str(),
                _ => "",
            };
            Self::mark_applied(&mut tx, &key, mark).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a table row; false when it was already gone.
    pub async fn delete_table(&self, id: &str) -> Result<bool> {
        let query = statement("DELETE FROM tables WHERE id = $1", &[id.into()]);
        Ok(self.effect(query, "").await?)
    }

    /// Deletes a table row if it still points at `location`; false otherwise
    /// (gone, or a commit moved it meanwhile).
    pub async fn delete_table_at(&self, id: &str, location: &str) -> Result<bool> {
        self.write(
            "DELETE FROM tables WHERE id = $1 AND metadata_location = $2",
            &[id.into(), location.into()],
        )
        .await
    }

    /// Moves a table to another namespace and/or name.
    pub async fn rename_table(
        &self,
        id: &str,
        namespace_id: &str,
        name: &str,
        display: &str,
    ) -> Result<bool> {
        let query = statement(
            "UPDATE tables SET namespace_id = $1, name = $2, updated_at = $3 WHERE id = $4",
            &[namespace_id.into(), name.into(), now_ms().into(), id.into()],
        );
        self.effect(query, "").await.map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Name already taken: {display}")),
                || CatalogError::NoSuchNamespace(format!("Namespace does not exist: {display}")),
            )
        })
    }
}
