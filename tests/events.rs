//! Every file in `events/` (API Gateway HTTP API v2 events, the ones `cargo lambda invoke
//! --data-file` takes) fed through the real handler of the function named by its folder,
//! via `lambda_http::request::from_str`, on a fresh embedded service. Placeholders
//! `__ACCESS_TOKEN__`, `__ADMIN_ACCESS_TOKEN__` and `__REFRESH_TOKEN__` are replaced by
//! tokens of a fresh login. Every 4xx must leave the service unchanged. Events in
//! `events/authorizer/` go through the Lambda authorizer instead, with
//! `__REVOKED_ACCESS_TOKEN__` and `__FORGED_ACCESS_TOKEN__` (signed by a stranger's key) too.
//! Events in `events/rotate-keys/` (the schedule's event and the admin key routes) go through
//! that function's event handler, with `__ACTIVE_KID__` the active signing key's `kid`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenlife::TokenService;
use tokenlife::authorizer::AuthorizerResponse;
use tokenlife::http::{Function, handle};
use tokenlife::service::{LoginRequest, RefreshRequest};
use tokenlife::testkit::{Embedded, Users, body_json, password_of};

const ISSUER: &str = "https://abc123.execute-api.eu-west-1.amazonaws.com";

/// (function/case, status, OAuth error code).
const EXPECTED: &[(&str, u16, Option<&str>)] = &[
    ("login/json", 200, None),
    ("login/form", 200, None),
    ("login/form-base64", 200, None),
    ("login/stage-prefix", 200, None),
    ("login/wrong-password", 400, Some("invalid_grant")),
    ("login/unknown-user", 400, Some("invalid_grant")),
    ("login/malformed-json", 400, Some("invalid_request")),
    ("login/wrong-field-type", 400, Some("invalid_request")),
    ("login/missing-password", 400, Some("invalid_request")),
    ("login/text-plain", 415, Some("invalid_request")),
    ("login/nul-byte", 400, Some("invalid_request")),
    ("login/token-password-grant", 200, None),
    ("login/token-refresh-grant", 200, None),
    (
        "login/token-unsupported-grant",
        400,
        Some("unsupported_grant_type"),
    ),
    ("login/token-missing-grant", 400, Some("invalid_request")),
    (
        "login/token-client-credentials-no-client",
        401,
        Some("invalid_client"),
    ),
    ("login/get-not-allowed", 405, Some("method_not_allowed")),
    ("refresh/body", 200, None),
    ("refresh/cookie-from-allowed-origin", 200, None),
    ("refresh/cookie-without-origin", 403, Some("access_denied")),
    (
        "refresh/cookie-from-other-origin",
        403,
        Some("access_denied"),
    ),
    ("refresh/unknown-token", 400, Some("invalid_grant")),
    ("refresh/malformed-token", 400, Some("invalid_grant")),
    ("refresh/missing-token", 400, Some("invalid_request")),
    ("refresh/preflight-allowed", 204, None),
    ("refresh/preflight-other-origin", 403, Some("access_denied")),
    ("revoke/refresh-token", 200, None),
    ("revoke/refresh-token-from-allowed-origin", 200, None),
    ("revoke/refresh-token-from-other-origin", 200, None),
    ("revoke/access-token", 200, None),
    ("revoke/unknown-token", 200, None),
    ("revoke/missing-token", 400, Some("invalid_request")),
    ("revoke/logout-cookie-from-allowed-origin", 200, None),
    ("revoke/logout-bearer", 200, None),
    ("revoke/logout-refresh-token-body", 200, None),
    ("revoke/logout-nothing", 400, Some("invalid_request")),
    (
        "revoke/logout-cookie-from-other-origin",
        403,
        Some("access_denied"),
    ),
    (
        "revoke/logout-cookie-origin-null",
        403,
        Some("access_denied"),
    ),
    ("login/json-from-allowed-origin", 200, None),
    ("login/json-from-other-origin", 403, Some("access_denied")),
    ("login/json-foreign-referer", 403, Some("access_denied")),
    ("login/token-password-grant-from-allowed-origin", 200, None),
    ("refresh/body-origin-null", 403, Some("access_denied")),
    ("revoke/list-sessions", 200, None),
    ("revoke/list-sessions-no-token", 401, Some("invalid_token")),
    ("revoke/end-own-session", 200, None),
    ("revoke/end-someone-elses-session", 404, Some("not_found")),
    ("revoke/end-other-sessions", 200, None),
    ("users/list-user-sessions", 200, None),
    ("users/end-user-session", 200, None),
    ("users/admin-revoke-user", 200, None),
    (
        "users/admin-revoke-user-without-admin-scope",
        403,
        Some("insufficient_scope"),
    ),
    ("users/admin-revoke-unknown-user", 404, Some("not_found")),
    (
        "users/admin-revoke-user-no-token",
        401,
        Some("invalid_token"),
    ),
    ("jwks/jwks", 200, None),
    ("jwks/metadata", 200, None),
    (
        "jwks/introspect-without-client",
        401,
        Some("invalid_client"),
    ),
    ("jwks/introspect-public-client", 401, Some("invalid_client")),
    ("jwks/userinfo", 200, None),
    ("jwks/userinfo-no-token", 401, Some("invalid_token")),
    (
        "jwks/userinfo-refresh-token-as-bearer",
        401,
        Some("invalid_token"),
    ),
    ("jwks/userinfo-garbage-token", 401, Some("invalid_token")),
    ("jwks/unknown-route", 404, Some("not_found")),
    ("users/list-users", 200, None),
    ("users/create-user", 201, None),
    (
        "users/create-user-short-password",
        400,
        Some("invalid_request"),
    ),
    ("users/create-existing-user", 409, Some("conflict")),
    (
        "users/create-user-unknown-field",
        400,
        Some("invalid_request"),
    ),
    (
        "users/create-user-without-admin-scope",
        403,
        Some("insufficient_scope"),
    ),
    ("users/create-user-form-body", 415, Some("invalid_request")),
    ("users/show-user", 200, None),
    ("users/show-unknown-user", 404, Some("not_found")),
    ("users/disable-user", 200, None),
    ("users/set-password", 200, None),
    ("users/remove-user", 200, None),
];

/// What the authorizer must answer to each event in `events/authorizer/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authorizer {
    /// HTTP API simple response `isAuthorized: true`, or a REST Allow policy.
    Allows,
    /// HTTP API simple response `isAuthorized: false`.
    Denies,
    /// REST: the error `Unauthorized` (API Gateway answers 401).
    Unauthorized,
}

const AUTHORIZER_EXPECTED: &[(&str, Authorizer)] = &[
    ("authorizer/http-api-v2", Authorizer::Allows),
    ("authorizer/http-api-v2-no-token", Authorizer::Denies),
    ("authorizer/http-api-v2-revoked-token", Authorizer::Denies),
    ("authorizer/http-api-v2-forged-token", Authorizer::Denies),
    ("authorizer/http-api-v2-refresh-token", Authorizer::Denies),
    ("authorizer/rest-token", Authorizer::Allows),
    ("authorizer/rest-token-forged", Authorizer::Unauthorized),
    ("authorizer/rest-token-garbage", Authorizer::Unauthorized),
    ("authorizer/rest-request", Authorizer::Allows),
    (
        "authorizer/rest-request-revoked-token",
        Authorizer::Unauthorized,
    ),
];

struct Tokens {
    access: String,
    admin_access: String,
    refresh: String,
}

async fn fresh_service() -> (Arc<TokenService>, Tokens) {
    let f = Embedded::start_now(|c| {
        c.issuer = Some(ISSUER.into());
        c.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    f.add_user("alice", &["user"]).await;
    f.add_user("root", &["user", "admin"]).await;
    let alice = f.login("alice").await;
    let tokens = Tokens {
        access: alice.access_token,
        admin_access: f.login("root").await.access_token,
        refresh: alice.refresh_token,
    };
    (f.service, tokens)
}

/// The `sid` of an access token (its claims, unverified: the tests' own tokens).
fn sid_of(access_token: &str) -> String {
    let payload = access_token.split('.').nth(1).unwrap();
    let bytes = tokenlife::secrets::b64url_decode(payload).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

/// A login of alice on `service` (the kit's password).
async fn login_alice(service: &TokenService) -> tokenlife::service::TokenGrant {
    tokenlife::testkit::On(service).login("alice").await
}

/// The text of template.yaml, which the template tests read.
fn template() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml"))
        .expect("template.yaml")
}

fn event_files() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut files = Vec::new();
    for function in std::fs::read_dir(&root).expect("events/ exists") {
        let function = function.unwrap().path();
        for file in std::fs::read_dir(&function).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "json") {
                let name = format!(
                    "{}/{}",
                    function.file_name().unwrap().to_string_lossy(),
                    file.file_stem().unwrap().to_string_lossy()
                );
                files.push((name, file));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn every_sample_event_gets_the_expected_answer() {
    let files = event_files();
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    for (name, _, _) in EXPECTED {
        assert!(names.contains(name), "events/{name}.json is missing");
    }
    for (name, path) in files
        .iter()
        .filter(|(name, _)| !name.starts_with("authorizer/") && !name.starts_with("rotate-keys/"))
    {
        let (_, status, code) = EXPECTED
            .iter()
            .find(|(expected, _, _)| expected == name)
            .unwrap_or_else(|| panic!("events/{name}.json has no expectation in tests/events.rs"));
        let function = name.split('/').next().unwrap();
        let served_by = Function::from_name(function)
            .unwrap_or_else(|| panic!("events/{function}/ does not name a function"));

        let (service, tokens) = fresh_service().await;
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("__ADMIN_ACCESS_TOKEN__", &tokens.admin_access)
            .replace("__ACCESS_TOKEN__", &tokens.access)
            .replace("__REFRESH_TOKEN__", &tokens.refresh)
            .replace("__ADMIN_SID__", &sid_of(&tokens.admin_access))
            .replace("__SID__", &sid_of(&tokens.access));
        let request = lambda_http::request::from_str(&text)
            .unwrap_or_else(|e| panic!("events/{name}.json is not an API Gateway event: {e}"));
        let response = handle(&service, Some(served_by), request).await;
        let body = body_json(response.body());
        assert_eq!(
            response.status().as_u16(),
            *status,
            "events/{name}.json answered {body}"
        );
        if *status != 204 {
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "events/{name}.json"
            );
        }
        match code {
            Some(code) => {
                assert_eq!(body["error"], *code, "events/{name}.json: {body}");
                assert!(
                    body["error_description"].is_string(),
                    "events/{name}.json: {body}"
                );
                // Nothing changed: alice's tokens still work.
                service.authorize(&tokens.access).await.unwrap_or_else(|e| {
                    panic!("events/{name}.json changed state: access token now refused: {e}")
                });
                service
                    .refresh(RefreshRequest::new(tokens.refresh.clone()))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("events/{name}.json changed state: refresh refused: {e}")
                    });
            }
            None if *status == 200 && (function == "login" || name.starts_with("refresh/")) => {
                assert_eq!(body["token_type"], "Bearer", "events/{name}.json");
                let access = body["access_token"].as_str().unwrap();
                service.authorize(access).await.unwrap();
            }
            None => {}
        }
        check_specifics(name, &response, &body, &service, &tokens).await;
    }
}

async fn check_specifics(
    name: &str,
    response: &lambda_http::Response<lambda_http::Body>,
    body: &serde_json::Value,
    service: &TokenService,
    tokens: &Tokens,
) {
    let header = |h: &str| {
        response
            .headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    match name {
        "login/json" => {
            let cookie = header("set-cookie");
            assert!(
                cookie.contains("HttpOnly; Secure; SameSite=Strict; Path=/refresh;"),
                "{cookie}"
            );
            assert_eq!(header("cache-control"), "no-store");
        }
        "login/stage-prefix" => {
            assert!(
                header("set-cookie").contains("Path=/prod/refresh;"),
                "{}",
                header("set-cookie")
            );
        }
        "login/token-password-grant" => {
            let claims = service
                .authorize(body["access_token"].as_str().unwrap())
                .await
                .unwrap();
            assert_eq!(claims.client_id.as_deref(), Some("cli"));
            assert!(
                header("set-cookie").is_empty(),
                "the OAuth token endpoint sets no cookie"
            );
        }
        "refresh/cookie-from-allowed-origin" => {
            assert_eq!(
                header("access-control-allow-origin"),
                "https://app.example.com"
            );
            assert_eq!(header("access-control-allow-credentials"), "true");
            assert!(header("set-cookie").starts_with("tokenlife_refresh="));
        }
        "refresh/preflight-allowed" => {
            assert_eq!(
                header("access-control-allow-origin"),
                "https://app.example.com"
            );
            assert!(header("access-control-allow-methods").contains("POST"));
        }
        "refresh/preflight-other-origin" => {
            assert!(header("access-control-allow-origin").is_empty());
        }
        "revoke/refresh-token"
        | "revoke/refresh-token-from-allowed-origin"
        | "revoke/refresh-token-from-other-origin" => {
            assert!(
                service.authorize(&tokens.access).await.is_err(),
                "session's access token revoked"
            );
            // Only a trusted page's cookie is cleared: no other site can wipe it.
            let cleared = header("set-cookie").contains("Max-Age=0");
            assert_eq!(
                cleared,
                name == "revoke/refresh-token-from-allowed-origin",
                "{name}"
            );
        }
        "revoke/access-token" => assert!(service.authorize(&tokens.access).await.is_err()),
        "revoke/logout-cookie-from-allowed-origin"
        | "revoke/logout-bearer"
        | "revoke/logout-refresh-token-body" => {
            assert!(service.authorize(&tokens.access).await.is_err(), "{name}");
            assert!(
                service
                    .refresh(RefreshRequest::new(tokens.refresh.clone()))
                    .await
                    .is_err(),
                "{name}"
            );
            let cleared: Vec<_> = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            assert_eq!(cleared.len(), 2, "{cleared:?}");
            assert!(cleared[0].contains("Path=/refresh;") && cleared[0].contains("Max-Age=0"));
            assert!(cleared[1].contains("Path=/logout;") && cleared[1].contains("Max-Age=0"));
        }
        "revoke/list-sessions" | "users/list-user-sessions" => {
            let sessions = body["sessions"].as_array().unwrap();
            assert_eq!(sessions.len(), 1, "{body}");
            assert_eq!(sessions[0]["sid"], sid_of(&tokens.access).as_str());
            assert_eq!(sessions[0]["current"], name == "revoke/list-sessions");
            assert!(sessions[0].get("refresh_token").is_none());
        }
        "revoke/end-own-session" | "users/end-user-session" => {
            assert!(service.authorize(&tokens.access).await.is_err(), "{name}");
            service.authorize(&tokens.admin_access).await.unwrap();
        }
        "revoke/end-other-sessions" => {
            assert_eq!(body["ended"], 0, "alice has only the current session");
            service.authorize(&tokens.access).await.unwrap();
        }
        "login/json-from-allowed-origin" | "login/token-password-grant-from-allowed-origin" => {
            // A browser page gets the refresh token in the HttpOnly cookie only.
            assert!(body.get("refresh_token").is_none(), "{body}");
            assert!(body["access_token"].is_string());
            let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
            assert_eq!(cookies.len(), 2, "set for /refresh and /logout");
            assert_eq!(
                header("access-control-allow-origin"),
                "https://app.example.com"
            );
        }
        "users/admin-revoke-user" => {
            assert!(service.authorize(&tokens.access).await.is_err());
            service.authorize(&tokens.admin_access).await.unwrap();
        }
        "jwks/jwks" => {
            assert_eq!(header("cache-control"), "public, max-age=300");
            let key = &body["keys"][0];
            assert_eq!(key["kty"], "EC");
            assert_eq!(key["alg"], "ES256");
            assert_eq!(key["use"], "sig");
        }
        "jwks/metadata" => {
            assert_eq!(body["issuer"], ISSUER);
            assert_eq!(body["token_endpoint"], format!("{ISSUER}/token"));
            assert_eq!(body["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
        }
        "jwks/userinfo" => {
            assert_eq!(body["scope"], "user");
            assert!(body["sub"].is_string());
        }
        "users/list-users" => {
            let mut names: Vec<_> = body["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            assert_eq!(names, ["alice", "root"], "{body}");
            assert!(body["users"][0].get("password_hash").is_none());
            assert_eq!(header("cache-control"), "no-store");
        }
        "users/create-user" => {
            assert_eq!(body["username"], "carol");
            assert_eq!(body["scopes"], serde_json::json!(["user", "reports"]));
            let grant = service
                .login(LoginRequest::new("carol", "carol-correct-horse"))
                .await
                .unwrap();
            assert_eq!(grant.scope, "user reports");
        }
        "users/create-user-unknown-field" => {
            assert!(
                body["error_description"].as_str().unwrap().contains("role"),
                "{body}"
            );
        }
        "users/show-user" => {
            assert_eq!(body["username"], "alice");
            assert_eq!(body["scopes"], serde_json::json!(["user"]));
            assert_eq!(body["disabled"], false);
            assert!(body.get("password_hash").is_none());
        }
        "users/disable-user" | "users/set-password" | "users/remove-user" => {
            assert_eq!(body["sessions_ended"], true, "{body}");
            assert!(service.authorize(&tokens.access).await.is_err());
            assert!(
                service
                    .refresh(RefreshRequest::new(tokens.refresh.clone()))
                    .await
                    .is_err()
            );
            service.authorize(&tokens.admin_access).await.unwrap();
            let old_password = service
                .login(LoginRequest::new("alice", password_of("alice")))
                .await;
            assert!(old_password.is_err(), "{name}");
        }
        "jwks/userinfo-no-token" | "jwks/userinfo-garbage-token" => {
            assert!(header("www-authenticate").starts_with("Bearer error=\"invalid_token\""));
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_authorizer_event_gets_the_expected_answer() {
    let files: Vec<(String, PathBuf)> = event_files()
        .into_iter()
        .filter(|(name, _)| name.starts_with("authorizer/"))
        .collect();
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    for (name, _) in AUTHORIZER_EXPECTED {
        assert!(names.contains(name), "events/{name}.json is missing");
    }
    let (stranger, _) = fresh_service().await;
    for (name, path) in &files {
        let (_, expected) = AUTHORIZER_EXPECTED
            .iter()
            .find(|(expected, _)| expected == name)
            .unwrap_or_else(|| panic!("events/{name}.json has no expectation in tests/events.rs"));
        let (service, tokens) = fresh_service().await;
        let revoked = login_alice(&service).await.access_token;
        service.revoke(&revoked, None).await.unwrap();
        let forged = login_alice(&stranger).await.access_token;
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("__REVOKED_ACCESS_TOKEN__", &revoked)
            .replace("__FORGED_ACCESS_TOKEN__", &forged)
            .replace("__ACCESS_TOKEN__", &tokens.access)
            .replace("__REFRESH_TOKEN__", &tokens.refresh);
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        let answer = tokenlife::authorizer::authorize_event(&service, &event)
            .await
            .map(|answer: AuthorizerResponse| serde_json::to_value(answer).unwrap());
        let sub = service.authorize(&tokens.access).await.unwrap().sub;
        match (expected, answer) {
            (Authorizer::Allows, Ok(answer)) if answer.get("isAuthorized").is_some() => {
                assert_eq!(answer["isAuthorized"], true, "events/{name}.json: {answer}");
                assert_eq!(answer["context"]["sub"], sub.as_str());
                assert_eq!(answer["context"]["scope"], "user");
            }
            (Authorizer::Allows, Ok(answer)) => {
                assert_eq!(answer["principalId"], sub.as_str(), "events/{name}.json");
                let statement = &answer["policyDocument"]["Statement"][0];
                assert_eq!(statement["Effect"], "Allow");
                assert_eq!(
                    statement["Action"],
                    serde_json::json!(["execute-api:Invoke"])
                );
                assert_eq!(
                    statement["Resource"],
                    serde_json::json!([
                        "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/*/*"
                    ]),
                    "a cached allow covers the stage's other routes"
                );
                assert_eq!(answer["context"]["sub"], sub.as_str());
            }
            (Authorizer::Denies, Ok(answer)) => {
                assert_eq!(
                    answer,
                    serde_json::json!({ "isAuthorized": false, "context": {} }),
                    "events/{name}.json"
                );
            }
            (Authorizer::Unauthorized, Err(error)) => {
                assert_eq!(error.to_string(), "Unauthorized", "events/{name}.json");
            }
            (expected, answer) => {
                panic!("events/{name}.json: expected {expected:?}, got {answer:?}")
            }
        }
    }
}

/// The EMF documents one invocation of a function prints (parsed), with its output.
async fn with_metrics<F: std::future::Future>(
    service: &TokenService,
    function: &'static str,
    work: F,
) -> (F::Output, Vec<serde_json::Value>) {
    let emf = tokenlife::lambda::emf(service, function);
    let (output, lines) = tokenlife::lambda::invocation(&emf, work).await;
    let documents = lines
        .iter()
        .map(|line| serde_json::from_str(line).expect("an EMF line is one JSON object"))
        .collect();
    (output, documents)
}

/// The one document of `documents` with `outcome`, checked for its namespace and function.
fn document<'a>(
    documents: &'a [serde_json::Value],
    function: &str,
    outcome: &str,
) -> &'a serde_json::Value {
    let found = documents
        .iter()
        .find(|d| d["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {outcome} metric in {documents:#?}"));
    assert_eq!(found["function"], function);
    let directive = &found["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "tokenlife/tokenlife");
    found
}

#[tokio::test]
async fn sample_events_emit_their_metrics() {
    let f = Embedded::start_now(|c| {
        c.issuer = Some(ISSUER.into());
        c.login_failures_per_user_and_address = 1;
        c.refresh_grace_secs = 0;
    })
    .await;
    f.add_user("alice", &["user"]).await;
    let service = &f.service;
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let event = |name: &str, replacements: &[(&str, &str)]| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../events/{name}.json"));
        let mut text = std::fs::read_to_string(path).unwrap();
        for (placeholder, value) in replacements {
            text = text.replace(placeholder, value);
        }
        text
    };
    let http = |name: &str, replacements: &[(&str, &str)]| {
        lambda_http::request::from_str(&event(name, replacements)).unwrap()
    };

    // A login that succeeds: its count, and the age of the key that signed.
    let request = http("login/json", &[]);
    let (response, documents) = with_metrics(
        service,
        "login",
        handle(service, Some(Function::Login), request),
    )
    .await;
    seen.extend(documents.clone());
    assert_eq!(response.status(), 200);
    let succeeded = document(&documents, "login", "succeeded");
    assert_eq!(succeeded["Logins"], 1);
    assert!(succeeded["SigningKeyAge"].as_u64().unwrap() < 600);

    // A wrong password, then the same pair again: throttled.
    let mut outcomes = Vec::new();
    for expected_status in [400, 429] {
        let request = http("login/wrong-password", &[]);
        let (response, documents) = with_metrics(
            service,
            "login",
            handle(service, Some(Function::Login), request),
        )
        .await;
        seen.extend(documents.clone());
        assert_eq!(response.status(), expected_status);
        assert_eq!(documents.len(), 1, "{documents:#?}");
        outcomes.push(documents[0]["outcome"].clone());
    }
    assert_eq!(outcomes, ["failed", "throttled"]);

    // A spent refresh token presented again: reuse detected.
    let grant = login_alice(service).await;
    service
        .refresh(RefreshRequest::new(grant.refresh_token.clone()))
        .await
        .unwrap();
    let request = http(
        "refresh/body",
        &[("__REFRESH_TOKEN__", &grant.refresh_token)],
    );
    let (response, documents) = with_metrics(
        service,
        "refresh",
        handle(service, Some(Function::Refresh), request),
    )
    .await;
    seen.extend(documents.clone());
    assert_eq!(response.status(), 400);
    assert_eq!(
        document(&documents, "refresh", "reuse_detected")["Refreshes"],
        1
    );

    // The authorizer: a revoked token is denied, a live one allowed.
    let revoked = login_alice(service).await.access_token;
    service.revoke(&revoked, None).await.unwrap();
    let live = login_alice(service).await.access_token;
    for (token, outcome) in [(&revoked, "revoked"), (&live, "allowed")] {
        let text = event("authorizer/http-api-v2", &[("__ACCESS_TOKEN__", token)]);
        let authorizer_event: serde_json::Value = serde_json::from_str(&text).unwrap();
        let authorizing = tokenlife::authorizer::authorize_event(service, &authorizer_event);
        let (answer, documents) = with_metrics(service, "authorizer", authorizing).await;
        seen.extend(documents.clone());
        assert!(answer.is_ok());
        assert_eq!(documents.len(), 1, "{documents:#?}");
        assert_eq!(
            document(&documents, "authorizer", outcome)["Verifications"],
            1
        );
    }

    // A scheduled rotation: the key it created, and the active key's age.
    let schedule: serde_json::Value =
        serde_json::from_str(&event("rotate-keys/schedule", &[])).unwrap();
    let rotating = tokenlife::rotate_keys::handle_event(service, &schedule);
    let (answer, documents) = with_metrics(service, "rotate-keys", rotating).await;
    seen.extend(documents.clone());
    assert!(answer.is_ok());
    let created = document(&documents, "rotate-keys", "created");
    assert_eq!(created["SigningKeyChanges"], 1);
    assert!(created["SigningKeyAge"].is_u64());

    // What a metric line may hold: names, outcomes, numbers — never a secret.
    let lines = serde_json::to_string(&seen).unwrap();
    let password = password_of("alice");
    for secret in [
        &grant.refresh_token,
        &grant.access_token,
        &revoked,
        &live,
        &password,
    ] {
        for part in tokenlife::testkit::secret_parts(secret) {
            assert!(!lines.contains(part), "a secret in the metrics");
        }
    }
}

/// What the rotate-keys function must answer: (case, HTTP status or None for the schedule's
/// report, OAuth error code).
const ROTATE_KEYS_EXPECTED: &[(&str, Option<u16>, Option<&str>)] = &[
    ("rotate-keys/schedule", None, None),
    ("rotate-keys/list-keys", Some(200), None),
    ("rotate-keys/rotate", Some(200), None),
    (
        "rotate-keys/rotate-without-admin-scope",
        Some(403),
        Some("insufficient_scope"),
    ),
    (
        "rotate-keys/rotate-no-token",
        Some(401),
        Some("invalid_token"),
    ),
    ("rotate-keys/retire-active-key", Some(200), None),
    (
        "rotate-keys/retire-unknown-key",
        Some(404),
        Some("not_found"),
    ),
    (
        "rotate-keys/retire-malformed-kid",
        Some(404),
        Some("not_found"),
    ),
];

#[tokio::test]
async fn every_rotate_keys_event_gets_the_expected_answer() {
    let files: Vec<(String, PathBuf)> = event_files()
        .into_iter()
        .filter(|(name, _)| name.starts_with("rotate-keys/"))
        // CloudFormation's requests need a response URL: tests/aws.rs runs them.
        .filter(|(name, _)| !name.starts_with("rotate-keys/custom-resource-"))
        .collect();
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    for (name, _, _) in ROTATE_KEYS_EXPECTED {
        assert!(names.contains(name), "events/{name}.json is missing");
    }
    for (name, path) in &files {
        let (_, status, code) = ROTATE_KEYS_EXPECTED
            .iter()
            .find(|(expected, _, _)| expected == name)
            .unwrap_or_else(|| panic!("events/{name}.json has no expectation in tests/events.rs"));
        let (service, tokens) = fresh_service().await;
        let keys_before = service.list_keys().await.unwrap();
        let active_kid = keys_before[0].kid.clone();
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("__ADMIN_ACCESS_TOKEN__", &tokens.admin_access)
            .replace("__ACCESS_TOKEN__", &tokens.access)
            .replace("__ACTIVE_KID__", &active_kid);
        let event: serde_json::Value = serde_json::from_str(&text).unwrap();
        let answer = tokenlife::rotate_keys::handle_event(&service, &event)
            .await
            .map(|answer| serde_json::to_value(answer).unwrap())
            .unwrap_or_else(|e| panic!("events/{name}.json: {e}"));
        let body = match status {
            None => answer.clone(),
            Some(status) => {
                assert_eq!(
                    answer["statusCode"], *status,
                    "events/{name}.json: {answer}"
                );
                assert_eq!(answer["headers"]["content-type"], "application/json");
                serde_json::from_str(answer["body"].as_str().unwrap()).unwrap()
            }
        };
        let states = |keys: &serde_json::Value| -> Vec<String> {
            keys.as_array()
                .unwrap()
                .iter()
                .map(|k| k["state"].as_str().unwrap().to_owned())
                .collect()
        };
        if let Some(code) = code {
            assert_eq!(body["error"], *code, "events/{name}.json: {body}");
            assert_eq!(
                service.list_keys().await.unwrap(),
                keys_before,
                "events/{name}.json changed the keys"
            );
            service.authorize(&tokens.access).await.unwrap();
            continue;
        }
        match name.as_str() {
            "rotate-keys/schedule" | "rotate-keys/rotate" => {
                // After setup (one active key), a step pre-publishes the next key.
                assert_eq!(body["changed"], true, "{body}");
                assert_eq!(states(&body["keys"]), ["active", "pending"], "{body}");
                let jwks = service.jwks().await.unwrap();
                assert_eq!(jwks.keys.len(), 2, "the pending key is published");
                // Still signed by the same key: the pending one does not sign yet.
                service.authorize(&tokens.access).await.unwrap();
            }
            "rotate-keys/list-keys" => {
                assert_eq!(body["keys"][0]["kid"], active_kid.as_str());
                assert_eq!(body["keys"][0]["state"], "active");
                assert!(body["keys"][0].get("key_ref").is_none());
            }
            "rotate-keys/retire-active-key" => {
                assert_eq!(states(&body["keys"]), ["retired", "active"], "{body}");
                // Its tokens are refused at once in this process; it left the JWKS;
                // logins go on with the new key.
                assert!(service.authorize(&tokens.access).await.is_err());
                let jwks = service.jwks().await.unwrap();
                assert!(jwks.keys.iter().all(|k| k.kid != active_kid));
                let grant = login_alice(&service).await;
                service.authorize(&grant.access_token).await.unwrap();
            }
            other => panic!("events/{other}.json has no checks"),
        }
    }
}

/// template.yaml routes each endpoint to the function the route table says serves it
/// (every HttpApi event of a function's resource, method and path together).
#[test]
fn template_routes_each_endpoint_to_the_function_that_serves_it() {
    let template = template();
    for function in Function::ALL {
        let endpoints: Vec<_> = function.routes().collect();
        let function = function.name();
        let marker = format!("CodeUri: functions/{function}\n");
        let start = template
            .find(&marker)
            .unwrap_or_else(|| panic!("template.yaml has no function with {marker:?}"));
        // The resource ends where the next one (two-space indent) begins.
        let rest = &template[start..];
        let end = rest
            .match_indices("\n  ")
            .find(|(i, _)| rest[i + 3..].starts_with(|c: char| c.is_ascii_alphabetic()))
            .map_or(rest.len(), |(i, _)| i);
        let events: Vec<&str> = rest[..end].split("Type: HttpApi").skip(1).collect();
        assert_eq!(
            events.len(),
            endpoints.len(),
            "{function}: one HttpApi event per endpoint"
        );
        for endpoint in endpoints {
            let (method, path) = (endpoint.method.as_str(), endpoint.path);
            let routed = events.iter().any(|event| {
                event.contains(&format!("Method: {method}"))
                    && (event.contains(&format!("Path: {path}\n"))
                        || event.contains(&format!("Path: {path}}}"))
                        || event.contains(&format!("Path: \"{path}\"")))
            });
            assert!(
                routed,
                "template.yaml does not route {method} {path} to {function}"
            );
        }
    }
}

/// Every `TOKENLIFE_*` variable template.yaml sets is a declared setting (a typo there
/// would stop every function at start).
#[test]
fn template_sets_only_declared_settings() {
    let template = template();
    let mut found = 0;
    for (i, _) in template.match_indices("TOKENLIFE_") {
        let name: String = template[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        assert!(
            tokenlife::config::SETTINGS.iter().any(|s| s.name == name),
            "template.yaml sets {name}, which is not a setting"
        );
        found += 1;
    }
    assert!(found > 10, "template.yaml sets the functions' settings");
}

/// Every DynamoDB table of the stack survives a stack deletion or replacement: a user-wide
/// revocation lives only in the revocations table, so losing it would make revoked
/// sessions refreshable again.
#[test]
fn template_retains_every_table() {
    let template = template();
    let tables: Vec<&str> = template
        .split("    Type: AWS::DynamoDB::Table\n")
        .skip(1)
        .collect();
    assert_eq!(
        tables.len(),
        5,
        "users, sessions, revocations, keys, clients"
    );
    for table in tables {
        assert!(
            // Kept on deletion and replacement; only a failed creation removes them.
            table.starts_with(
                "    DeletionPolicy: RetainExceptOnCreate\n    UpdateReplacePolicy: Retain\n"
            ),
            "a table is not retained: {}",
            &table[..table.len().min(200)]
        );
    }
}

/// With `TablesKmsKeyArn` set, every table is encrypted with that key and every function
/// may have DynamoDB use it (and a table a function cannot decrypt would be an outage).
#[test]
fn template_encrypts_every_table_with_the_optional_key_every_function_may_use() {
    let template = template();
    let encrypted = "      SSESpecification:\n        SSEEnabled: true\n        SSEType: KMS\n        KMSMasterKeyId: !If [HasTablesKey, !Ref TablesKmsKeyArn, !Ref AWS::NoValue]\n";
    let tables = template.matches("    Type: AWS::DynamoDB::Table\n").count();
    assert_eq!(template.matches(encrypted).count(), tables);
    let functions = template
        .matches("    Type: AWS::Serverless::Function\n")
        .count();
    let may_use =
        "      Policies:\n        - !If [HasTablesKey, !Ref TablesKeyAccess, !Ref AWS::NoValue]\n";
    assert_eq!(functions, 7);
    assert_eq!(template.matches(may_use).count(), functions);
}

/// The optional dashboard's body is JSON once CloudFormation substitutes the stack's name
/// and region, and every metric it names is one the functions publish.
#[test]
fn template_dashboard_is_json_naming_published_metrics() {
    let template = template();
    let (_, rest) = template
        .split_once("      DashboardBody: !Sub >-\n")
        .expect("a dashboard");
    let body = rest.lines().next().unwrap().trim();
    let body = body
        .replace("${AWS::StackName}", "my-stack")
        .replace("${AWS::Region}", "eu-west-1");
    assert!(!body.contains("${"), "an unsubstituted variable: {body}");
    let dashboard: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let names: Vec<&str> = tokenlife::metrics::Metric::ALL
        .iter()
        .map(|m| m.name())
        .collect();
    let widgets = dashboard["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 5);
    let text = body.as_str();
    let searched: Vec<&str> = text.split("MetricName=\\\"").skip(1).collect();
    assert_eq!(searched.len(), 5, "the exact SEARCH expressions");
    for quoted in searched {
        let name = quoted.split('\\').next().unwrap();
        assert!(
            names.contains(&name),
            "the dashboard names {name}, not published"
        );
    }
    assert!(text.contains("\"SigningKeyAge\""));
    // Latencies are one metric per operation (`Latency.DynamoDB.GetItem`): found by the
    // token `Latency`, unquoted.
    assert!(text.contains("} MetricName=Latency'"));
}

/// The stack's tables carry the names `TOKENLIFE_STACK` derives (`TableNames::for_stack`),
/// and the functions are told the stack's name: one name finds the whole deployment.
#[test]
fn template_names_its_tables_after_the_stack() {
    let template = template();
    let names = tokenlife::store::TableNames::for_stack("${AWS::StackName}");
    for (resource, name) in [
        ("UsersTable", names.users),
        ("SessionsTable", names.sessions),
        ("RevocationsTable", names.revocations),
        ("KeysTable", names.keys),
        ("ClientsTable", names.clients),
    ] {
        let start = template
            .find(&format!("\n  {resource}:\n"))
            .unwrap_or_else(|| panic!("template.yaml has no {resource}"));
        // The resource ends where the next one (two-space indent) begins.
        let body = &template[start + 1..];
        let end = body
            .match_indices("\n  ")
            .find(|(i, _)| body[i + 3..].starts_with(|c: char| c.is_ascii_alphabetic()))
            .map_or(body.len(), |(i, _)| i);
        let body = &body[..end];
        assert!(
            body.contains(&format!("TableName: !Sub \"{name}\"")),
            "{resource} is not named {name}: {body}"
        );
    }
    assert!(template.contains("TOKENLIFE_STACK: !Ref AWS::StackName"));
    for table_variable in [
        "USERS_TABLE",
        "SESSIONS_TABLE",
        "REVOCATIONS_TABLE",
        "KEYS_TABLE",
        "CLIENTS_TABLE",
    ] {
        assert!(
            !template.contains(&format!("TOKENLIFE_{table_variable}")),
            "the stack's name alone names its tables"
        );
    }
}

/// rotate-keys answers CloudFormation's custom resource before its own timeout: the work's
/// bound and every delivery try fit in the function's `Timeout`.
#[test]
fn rotate_keys_has_time_to_answer_cloudformation() {
    let template = template();
    let start = template.find("CodeUri: functions/rotate-keys").unwrap();
    let timeout: u64 = template[start..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("Timeout: "))
        .expect("rotate-keys sets its Timeout")
        .parse()
        .unwrap();
    let longest = tokenlife::custom_resource::longest_answer();
    assert!(
        std::time::Duration::from_secs(timeout) > longest,
        "rotate-keys' Timeout {timeout} s does not cover {longest:?}"
    );
}

/// The sessions table's `by-user` index projects exactly what a listing reads
/// (`items::SESSION_SUMMARY_ATTRIBUTES`), as `tokenlife setup` creates it.
#[test]
fn template_projects_what_a_session_listing_reads() {
    let template = template();
    let line = format!(
        "NonKeyAttributes: [{}]",
        tokenlife::store::dynamodb::items::SESSION_SUMMARY_ATTRIBUTES.join(", ")
    );
    assert!(template.contains(&line), "template.yaml lacks {line:?}");
}

/// Nothing keeps logs for ever: every function logs to a group of the template's own (not
/// Lambda's default group, which never expires), and every log group of the template has
/// the retention parameter.
#[test]
fn template_gives_every_log_a_retention() {
    let template = template();
    // Every function of the template: the route table's and the authorizer.
    let functions: Vec<&str> = template
        .split("      CodeUri: functions/")
        .skip(1)
        .collect();
    assert_eq!(functions.len(), Function::ALL.len() + 1);
    for function in functions {
        let (name, after) = function.split_once('\n').unwrap();
        let reference = "      LoggingConfig:\n        LogGroup: !Ref ";
        assert!(
            after.starts_with(reference),
            "{name}: no log group of its own"
        );
        let group: String = after[reference.len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        assert!(
            template.contains(&format!("\n  {group}:\n    Type: AWS::Logs::LogGroup\n")),
            "{group} is not a log group of the template"
        );
    }
    let groups: Vec<&str> = template
        .split("    Type: AWS::Logs::LogGroup\n")
        .skip(1)
        .collect();
    assert_eq!(
        groups.len(),
        Function::ALL.len() + 2,
        "one per function (six of the route table, the authorizer), one for access logs"
    );
    for group in groups {
        let properties = group.split("\n\n").next().unwrap();
        assert!(
            properties.contains("      RetentionInDays: !Ref LogRetentionDays"),
            "a log group without the retention parameter: {properties}"
        );
    }
}

/// Every alarm of the template notifies the alarm topic when there is one, and the README's
/// alarm table says what it means and what to do.
#[test]
fn every_alarm_notifies_and_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // Each alarm resource: its name (the line before its type) and its body (up to the
    // blank line that ends it).
    let marker = ":\n    Type: AWS::CloudWatch::Alarm\n";
    let alarms: Vec<(&str, &str)> = template
        .match_indices(marker)
        .map(|(at, _)| {
            let name = template[..at].rsplit("\n  ").next().unwrap();
            let body = &template[at + marker.len()..];
            (name, body.split("\n\n").next().unwrap())
        })
        .collect();
    assert!(alarms.len() >= 7, "the alarms of issue 16");
    for (name, body) in alarms {
        for actions in ["AlarmActions", "OKActions"] {
            assert!(
                body.contains(&format!(
                    "      {actions}: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]"
                )),
                "{name}: no {actions} to the alarm topic"
            );
        }
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "README's alarm table lacks {name}"
        );
    }
}

/// The data keys' wrapping key never carries the registry's tag: rotate-keys may schedule
/// the deletion of keys with that tag, and deleting the wrapping key would make every data
/// key useless. Its retirement right is also limited to signing-key specs.
#[test]
fn template_keeps_the_wrapping_key_out_of_rotations_reach() {
    let template = template();
    let (_, wrapping) = template
        .split_once("\n  WrappingKey:\n")
        .expect("a WrappingKey resource");
    let wrapping = &wrapping[..wrapping.find("\n\n").unwrap_or(wrapping.len())];
    assert!(wrapping.contains("Key: tokenlife-wrapping"), "{wrapping}");
    assert!(!wrapping.contains("Key: tokenlife-registry"), "{wrapping}");
    let (_, retire) = template
        .split_once("Action: [kms:GetPublicKey, kms:ScheduleKeyDeletion]")
        .expect("rotation's retirement right");
    let retire = &retire[..retire.find("\n            - ").unwrap_or(retire.len())];
    assert!(
        retire.contains("kms:KeySpec: [ECC_NIST_P256, RSA_2048]"),
        "{retire}"
    );
    assert_eq!(
        tokenlife::keys::data_key::WRAPPING_TAG,
        "tokenlife-wrapping",
        "setup tags its wrapping key as the template does"
    );
}
