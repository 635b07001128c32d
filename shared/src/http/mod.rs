//! HTTP: the routes, shared by every Lambda function and `tokenlife serve`. Handlers are
//! parse -> service -> map; [`handle`] routes, applies CORS, and turns every [`Error`] into
//! a JSON error in one place ([`response::error`]). No input makes it panic or answer 5xx
//! (only a dependency that is down answers 503).

pub mod request;
pub mod response;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Response, header};
use lambda_http::{Body, Request, service_fn};

use crate::config::origin_of;
use crate::error::Error;
use crate::keys::{KeyRecord, RotationReport};
use crate::service::{
    ADMIN_SCOPE, LoginRequest, RefreshRequest, Revoked, TokenGrant, TokenService,
};
use crate::token::AccessClaims;
use request::{Params, bearer_token, caller_origin, cookie, params, split_base_path};
use response::{REFRESH_COOKIE, json, no_store, refresh_cookie};

/// Every route tokenlife serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Token,
    Refresh,
    Revoke,
    AdminRevokeUser,
    AdminListKeys,
    AdminRotateKeys,
    AdminRetireKey,
    Jwks,
    Metadata,
    UserInfo,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = &[
        Endpoint::Login,
        Endpoint::Token,
        Endpoint::Refresh,
        Endpoint::Revoke,
        Endpoint::AdminRevokeUser,
        Endpoint::AdminListKeys,
        Endpoint::AdminRotateKeys,
        Endpoint::AdminRetireKey,
        Endpoint::Jwks,
        Endpoint::Metadata,
        Endpoint::UserInfo,
    ];

    /// The method and path pattern, as listed in the README and template.yaml.
    pub fn route(self) -> (&'static str, &'static str) {
        match self {
            Endpoint::Login => ("POST", "/login"),
            Endpoint::Token => ("POST", "/token"),
            Endpoint::Refresh => ("POST", "/refresh"),
            Endpoint::Revoke => ("POST", "/revoke"),
            Endpoint::AdminRevokeUser => ("POST", "/admin/users/{username}/revoke"),
            Endpoint::AdminListKeys => ("GET", "/admin/keys"),
            Endpoint::AdminRotateKeys => ("POST", "/admin/keys/rotate"),
            Endpoint::AdminRetireKey => ("POST", "/admin/keys/{kid}/retire"),
            Endpoint::Jwks => ("GET", "/.well-known/jwks.json"),
            Endpoint::Metadata => ("GET", "/.well-known/oauth-authorization-server"),
            Endpoint::UserInfo => ("GET", "/userinfo"),
        }
    }

    /// The endpoint for a route path, and the `{username}` or `{kid}` it names, if any.
    fn match_path(path: &str) -> Option<(Endpoint, Option<String>)> {
        let found = match path {
            "/login" => Endpoint::Login,
            "/token" => Endpoint::Token,
            "/refresh" => Endpoint::Refresh,
            "/revoke" => Endpoint::Revoke,
            "/.well-known/jwks.json" => Endpoint::Jwks,
            "/.well-known/oauth-authorization-server" => Endpoint::Metadata,
            "/userinfo" => Endpoint::UserInfo,
            "/admin/keys" => Endpoint::AdminListKeys,
            "/admin/keys/rotate" => Endpoint::AdminRotateKeys,
            _ => {
                let (endpoint, segment) = if let Some(rest) = path.strip_prefix("/admin/users/") {
                    (Endpoint::AdminRevokeUser, rest.strip_suffix("/revoke")?)
                } else {
                    let rest = path.strip_prefix("/admin/keys/")?;
                    (Endpoint::AdminRetireKey, rest.strip_suffix("/retire")?)
                };
                if segment.is_empty() || segment.contains('/') {
                    return None;
                }
                return Some((endpoint, Some(percent_decode(segment)?)));
            }
        };
        Some((found, None))
    }
}

/// Which Lambda function serves which endpoints; template.yaml routes the same way.
pub const LAMBDA_FUNCTIONS: &[(&str, &[Endpoint])] = &[
    ("login", &[Endpoint::Login, Endpoint::Token]),
    ("refresh", &[Endpoint::Refresh]),
    ("revoke", &[Endpoint::Revoke, Endpoint::AdminRevokeUser]),
    (
        "jwks",
        &[Endpoint::Jwks, Endpoint::Metadata, Endpoint::UserInfo],
    ),
    (
        "rotate-keys",
        &[
            Endpoint::AdminListKeys,
            Endpoint::AdminRotateKeys,
            Endpoint::AdminRetireKey,
        ],
    ),
];

/// The endpoints of Lambda function `name` (none for an unknown name).
pub fn function_endpoints(name: &str) -> &'static [Endpoint] {
    LAMBDA_FUNCTIONS
        .iter()
        .find(|(function, _)| *function == name)
        .map_or(&[], |(_, endpoints)| endpoints)
}

/// Strict percent-decoding of a path segment: a `%` not followed by two hex digits, or a
/// result that is not UTF-8, is refused rather than passed through.
fn percent_decode(text: &str) -> Option<String> {
    let input = text.as_bytes();
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Runs a Lambda function serving `endpoints` until the runtime stops it.
pub async fn run_lambda(
    service: Arc<TokenService>,
    endpoints: &'static [Endpoint],
) -> Result<(), lambda_http::Error> {
    lambda_http::run(service_fn(move |request: Request| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(handle(&service, endpoints, request).await) }
    }))
    .await
}

/// Answers one request for any of `endpoints`; others are 404.
pub async fn handle(
    service: &TokenService,
    endpoints: &[Endpoint],
    request: Request,
) -> Response<Body> {
    let (base_path, path) = split_base_path(&request);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(origin_of);
    let cors_origin = origin.filter(|o| service.config().cors_origins.contains(o));

    let routed = Endpoint::match_path(&path).filter(|(endpoint, _)| endpoints.contains(endpoint));
    let route = path_for_log(routed.as_ref().map(|(endpoint, _)| *endpoint));
    let result = match routed {
        None => Err(Error::NotFound(format!("no route for {path:?}"))),
        Some(_) if request.method() == Method::OPTIONS => match &cors_origin {
            Some(origin) => return response::preflight(origin),
            None => Err(Error::Forbidden("this origin may not call this API".into())),
        },
        Some((endpoint, path_parameter)) => {
            let (method, _) = endpoint.route();
            if request.method().as_str() != method {
                Err(Error::MethodNotAllowed {
                    allow: if method == "GET" {
                        "GET, OPTIONS"
                    } else {
                        "POST, OPTIONS"
                    },
                })
            } else {
                dispatch(service, endpoint, path_parameter, &base_path, &request).await
            }
        }
    };
    let mut response = result.unwrap_or_else(|error| {
        if let Error::Internal | Error::Unavailable(_) = error {
            tracing::error!(route = %route, error = %error, "request failed");
        }
        response::error(&error)
    });
    if let Some(origin) = &cors_origin {
        response::allow_origin(&mut response, origin);
    }
    tracing::info!(
        method = %request.method(),
        route = %route,
        status = response.status().as_u16(),
        "request"
    );
    response
}

/// The route pattern, never the raw path or query (which could carry anything).
fn path_for_log(endpoint: Option<Endpoint>) -> &'static str {
    endpoint.map_or("(unknown)", |endpoint| endpoint.route().1)
}

async fn dispatch(
    service: &TokenService,
    endpoint: Endpoint,
    path_parameter: Option<String>,
    base_path: &str,
    request: &Request,
) -> Result<Response<Body>, Error> {
    match endpoint {
        Endpoint::Login => {
            let params = params(request)?;
            let grant = service.login(login_request(&params)?).await?;
            Ok(grant_response(service, grant, base_path, true))
        }
        Endpoint::Refresh => refresh(service, base_path, request).await,
        Endpoint::Token => {
            let params = params(request)?;
            let grant = match params.required("grant_type")?.as_str() {
                "password" => service.login(login_request(&params)?).await?,
                "refresh_token" => service.refresh(refresh_request(&params, None)?).await?,
                other => {
                    return Err(Error::UnsupportedGrantType(
                        other.chars().take(64).collect(),
                    ));
                }
            };
            Ok(grant_response(service, grant, base_path, false))
        }
        Endpoint::Revoke => {
            let params = params(request)?;
            let token = params.required("token")?;
            let hint = params.optional("token_type_hint");
            let revoked = service.revoke(&token, hint.as_deref()).await?;
            let mut response = no_store(json(200, &serde_json::json!({})));
            if revoked == Revoked::Session && service.config().refresh_cookie {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, refresh_cookie(None, base_path, 0));
            }
            Ok(response)
        }
        Endpoint::AdminRevokeUser => {
            let caller = service.authorize(bearer_token(request)?).await?;
            let username = path_parameter.unwrap_or_default();
            service.revoke_user(&caller, &username).await?;
            Ok(json(200, &serde_json::json!({ "revoked": username })))
        }
        Endpoint::AdminListKeys => {
            admin_caller(service, request).await?;
            let keys = service.list_keys().await?;
            Ok(no_store(json(
                200,
                &serde_json::json!({ "keys": key_list(&keys) }),
            )))
        }
        Endpoint::AdminRotateKeys => {
            let caller = admin_caller(service, request).await?;
            tracing::info!(admin = %caller.sub, "key rotation step requested");
            Ok(no_store(json(
                200,
                &rotation_report(&service.rotate_keys().await?),
            )))
        }
        Endpoint::AdminRetireKey => {
            let caller = admin_caller(service, request).await?;
            let kid = path_parameter.unwrap_or_default();
            // A kid is an RFC 7638 thumbprint (base64url); anything else names no key, and
            // is not worth a log line.
            if kid.len() > 128
                || !kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::NotFound("no signing key with that kid".into()));
            }
            tracing::warn!(admin = %caller.sub, kid = %kid, "emergency key retirement requested");
            Ok(no_store(json(
                200,
                &rotation_report(&service.retire_key(&kid).await?),
            )))
        }
        Endpoint::Jwks => {
            let mut response = json(200, &service.jwks().await?);
            let cache = format!("public, max-age={}", service.config().jwks_max_age_secs);
            if let Ok(value) = HeaderValue::from_str(&cache) {
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            Ok(response)
        }
        Endpoint::Metadata => Ok(json(200, &service.metadata())),
        Endpoint::UserInfo => {
            let claims = service.authorize(bearer_token(request)?).await?;
            let mut body = serde_json::json!({
                "sub": claims.sub,
                "scope": claims.scope,
                "sid": claims.sid,
                "iat": claims.iat,
                "exp": claims.exp,
            });
            if let Some(client_id) = claims.client_id {
                body["client_id"] = client_id.into();
            }
            Ok(no_store(json(200, &body)))
        }
    }
}

/// The caller of an admin route: a valid access token with the admin scope.
async fn admin_caller(service: &TokenService, request: &Request) -> Result<AccessClaims, Error> {
    let caller = service.authorize(bearer_token(request)?).await?;
    if !caller.has_scope(ADMIN_SCOPE) {
        return Err(Error::InsufficientScope(ADMIN_SCOPE));
    }
    Ok(caller)
}

/// Signing keys as the admin routes show them (public facts only: kid, state, algorithm,
/// times; never the key reference).
pub fn key_list(keys: &[KeyRecord]) -> Vec<serde_json::Value> {
    keys.iter()
        .map(|key| {
            serde_json::json!({
                "kid": key.kid,
                "state": key.state.name(),
                "alg": key.algorithm.name(),
                "published_at": key.published_at,
                "since": key.state_since,
            })
        })
        .collect()
}

/// A rotation step's or retirement's outcome as JSON.
pub fn rotation_report(report: &RotationReport) -> serde_json::Value {
    serde_json::json!({
        "changed": report.changed,
        "actions": report.actions,
        "keys": key_list(&report.keys),
    })
}

/// `POST /refresh`: the token from the body, or else from the cookie — the latter only from
/// an allowed browser origin (CSRF guard on top of SameSite=Strict).
async fn refresh(
    service: &TokenService,
    base_path: &str,
    request: &Request,
) -> Result<Response<Body>, Error> {
    let params = params(request)?;
    let from_cookie = if params.optional("refresh_token").is_some() {
        None
    } else {
        let token = cookie(request, REFRESH_COOKIE).ok_or_else(|| {
            Error::invalid_request("missing refresh_token (in the body, or the refresh cookie)")
        })?;
        let allowed = caller_origin(request).is_some_and(|origin| {
            origin_of(service.issuer()).as_deref() == Some(origin.as_str())
                || service.config().cors_origins.contains(&origin)
        });
        if !allowed {
            return Err(Error::Forbidden(
                "a cookie refresh needs an Origin (or Referer) of an allowed origin; non-browser clients send refresh_token in the body".into(),
            ));
        }
        Some(token)
    };
    let grant = service
        .refresh(refresh_request(&params, from_cookie)?)
        .await?;
    Ok(grant_response(service, grant, base_path, true))
}

fn login_request(params: &Params) -> Result<LoginRequest, Error> {
    Ok(LoginRequest {
        username: params.required("username")?,
        password: params.required("password")?,
        client_id: params.optional("client_id"),
        scope: params.optional("scope"),
    })
}

fn refresh_request(params: &Params, from_cookie: Option<String>) -> Result<RefreshRequest, Error> {
    let refresh_token = match from_cookie {
        Some(token) => token,
        None => params.required("refresh_token")?,
    };
    Ok(RefreshRequest {
        refresh_token,
        client_id: params.optional("client_id"),
        scope: params.optional("scope"),
    })
}

fn grant_response(
    service: &TokenService,
    grant: TokenGrant,
    base_path: &str,
    set_cookie: bool,
) -> Response<Body> {
    let mut response = no_store(json(200, &grant));
    if set_cookie && service.config().refresh_cookie {
        let cookie = refresh_cookie(
            Some(&grant.refresh_token),
            base_path,
            service.config().refresh_ttl_secs,
        );
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_endpoints() {
        for endpoint in Endpoint::ALL {
            let (_, path) = endpoint.route();
            let path = path.replace("{username}", "alice").replace("{kid}", "k1");
            assert_eq!(Endpoint::match_path(&path).unwrap().0, *endpoint);
            let served_by = LAMBDA_FUNCTIONS
                .iter()
                .filter(|(_, eps)| eps.contains(endpoint))
                .count();
            assert_eq!(
                served_by, 1,
                "{endpoint:?} is served by exactly one function"
            );
        }
        assert_eq!(
            Endpoint::match_path("/admin/users/a%20b/revoke"),
            Some((Endpoint::AdminRevokeUser, Some("a b".into())))
        );
        assert_eq!(
            Endpoint::match_path("/admin/keys/rotate"),
            Some((Endpoint::AdminRotateKeys, None))
        );
        assert_eq!(
            Endpoint::match_path("/admin/keys/rotate/retire"),
            Some((Endpoint::AdminRetireKey, Some("rotate".into())))
        );
        for path in [
            "/",
            "/login/",
            "/admin/users//revoke",
            "/admin/users/a/b/revoke",
            "/admin/users/%zz/revoke",
            "/admin/users/%ff/revoke",
            "/admin/users/%+f/revoke",
            "/admin/keys/",
            "/admin/keys//retire",
            "/admin/keys/a/b/retire",
        ] {
            assert_eq!(Endpoint::match_path(path), None, "{path}");
        }
    }
}
