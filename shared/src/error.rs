//! The one error type of the service and the HTTP layer. Each variant knows its OAuth error
//! code and HTTP status; [`crate::http`] turns it into a JSON response in one place.
//! Descriptions are shown to callers, so they never contain a token, password or secret.
//! Internal and unavailable errors also carry a private detail (what the store or key
//! service said) that their `Display` never shows; conversions here only convert, and the
//! layer that answers (the HTTP [`crate::http::handle`], the authorizer, rotate-keys) logs
//! that detail once.

use crate::keys::KeyError;
use crate::store::StoreError;
use crate::token::TokenError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Missing or malformed parameters (RFC 6749 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Wrong credentials, or a refresh token that is expired, revoked, spent or unknown.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("unsupported grant_type {0:?}")]
    UnsupportedGrantType(String),
    /// Client authentication failed (RFC 6749 5.2: 401 with `WWW-Authenticate: Basic`).
    #[error("{0}")]
    InvalidClient(String),
    /// An authenticated client asked for a grant it may not use (RFC 6749 5.2).
    #[error("{0}")]
    UnauthorizedClient(String),
    /// A bearer token that does not verify (RFC 6750: 401 with WWW-Authenticate).
    #[error("{0}")]
    InvalidToken(TokenError),
    /// A bearer token without the scope the route needs (RFC 6750: 403).
    #[error("this needs the {0:?} scope")]
    InsufficientScope(&'static str),
    /// Refused by policy (CSRF guard, CORS preflight from an unknown origin).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already (a username taken).
    #[error("{0}")]
    Conflict(String),
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The `Allow` header: the methods the path does have.
        allow: String,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    /// Login limiting: too many failed logins for this username or from this address.
    #[error("too many failed logins; try again later")]
    TooManyRequests {
        /// Seconds until the window ends (the `Retry-After` header).
        retry_after_secs: u64,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency (store, key service) is down: retry later. `what` is shown to the
    /// caller; `detail` only logged.
    #[error("{what}")]
    Unavailable { what: String, detail: String },
    /// A bug or misconfiguration; the description is generic, `detail` only logged.
    #[error("internal error")]
    Internal { detail: String },
}

impl Error {
    /// The OAuth-style `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidGrant(_) => "invalid_grant",
            Error::InvalidScope(_) => "invalid_scope",
            Error::UnsupportedGrantType(_) => "unsupported_grant_type",
            Error::InvalidClient(_) => "invalid_client",
            Error::UnauthorizedClient(_) => "unauthorized_client",
            Error::InvalidToken(_) => "invalid_token",
            Error::InsufficientScope(_) => "insufficient_scope",
            Error::Forbidden(_) => "access_denied",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::PayloadTooLarge => "invalid_request",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::UnsupportedMediaType(_) => "invalid_request",
            Error::Unavailable { .. } => "temporarily_unavailable",
            Error::Internal { .. } => "server_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_)
            | Error::InvalidGrant(_)
            | Error::InvalidScope(_)
            | Error::UnsupportedGrantType(_)
            | Error::UnauthorizedClient(_) => 400,
            Error::InvalidToken(_) | Error::InvalidClient(_) => 401,
            Error::InsufficientScope(_) | Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::MethodNotAllowed { .. } => 405,
            Error::PayloadTooLarge => 413,
            Error::TooManyRequests { .. } => 429,
            Error::UnsupportedMediaType(_) => 415,
            Error::Unavailable { .. } => 503,
            Error::Internal { .. } => 500,
        }
    }

    /// A dependency that is down: `what` for the caller, `detail` for the log.
    pub fn unavailable(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Unavailable {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// A bug or misconfiguration; `detail` is for the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        Error::Internal {
            detail: detail.into(),
        }
    }

    /// What the log should say beyond the public description: the private detail of an
    /// internal or unavailable error; `None` for errors that are the caller's.
    pub fn private_detail(&self) -> Option<&str> {
        match self {
            Error::Unavailable { detail, .. } | Error::Internal { detail } => Some(detail),
            _ => None,
        }
    }

    /// For an operator's terminal (the CLI), where the private detail belongs: the
    /// description, then the detail if there is one.
    pub fn for_operator(&self) -> String {
        match self.private_detail().filter(|d| !d.is_empty()) {
            Some(detail) => format!("{self} ({detail})"),
            None => self.to_string(),
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Error::InvalidRequest(description.into())
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Error::InvalidGrant(description.into())
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                Error::unavailable("storage is unavailable; retry shortly", detail)
            }
            StoreError::Broken(detail) => Error::internal(format!("storage problem: {detail}")),
        }
    }
}

impl From<KeyError> for Error {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Unavailable(detail) => {
                Error::unavailable("signing is unavailable; retry shortly", detail)
            }
            KeyError::Invalid(detail) => Error::internal(format!("signing key problem: {detail}")),
        }
    }
}

impl From<TokenError> for Error {
    fn from(error: TokenError) -> Self {
        Error::InvalidToken(error)
    }
}
