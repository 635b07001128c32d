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

use serde_json::{Value, json};

use crate::error::Error;
use crate::service::TokenService;
use crate::token::AccessClaims;

#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// REST APIs: the token does not verify (API Gateway answers 401).
    #[error("Unauthorized")]
    Unauthorized,
    /// The event is not an authorizer event we know.
    #[error("not an API Gateway authorizer event: {0}")]
    UnknownEvent(&'static str),
    /// A dependency is down; fail closed.
    #[error("authorizer unavailable: {0}")]
    Unavailable(String),
}

/// Answers one authorizer event.
pub async fn authorize_event(
    service: &TokenService,
    event: &Value,
) -> Result<Value, AuthorizerError> {
    if event.get("version").and_then(Value::as_str) == Some("2.0") {
        let token = bearer_from_headers(event).or_else(|| {
            event
                .get("identitySource")
                .and_then(Value::as_array)
                .and_then(|sources| sources.first())
                .and_then(Value::as_str)
                .and_then(strip_bearer)
        });
        return match verify(service, token).await? {
            Some(claims) => Ok(json!({ "isAuthorized": true, "context": context(&claims) })),
            None => Ok(json!({ "isAuthorized": false })),
        };
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
            .and_then(strip_bearer),
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
    Ok(json!({
        "principalId": claims.sub,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": stage_wildcard(method_arn),
            }],
        },
        "context": context(&claims),
    }))
}

/// `Some(claims)` for a valid, unrevoked token; `None` for any refusal.
async fn verify(
    service: &TokenService,
    token: Option<&str>,
) -> Result<Option<AccessClaims>, AuthorizerError> {
    let Some(token) = token else {
        return Ok(None);
    };
    match service.authorize(token).await {
        Ok(claims) => Ok(Some(claims)),
        Err(Error::Unavailable(what)) => Err(AuthorizerError::Unavailable(what)),
        Err(Error::Internal) => Err(AuthorizerError::Unavailable("internal error".into())),
        Err(_) => Ok(None),
    }
}

fn context(claims: &AccessClaims) -> Value {
    json!({ "sub": claims.sub, "scope": claims.scope, "sid": claims.sid })
}

/// The `Authorization` header's bearer token, whatever the header's case.
fn bearer_from_headers(event: &Value) -> Option<&str> {
    event
        .get("headers")
        .and_then(Value::as_object)?
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str())
        .and_then(strip_bearer)
}

fn strip_bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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

    #[test]
    fn bearer_parsing() {
        assert_eq!(strip_bearer("Bearer abc"), Some("abc"));
        assert_eq!(strip_bearer("bearer  abc "), Some("abc"));
        assert_eq!(strip_bearer("Basic abc"), None);
        assert_eq!(strip_bearer("abc"), None);
    }
}
