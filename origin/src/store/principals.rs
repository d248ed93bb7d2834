//! Principals, their grants and API keys, and the log of principal changes
//! every origin polls.

use sqlx::Row;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;

use floe_shared::auth::{ApiKeyRecord, Grant, Principal};

use super::exec::{constraint, statement, write_in};
use super::{Store, join_levels, now_ms, now_secs, split_levels};
use crate::error::{CatalogError, Result};

/// A principal row with its grants.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalRecord {
    /// The principal (grants, state, secret hash).
    pub principal: Principal,
    /// External OpenID Connect subject mapped to it.
    pub oidc_subject: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
}

impl Store {
    /// Inserts a principal and its grants in one transaction.
    pub async fn insert_principal(
        &self,
        id: &str,
        secret_hash: Option<&str>,
        oidc_subject: Option<&str>,
        grants: &[Grant],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let query = statement(
            "INSERT INTO principals (id, secret_hash, oidc_subject, disabled, not_before, created_at, updated_at) \
             VALUES ($1, $2, $3, 0, 0, $4, $4)",
            &[
                id.into(),
                secret_hash.into(),
                oidc_subject.into(),
                now_ms().into(),
            ],
        );
        write_in(&mut *tx, query).await.map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("Client or subject already exists: {id}")),
                || CatalogError::internal("unexpected foreign key on principals".into()),
            )
        })?;
        for grant in grants {
            Self::upsert_grant(&mut tx, id, grant).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_grant(conn: &mut sqlx::AnyConnection, id: &str, grant: &Grant) -> Result<()> {
        let namespace = join_levels(&grant.namespace);
        let args = [
            id.into(),
            (&grant.warehouse).into(),
            (&namespace).into(),
            grant.role.as_str().into(),
        ];
        let query = statement(
            "INSERT INTO grants (principal_id, warehouse, namespace, role) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (principal_id, warehouse, namespace) DO UPDATE SET role = excluded.role",
            &args,
        );
        write_in(&mut *conn, query).await.map_err(|e| {
            constraint(
                e,
                || CatalogError::internal("unexpected unique violation on grants".into()),
                || CatalogError::NotFound(format!("Client does not exist: {id}")),
            )
        })?;
        Ok(())
    }

    /// Grants (or changes) a role; NotFound when the principal does not exist.
    pub async fn grant(&self, id: &str, grant: &Grant) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        Self::upsert_grant(&mut conn, id, grant).await?;
        self.touch_principal(id, false).await.map(|_| ())
    }

    /// Removes a grant; false when there was none.
    pub async fn revoke_grant(
        &self,
        id: &str,
        warehouse: &str,
        namespace: &[String],
    ) -> Result<bool> {
        let namespace = join_levels(namespace);
        let revoked = self
            .write(
                "DELETE FROM grants WHERE principal_id = $1 AND warehouse = $2 AND namespace = $3",
                &[id.into(), warehouse.into(), (&namespace).into()],
            )
            .await?;
        if revoked {
            self.touch_principal(id, false).await?;
        }
        Ok(revoked)
    }

    /// Marks the principal changed; `revoke` also ends every token minted so
    /// far (a new credential generation, and `not_before` for external tokens).
    async fn touch_principal(&self, id: &str, revoke: bool) -> Result<bool> {
        self.write(
            "UPDATE principals SET updated_at = $1, \
             not_before = CASE WHEN $2 = 1 THEN $3 ELSE not_before END, \
             generation = CASE WHEN $2 = 1 THEN generation + 1 ELSE generation END \
             WHERE id = $4",
            &[
                now_ms().into(),
                i64::from(revoke).into(),
                now_secs().into(),
                id.into(),
            ],
        )
        .await
    }

    /// Replaces the client secret and revokes every token minted before
    /// (a new credential generation).
    pub async fn set_principal_secret(&self, id: &str, secret_hash: &str) -> Result<bool> {
        self.write(
            "UPDATE principals SET secret_hash = $1, not_before = $2, updated_at = $3, \
             generation = generation + 1 WHERE id = $4",
            &[
                secret_hash.into(),
                now_secs().into(),
                now_ms().into(),
                id.into(),
            ],
        )
        .await
    }

    /// Disables or enables a principal; disabling also revokes its tokens
    /// (a new credential generation), so enabling does not bring them back.
    pub async fn set_principal_disabled(&self, id: &str, disabled: bool) -> Result<bool> {
        self.write(
            "UPDATE principals SET disabled = $1, not_before = CASE WHEN $1 = 1 THEN $2 ELSE not_before END, \
             generation = CASE WHEN $1 = 1 THEN generation + 1 ELSE generation END, \
             updated_at = $3 WHERE id = $4",
            &[i64::from(disabled).into(), now_secs().into(), now_ms().into(), id.into()],
        )
        .await
    }

    /// Revokes every token of the principal minted so far (a new credential
    /// generation; external tokens issued up to this second).
    pub async fn revoke_tokens(&self, id: &str) -> Result<bool> {
        self.touch_principal(id, true).await
    }

    fn principal_from_row(row: &AnyRow) -> Result<PrincipalRecord> {
        Ok(PrincipalRecord {
            principal: Principal {
                id: row.try_get("id")?,
                disabled: row.try_get::<i64, _>("disabled")? != 0,
                not_before: u64::try_from(row.try_get::<i64, _>("not_before")?).unwrap_or(0),
                generation: u64::try_from(row.try_get::<i64, _>("generation")?).unwrap_or(0),
                grants: Vec::new(),
                secret_hash: row.try_get("secret_hash")?,
                default_warehouse: String::new(),
            },
            oidc_subject: row.try_get("oidc_subject")?,
            created_at: row.try_get("created_at")?,
        })
    }

    async fn with_grants(&self, mut record: PrincipalRecord) -> Result<PrincipalRecord> {
        let rows = sqlx::query(
            "SELECT warehouse, namespace, role FROM grants WHERE principal_id = $1 \
             ORDER BY warehouse, namespace",
        )
        .bind(&record.principal.id)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let namespace: String = row.try_get("namespace")?;
            let role: String = row.try_get("role")?;
            record.principal.grants.push(Grant {
                warehouse: row.try_get("warehouse")?,
                namespace: if namespace.is_empty() {
                    Vec::new()
                } else {
                    split_levels(&namespace)
                },
                role: role.parse().map_err(|e: floe_shared::auth::UnknownRole| {
                    CatalogError::internal(format!("corrupt grant: {e}"))
                })?,
            });
        }
        Ok(record)
    }

    const PRINCIPAL_COLUMNS: &str = "SELECT id, secret_hash, oidc_subject, disabled, not_before, generation, created_at FROM principals";

    /// One principal by id (client id), with grants.
    pub async fn principal(&self, id: &str) -> Result<Option<PrincipalRecord>> {
        self.principal_where("id", id).await
    }

    /// The principal mapped to an external subject, with grants.
    pub async fn principal_by_subject(&self, subject: &str) -> Result<Option<PrincipalRecord>> {
        self.principal_where("oidc_subject", subject).await
    }

    /// The principal whose `column` holds `value`, with grants.
    async fn principal_where(&self, column: &str, value: &str) -> Result<Option<PrincipalRecord>> {
        let sql = format!("{} WHERE {column} = $1", Self::PRINCIPAL_COLUMNS);
        let row = statement(&sql, &[value.into()])
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(
                self.with_grants(Self::principal_from_row(&row)?).await?,
            )),
            None => Ok(None),
        }
    }

    /// Every principal by id, with grants.
    pub async fn list_principals(&self) -> Result<Vec<PrincipalRecord>> {
        let rows = sqlx::query(&format!("{} ORDER BY id", Self::PRINCIPAL_COLUMNS))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.with_grants(Self::principal_from_row(&row)?).await?);
        }
        Ok(out)
    }

    /// Stores a new API key of a principal.
    pub async fn insert_api_key(
        &self,
        id: &str,
        principal: &str,
        name: &str,
        secret_hash: &str,
    ) -> Result<()> {
        let query = statement(
            "INSERT INTO api_keys (id, principal_id, name, secret_hash, revoked, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5)",
            &[
                id.into(),
                principal.into(),
                name.into(),
                secret_hash.into(),
                now_ms().into(),
            ],
        );
        write_in(&self.pool, query).await.map_err(|e| {
            constraint(
                e,
                || CatalogError::AlreadyExists(format!("API key id collision: {id}")),
                || CatalogError::NotFound(format!("Client does not exist: {principal}")),
            )
        })?;
        Ok(())
    }

    /// One API key.
    pub async fn api_key(&self, id: &str) -> Result<Option<(ApiKeyRecord, String)>> {
        let row = sqlx::query(
            "SELECT id, principal_id, name, secret_hash, revoked FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Self::api_key_from_row(&row)).transpose()
    }

    fn api_key_from_row(row: &AnyRow) -> Result<(ApiKeyRecord, String)> {
        Ok((
            ApiKeyRecord {
                id: row.try_get("id")?,
                principal: row.try_get("principal_id")?,
                secret_hash: row.try_get("secret_hash")?,
                revoked: row.try_get::<i64, _>("revoked")? != 0,
            },
            row.try_get("name")?,
        ))
    }

    /// Every API key (with its name), by principal then id.
    pub async fn list_api_keys(&self) -> Result<Vec<(ApiKeyRecord, String)>> {
        let rows = sqlx::query(
            "SELECT id, principal_id, name, secret_hash, revoked FROM api_keys ORDER BY principal_id, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::api_key_from_row).collect()
    }

    /// Replaces the secret of an unrevoked key; false when none.
    pub async fn set_api_key_secret(&self, id: &str, secret_hash: &str) -> Result<bool> {
        self.write(
            "UPDATE api_keys SET secret_hash = $1, updated_at = $2 WHERE id = $3 AND revoked = 0",
            &[secret_hash.into(), now_ms().into(), id.into()],
        )
        .await
    }

    /// Revokes a key; false when it does not exist.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool> {
        self.write(
            "UPDATE api_keys SET revoked = 1, updated_at = $1 WHERE id = $2",
            &[now_ms().into(), id.into()],
        )
        .await
    }

    /// Appends a principal change to the log every origin polls. The row is
    /// numbered `MAX(seq) + 1` by the inserting statement, so it is only
    /// numbered after every lower row committed; two writers racing for a
    /// number lose to the unique key and try again.
    pub async fn record_auth_change(
        &self,
        principal: &str,
        api_key: Option<&str>,
        origin: &str,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            let inserted = sqlx::query(
                "INSERT INTO auth_changes (seq, principal_id, api_key_id, origin, created_at) \
                 SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM auth_changes \
                 RETURNING seq",
            )
            .bind(principal)
            .bind(api_key)
            .bind(origin)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => return Ok(row.try_get("seq")?),
                Err(sqlx::Error::Database(db))
                    if db.kind() == ErrorKind::UniqueViolation && attempt < 16 =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The number of the last principal change (0 when none).
    pub async fn last_auth_change(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM auth_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("seq")?)
    }

    /// Principal changes after `seq`, oldest first, at most `limit`.
    pub async fn auth_changes_since(&self, seq: i64, limit: i64) -> Result<Vec<AuthChange>> {
        let changes = sqlx::query_as(
            "SELECT seq, principal_id, api_key_id, origin FROM auth_changes \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(changes)
    }

    /// Drops all but the last `keep` principal changes (the last one always
    /// stays, so numbering never restarts).
    pub async fn prune_auth_changes(&self, keep: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM auth_changes WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM auth_changes) - $1",
        )
        .bind(keep.max(1))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// One row of the principal change log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuthChange {
    /// Its number: every origin reads the rows after the last it saw.
    pub seq: i64,
    /// The principal changed.
    #[sqlx(rename = "principal_id")]
    pub principal: String,
    /// The API key changed, if one was.
    #[sqlx(rename = "api_key_id")]
    pub api_key: Option<String>,
    /// The process that made the change.
    pub origin: String,
}
