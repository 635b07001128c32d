//! The API Gateway Lambda authorizer: the same verification as `/userinfo`
//! ([`TokenService::authorize`]: signature with the key pinned by `kid`, `typ`, `iss`,
//! `aud`, times, then the revocation check), answered in the shape each API type expects:
//!
//! - HTTP API, payload format 2.0, simple responses: `{"isAuthorized": bool, "context":
//!   {"sub", "scope", "sid"}}`.
//! - REST API, `TOKEN` or `REQUEST` authorizer: an IAM policy allowing `execute-api:Invoke`
//!   on every method and path of the calling stage (wildcard, so that a cached allow covers
//!   the API's other routes), with the same context; a token that does not verify is the
//!   error `Unauthorized`, which API Gateway turns into a 401.
//!
//! A dependency that is down (the revocation store) is an error, not a deny, so API Gateway
//! answers 500 rather than 403 — and never an allow: the authorizer fails closed.

use std::collections::BTreeMap;

use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayV2CustomAuthorizerSimpleResponse,
};
use lambda_http::aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use lambda_http::lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;

use crate::http::request::parse_bearer;
use crate::service::TokenService;
use crate::token::AccessClaims;

/// What the authorizer hands API Gateway's integration: `sub`, `scope`, `sid`.
pub type AuthorizerContext = BTreeMap<String, String>;

/// The authorizer's answer, in the shape of the API type that asked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AuthorizerResponse {
    /// HTTP API, payload format 2.0, simple response.
    HttpApi(ApiGatewayV2CustomAuthorizerSimpleResponse<AuthorizerContext>),
    /// REST API: an IAM policy.
    Rest(ApiGatewayCustomAuthorizerResponse<AuthorizerContext>),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// REST APIs: the token does not verify (API Gateway answers 401).
    #[error("Unauthorized")]
    Unauthorized,
    /// The event is not an authorizer event we know.
    #[error("not an API Gateway authorizer event: {0}")]
    UnknownEvent(&'static str),
    /// A dependency is down; fail closed. (The detail was logged when it happened.)
    #[error("authorizer unavailable")]
    Unavailable,
}

impl From<AuthorizerError> for Diagnostic {
    fn from(error: AuthorizerError) -> Self {
        let error_type = match error {
            // API Gateway turns exactly this message into a 401.
            AuthorizerError::Unauthorized => "Unauthorized",
            AuthorizerError::UnknownEvent(_) => "UnknownEvent",
            AuthorizerError::Unavailable => "Unavailable",
        };
        crate::lambda::diagnostic(error_type, error)
    }
}

/// Answers one authorizer event.
pub async fn authorize_event(
    service: &TokenService,
    event: &Value,
) -> Result<AuthorizerResponse, AuthorizerError> {
    if event.get("version").and_then(Value::as_str) == Some("2.0") {
        let token = bearer_from_headers(event).or_else(|| {
            event
                .get("identitySource")
                .and_then(Value::as_array)
                .and_then(|sources| sources.first())
                .and_then(Value::as_str)
                .and_then(|value| parse_bearer(value.trim()).ok())
        });
        let mut answer = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
        if let Some(claims) = verify(service, token).await? {
            answer.is_authorized = true;
            answer.context = context(claims);
        }
        return Ok(AuthorizerResponse::HttpApi(answer));
    }
    let method_arn =
        event
            .get("methodArn")
            .and_then(Value::as_str)
            .ok_or(AuthorizerError::UnknownEvent(
                "no version 2.0 and no methodArn",
            ))?;
    let token = match event.get("type").and_then(Value::as_str) {
        Some("TOKEN") => event
            .get("authorizationToken")
            .and_then(Value::as_str)
            .and_then(|value| parse_bearer(value.trim()).ok()),
        Some("REQUEST") => bearer_from_headers(event),
        _ => {
            return Err(AuthorizerError::UnknownEvent(
                "type is neither TOKEN nor REQUEST",
            ));
        }
    };
    let claims = verify(service, token)
        .await?
        .ok_or(AuthorizerError::Unauthorized)?;
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = IamPolicyEffect::Allow;
    statement.resource = vec![stage_wildcard(method_arn)];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    let mut answer = ApiGatewayCustomAuthorizerResponse::default();
    answer.principal_id = Some(claims.sub.clone());
    answer.policy_document = policy;
    answer.context = context(claims);
    Ok(AuthorizerResponse::Rest(answer))
}

/// `Some(claims)` for a valid, unrevoked token; `None` for any refusal; an error (logged
/// here, once) when a dependency is down.
async fn verify(
    service: &TokenService,
    token: Option<&str>,
) -> Result<Option<AccessClaims>, AuthorizerError> {
    let Some(token) = token else {
        return Ok(None);
    };
    match service.authorize(token).await {
        Ok(claims) => Ok(Some(claims)),
        Err(error) => match error.private_detail() {
            Some(detail) => {
                tracing::error!(error = %error, detail = %detail, "authorizer failed closed");
                Err(AuthorizerError::Unavailable)
            }
            None => Ok(None),
        },
    }
}

/// What the API's integrations see of the caller (the claims are moved, not copied: this is
/// the authorizer's hot path).
fn context(claims: AccessClaims) -> AuthorizerContext {
    BTreeMap::from([
        ("sub".to_owned(), claims.sub),
        ("scope".to_owned(), claims.scope),
        ("sid".to_owned(), claims.sid),
    ])
}

/// The `Authorization` header's bearer token, whatever the header's case.
fn bearer_from_headers(event: &Value) -> Option<&str> {
    event
        .get("headers")
        .and_then(Value::as_object)?
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str())
        .and_then(|value| parse_bearer(value.trim()).ok())
}

/// `arn:aws:execute-api:region:account:api/stage/VERB/path...` ->
/// `arn:aws:execute-api:region:account:api/stage/*/*`.
fn stage_wildcard(method_arn: &str) -> String {
    let mut parts = method_arn.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(api), Some(stage)) => format!("{api}/{stage}/*/*"),
        _ => method_arn.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_the_stage() {
        assert_eq!(
            stage_wildcard("arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/orders/42"),
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/*"
        );
        assert_eq!(stage_wildcard("weird"), "weird");
    }
}
