//! Registered clients over HTTP on both backends: client authentication (Basic and
//! client_secret_post, public clients by id), the client credentials grant, sessions bound
//! to their client, revocation by the token's own client only, the admin client routes
//! (register, rotate a secret with an overlap, remove), and `tokenlife clients` on aws.

use serde_json::json;
use tokenlife::both_backends;
use tokenlife::config::Backend;
use tokenlife::secrets::b64url_decode;
use tokenlife::testkit::password_of;
use tokenlife::testkit::serve::{Answer, Server, TEST_SERVICE_CLIENT};

use super::serve;

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let encode = |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn form_with(server: &Server, path: &str, form: &str, authorization: Option<&str>) -> Answer {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    server.send("POST", path, &headers, Some(form.as_bytes()))
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(payload).unwrap()).unwrap()
}

both_backends!(clients_over_http => clients_authenticate_and_get_their_grants);

fn clients_authenticate_and_get_their_grants(backend: Backend) {
    let server = serve(backend, &[]);
    let svc_secret = server.service_secret.clone();
    let svc = basic(TEST_SERVICE_CLIENT, &svc_secret);
    let mut secrets = vec![svc_secret.clone()];

    // Client credentials, Basic: a token for the client itself, no refresh token.
    let grant = form_with(
        &server,
        "/token",
        "grant_type=client_credentials&scope=billing:read",
        Some(&svc),
    )
    .expect(200);
    assert!(
        grant.body.get("refresh_token").is_none(),
        "{:?}",
        grant.body
    );
    assert_eq!(grant.body["scope"], "billing:read");
    let token = grant.text("access_token");
    secrets.push(token.clone());
    let token_claims = claims(&token);
    assert_eq!(token_claims["sub"], TEST_SERVICE_CLIENT);
    assert_eq!(token_claims["client_id"], TEST_SERVICE_CLIENT);
    let me = server.userinfo(&token).expect(200);
    assert_eq!(me.body["sub"], TEST_SERVICE_CLIENT);
    // client_secret_post works alike.
    let posted = format!(
        "grant_type=client_credentials&client_id={TEST_SERVICE_CLIENT}&client_secret={svc_secret}"
    );
    form_with(&server, "/token", &posted, None).expect(200);

    // Failed client authentication: 401 invalid_client with a Basic challenge, whatever
    // went wrong; two methods at once: 400.
    for (form, authorization) in [
        (
            "grant_type=client_credentials",
            Some(basic(TEST_SERVICE_CLIENT, "wrong")),
        ),
        ("grant_type=client_credentials", Some(basic("nobody", "x"))),
        (
            "grant_type=client_credentials&client_id=svc&client_secret=wrong",
            None,
        ),
        ("grant_type=client_credentials&client_id=svc", None),
        (
            "grant_type=password&username=alice&password=x&client_id=nobody",
            None,
        ),
        (
            "grant_type=password&username=alice&password=x&client_id=cli&client_secret=x",
            None,
        ),
        (
            "grant_type=client_credentials",
            Some("Basic !!!".to_owned()),
        ),
    ] {
        let refused = form_with(&server, "/token", form, authorization.as_deref())
            .expect_error(401, "invalid_client");
        assert!(
            refused
                .header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic ")),
            "{form}"
        );
    }
    form_with(
        &server,
        "/token",
        &format!("grant_type=client_credentials&client_secret={svc_secret}"),
        Some(&svc),
    )
    .expect_error(400, "invalid_request");
    // `*` is any scope name of the client's own API, never `admin`, `*` or junk.
    for scope in ["admin", "*", "billing:read%20admin", "a%22b"] {
        form_with(
            &server,
            "/token",
            &format!("grant_type=client_credentials&scope={scope}"),
            Some(&svc),
        )
        .expect_error(400, "invalid_scope");
    }
    // A confidential client's token is revoked only with its authentication.
    form_with(&server, "/revoke", &format!("token={token}"), None)
        .expect_error(401, "invalid_client");
    server.userinfo(&token).expect(200);
    // A public client may not use the client credentials grant.
    form_with(
        &server,
        "/token",
        "grant_type=client_credentials&client_id=cli",
        None,
    )
    .expect_error(400, "unauthorized_client");

    // A public client's session is bound to it.
    let login = server
        .post_json(
            "/login",
            json!({"username": "alice", "password": password_of("alice"), "client_id": "cli"}),
            &[],
        )
        .expect(200);
    let refresh = login.text("refresh_token");
    secrets.push(refresh.clone());
    assert_eq!(claims(&login.text("access_token"))["client_id"], "cli");
    let other = format!("grant_type=refresh_token&refresh_token={refresh}&client_id=web");
    form_with(&server, "/token", &other, None).expect_error(400, "invalid_grant");
    // Another client may not revoke it (RFC 7009 2.1); nothing is revoked.
    form_with(&server, "/revoke", &format!("token={refresh}"), Some(&svc))
        .expect_error(400, "unauthorized_client");
    let own = format!("grant_type=refresh_token&refresh_token={refresh}&client_id=cli");
    let renewed = form_with(&server, "/token", &own, None).expect(200);
    secrets.push(renewed.text("refresh_token"));

    // Introspection (RFC 7662), by the service client, which may introspect any token.
    let introspect = |token: &str, authorization: Option<&str>| {
        form_with(
            &server,
            "/introspect",
            &format!("token={token}"),
            authorization,
        )
    };
    let alice_access = renewed.text("access_token");
    let alice_refresh = renewed.text("refresh_token");
    let seen = introspect(&alice_access, Some(&svc)).expect(200);
    assert_eq!(seen.body["active"], true);
    assert_eq!(seen.body["token_use"], "access_token");
    assert_eq!(seen.body["token_type"], "Bearer");
    assert_eq!(seen.body["client_id"], "cli");
    assert_eq!(seen.body["sub"], claims(&alice_access)["sub"]);
    assert_eq!(seen.header("cache-control"), Some("no-store"));
    let seen = introspect(&alice_refresh, Some(&svc)).expect(200);
    assert_eq!(seen.body["active"], true, "{:?}", seen.body);
    assert_eq!(seen.body["token_use"], "refresh_token");
    assert_eq!(seen.body["sid"], claims(&alice_access)["sid"]);
    // The spent refresh token, garbage, a token of another audience's shape: inactive, bare.
    for token in [refresh.as_str(), "garbage", "a.b.c"] {
        let seen = introspect(token, Some(&svc)).expect(200);
        assert_eq!(seen.body, json!({"active": false}), "{token}");
    }
    // Only confidential clients that authenticate may ask.
    introspect(&alice_access, None).expect_error(401, "invalid_client");
    form_with(
        &server,
        "/introspect",
        &format!("token={alice_access}&client_id=cli"),
        None,
    )
    .expect_error(401, "invalid_client");
    // Its own token: active; after revocation (by its client): inactive.
    assert_eq!(
        introspect(&token, Some(&svc)).expect(200).body["active"],
        true
    );

    // The service client revokes its own token.
    form_with(&server, "/revoke", &format!("token={token}"), Some(&svc)).expect(200);
    server.userinfo(&token).expect_error(401, "invalid_token");

    // Metadata names the grants and the ways to authenticate.
    let metadata = server
        .send("GET", "/.well-known/oauth-authorization-server", &[], None)
        .expect(200);
    assert_eq!(
        metadata.body["grant_types_supported"],
        json!(["password", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        metadata.body["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert!(
        metadata.body["introspection_endpoint"]
            .as_str()
            .is_some_and(|url| url.ends_with("/introspect"))
    );

    // Admin routes: register a confidential client with two scopes; its secret once.
    let admin = format!("Bearer {}", server.admin_token());
    let auth = [("authorization", admin.as_str())];
    let registered = server
        .post_json(
            "/admin/clients",
            json!({"name": "billing", "confidential": true, "scopes": ["billing:read", "billing:write"]}),
            &auth,
        )
        .expect(201);
    let id = registered.text("client_id");
    let first_secret = registered.text("client_secret");
    secrets.push(first_secret.clone());
    assert_eq!(registered.body["type"], "confidential");
    assert_eq!(
        registered.body["grant_types"],
        json!(["client_credentials"])
    );
    let shown = server
        .send("GET", &format!("/admin/clients/{id}"), &auth, None)
        .expect(200);
    assert!(shown.body.get("client_secret").is_none());
    let listed = server
        .send("GET", "/admin/clients", &auth, None)
        .expect(200);
    // An empty cursor is the first page; an overlong one is refused, not a store error
    // (schemathesis found the 500 the empty one was on DynamoDB).
    for listing in ["/admin/clients", "/admin/users", "/sessions"] {
        server
            .send("GET", &format!("{listing}?cursor="), &auth, None)
            .expect(200);
        let long = format!("{listing}?cursor={}", "x".repeat(600));
        server
            .send("GET", &long, &auth, None)
            .expect_error(400, "invalid_request");
    }
    assert!(
        listed.body["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id)
    );
    let billing = |secret: &str, scope: &str| {
        form_with(
            &server,
            "/token",
            &format!("grant_type=client_credentials{scope}"),
            Some(&basic(&id, secret)),
        )
    };
    assert_eq!(
        billing(&first_secret, "").expect(200).body["scope"],
        "billing:read billing:write"
    );
    billing(&first_secret, "&scope=admin").expect_error(400, "invalid_scope");
    // It may not use the password grant.
    form_with(
        &server,
        "/token",
        &format!(
            "grant_type=password&username=alice&password={}",
            password_of("alice")
        ),
        Some(&basic(&id, &first_secret)),
    )
    .expect_error(400, "unauthorized_client");

    // Rotation: both secrets work during the overlap; with none, the old one stops.
    let rotated = server
        .post_json(
            &format!("/admin/clients/{id}/rotate-secret"),
            json!({}),
            &auth,
        )
        .expect(200);
    let second_secret = rotated.text("client_secret");
    secrets.push(second_secret.clone());
    billing(&first_secret, "").expect(200);
    billing(&second_secret, "").expect(200);
    let rotated = server
        .post_json(
            &format!("/admin/clients/{id}/rotate-secret"),
            json!({"overlap_secs": 0}),
            &auth,
        )
        .expect(200);
    let third_secret = rotated.text("client_secret");
    secrets.push(third_secret.clone());
    billing(&first_secret, "").expect_error(401, "invalid_client");
    billing(&second_secret, "").expect_error(401, "invalid_client");
    let live = billing(&third_secret, "").expect(200).text("access_token");
    server.userinfo(&live).expect(200);

    // A client that may not introspect others' tokens sees its own, and nothing of alice's.
    let billing_auth = basic(&id, &third_secret);
    let own = introspect(&live, Some(&billing_auth)).expect(200);
    assert_eq!(own.body["active"], true);
    assert_eq!(own.body["sub"], id.as_str());
    // (The service client, which may introspect any token, sees both as active.)
    for token in [&alice_access, &alice_refresh] {
        let foreign = introspect(token, Some(&billing_auth)).expect(200);
        assert_eq!(foreign.body, json!({"active": false}));
        assert_eq!(
            introspect(token, Some(&svc)).expect(200).body["active"],
            true
        );
    }
    // Logging out ends alice's session: its tokens go inactive.
    server
        .post_json("/logout", json!({"refresh_token": alice_refresh}), &[])
        .expect(200);
    assert_eq!(
        introspect(&alice_access, Some(&svc)).expect(200).body,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&alice_refresh, Some(&svc)).expect(200).body,
        json!({"active": false})
    );

    // Removal revokes its tokens at once and it no longer authenticates.
    server
        .send("DELETE", &format!("/admin/clients/{id}"), &auth, None)
        .expect(200);
    server.userinfo(&live).expect_error(401, "invalid_token");
    assert_eq!(
        introspect(&live, Some(&svc)).expect(200).body,
        json!({"active": false})
    );
    billing(&third_secret, "").expect_error(401, "invalid_client");
    server
        .send("GET", &format!("/admin/clients/{id}"), &auth, None)
        .expect_error(404, "not_found");

    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    server.assert_output_free_of(&secrets);
}

/// `tokenlife clients` against the deployment's tables (aws), as an operator would.
#[test]
fn the_clients_command_registers_rotates_and_removes() {
    let server = serve(Backend::Aws, &[]);
    let run = |args: &[&str]| {
        let output = server.cli(args, "");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let added: serde_json::Value = serde_json::from_str(&run(&[
        "clients",
        "add",
        "reports",
        "--confidential",
        "--scope",
        "reports:read",
        "--json",
    ]))
    .unwrap();
    let id = added["client_id"].as_str().unwrap().to_owned();
    let secret = added["client_secret"].as_str().unwrap().to_owned();
    // The server sees the client at once (no cache).
    let form = "grant_type=client_credentials";
    form_with(&server, "/token", form, Some(&basic(&id, &secret))).expect(200);
    assert!(run(&["clients", "list"]).contains(&id));
    let shown = run(&["clients", "show", &id, "--json"]);
    assert!(!shown.contains(&secret));
    let rotated: serde_json::Value = serde_json::from_str(&run(&[
        "clients",
        "rotate-secret",
        &id,
        "--overlap",
        "0",
        "--json",
    ]))
    .unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap();
    form_with(&server, "/token", form, Some(&basic(&id, &secret)))
        .expect_error(401, "invalid_client");
    form_with(&server, "/token", form, Some(&basic(&id, new_secret))).expect(200);
    run(&["clients", "remove", &id]);
    form_with(&server, "/token", form, Some(&basic(&id, new_secret)))
        .expect_error(401, "invalid_client");
    // A public client has no secret: `add` prints none.
    let public: serde_json::Value =
        serde_json::from_str(&run(&["clients", "add", "spa", "--json"])).unwrap();
    assert!(public.get("client_secret").is_none());
    assert_eq!(public["grant_types"], json!(["password", "refresh_token"]));
    server.assert_output_free_of(&[&secret, new_secret]);
}

/// authlib (PyPI), a third-party OAuth client: the client credentials grant with Basic and
/// with client_secret_post, introspection and revocation, as a service would use them.
#[test]
fn authlib_gets_introspects_and_revokes_client_credentials_tokens() {
    let Ok(python) = std::env::var("TOKENLIFE_TEST_PYTHON") else {
        panic!(
            "TOKENLIFE_TEST_PYTHON is not set: run ./scripts/test, which installs authlib (PyPI) \
             in its venv and sets it"
        );
    };
    let server = serve(Backend::Memory, &[]);
    let secret = server.service_secret.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/authlib_client.py");
    let output = std::process::Command::new(python)
        .args([script, &server.base, TEST_SERVICE_CLIENT, &secret])
        .output()
        .expect("run the authlib client");
    assert!(
        output.status.success(),
        "authlib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for method in ["client_secret_basic", "client_secret_post"] {
        let grant = &seen["grants"][method];
        assert_eq!(grant["token_type"], "Bearer", "{seen}");
        assert_eq!(grant["scope"], "reports:read");
        assert_eq!(grant["has_refresh_token"], false);
        assert_eq!(
            grant["introspected"],
            json!({"active": true, "sub": TEST_SERVICE_CLIENT, "client_id": TEST_SERVICE_CLIENT,
                   "scope": "reports:read", "token_use": "access_token"})
        );
        assert_eq!(grant["active_after_revocation"], false);
    }
    assert_eq!(seen["wrong_secret"], "invalid_client");
    server.assert_output_free_of(&[&secret]);
}

/// `serve --client` plants development clients (secrets in argv, any scope) in the
/// embedded default only: on a deployment's tables it refuses to start.
#[test]
fn serve_registers_development_clients_only_in_memory() {
    let env = tokenlife::testkit::serve::aws_env();
    let output = std::process::Command::new(super::BIN)
        .envs(env)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--client",
            "dev:dev-secret",
        ])
        .output()
        .expect("run tokenlife serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tokenlife clients add"), "{stderr}");
}
