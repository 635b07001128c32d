//! The `rotate-keys` Lambda function's events: the EventBridge schedule runs one key
//! rotation step (see [`crate::keys::rotation`]); API Gateway brings the admin key routes
//! (`GET /admin/keys`, `POST /admin/keys/rotate`, `POST /admin/keys/{kid}/retire`), answered
//! by the shared HTTP layer; CloudFormation brings the custom resource that gives a new
//! stack its first key ([`crate::custom_resource`]). It is the one function allowed to
//! create and delete KMS keys.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;

use crate::audit::{ACTOR_DEPLOY, ACTOR_SCHEDULE, Context, in_context};
use crate::http::handlers::rotation_report;
use crate::http::{Function, handle};
use crate::lambda::{diagnostic, http_api_response};
use crate::service::TokenService;

/// What one event to the function asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateKeysEvent {
    /// An API Gateway HTTP API (v2) request.
    Http,
    /// An EventBridge scheduled event (`source` `aws.events` or `aws.scheduler`).
    Schedule,
    /// A CloudFormation custom-resource request.
    CustomResource,
}

impl RotateKeysEvent {
    pub fn of(event: &Value) -> Option<Self> {
        if event.get("requestContext").is_some() {
            return Some(Self::Http);
        }
        if crate::custom_resource::Request::is(event) {
            return Some(Self::CustomResource);
        }
        let source = event.get("source").and_then(Value::as_str);
        let detail_type = event.get("detail-type").and_then(Value::as_str);
        (matches!(source, Some("aws.events" | "aws.scheduler"))
            || detail_type == Some("Scheduled Event"))
        .then_some(Self::Schedule)
    }
}

/// The function's answer: a step's report (schedule) or an HTTP API response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RotateKeysAnswer {
    Report(Value),
    Http(Box<ApiGatewayV2httpResponse>),
}

#[derive(Debug, thiserror::Error)]
pub enum RotateKeysError {
    #[error(
        "rotate-keys takes an EventBridge scheduled event, an API Gateway HTTP API event or a CloudFormation custom-resource request"
    )]
    UnsupportedEvent,
    #[error("not a CloudFormation custom-resource request: {0}")]
    BadCustomResourceEvent(String),
    /// The answer could not be delivered to CloudFormation (it will time out the stack
    /// operation; the invocation fails so that the log and metrics show it).
    #[error("could not answer CloudFormation: {0}")]
    CustomResourceUndelivered(String),
    #[error("not an API Gateway event: {0}")]
    BadHttpEvent(String),
    /// The step failed: the invocation fails, so the schedule's retries and alarms see it.
    /// (The failure's private detail was logged when it happened.)
    #[error("key rotation step failed: {0}")]
    Step(crate::Error),
}

impl From<RotateKeysError> for Diagnostic {
    fn from(error: RotateKeysError) -> Self {
        let error_type = match error {
            RotateKeysError::UnsupportedEvent => "UnsupportedEvent",
            RotateKeysError::BadHttpEvent(_) => "BadHttpEvent",
            RotateKeysError::Step(_) => "RotationStepFailed",
            RotateKeysError::BadCustomResourceEvent(_) => "BadCustomResourceEvent",
            RotateKeysError::CustomResourceUndelivered(_) => "CustomResourceUndelivered",
        };
        diagnostic(error_type, error)
    }
}

/// Answers one event: the step's report for a schedule event, an HTTP API response for a
/// request.
pub async fn handle_event(
    service: &TokenService,
    event: &Value,
) -> Result<RotateKeysAnswer, RotateKeysError> {
    match RotateKeysEvent::of(event).ok_or(RotateKeysError::UnsupportedEvent)? {
        RotateKeysEvent::Schedule => {
            let stepped = in_context(Context::acting(ACTOR_SCHEDULE), service.rotate_keys()).await;
            // The key age is recorded on every scheduled run (the step records it when it
            // succeeds): a rotation that keeps failing still shows its key growing old.
            if stepped.is_err() {
                service.record_signing_key_age().await;
            }
            match stepped {
                Ok(report) => Ok(RotateKeysAnswer::Report(rotation_report(&report))),
                Err(error) => {
                    tracing::error!(
                        error = %error,
                        detail = error.private_detail().unwrap_or(""),
                        "scheduled key rotation step failed"
                    );
                    Err(RotateKeysError::Step(error))
                }
            }
        }
        RotateKeysEvent::CustomResource => {
            let request = crate::custom_resource::Request::of(event)
                .map_err(RotateKeysError::BadCustomResourceEvent)?;
            let answering = crate::custom_resource::answer(service, &request);
            let response = in_context(Context::acting(ACTOR_DEPLOY), answering).await;
            tracing::info!(
                request_type = %request.request_type,
                status = response.status,
                reason = %response.reason,
                "custom resource answered"
            );
            crate::custom_resource::send(&request.response_url, &response)
                .await
                .map_err(RotateKeysError::CustomResourceUndelivered)?;
            let report = serde_json::to_value(&response).unwrap_or_default();
            Ok(RotateKeysAnswer::Report(report))
        }
        RotateKeysEvent::Http => {
            let request = lambda_http::request::from_str(&event.to_string())
                .map_err(|e| RotateKeysError::BadHttpEvent(e.to_string()))?;
            let response = handle(service, Some(Function::RotateKeys), request).await;
            Ok(RotateKeysAnswer::Http(Box::new(http_api_response(
                response,
            ))))
        }
    }
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
