//! Typed catalog errors and their one conversion to the wire `ErrorModel`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use floe_shared::auth::AuthError;
use floe_shared::error::types;
use floe_shared::{ErrorModel, json};

/// Everything a catalog operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// 400: the request is malformed or asks for something invalid.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no usable credentials, or a credential refused.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// 403: the principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: namespace.
    #[error("{0}")]
    NoSuchNamespace(String),
    /// 404: table.
    #[error("{0}")]
    NoSuchTable(String),
    /// 404: view.
    #[error("{0}")]
    NoSuchView(String),
    /// 404: function.
    #[error("{0}")]
    NoSuchFunction(String),
    /// 404: scan plan.
    #[error("{0}")]
    NoSuchPlanId(String),
    /// 404: plan task.
    #[error("{0}")]
    NoSuchPlanTask(String),
    /// 404: warehouse (prefix).
    #[error("{0}")]
    NoSuchWarehouse(String),
    /// 404: no such route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route does not take this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: a spec operation this server does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// 409: namespace, table or warehouse name taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// 409: the namespace (or warehouse) still has children.
    #[error("{0}")]
    NamespaceNotEmpty(String),
    /// 409: a requirement failed; nothing was written.
    #[error("{0}")]
    CommitFailed(String),
    /// 429: a per-principal limit was reached; retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// 413: body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: e.g. a key both updated and removed.
    #[error("{0}")]
    Unprocessable(String),
    /// 500 on a commit whose outcome cannot be known.
    #[error("{0}")]
    CommitStateUnknown(String),
    /// 503: database or storage unavailable.
    #[error("{message}")]
    Unavailable {
        /// What the client reads.
        message: String,
        /// What failed underneath, for the log.
        #[source]
        cause: Option<Cause>,
    },
    /// 503: a storage read, write or delete failed. Its text (paths, what
    /// exists) goes to the log only, never to the client.
    #[error("Storage operation failed: {cause}")]
    Storage {
        /// The storage layer's error.
        #[source]
        cause: Cause,
    },
    /// 500: a bug or an unexpected failure.
    #[error("{message}")]
    Internal {
        /// What went wrong (logged; the client reads a fixed text).
        message: String,
        /// What failed underneath, for the log.
        #[source]
        cause: Option<Cause>,
    },
}

/// The underlying error an error was caused by.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Result of catalog operations.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

impl CatalogError {
    /// Status code and exception type of this error.
    pub fn status_and_type(&self) -> (StatusCode, &'static str) {
        use CatalogError::*;
        match self {
            BadRequest(_) => (StatusCode::BAD_REQUEST, types::BAD_REQUEST),
            Unauthorized(..) => (StatusCode::UNAUTHORIZED, types::NOT_AUTHORIZED),
            Forbidden(_) => (StatusCode::FORBIDDEN, types::FORBIDDEN),
            NoSuchNamespace(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_NAMESPACE),
            NoSuchTable(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_TABLE),
            NoSuchWarehouse(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_WAREHOUSE),
            NoSuchView(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_VIEW),
            NoSuchFunction(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_FUNCTION),
            NoSuchPlanId(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_PLAN_ID),
            NoSuchPlanTask(_) => (StatusCode::NOT_FOUND, types::NO_SUCH_PLAN_TASK),
            NotFound(_) => (StatusCode::NOT_FOUND, types::NOT_FOUND),
            MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, types::METHOD_NOT_ALLOWED),
            Unsupported(_) => (StatusCode::NOT_ACCEPTABLE, types::UNSUPPORTED_OPERATION),
            AlreadyExists(_) => (StatusCode::CONFLICT, types::ALREADY_EXISTS),
            NamespaceNotEmpty(_) => (StatusCode::CONFLICT, types::NAMESPACE_NOT_EMPTY),
            CommitFailed(_) => (StatusCode::CONFLICT, types::COMMIT_FAILED),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, types::PAYLOAD_TOO_LARGE),
            TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, types::TOO_MANY_REQUESTS),
            Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                types::UNPROCESSABLE_ENTITY,
            ),
            CommitStateUnknown(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                types::COMMIT_STATE_UNKNOWN,
            ),
            Unavailable { .. } | Storage { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, types::SERVICE_UNAVAILABLE)
            }
            Internal { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                types::INTERNAL_SERVER_ERROR,
            ),
        }
    }

    /// The same answer for another waiter of one shared operation (a group
    /// commit): status, type and client-visible message; the cause stays
    /// with the original, which the caller logs once.
    pub fn replicate(&self) -> Self {
        use CatalogError::*;
        match self {
            BadRequest(m) => BadRequest(m.clone()),
            Forbidden(m) => Forbidden(m.clone()),
            NoSuchNamespace(m) => NoSuchNamespace(m.clone()),
            NoSuchTable(m) => NoSuchTable(m.clone()),
            NoSuchView(m) => NoSuchView(m.clone()),
            NoSuchFunction(m) => NoSuchFunction(m.clone()),
            NoSuchPlanId(m) => NoSuchPlanId(m.clone()),
            NoSuchPlanTask(m) => NoSuchPlanTask(m.clone()),
            NoSuchWarehouse(m) => NoSuchWarehouse(m.clone()),
            NotFound(m) => NotFound(m.clone()),
            MethodNotAllowed(m) => MethodNotAllowed(m.clone()),
            Unsupported(m) => Unsupported(m.clone()),
            AlreadyExists(m) => AlreadyExists(m.clone()),
            NamespaceNotEmpty(m) => NamespaceNotEmpty(m.clone()),
            CommitFailed(m) => CommitFailed(m.clone()),
            TooManyRequests(m) => TooManyRequests(m.clone()),
            PayloadTooLarge(m) => PayloadTooLarge(m.clone()),
            Unprocessable(m) => Unprocessable(m.clone()),
            CommitStateUnknown(m) => CommitStateUnknown(m.clone()),
            Unavailable { message, .. } => Self::unavailable(message.clone()),
            Storage { cause } => Self::storage(cause.to_string()),
            Unauthorized(_) | Internal { .. } => Self::internal(self.to_string()),
        }
    }

    /// A commit requirement or apply step that no longer holds.
    pub fn commit_failed(err: impl std::fmt::Display) -> Self {
        Self::CommitFailed(format!("Commit failed: {err}"))
    }

    /// Object storage failed (read, write or delete).
    pub fn storage(cause: impl Into<Cause>) -> Self {
        Self::Storage {
            cause: cause.into(),
        }
    }

    /// A failure with no underlying error to keep.
    pub fn internal(message: String) -> Self {
        Self::Internal {
            message,
            cause: None,
        }
    }

    /// A failure caused by `cause`; `message` is what the log reads first.
    pub fn internal_with(message: String, cause: impl Into<Cause>) -> Self {
        Self::Internal {
            message,
            cause: Some(cause.into()),
        }
    }

    /// The database, storage or a service the catalog needs is out of reach.
    pub fn unavailable(message: String) -> Self {
        Self::Unavailable {
            message,
            cause: None,
        }
    }

    /// As [`CatalogError::unavailable`], keeping what failed underneath.
    pub fn unavailable_with(message: String, cause: impl Into<Cause>) -> Self {
        Self::Unavailable {
            message,
            cause: Some(cause.into()),
        }
    }

    /// An update or metadata that the `iceberg` crate refuses.
    pub fn invalid_metadata(err: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("Invalid table metadata change: {err}"))
    }
}

impl From<sqlx::Error> for CatalogError {
    fn from(err: sqlx::Error) -> Self {
        if unavailable(&err) {
            CatalogError::unavailable_with(format!("Catalog database unavailable: {err}"), err)
        } else {
            CatalogError::internal_with(format!("Catalog database error: {err}"), err)
        }
    }
}

/// Whether `err` says the database is out of reach rather than that a
/// statement is wrong: no connection, a connection lost, or the server
/// shutting down, starting up or out of connections (PostgreSQL's SQLSTATE
/// classes 08 and 53, and 57P01 to 57P03).
fn unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }),
        _ => false,
    }
}

impl From<serde_json::Error> for CatalogError {
    fn from(err: serde_json::Error) -> Self {
        CatalogError::internal_with(format!("Serialization error: {err}"), err)
    }
}

impl CatalogError {
    /// The ErrorModel a client sees. A server error's details go to the log
    /// once, under an id the client can quote; its message is a fixed text
    /// unless it says only that the service is unavailable.
    pub fn to_model(&self) -> ErrorModel {
        let (status, r#type) = self.status_and_type();
        let mut model = ErrorModel::new(status.as_u16(), r#type, self.to_string());
        if status.is_server_error() {
            let id = uuid::Uuid::now_v7();
            tracing::error!(error_id = %id, status = status.as_u16(), error = %self, "request failed");
            if !matches!(self, CatalogError::Unavailable { .. }) {
                model.message = format!("{} (error id {id})", public_message(self));
            }
            model.stack = vec![format!("error-id: {id}")];
        }
        model
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_type();
        let model = self.to_model();
        let body = json::to_json_bytes(&model.into_response_body()).unwrap_or_default();
        let mut response = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let CatalogError::Unauthorized(refused) = &self {
            let challenge = if refused.presented() {
                floe_shared::auth::WWW_AUTHENTICATE_INVALID
            } else {
                floe_shared::auth::WWW_AUTHENTICATE
            };
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

fn public_message(err: &CatalogError) -> &'static str {
    match err {
        CatalogError::CommitStateUnknown(_) => "Commit state unknown",
        CatalogError::Storage { .. } => "Storage operation failed",
        _ => "Internal server error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_the_client_visible_type() {
        let cases = [
            (
                CatalogError::BadRequest("x".into()),
                400,
                "BadRequestException",
            ),
            (
                CatalogError::NoSuchTable("x".into()),
                404,
                "NoSuchTableException",
            ),
            (
                CatalogError::NoSuchNamespace("x".into()),
                404,
                "NoSuchNamespaceException",
            ),
            (
                CatalogError::AlreadyExists("x".into()),
                409,
                "AlreadyExistsException",
            ),
            (
                CatalogError::NamespaceNotEmpty("x".into()),
                409,
                "NamespaceNotEmptyException",
            ),
            (
                CatalogError::CommitFailed("x".into()),
                409,
                "CommitFailedException",
            ),
            (
                CatalogError::Unauthorized(AuthError::Revoked),
                401,
                "NotAuthorizedException",
            ),
            (
                CatalogError::Forbidden("x".into()),
                403,
                "ForbiddenException",
            ),
            (
                CatalogError::Unprocessable("x".into()),
                422,
                "UnprocessableEntityException",
            ),
            (
                CatalogError::Unsupported("x".into()),
                406,
                "UnsupportedOperationException",
            ),
            (
                CatalogError::CommitStateUnknown("x".into()),
                500,
                "CommitStateUnknownException",
            ),
        ];
        for (err, code, name) in cases {
            let (status, ty) = err.status_and_type();
            assert_eq!((status.as_u16(), ty), (code, name));
        }
    }

    #[tokio::test]
    async fn storage_errors_never_reach_the_client() {
        let err = CatalogError::storage("NotFound: /etc/shadow does not exist");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("Storage operation failed (error id"),
            "{text}"
        );
        assert!(!text.contains("shadow"), "{text}");
    }

    #[test]
    fn pool_exhaustion_is_unavailable_not_internal() {
        let err = CatalogError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(err.status_and_type().0, StatusCode::SERVICE_UNAVAILABLE);
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(cause, Some(sqlx::Error::PoolTimedOut.to_string()));
    }
}
