//! One handler per route (see [`super::routes`]): parse the request, call the service,
//! build the response. Who may call a route is checked before its handler runs (in
//! [`super::handle`]); errors are turned into responses there too.

use http::{HeaderValue, header};
use lambda_http::{Body, Response};

use super::request::{Params, bearer_token, cookie, device, json_body, params, query};
use super::response::{REFRESH_COOKIE, json, no_store, refresh_cookies};
use super::routes::{Call, INTROSPECT, JWKS, REVOKE, TOKEN, USERINFO};
use crate::audit;
use crate::error::Error;
use crate::keys::{KeyRecord, RotationReport};
use crate::service::clients::{DEFAULT_SECRET_OVERLAP_SECS, GRANTS, NewClient};
use crate::service::{
    ADMIN_SCOPE, LoginRequest, RefreshRequest, Revoked, TokenGrant, TokenService, UserChange,
};
use crate::store::Client;
use crate::token::AccessClaims;

type Answer = Result<Response<Body>, Error>;

/// `POST /login`: a password login; sets the refresh cookie.
pub async fn login(call: Call<'_>, client: Option<Client>) -> Answer {
    let page = Page::of_cookie_setting(&call)?;
    let params = params(call.request)?;
    let grant = call
        .service
        .login(login_request(&params, call.request, client)?)
        .await?;
    Ok(grant_response(&call, grant, true, page))
}

/// `POST /token`: the RFC 6749 token endpoint (password, refresh_token and
/// client_credentials grants). Its callers are servers, CLIs and mobile apps, which get
/// the refresh token in the body; a browser page gets it as the refresh cookie instead,
/// like from `/login`.
pub async fn token(call: Call<'_>, client: Option<Client>) -> Answer {
    let page = Page::of_cookie_setting(&call)?;
    let params = params(call.request)?;
    let grant = match params.required("grant_type")?.as_str() {
        "password" => {
            call.service
                .login(login_request(&params, call.request, client)?)
                .await?
        }
        "refresh_token" => {
            call.service
                .refresh(refresh_request(&params, call.request, None, client)?)
                .await?
        }
        "client_credentials" => {
            let Some(client) = client else {
                return Err(Error::InvalidClient(
                    "the client credentials grant needs client authentication".into(),
                ));
            };
            let scope = params.optional("scope");
            let grant = call
                .service
                .client_credentials(&client, scope.as_deref())
                .await?;
            return Ok(no_store(json(200, &grant)));
        }
        other => {
            return Err(Error::UnsupportedGrantType(
                other.chars().take(64).collect(),
            ));
        }
    };
    Ok(grant_response(&call, grant, page == Page::Trusted, page))
}

/// `POST /refresh`: the token from the body, or else from the cookie — the latter only from
/// a trusted page (CSRF guard on top of SameSite=Strict).
pub async fn refresh(call: Call<'_>, client: Option<Client>) -> Answer {
    let page = Page::of_cookie_setting(&call)?;
    let params = params(call.request)?;
    let from_cookie = if params.optional("refresh_token").is_some() {
        None
    } else {
        Some(cookie_token(&call)?.ok_or_else(|| {
            Error::invalid_request("missing refresh_token (in the body, or the refresh cookie)")
        })?)
    };
    let request = refresh_request(&params, call.request, from_cookie, client)?;
    let grant = call.service.refresh(request).await?;
    Ok(grant_response(&call, grant, true, page))
}

/// `POST /revoke` (RFC 7009): always 200. A revoked session also clears the cookie — for a
/// trusted page only, so that no other site can wipe a user's cookie by revoking a session
/// of its own (a forced logout).
pub async fn revoke(call: Call<'_>, client: Option<Client>) -> Answer {
    let page = Page::of(&call);
    let params = params(call.request)?;
    let token = params.required("token")?;
    let hint = params.optional("token_type_hint");
    let revoked = call
        .service
        .revoke_for(&token, hint.as_deref(), client.as_ref())
        .await?;
    let mut response = no_store(json(200, &serde_json::json!({})));
    if revoked == Revoked::Session && call.service.config().refresh_cookie && page == Page::Trusted
    {
        clear_cookies(&mut response, call.base_path);
    }
    Ok(response)
}

/// `POST /logout`: ends the caller's session — the one of a `refresh_token` in the body, of
/// the bearer access token's `sid`, or of the refresh cookie (from a trusted page only) —
/// with its access tokens, and clears the cookie. Logging out again is still a success.
pub async fn logout(call: Call<'_>) -> Answer {
    Page::of_cookie_setting(&call)?;
    let params = params(call.request)?;
    let service = call.service;
    // Every session the request names ends: the cookie's (so that clearing the cookie never
    // leaves its session alive), the body's, the bearer token's.
    let mut ended = false;
    for token in [cookie_token(&call)?, params.optional("refresh_token")]
        .into_iter()
        .flatten()
    {
        service.logout_refresh_token(&token).await?;
        ended = true;
    }
    if call.request.headers().contains_key(header::AUTHORIZATION) {
        let by_bearer = match bearer_token(call.request) {
            Ok(bearer) => service.logout_access_token(bearer).await,
            Err(error) => Err(error),
        };
        match by_bearer {
            Ok(()) => ended = true,
            // A bad bearer token matters only when it was all the request had.
            Err(error) if !ended => return Err(error),
            Err(_) => {}
        }
    }
    if !ended {
        return Err(Error::invalid_request(
            "nothing to log out: send the refresh cookie, a refresh_token, or a bearer access token",
        ));
    }
    let mut response = no_store(json(200, &serde_json::json!({})));
    if service.config().refresh_cookie {
        clear_cookies(&mut response, call.base_path);
    }
    Ok(response)
}

/// Who is calling, as the browser rules see it. A browser says where its page is in
/// `Origin` (on every POST; older ones only in `Referer`); servers, CLIs and mobile apps
/// send neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// No `Origin` and no `Referer`: not a browser page.
    NotABrowser,
    /// A page on the issuer's own origin or one of `TOKENLIFE_CORS_ORIGINS`.
    Trusted,
    /// A page anywhere else, or `Origin: null` (sandboxed frames, `file:`).
    Foreign,
}

impl Page {
    fn of(call: &Call<'_>) -> Page {
        let headers = call.request.headers();
        let claimed = match headers.get(header::ORIGIN) {
            Some(origin) => Some(origin.to_str().ok().and_then(super::origin_of)),
            None => headers
                .get(header::REFERER)
                .map(|referer| referer.to_str().ok().and_then(super::origin_of)),
        };
        match claimed {
            None => Page::NotABrowser,
            Some(Some(origin)) if trusted_origin(call.service, &origin) => Page::Trusted,
            Some(_) => Page::Foreign,
        }
    }

    /// For a request whose answer may set (or clear) the refresh cookie: a foreign page is
    /// refused before any work, so that no other site can plant its own session in a
    /// victim's browser (login CSRF) or clear the victim's cookie. With the cookie off
    /// there is nothing to plant, and every caller gets the refresh token in the body.
    fn of_cookie_setting(call: &Call<'_>) -> Result<Page, Error> {
        if !call.service.config().refresh_cookie {
            return Ok(Page::NotABrowser);
        }
        match Page::of(call) {
            Page::Foreign => Err(Error::Forbidden(
                "this origin may not log in, refresh or log out with the refresh cookie".into(),
            )),
            page => Ok(page),
        }
    }
}

/// The issuer's own origin, or one the configuration allows.
fn trusted_origin(service: &TokenService, origin: &str) -> bool {
    super::origin_of(service.issuer()).as_deref() == Some(origin)
        || service.config().cors_origins.iter().any(|o| o == origin)
}

/// The refresh cookie's token, if the request carries one, for a cookie-only operation:
/// allowed only from a trusted page (by `Origin`, or `Referer` from a browser that sends no
/// `Origin`; never `Origin: null`): a CSRF guard on top of SameSite=Strict.
fn cookie_token(call: &Call<'_>) -> Result<Option<String>, Error> {
    let Some(token) = cookie(call.request, REFRESH_COOKIE) else {
        return Ok(None);
    };
    if Page::of(call) != Page::Trusted {
        return Err(Error::Forbidden(
            "a cookie refresh or logout needs an Origin (or Referer) of an allowed origin; non-browser clients send refresh_token in the body".into(),
        ));
    }
    Ok(Some(token))
}

/// `GET /sessions?limit=N&cursor=C`: the caller's live sessions, newest first.
pub async fn list_sessions(call: Call<'_>, caller: AccessClaims) -> Answer {
    let (cursor, limit) = page_query(&call)?;
    let list = call
        .service
        .list_sessions(&caller.sub, Some(&caller.sid), cursor.as_deref(), limit)
        .await?;
    Ok(no_store(json(200, &list)))
}

/// `DELETE /sessions/{sid}`: ends one of the caller's own sessions (404 for any other).
pub async fn end_session(call: Call<'_>, caller: AccessClaims) -> Answer {
    let sid = call.param(0);
    call.service
        .end_session_of(&caller.sub, &sid, audit::BY_USER)
        .await?;
    Ok(no_store(json(200, &serde_json::json!({ "ended": sid }))))
}

/// `POST /sessions/revoke-others`: ends every session of the caller but the current one.
pub async fn end_other_sessions(call: Call<'_>, caller: AccessClaims) -> Answer {
    let (ended, more) = call
        .service
        .end_other_sessions(&caller.sub, &caller.sid)
        .await?;
    Ok(no_store(json(
        200,
        &serde_json::json!({ "ended": ended, "more": more }),
    )))
}

/// `GET /admin/users/{username}/sessions`.
pub async fn admin_list_user_sessions(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let (cursor, limit) = page_query(&call)?;
    let user_id = call.service.user_id_of(&call.param(0)).await?;
    let list = call
        .service
        .list_sessions(&user_id, None, cursor.as_deref(), limit)
        .await?;
    Ok(no_store(json(200, &list)))
}

/// `DELETE /admin/users/{username}/sessions/{sid}`.
pub async fn admin_end_user_session(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let user_id = call.service.user_id_of(&call.param(0)).await?;
    let sid = call.param(1);
    call.service
        .end_session_of(&user_id, &sid, audit::BY_ADMIN)
        .await?;
    Ok(no_store(json(200, &serde_json::json!({ "ended": sid }))))
}

/// A listing's `?cursor=` and `?limit=`.
fn page_query(call: &Call<'_>) -> Result<(Option<String>, Option<usize>), Error> {
    let query = query(call.request)?;
    let limit = match query.optional("limit") {
        None => None,
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| Error::invalid_request("limit must be a number"))?,
        ),
    };
    // An empty cursor is none; one longer than any key is not one of ours (and DynamoDB
    // would refuse it as a start key: a 500, found by schemathesis).
    let cursor = query.optional("cursor").filter(|c| !c.is_empty());
    if cursor.as_ref().is_some_and(|c| c.len() > MAX_CURSOR_BYTES) {
        return Err(Error::invalid_request(
            "cursor is not one this service made",
        ));
    }
    Ok((cursor, limit))
}

/// The longest cursor a listing accepts (its keys — usernames, client ids, session
/// cursors — are all far shorter).
const MAX_CURSOR_BYTES: usize = 512;

/// `POST /admin/users/{username}/revoke`: every session and access token of the user.
pub async fn admin_revoke_user(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let username = call.param(0);
    call.service.revoke_user(&username).await?;
    Ok(json(200, &serde_json::json!({ "revoked": username })))
}

/// `GET /admin/users?limit=N&cursor=C`: one page of users.
pub async fn admin_list_users(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let (cursor, limit) = page_query(&call)?;
    let page = call.service.list_users(cursor.as_deref(), limit).await?;
    Ok(no_store(json(200, &page)))
}

/// The body of `POST /admin/users`. Holds a password: no Debug.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    /// Default: `["user"]`.
    scopes: Option<Vec<String>>,
    /// Adds the admin scope.
    #[serde(default)]
    admin: bool,
}

/// The scopes of a new user: `user` unless named, plus `admin` when asked (the CLI's
/// `users add` and `POST /admin/users` alike).
pub fn new_user_scopes(scopes: Option<Vec<String>>, admin: bool) -> Vec<String> {
    let mut scopes = scopes.unwrap_or_else(|| vec!["user".to_owned()]);
    if admin && !scopes.iter().any(|s| s == ADMIN_SCOPE) {
        scopes.push(ADMIN_SCOPE.to_owned());
    }
    scopes
}

/// `POST /admin/users`: 201 with the user.
pub async fn admin_create_user(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let new: NewUser = json_body(call.request)?;
    let scopes = new_user_scopes(new.scopes, new.admin);
    let user = call
        .service
        .create_user(&new.username, &new.password, scopes)
        .await?;
    Ok(no_store(json(201, &user)))
}

/// `GET /admin/users/{username}`.
pub async fn admin_show_user(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let user = call.service.user(&call.param(0)).await?;
    Ok(no_store(json(200, &user)))
}

/// The body of `PATCH /admin/users/{username}`: what to change (a new password has its
/// own route, so that it is never sent along with other changes by accident).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    scopes: Option<Vec<String>>,
    disabled: Option<bool>,
}

/// `PATCH /admin/users/{username}`: scopes and/or disabled; says whether sessions ended.
pub async fn admin_change_user(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let patch: UserPatch = json_body(call.request)?;
    let change = UserChange {
        password: None,
        scopes: patch.scopes,
        disabled: patch.disabled,
        end_sessions: false,
    };
    let changed = call.service.change_user(&call.param(0), change).await?;
    Ok(no_store(json(200, &changed)))
}

/// The body of `POST /admin/users/{username}/password`. Holds a password: no Debug.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `POST /admin/users/{username}/password`: sets it and ends the user's sessions.
pub async fn admin_set_password(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let body: NewPassword = json_body(call.request)?;
    let change = UserChange {
        password: Some(body.password),
        ..UserChange::default()
    };
    let changed = call.service.change_user(&call.param(0), change).await?;
    Ok(no_store(json(200, &changed)))
}

/// `DELETE /admin/users/{username}`: removes the user and ends their sessions.
pub async fn admin_remove_user(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let username = call.param(0);
    call.service.remove_user(&username).await?;
    Ok(no_store(json(
        200,
        &serde_json::json!({ "removed": username, "sessions_ended": true }),
    )))
}

/// `GET /admin/keys`.
pub async fn admin_list_keys(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let keys = call.service.list_keys().await?;
    Ok(no_store(json(
        200,
        &serde_json::json!({ "keys": key_list(&keys) }),
    )))
}

/// `POST /admin/keys/rotate`: one rotation step.
pub async fn admin_rotate_keys(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let report = call.service.rotate_keys().await?;
    Ok(no_store(json(200, &rotation_report(&report))))
}

/// `POST /admin/keys/{kid}/retire`: emergency retirement.
pub async fn admin_retire_key(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let kid = call.param(0);
    // A kid is an RFC 7638 thumbprint (base64url); anything else names no key, and is not
    // worth a log line.
    if kid.len() > 128
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::NotFound("no signing key with that kid".into()));
    }
    let report = call.service.retire_key(&kid).await?;
    Ok(no_store(json(200, &rotation_report(&report))))
}

/// `GET /.well-known/jwks.json`, cacheable for `TOKENLIFE_JWKS_MAX_AGE`.
pub async fn jwks(call: Call<'_>) -> Answer {
    let mut response = json(200, &call.service.jwks().await?);
    let cache = format!(
        "public, max-age={}",
        call.service.config().jwks_max_age_secs
    );
    if let Ok(value) = HeaderValue::from_str(&cache) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    Ok(response)
}

/// `GET /.well-known/oauth-authorization-server`: RFC 8414 metadata, its URLs from the
/// route table.
pub async fn metadata(call: Call<'_>) -> Answer {
    let issuer = call.service.issuer();
    Ok(json(
        200,
        &serde_json::json!({
            "issuer": issuer,
            "token_endpoint": TOKEN.url(issuer),
            "revocation_endpoint": REVOKE.url(issuer),
            "introspection_endpoint": INTROSPECT.url(issuer),
            "jwks_uri": JWKS.url(issuer),
            "userinfo_endpoint": USERINFO.url(issuer),
            "grant_types_supported": GRANTS,
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }),
    ))
}

/// `POST /introspect` (RFC 7662): for an authenticated confidential client (anything
/// else is 401 `invalid_client`), `{"active": false}` or the token's claims.
pub async fn introspect(call: Call<'_>, client: Option<Client>) -> Answer {
    let client = client.filter(Client::is_confidential).ok_or_else(|| {
        Error::InvalidClient("introspection needs an authenticated confidential client".into())
    })?;
    let params = params(call.request)?;
    let token = params.required("token")?;
    let answer = call.service.introspect(&token, &client).await?;
    Ok(no_store(json(200, &answer)))
}

/// The OpenAPI document (repository `openapi.yaml`, turned into JSON at build time).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// `GET /openapi.json`: the API's contract.
pub async fn openapi(_call: Call<'_>) -> Answer {
    let mut response = Response::new(Body::Text(OPENAPI_JSON.to_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}

/// `GET /userinfo`: the verified caller's claims.
pub async fn userinfo(_call: Call<'_>, claims: AccessClaims) -> Answer {
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

/// How clients authenticate at the token and revocation endpoints (RFC 8414): a Basic
/// header, the secret in the body, or (public clients) none.
const CLIENT_AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

/// `GET /admin/clients`: one page of registered clients (`?cursor=&limit=`).
pub async fn admin_list_clients(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let (cursor, limit) = page_query(&call)?;
    let page = call.service.list_clients(cursor.as_deref(), limit).await?;
    Ok(no_store(json(200, &page)))
}

/// The body of `POST /admin/clients`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientRegistration {
    name: String,
    /// Chosen by hand; generated when absent.
    client_id: Option<String>,
    #[serde(default)]
    confidential: bool,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    may_introspect: bool,
}

/// `POST /admin/clients`: 201 with the client, and a confidential client's secret — the
/// only time it is shown.
pub async fn admin_register_client(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let body: ClientRegistration = json_body(call.request)?;
    let registered = call
        .service
        .register_client(NewClient {
            id: body.client_id,
            name: body.name,
            confidential: body.confidential,
            grant_types: body.grant_types,
            scopes: body.scopes,
            may_introspect: body.may_introspect,
            secret: None,
        })
        .await?;
    Ok(no_store(json(201, &registered)))
}

/// `GET /admin/clients/{client_id}`.
pub async fn admin_show_client(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let client = call.service.client(&call.param(0)).await?;
    Ok(no_store(json(200, &client)))
}

/// `DELETE /admin/clients/{client_id}`: removes it and revokes its client-credentials
/// tokens.
pub async fn admin_remove_client(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let id = call.param(0);
    call.service.remove_client(&id).await?;
    Ok(no_store(json(200, &serde_json::json!({ "removed": id }))))
}

/// The body of `POST /admin/clients/{client_id}/rotate-secret` (optional).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretRotation {
    /// How long the current secret keeps working; default a day.
    overlap_secs: Option<u64>,
}

/// `POST /admin/clients/{client_id}/rotate-secret`: a new secret, shown once.
pub async fn admin_rotate_client_secret(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let body: SecretRotation = if super::request::body_bytes(call.request)?.is_empty() {
        SecretRotation::default()
    } else {
        json_body(call.request)?
    };
    let overlap = body.overlap_secs.unwrap_or(DEFAULT_SECRET_OVERLAP_SECS);
    let rotated = call
        .service
        .rotate_client_secret(&call.param(0), overlap)
        .await?;
    Ok(no_store(json(200, &rotated)))
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

fn login_request(
    params: &Params,
    request: &lambda_http::Request,
    client: Option<Client>,
) -> Result<LoginRequest, Error> {
    Ok(LoginRequest {
        username: params.required("username")?,
        password: params.required("password")?,
        client,
        scope: params.optional("scope"),
        device: device(request),
    })
}

fn refresh_request(
    params: &Params,
    request: &lambda_http::Request,
    from_cookie: Option<String>,
    client: Option<Client>,
) -> Result<RefreshRequest, Error> {
    let refresh_token = match from_cookie {
        Some(token) => token,
        None => params.required("refresh_token")?,
    };
    Ok(RefreshRequest {
        refresh_token,
        client,
        scope: params.optional("scope"),
        device: device(request),
    })
}

/// A grant as JSON, with the refresh cookie when `set_cookie` and the cookie is on. A
/// browser page gets the refresh token only in that HttpOnly cookie, never in the body: a
/// script on the page (an XSS included) must not be able to read and keep it.
fn grant_response(
    call: &Call<'_>,
    grant: TokenGrant,
    set_cookie: bool,
    page: Page,
) -> Response<Body> {
    let config = call.service.config();
    let cookie = set_cookie && config.refresh_cookie;
    let mut body = serde_json::to_value(&grant).unwrap_or_default();
    if let Some(members) = body
        .as_object_mut()
        .filter(|_| cookie && page == Page::Trusted)
    {
        members.remove("refresh_token");
    }
    let mut response = no_store(json(200, &body));
    if cookie {
        for value in refresh_cookies(
            Some(&grant.refresh_token),
            call.base_path,
            config.refresh_ttl_secs,
        ) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Clears the refresh cookie on every path it was set for.
fn clear_cookies(response: &mut Response<Body>, base_path: &str) {
    for value in refresh_cookies(None, base_path, 0) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
