//! HTTP: request handling shared by every Lambda function and `tokenlife serve`. The
//! [`routes`] table says what is served where; [`handle`] routes a request, checks its
//! caller (one place for every route that needs a token, the admin scope or client
//! authentication), applies CORS,
//! runs the route's handler ([`handlers`]: parse -> service -> respond), and turns every
//! [`Error`] into a JSON error in one place ([`response::error`]), logging a failure's
//! private detail once. No input makes it panic or answer 5xx (only a dependency that is
//! down answers 503).

pub mod handlers;
pub mod request;
pub mod response;
pub mod routes;

use http::{Method, header};
use lambda_http::{Body, Request, Response};

use crate::audit;
use crate::error::Error;
use crate::service::{ADMIN_SCOPE, TokenService};
use crate::store::Client;
use crate::token::AccessClaims;
pub use request::origin_of;
use request::{bearer_token, device, request_id, split_base_path};
use routes::Call;
pub use routes::{Function, Handler, ROUTES, Route};

/// How `tokenlife serve` starts its first line on stdout, before its base URL (scripts and
/// the test harness read it).
pub const LISTENING: &str = "tokenlife listening on ";

/// How its second line starts when it serves metrics (`--metrics-addr`), before their URL.
pub const METRICS_AT: &str = "tokenlife metrics at ";

/// Answers one request for the routes of `function` (every route when `None`, as in
/// `tokenlife serve`); a path no such route has is 404, a wrong method 405.
pub async fn handle(
    service: &TokenService,
    function: Option<Function>,
    request: Request,
) -> Response<Body> {
    let context = audit::Context::request(request_id(&request), &device(&request));
    audit::in_context(context, answer(service, function, request)).await
}

async fn answer(
    service: &TokenService,
    function: Option<Function>,
    request: Request,
) -> Response<Body> {
    let (base_path, path) = split_base_path(&request);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(origin_of);
    let cors_origin = origin.filter(|o| service.config().cors_origins.contains(o));

    let mut candidates = routes::matching(&path);
    candidates.retain(|(route, _)| function.is_none_or(|f| route.function == f));
    let chosen = candidates
        .iter()
        .position(|(route, _)| route.method == request.method());
    let route = chosen
        .or((!candidates.is_empty()).then_some(0))
        .map_or("(unknown)", |i| candidates[i].0.path);
    let result = match chosen {
        _ if candidates.is_empty() => Err(Error::NotFound(format!("no route for {path:?}"))),
        _ if request.method() == Method::OPTIONS => match &cors_origin {
            Some(origin) => Ok(response::preflight(origin, &allow_header(&candidates))),
            None => Err(Error::Forbidden("this origin may not call this API".into())),
        },
        None => Err(Error::MethodNotAllowed {
            allow: allow_header(&candidates),
        }),
        Some(i) => {
            let (route, params) = candidates.swap_remove(i);
            let call = Call {
                service,
                request: &request,
                base_path: &base_path,
                params,
            };
            run(route, call).await
        }
    };
    let mut response = result.unwrap_or_else(|error| {
        if let Some(detail) = error.private_detail() {
            tracing::error!(route = %route, error = %error, detail = %detail, "request failed");
        }
        response::error(&error)
    });
    if let Some(origin) = &cors_origin {
        response::allow_origin(&mut response, origin);
    }
    // Every answer's CORS headers depend on the Origin: shared caches must key on it (the
    // public JWKS included), or one origin's answer could be served to another.
    response
        .headers_mut()
        .append(header::VARY, http::HeaderValue::from_static("Origin"));
    // The route pattern, never the raw path or query (which could carry anything).
    tracing::info!(
        method = %request.method(),
        route = %route,
        status = response.status().as_u16(),
        request_id = audit::request_id().as_deref(),
        "request"
    );
    response
}

/// Checks the caller the route asks for, then runs its handler.
async fn run(route: &Route, call: Call<'_>) -> Result<Response<Body>, Error> {
    match route.handler {
        Handler::Public(handler) => handler(call).await,
        Handler::Client(handler) => {
            let client = client_caller(&call).await?;
            handler(call, client).await
        }
        Handler::Bearer(handler) => {
            let caller = bearer_caller(&call).await?;
            handler(call, caller).await
        }
        Handler::Admin(handler) => {
            let caller = bearer_caller(&call).await?;
            if !caller.has_scope(ADMIN_SCOPE) {
                audit::Record::new(audit::Event::AdminRefused, "refused")
                    .reason(route.path)
                    .subject(&caller.sub)
                    .client_id(caller.client_id.as_deref())
                    .emit();
                return Err(Error::InsufficientScope(ADMIN_SCOPE));
            }
            handler(call, caller).await
        }
    }
}

/// The client a client-authenticated route's request names, authenticated (see
/// [`Handler::Client`]); `None` when it names none and that is allowed.
async fn client_caller(call: &Call<'_>) -> Result<Option<Client>, Error> {
    let params = request::params(call.request)?;
    let posted_id = params.optional("client_id").filter(|id| !id.is_empty());
    let posted_secret = params.optional("client_secret");
    let (id, secret) = match (
        request::basic_credentials(call.request)?,
        posted_id,
        posted_secret,
    ) {
        (Some(_), _, Some(_)) => {
            return Err(Error::invalid_request(
                "use one client authentication method: Basic or client_secret in the body",
            ));
        }
        (Some((id, _)), Some(posted), None) if posted != id => {
            return Err(Error::invalid_request(
                "client_id differs from the client of the Basic credentials",
            ));
        }
        (Some((id, secret)), _, None) => (id, Some(secret)),
        (None, Some(id), secret) => (id, secret),
        (None, None, Some(_)) => {
            return Err(Error::invalid_request("client_secret without client_id"));
        }
        (None, None, None) if call.service.config().anonymous_client => return Ok(None),
        (None, None, None) => {
            return Err(Error::InvalidClient(
                "this request must name its client (client_id)".into(),
            ));
        }
    };
    let client = call
        .service
        .authenticate_client(&id, secret.as_deref())
        .await?;
    Ok(Some(client))
}

/// The verified caller of a bearer route, named as the request's actor.
async fn bearer_caller(call: &Call<'_>) -> Result<AccessClaims, Error> {
    let caller = call.service.authorize(bearer_token(call.request)?).await?;
    audit::record_actor(&caller.sub);
    Ok(caller)
}

/// `Allow`: the methods of the routes on this path, and OPTIONS (CORS preflights).
fn allow_header(candidates: &[(&Route, Vec<String>)]) -> String {
    let mut methods: Vec<&str> = candidates.iter().map(|(r, _)| r.method.as_str()).collect();
    methods.dedup();
    methods.push("OPTIONS");
    methods.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Embedded, Users};

    fn get(path: &str, origin: Option<&str>) -> lambda_http::Request {
        let mut request = http::Request::builder()
            .method("GET")
            .uri(format!("https://issuer.test{path}"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.body(Body::Empty).unwrap()
    }

    /// Shared caches must not serve one origin's answer to another: every answer says
    /// `Vary: Origin`, once, whether or not the caller's origin is allowed.
    #[tokio::test]
    async fn every_answer_varies_on_origin() {
        let f = Embedded::start_with(|c| c.cors_origins = vec!["https://app.test".into()]).await;
        for (path, origin) in [
            ("/.well-known/jwks.json", None),
            ("/.well-known/jwks.json", Some("https://app.test")),
            ("/.well-known/jwks.json", Some("https://evil.test")),
            ("/userinfo", None),
            ("/nowhere", Some("https://app.test")),
        ] {
            let response = handle(&f.service, None, get(path, origin)).await;
            let vary: Vec<_> = response.headers().get_all(header::VARY).iter().collect();
            assert_eq!(vary, ["Origin"], "{path} from {origin:?}");
        }
        let preflight = http::Request::builder()
            .method("OPTIONS")
            .uri("https://issuer.test/refresh")
            .header("origin", "https://app.test")
            .body(Body::Empty)
            .unwrap();
        let response = handle(&f.service, None, preflight).await;
        assert_eq!(response.status().as_u16(), 204);
        let vary: Vec<_> = response.headers().get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin"]);
    }

    /// Every admin route refuses a valid token without the admin scope (403) and one with
    /// no token (401), before its handler runs; the service changes nothing.
    #[tokio::test]
    async fn admin_routes_need_the_admin_scope() {
        let f = Embedded::start().await;
        let service = &f.service;
        f.add_user("alice", &["user"]).await;
        f.add_user("root", &["user", "admin"]).await;
        let alice = f.login("alice").await;
        let keys_before = service.list_keys().await.unwrap();
        let admin_routes = ROUTES
            .iter()
            .filter(|r| matches!(r.handler, Handler::Admin(_)));
        for route in admin_routes {
            let path = route
                .path
                .replace("{username}", "root")
                .replace("{kid}", &keys_before[0].kid)
                .replace(
                    "{sid}",
                    &alice.refresh_token[..alice.refresh_token.find('.').unwrap()],
                );
            for (bearer, status) in [(Some(alice.access_token.as_str()), 403), (None, 401)] {
                let mut request = http::Request::builder()
                    .method(route.method.clone())
                    .uri(format!("https://issuer.test{path}"));
                if let Some(token) = bearer {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let request = request.body(Body::Empty).unwrap();
                let response = handle(service, None, request).await;
                assert_eq!(response.status().as_u16(), status, "{path}");
            }
        }
        assert_eq!(service.list_keys().await.unwrap(), keys_before);
        service.authorize(&alice.access_token).await.unwrap();
        let root = f.login("root").await;
        service.authorize(&root.access_token).await.unwrap();
    }
}
