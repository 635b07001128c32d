//! The CloudFormation custom resource that gives a new stack its first signing key, so a
//! login works right after `sam deploy` (served by the rotate-keys function, the one
//! function that may create keys).
//!
//! - `Create`: ensure an active key (create one if the registry has none; promote a
//!   pre-published one if that is all there is). `Update`: the same, which changes nothing
//!   when a key is active. `Delete`: nothing — the retained tables keep their keys, and
//!   deleting keys is rotation's job.
//! - Every request is answered, success or failure, with a PUT of the response document to
//!   CloudFormation's pre-signed `ResponseURL`: a stack never waits an hour for an answer
//!   that will not come. The work is bounded by [`WORK_TIMEOUT`] so that the answer is sent
//!   before the function's own timeout. The physical id is stable
//!   (`tokenlife-signing-key:<keys table>`), so an update never makes CloudFormation delete
//!   "the old resource".
//! - A failure's `Reason` is the public description (never a private detail, which is logged
//!   once); CloudFormation shows it in the stack events.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use crate::service::TokenService;

/// How long the work may take before the request is answered FAILED.
pub const WORK_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries at delivering an answer (CloudFormation's URL is S3: a 5xx is worth a retry), each
/// given [`SEND_TIMEOUT`], the n-th after a pause of n × [`SEND_PAUSE`].
const SEND_ATTEMPTS: u32 = 3;
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
const SEND_PAUSE: Duration = Duration::from_millis(500);

/// The longest a custom-resource request can take, work and every delivery try included:
/// the rotate-keys function's timeout in template.yaml must exceed it (a test checks).
pub const fn longest_answer() -> Duration {
    let mut total = WORK_TIMEOUT.as_millis() as u64;
    let mut attempt = 0;
    while attempt < SEND_ATTEMPTS {
        total += SEND_TIMEOUT.as_millis() as u64 + SEND_PAUSE.as_millis() as u64 * attempt as u64;
        attempt += 1;
    }
    Duration::from_millis(total)
}

/// A custom-resource request, the fields tokenlife needs (CloudFormation sends more). No
/// Debug: the pre-signed `ResponseURL` is a credential for writing the answer.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: String,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
}

impl Request {
    /// Whether a raw event is a custom-resource request.
    pub fn is(event: &serde_json::Value) -> bool {
        event.get("RequestType").is_some() && event.get("ResponseURL").is_some()
    }

    /// The request in `event`; a malformed one is still answered (FAILED) when it names a
    /// response URL, so that CloudFormation does not wait for an answer that never comes.
    pub fn of(event: &serde_json::Value) -> Result<Self, String> {
        match serde_json::from_value::<Request>(event.clone()) {
            Ok(request) => Ok(request),
            Err(error) => {
                let text = |name: &str| {
                    event
                        .get(name)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned()
                };
                if text("ResponseURL").is_empty() {
                    return Err(format!("no ResponseURL to answer: {error}"));
                }
                Ok(Request {
                    // An unknown type: answered FAILED.
                    request_type: format!("(malformed request: {error})"),
                    response_url: text("ResponseURL"),
                    stack_id: text("StackId"),
                    request_id: text("RequestId"),
                    logical_resource_id: text("LogicalResourceId"),
                    physical_resource_id: event
                        .get("PhysicalResourceId")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned),
                })
            }
        }
    }
}

/// Where an answer may go: CloudFormation's pre-signed S3 URLs are https on an
/// `amazonaws.com` (or `.com.cn`) host; plain http only to this machine (a local stand-in).
/// Anything else is refused, so that whoever may invoke the function cannot make it send
/// requests elsewhere.
pub fn allowed_response_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    match uri.scheme_str() {
        Some("https") => host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"),
        Some("http") => matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]"),
        _ => false,
    }
}

/// The response document CloudFormation reads from the pre-signed URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    /// `SUCCESS` or `FAILED`.
    pub status: &'static str,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    /// `ActiveKid` after a Create or Update (for `!GetAtt`).
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// Decides the answer to `request` (doing the work it asks for). Never fails: a failure
/// is a `FAILED` answer.
pub async fn answer(service: &TokenService, request: &Request) -> Response {
    let physical_resource_id = request
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| format!("tokenlife-signing-key:{}", service.config().tables.keys));
    let mut response = Response {
        status: "SUCCESS",
        reason: String::new(),
        physical_resource_id,
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        no_echo: false,
        data: serde_json::Map::new(),
    };
    let outcome = match request.request_type.as_str() {
        "Create" | "Update" => {
            match tokio::time::timeout(WORK_TIMEOUT, service.ensure_active_key()).await {
                Ok(Ok(report)) => {
                    let active = report
                        .keys
                        .iter()
                        .find(|k| k.state == crate::keys::KeyState::Active)
                        .map(|k| k.kid.clone());
                    match active {
                        Some(kid) => {
                            response.data.insert("ActiveKid".into(), kid.into());
                            response.reason = if report.changed {
                                report.actions.join("; ")
                            } else {
                                "an active signing key exists".into()
                            };
                            Ok(())
                        }
                        None => Err("no active signing key after the step".to_owned()),
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(
                        error = %error,
                        detail = error.private_detail().unwrap_or(""),
                        "custom resource: ensuring an active signing key failed"
                    );
                    Err(format!("ensuring an active signing key failed: {error}"))
                }
                Err(_) => Err(format!(
                    "ensuring an active signing key took longer than {} s",
                    WORK_TIMEOUT.as_secs()
                )),
            }
        }
        "Delete" => {
            response.reason = "nothing deleted: the retained tables keep their keys".into();
            Ok(())
        }
        other => Err(format!(
            "unknown RequestType {:?}",
            other.chars().take(32).collect::<String>()
        )),
    };
    if let Err(reason) = outcome {
        response.status = "FAILED";
        response.reason = reason;
    }
    response
}

/// PUTs `response` to the request's pre-signed URL (https, or http for a local stand-in),
/// retrying a failed delivery; `Err` once every try failed.
pub async fn send(url: &str, response: &Response) -> Result<(), String> {
    if !allowed_response_url(url) {
        return Err("the ResponseURL is not CloudFormation's (https on amazonaws.com)".into());
    }
    let body = serde_json::to_vec(response).map_err(|e| e.to_string())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("no TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let mut last = String::new();
    for attempt in 0..SEND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(SEND_PAUSE * attempt).await;
        }
        // No Content-Type: the URL was signed without one (S3 would refuse the signature).
        let request = http::Request::put(url)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|_| "the ResponseURL is not a URL".to_owned())?;
        match tokio::time::timeout(SEND_TIMEOUT, client.request(request)).await {
            Ok(Ok(answer)) if answer.status().is_success() => return Ok(()),
            Ok(Ok(answer)) => last = format!("the response URL answered {}", answer.status()),
            Ok(Err(error)) => last = format!("cannot reach the response URL: {error}"),
            Err(_) => last = "the response URL did not answer in time".into(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_only_to_cloudformation_or_this_machine() {
        for url in [
            "https://cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com/arn%3A?X-Amz-Signature=a",
            "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/x",
            "http://127.0.0.1:8080/answer",
            "http://localhost/answer",
        ] {
            assert!(allowed_response_url(url), "{url}");
        }
        for url in [
            "http://cloudformation-custom-resource-response.s3.amazonaws.com/x",
            "https://evil.example.com/x",
            "https://amazonaws.com.evil.example/x",
            "https://s3.amazonaws.com@evil.example/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(!allowed_response_url(url), "{url}");
        }
    }

    #[test]
    fn a_malformed_request_with_a_url_is_still_answered() {
        let event = serde_json::json!({
            "RequestType": "Create",
            "ResponseURL": "http://127.0.0.1:1/x",
            "StackId": 42,
        });
        let request = Request::of(&event).unwrap();
        assert!(request.request_type.starts_with("(malformed request"));
        assert_eq!(request.response_url, "http://127.0.0.1:1/x");
        let no_url = serde_json::json!({ "RequestType": "Create", "ResponseURL": 7 });
        assert!(Request::of(&no_url).is_err());
    }
}
