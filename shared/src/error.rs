//! The spec's `IcebergErrorResponse`: the only error shape that goes on the wire.

use serde::{Deserialize, Serialize};

/// `type` names that clients dispatch on. Java and Python clients map these
/// exact strings (and the status code) to their own exception classes.
pub mod types {
    /// 400: malformed request, unknown update or requirement, invalid identifier.
    pub const BAD_REQUEST: &str = "BadRequestException";
    /// 401: missing or invalid credentials.
    pub const NOT_AUTHORIZED: &str = "NotAuthorizedException";
    /// 403: the principal may not do this.
    pub const FORBIDDEN: &str = "ForbiddenException";
    /// 404: the namespace does not exist.
    pub const NO_SUCH_NAMESPACE: &str = "NoSuchNamespaceException";
    /// 404: the table does not exist.
    pub const NO_SUCH_TABLE: &str = "NoSuchTableException";
    /// 404: the view does not exist.
    pub const NO_SUCH_VIEW: &str = "NoSuchViewException";
    /// 404: the function does not exist.
    pub const NO_SUCH_FUNCTION: &str = "NoSuchFunctionException";
    /// 404: the scan plan does not exist (or expired).
    pub const NO_SUCH_PLAN_ID: &str = "NoSuchPlanIdException";
    /// 404: the plan task does not exist (or expired).
    pub const NO_SUCH_PLAN_TASK: &str = "NoSuchPlanTaskException";
    /// 404: the warehouse does not exist.
    pub const NO_SUCH_WAREHOUSE: &str = "NoSuchWarehouseException";
    /// 404: no such route.
    pub const NOT_FOUND: &str = "NotFoundException";
    /// 405: the route exists but not for this method.
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowedException";
    /// 406: the server does not support this operation.
    pub const UNSUPPORTED_OPERATION: &str = "UnsupportedOperationException";
    /// 409: a namespace, table or view with this name exists.
    pub const ALREADY_EXISTS: &str = "AlreadyExistsException";
    /// 409: the namespace still holds tables, views or namespaces.
    pub const NAMESPACE_NOT_EMPTY: &str = "NamespaceNotEmptyException";
    /// 409: a commit requirement failed; nothing was written.
    pub const COMMIT_FAILED: &str = "CommitFailedException";
    /// 413: the request body is over the configured limit.
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLargeException";
    /// 415: the body is not JSON.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UnsupportedMediaTypeException";
    /// 422: a key is both updated and removed.
    pub const UNPROCESSABLE_ENTITY: &str = "UnprocessableEntityException";
    /// 429: a limit on the caller's requests was reached; retry later.
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequestsException";
    /// 500: the outcome of a commit is unknown.
    pub const COMMIT_STATE_UNKNOWN: &str = "CommitStateUnknownException";
    /// 500: an unexpected server-side failure.
    pub const INTERNAL_SERVER_ERROR: &str = "InternalServerError";
    /// 503: a dependency (database, storage) is unavailable.
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailableException";
}

/// JSON error payload: `{"message", "type", "code"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorModel {
    /// Human-readable message.
    pub message: String,
    /// The exception name clients dispatch on (see [`types`]).
    #[serde(rename = "type")]
    pub r#type: String,
    /// The HTTP status code, repeated.
    pub code: u16,
    /// Optional detail lines; Floe sends an error id here for 5xx, never a stack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
}

/// The wrapper every non-2xx body uses: `{"error": ErrorModel}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergErrorResponse {
    /// The error itself.
    pub error: ErrorModel,
}

impl ErrorModel {
    /// Builds an error model from its three required parts.
    pub fn new(code: u16, r#type: &str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            r#type: r#type.to_string(),
            code,
            stack: Vec::new(),
        }
    }

    /// Wraps this model in the response envelope.
    pub fn into_response_body(self) -> IcebergErrorResponse {
        IcebergErrorResponse { error: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_matches_the_spec() {
        let body = ErrorModel::new(404, types::NO_SUCH_TABLE, "Table does not exist: a.b")
            .into_response_body();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {"message": "Table does not exist: a.b",
                "type": "NoSuchTableException", "code": 404}})
        );
        let back: IcebergErrorResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, body);
    }
}
