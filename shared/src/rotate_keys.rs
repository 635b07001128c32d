//! The `rotate-keys` Lambda function's events: the EventBridge schedule runs one key
//! rotation step (see [`crate::keys::rotation`]); API Gateway brings the admin key routes
//! (`GET /admin/keys`, `POST /admin/keys/rotate`, `POST /admin/keys/{kid}/retire`), answered
//! by the shared HTTP layer. It is the one function allowed to create and delete KMS keys.

use serde_json::Value;

use crate::http::{function_endpoints, handle, rotation_report};
use crate::service::TokenService;

/// What one event to the function asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateKeysEvent {
    /// An API Gateway HTTP API (v2) request.
    Http,
    /// An EventBridge scheduled event (`source` `aws.events` or `aws.scheduler`).
    Schedule,
}

impl RotateKeysEvent {
    pub fn of(event: &Value) -> Option<Self> {
        if event.get("requestContext").is_some() {
            return Some(Self::Http);
        }
        let source = event.get("source").and_then(Value::as_str);
        let detail_type = event.get("detail-type").and_then(Value::as_str);
        (matches!(source, Some("aws.events" | "aws.scheduler"))
            || detail_type == Some("Scheduled Event"))
        .then_some(Self::Schedule)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotateKeysError {
    #[error("rotate-keys takes an EventBridge scheduled event or an API Gateway HTTP API event")]
    UnsupportedEvent,
    #[error("not an API Gateway event: {0}")]
    BadHttpEvent(String),
    /// The step failed: the invocation fails, so the schedule's retries and alarms see it.
    #[error("key rotation step failed: {0}")]
    Step(crate::Error),
}

/// Answers one event: the step's report for a schedule event, an HTTP API response for a
/// request.
pub async fn handle_event(service: &TokenService, event: &Value) -> Result<Value, RotateKeysError> {
    match RotateKeysEvent::of(event).ok_or(RotateKeysError::UnsupportedEvent)? {
        RotateKeysEvent::Schedule => {
            let report = service.rotate_keys().await.map_err(RotateKeysError::Step)?;
            Ok(rotation_report(&report))
        }
        RotateKeysEvent::Http => {
            let request = lambda_http::request::from_str(&event.to_string())
                .map_err(|e| RotateKeysError::BadHttpEvent(e.to_string()))?;
            let response = handle(service, function_endpoints("rotate-keys"), request).await;
            Ok(http_api_response(response))
        }
    }
}

/// An HTTP API (payload 2.0) response for `response` (whose bodies are always text: JSON).
fn http_api_response(response: lambda_http::Response<lambda_http::Body>) -> Value {
    let (parts, body) = response.into_parts();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
        }
    }
    let body = match body {
        lambda_http::Body::Text(text) => text,
        lambda_http::Body::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    };
    serde_json::json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart() {
        let schedule = serde_json::json!({
            "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}
        });
        assert_eq!(
            RotateKeysEvent::of(&schedule),
            Some(RotateKeysEvent::Schedule)
        );
        let http = serde_json::json!({ "version": "2.0", "requestContext": {} });
        assert_eq!(RotateKeysEvent::of(&http), Some(RotateKeysEvent::Http));
        for other in [serde_json::json!({}), serde_json::json!([1]), Value::Null] {
            assert_eq!(RotateKeysEvent::of(&other), None);
        }
    }
}
