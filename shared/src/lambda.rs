//! Lambda glue, in one place: what each function's `main` runs. HTTP functions hand every
//! API Gateway request to [`crate::http::handle`] for the routes the route table gives
//! their [`Function`]; event functions (the authorizer, rotate-keys) answer typed
//! `aws_lambda_events` responses, and their errors become the runtime's [`Diagnostic`]
//! (`errorType` / `errorMessage`). State is built once at init ([`App::for_lambda`]).
//! After each invocation, what it recorded goes out as CloudWatch EMF lines
//! ([`crate::metrics`]), with the function's name as the `function` dimension.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::lambda_runtime::{self, Diagnostic, LambdaEvent};
use lambda_http::{Body, Request, Response, service_fn};
use serde::Serialize;

use crate::App;
pub use crate::http::Function;
use crate::metrics::Emf;
use crate::service::TokenService;

/// Runs HTTP function `function` until the runtime stops it.
pub async fn run_http(function: Function) -> Result<(), lambda_http::Error> {
    crate::logging::init_for_lambda();
    let service = App::for_lambda().await?.service;
    let emf = emf(&service, function.name());
    lambda_http::run(service_fn(move |request: Request| {
        let service = service.clone();
        let emf = emf.clone();
        async move {
            let handling = crate::http::handle(&service, Some(function), request);
            let (response, metrics) = invocation(&emf, handling).await;
            write_lines(&metrics);
            Ok::<_, Infallible>(response)
        }
    }))
    .await
}

/// Where function `function`'s metrics go.
pub fn emf(service: &TokenService, function: &'static str) -> Emf {
    Emf {
        namespace: service.config().metrics_namespace(),
        function,
    }
}

/// One invocation: `work`'s output, and the EMF lines of what it recorded (stamped now),
/// which the runtime loops above print after it.
pub async fn invocation<F: Future>(emf: &Emf, work: F) -> (F::Output, Vec<String>) {
    let (output, recorded) = crate::metrics::in_invocation(work).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    (output, recorded.emf_lines(emf, now_ms))
}

/// Lines to stdout, where CloudWatch Logs reads EMF: one write per line, so that no other
/// output lands inside one.
fn write_lines(lines: &[String]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        let _ = stdout.write_all(format!("{line}\n").as_bytes());
    }
    let _ = stdout.flush();
}

/// Runs function `function`, whose events are plain JSON (the authorizer, rotate-keys):
/// builds the service once at init, then answers each event with `handle`.
pub async fn run_events<F, Fut, R, E>(
    function: &'static str,
    handle: F,
) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Arc<TokenService>, serde_json::Value) -> Fut,
    Fut: Future<Output = Result<R, E>>,
    R: Serialize,
    E: Into<Diagnostic> + std::fmt::Debug,
{
    crate::logging::init_for_lambda();
    let service = App::for_lambda().await?.service;
    let emf = emf(&service, function);
    let handle = &handle;
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: LambdaEvent<serde_json::Value>| {
            let handling = handle(service.clone(), event.payload);
            let emf = emf.clone();
            async move {
                let (answer, metrics) = invocation(&emf, handling).await;
                write_lines(&metrics);
                answer
            }
        },
    ))
    .await
}

/// An HTTP API (payload 2.0) response for `response`, as API Gateway takes it from a
/// function that is invoked with raw events (rotate-keys): `Set-Cookie` headers go in
/// `cookies`, the others in `headers`.
pub fn http_api_response(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    for (name, value) in &parts.headers {
        if name == http::header::SET_COOKIE {
            if let Ok(cookie) = value.to_str() {
                answer.cookies.push(cookie.to_owned());
            }
        } else {
            answer.headers.append(name, value.clone());
        }
    }
    answer.is_base64_encoded = matches!(body, Body::Binary(_));
    answer.body = match body {
        Body::Empty => None,
        body => Some(body),
    };
    answer
}

/// A [`Diagnostic`] from an error type name and a message (the authorizer's and
/// rotate-keys' errors).
pub fn diagnostic(error_type: &str, message: impl ToString) -> Diagnostic {
    Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message.to_string(),
    }
}
