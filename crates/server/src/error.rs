//! Every error the API answers with: `{"error": {"code", "message", "field"}}` and a status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tally_core::FieldError;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
    pub(crate) retry_after_secs: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub(crate) fn bad_request(e: FieldError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, &e.code, e.message).field(e.field)
    }

    pub(crate) fn overloaded(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message);
        e.retry_after_secs = Some(1);
        e
    }

    pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; the server log has the details"),
        )
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        json!({"code": self.code, "message": self.message, "field": self.field})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.body() }))).into_response();
        if let Some(s) = self.retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<tally_store::StoreError> for ApiError {
    fn from(e: tally_store::StoreError) -> Self {
        use tally_store::StoreError as S;
        match e {
            S::InvalidQuery(m) => Self::new(StatusCode::BAD_REQUEST, "invalid_query", m),
            S::ResourcesExhausted(m) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "resources_exhausted", m)
            }
            S::Overloaded(m) => Self::overloaded(m),
            other => Self::internal("the store failed", other),
        }
    }
}

impl From<tally_query::QueryError> for ApiError {
    fn from(e: tally_query::QueryError) -> Self {
        match e {
            tally_query::QueryError::Invalid(f) => Self::bad_request(f),
            tally_query::QueryError::Store(s) => s.into(),
        }
    }
}

/// Reads a whole JSON body of at most `limit` bytes and parses it into `T`.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    })?;
    parse_json(&bytes)
}

/// Parses a JSON body into `T`, naming the path of the offending field on failure.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "malformed_json"
        } else {
            "invalid_body"
        };
        let field = if path == "." { String::new() } else { path };
        ApiError::new(StatusCode::BAD_REQUEST, code, inner.to_string()).field(field)
    })
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that HTTP method",
    )
}
