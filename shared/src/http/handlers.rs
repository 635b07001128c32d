//! One handler per route (see [`super::routes`]): parse the request, call the service,
//! build the response. Who may call a route is checked before its handler runs (in
//! [`super::handle`]); errors are turned into responses there too.

use http::{HeaderValue, header};
use lambda_http::{Body, Response};

use super::request::{Params, caller_origin, cookie, json_body, params, query};
use super::response::{REFRESH_COOKIE, json, no_store, refresh_cookie};
use super::routes::{Call, JWKS, REVOKE, TOKEN, USERINFO};
use crate::error::Error;
use crate::keys::{KeyRecord, RotationReport};
use crate::service::{
    ADMIN_SCOPE, LoginRequest, RefreshRequest, Revoked, TokenGrant, TokenService, UserChange,
};
use crate::token::AccessClaims;

type Answer = Result<Response<Body>, Error>;

/// `POST /login`: a password login; sets the refresh cookie.
pub async fn login(call: Call<'_>) -> Answer {
    let params = params(call.request)?;
    let grant = call.service.login(login_request(&params)?).await?;
    Ok(grant_response(call.service, grant, call.base_path, true))
}

/// `POST /token`: the RFC 6749 token endpoint (password and refresh_token grants); no cookie.
pub async fn token(call: Call<'_>) -> Answer {
    let params = params(call.request)?;
    let grant = match params.required("grant_type")?.as_str() {
        "password" => call.service.login(login_request(&params)?).await?,
        "refresh_token" => {
            call.service
                .refresh(refresh_request(&params, None)?)
                .await?
        }
        other => {
            return Err(Error::UnsupportedGrantType(
                other.chars().take(64).collect(),
            ));
        }
    };
    Ok(grant_response(call.service, grant, call.base_path, false))
}

/// `POST /refresh`: the token from the body, or else from the cookie — the latter only from
/// an allowed browser origin (CSRF guard on top of SameSite=Strict).
pub async fn refresh(call: Call<'_>) -> Answer {
    let (service, request) = (call.service, call.request);
    let params = params(request)?;
    let from_cookie = if params.optional("refresh_token").is_some() {
        None
    } else {
        let token = cookie(request, REFRESH_COOKIE).ok_or_else(|| {
            Error::invalid_request("missing refresh_token (in the body, or the refresh cookie)")
        })?;
        let allowed = caller_origin(request).is_some_and(|origin| {
            super::origin_of(service.issuer()).as_deref() == Some(origin.as_str())
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
    Ok(grant_response(service, grant, call.base_path, true))
}

/// `POST /revoke` (RFC 7009): always 200; a revoked session also clears the cookie.
pub async fn revoke(call: Call<'_>) -> Answer {
    let params = params(call.request)?;
    let token = params.required("token")?;
    let hint = params.optional("token_type_hint");
    let revoked = call.service.revoke(&token, hint.as_deref()).await?;
    let mut response = no_store(json(200, &serde_json::json!({})));
    if revoked == Revoked::Session && call.service.config().refresh_cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, refresh_cookie(None, call.base_path, 0));
    }
    Ok(response)
}

/// `POST /admin/users/{username}/revoke`: every session and access token of the user.
pub async fn admin_revoke_user(call: Call<'_>, caller: AccessClaims) -> Answer {
    let username = call.param.unwrap_or_default();
    call.service.revoke_user(&caller, &username).await?;
    Ok(json(200, &serde_json::json!({ "revoked": username })))
}

/// `GET /admin/users?limit=N&cursor=C`: one page of users.
pub async fn admin_list_users(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let query = query(call.request)?;
    let limit = match query.optional("limit") {
        None => None,
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| Error::invalid_request("limit must be a number"))?,
        ),
    };
    let cursor = query.optional("cursor");
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
pub async fn admin_create_user(call: Call<'_>, caller: AccessClaims) -> Answer {
    let new: NewUser = json_body(call.request)?;
    let scopes = new_user_scopes(new.scopes, new.admin);
    let user = call
        .service
        .create_user(&new.username, &new.password, scopes, &caller.sub)
        .await?;
    Ok(no_store(json(201, &user)))
}

/// `GET /admin/users/{username}`.
pub async fn admin_show_user(call: Call<'_>, _caller: AccessClaims) -> Answer {
    let user = call.service.user(&call.param.unwrap_or_default()).await?;
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
pub async fn admin_change_user(call: Call<'_>, caller: AccessClaims) -> Answer {
    let patch: UserPatch = json_body(call.request)?;
    let change = UserChange {
        password: None,
        scopes: patch.scopes,
        disabled: patch.disabled,
        end_sessions: false,
    };
    let changed = call
        .service
        .change_user(&call.param.unwrap_or_default(), change, &caller.sub)
        .await?;
    Ok(no_store(json(200, &changed)))
}

/// The body of `POST /admin/users/{username}/password`. Holds a password: no Debug.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

/// `POST /admin/users/{username}/password`: sets it and ends the user's sessions.
pub async fn admin_set_password(call: Call<'_>, caller: AccessClaims) -> Answer {
    let body: NewPassword = json_body(call.request)?;
    let change = UserChange {
        password: Some(body.password),
        ..UserChange::default()
    };
    let changed = call
        .service
        .change_user(&call.param.unwrap_or_default(), change, &caller.sub)
        .await?;
    Ok(no_store(json(200, &changed)))
}

/// `DELETE /admin/users/{username}`: removes the user and ends their sessions.
pub async fn admin_remove_user(call: Call<'_>, caller: AccessClaims) -> Answer {
    let username = call.param.unwrap_or_default();
    call.service.remove_user(&username, &caller.sub).await?;
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
pub async fn admin_rotate_keys(call: Call<'_>, caller: AccessClaims) -> Answer {
    tracing::info!(admin = %caller.sub, "key rotation step requested");
    let report = call.service.rotate_keys().await?;
    Ok(no_store(json(200, &rotation_report(&report))))
}

/// `POST /admin/keys/{kid}/retire`: emergency retirement.
pub async fn admin_retire_key(call: Call<'_>, caller: AccessClaims) -> Answer {
    let kid = call.param.unwrap_or_default();
    // A kid is an RFC 7638 thumbprint (base64url); anything else names no key, and is not
    // worth a log line.
    if kid.len() > 128
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::NotFound("no signing key with that kid".into()));
    }
    tracing::warn!(admin = %caller.sub, kid = %kid, "emergency key retirement requested");
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
            "jwks_uri": JWKS.url(issuer),
            "userinfo_endpoint": USERINFO.url(issuer),
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
        }),
    ))
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
