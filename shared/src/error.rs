//! The one error type of the service and the HTTP layer. Each variant knows its OAuth error
//! code and HTTP status; [`crate::http`] turns it into a JSON response in one place.
//! Descriptions are shown to callers, so they never contain a token, password or secret.

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
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency (store, key service) is down: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or misconfiguration; the description is generic, details go to the log.
    #[error("internal error")]
    Internal,
}

impl Error {
    /// The OAuth-style `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidGrant(_) => "invalid_grant",
            Error::InvalidScope(_) => "invalid_scope",
            Error::UnsupportedGrantType(_) => "unsupported_grant_type",
            Error::InvalidToken(_) => "invalid_token",
            Error::InsufficientScope(_) => "insufficient_scope",
            Error::Forbidden(_) => "access_denied",
            Error::NotFound(_) => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::PayloadTooLarge => "invalid_request",
            Error::UnsupportedMediaType(_) => "invalid_request",
            Error::Unavailable(_) => "temporarily_unavailable",
            Error::Internal => "server_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_)
            | Error::InvalidGrant(_)
            | Error::InvalidScope(_)
            | Error::UnsupportedGrantType(_) => 400,
            Error::InvalidToken(_) => 401,
            Error::InsufficientScope(_) | Error::Forbidden(_) => 403,
            Error::NotFound(_) => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::PayloadTooLarge => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Unavailable(_) => 503,
            Error::Internal => 500,
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
            StoreError::Unavailable(what) => {
                tracing::error!(error = %what, "storage unavailable");
                Error::Unavailable("storage is unavailable; retry shortly".into())
            }
            StoreError::Broken(what) => {
                tracing::error!(error = %what, "storage problem");
                Error::Internal
            }
        }
    }
}

impl From<KeyError> for Error {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Unavailable(what) => {
                tracing::error!(error = %what, "signing unavailable");
                Error::Unavailable("signing is unavailable; retry shortly".into())
            }
            KeyError::Invalid(what) => {
                tracing::error!(error = %what, "signing key problem");
                Error::Internal
            }
        }
    }
}

impl From<TokenError> for Error {
    fn from(error: TokenError) -> Self {
        Error::InvalidToken(error)
    }
}
