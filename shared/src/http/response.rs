//! Building responses: JSON bodies, the error mapping (the one place an [`Error`] becomes
//! HTTP), the refresh cookie, and CORS headers.

use http::{HeaderValue, Response, StatusCode, header};
use lambda_http::Body;
use serde::Serialize;

use super::routes::COOKIE_ROUTES;
use crate::error::Error;

pub const REFRESH_COOKIE: &str = "tokenlife_refresh";

pub fn json<T: Serialize>(status: u16, body: &T) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Token responses must not be cached (RFC 6749 section 5.1).
pub fn no_store(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `{"error", "error_description"}` with the status and headers the error calls for.
pub fn error(error: &Error) -> Response<Body> {
    let mut response = json(
        error.status(),
        &serde_json::json!({
            "error": error.code(),
            "error_description": error.to_string(),
        }),
    );
    let headers = response.headers_mut();
    match error {
        Error::InvalidToken(reason) => {
            let value = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        Error::InsufficientScope(scope) => {
            let value = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        Error::InvalidClient(_) => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tokenlife\", charset=\"UTF-8\""),
            );
        }
        Error::MethodNotAllowed { allow } => {
            if let Ok(value) = HeaderValue::from_str(allow) {
                headers.insert(header::ALLOW, value);
            }
        }
        Error::Unavailable { .. } => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Error::TooManyRequests { retry_after_secs } => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        _ => {}
    }
    if matches!(
        error,
        Error::InvalidGrant(_) | Error::InvalidRequest(_) | Error::InvalidScope(_)
    ) {
        return no_store(response);
    }
    response
}

/// The refresh-token cookie, once for each route that reads it (refresh and logout; under
/// the stage prefix, if any): HttpOnly, Secure, SameSite=Strict, so no other route and no
/// script ever sees it. `None` clears it.
pub fn refresh_cookies(
    value: Option<&str>,
    base_path: &str,
    max_age_secs: u64,
) -> Vec<HeaderValue> {
    let (token, max_age) = match value {
        Some(token) => (token, max_age_secs),
        None => ("", 0),
    };
    COOKIE_ROUTES
        .iter()
        .filter_map(|route| {
            let text = format!(
                "{REFRESH_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path={base_path}{}; Max-Age={max_age}",
                route.path
            );
            HeaderValue::from_str(&text).ok()
        })
        .collect()
}

/// Marks a response readable by `origin` with credentials (`handle` adds `Vary: Origin` to
/// every answer).
pub fn allow_origin(response: &mut Response<Body>, origin: &str) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// The answer to a CORS preflight from an allowed origin; `methods` are the path's (the
/// route table's `Allow`).
pub fn preflight(origin: &str, methods: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    allow_origin(&mut response, origin);
    let headers = response.headers_mut();
    if let Ok(methods) = HeaderValue::from_str(methods) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}
