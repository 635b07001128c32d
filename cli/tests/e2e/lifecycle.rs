//! The lifecycle over HTTP: login -> userinfo -> expiry -> refresh -> reuse -> revoke,
//! the cookie CSRF guard and CORS, concurrent refreshes, bad input and bad configuration.

use std::process::Command;

use std::time::Duration;

use serde_json::json;
use tokenlife::both_backends;
use tokenlife::config::Backend;
use tokenlife::testkit::password_of;
use tokenlife::testkit::serve::{Answer, Server, race_refreshes};

use super::{BIN, serve};

both_backends!(lifecycle_over_http => the_whole_lifecycle_over_http);

fn the_whole_lifecycle_over_http(backend: Backend) {
    let server = serve(
        backend,
        &[
            ("TOKENLIFE_ACCESS_TTL", "2"),
            ("TOKENLIFE_LEEWAY", "0"),
            ("TOKENLIFE_REFRESH_GRACE", "0"),
        ],
    );
    let mut secrets: Vec<String> = vec![password_of("alice"), password_of("root")];

    // login -> userinfo
    let login = server.login("alice", &password_of("alice")).expect(200);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 2);
    let (access, refresh) = (login.text("access_token"), login.text("refresh_token"));
    secrets.extend([access.clone(), refresh.clone()]);
    let me = server.userinfo(&access).expect(200);
    assert_eq!(me.body["scope"], "user");
    let sub = me.text("sub");

    // Wrong password and unknown user: the same answer.
    let wrong = server
        .login("alice", "not-her-password")
        .expect_error(400, "invalid_grant");
    let unknown = server
        .login("nobody", "not-her-password")
        .expect_error(400, "invalid_grant");
    assert_eq!(wrong.body, unknown.body);

    // expiry -> 401
    std::thread::sleep(Duration::from_millis(2_100));
    let expired = server.userinfo(&access).expect_error(401, "invalid_token");
    assert!(
        expired
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );

    // refresh -> new tokens that work
    let renewed = server.refresh(&refresh).expect(200);
    let (access2, refresh2) = (renewed.text("access_token"), renewed.text("refresh_token"));
    secrets.extend([access2.clone(), refresh2.clone()]);
    assert_ne!(refresh2, refresh);
    assert_eq!(server.userinfo(&access2).expect(200).text("sub"), sub);

    // reuse of the spent token -> the session is revoked, tokens and all
    let reuse = server.refresh(&refresh).expect_error(400, "invalid_grant");
    assert!(reuse.text("error_description").contains("already used"));
    server.refresh(&refresh2).expect_error(400, "invalid_grant");
    server.userinfo(&access2).expect_error(401, "invalid_token");

    // A new login; revoke its refresh token (RFC 7009) -> session and access token rejected.
    let login = server.login("alice", &password_of("alice")).expect(200);
    let (access3, refresh3) = (login.text("access_token"), login.text("refresh_token"));
    secrets.extend([access3.clone(), refresh3.clone()]);
    server.userinfo(&access3).expect(200);
    let form = format!("token={refresh3}&token_type_hint=refresh_token");
    server.post_form("/revoke", &form).expect(200);
    server.userinfo(&access3).expect_error(401, "invalid_token");
    server.refresh(&refresh3).expect_error(400, "invalid_grant");
    // Unknown tokens are fine to revoke.
    server.post_form("/revoke", "token=whatever").expect(200);

    // Revoke one access token: only it dies.
    let login = server.login("alice", &password_of("alice")).expect(200);
    let (access4, refresh4) = (login.text("access_token"), login.text("refresh_token"));
    secrets.extend([access4.clone(), refresh4.clone()]);
    server
        .post_json("/revoke", json!({ "token": access4 }), &[])
        .expect(200);
    server.userinfo(&access4).expect_error(401, "invalid_token");
    let renewed = server.refresh(&refresh4).expect(200);
    server.userinfo(&renewed.text("access_token")).expect(200);

    // Admin: revoke every session of alice; a login right after works.
    let root = server
        .login("root", &password_of("root"))
        .expect(200)
        .text("access_token");
    secrets.push(root.clone());
    let alice_bearer = format!("Bearer {}", renewed.text("access_token"));
    server
        .send(
            "POST",
            "/admin/users/root/revoke",
            &[("authorization", &alice_bearer)],
            None,
        )
        .expect_error(403, "insufficient_scope");
    let root_bearer = format!("Bearer {root}");
    server
        .send(
            "POST",
            "/admin/users/alice/revoke",
            &[("authorization", &root_bearer)],
            None,
        )
        .expect(200);
    server
        .userinfo(&renewed.text("access_token"))
        .expect_error(401, "invalid_token");
    server
        .refresh(&renewed.text("refresh_token"))
        .expect_error(400, "invalid_grant");
    let again = server.login("alice", &password_of("alice")).expect(200);
    server.userinfo(&again.text("access_token")).expect(200);
    server.refresh(&again.text("refresh_token")).expect(200);

    // The OAuth token endpoint, as an OAuth client library would call it.
    let form = format!(
        "grant_type=password&username=alice&password={}&client_id=cli",
        password_of("alice")
    );
    let grant = server.post_form("/token", &form).expect(200);
    secrets.push(grant.text("refresh_token"));
    // Its session is bound to client `cli`: a refresh must name it (RFC 6749 section 6).
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        grant.text("refresh_token")
    );
    server
        .post_form("/token", &form)
        .expect_error(400, "invalid_grant");
    let grant = server
        .post_form("/token", &format!("{form}&client_id=cli"))
        .expect(200);
    secrets.push(grant.text("refresh_token"));
    server
        .post_form("/token", "grant_type=authorization_code&code=x")
        .expect_error(400, "unsupported_grant_type");
    // Client credentials need a client that authenticates (tests in clients.rs).
    server
        .post_form("/token", "grant_type=client_credentials")
        .expect_error(401, "invalid_client");

    // Metadata and JWKS.
    let metadata = server
        .send("GET", "/.well-known/oauth-authorization-server", &[], None)
        .expect(200);
    assert_eq!(metadata.body["issuer"], server.base);
    assert_eq!(
        metadata.body["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.base)
    );
    let jwks = server
        .send("GET", "/.well-known/jwks.json", &[], None)
        .expect(200);
    assert!(
        jwks.header("cache-control")
            .unwrap()
            .starts_with("public, max-age=")
    );

    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    server.assert_output_free_of(&secrets);
    assert!(
        server.output().contains("alice"),
        "the banner names the users"
    );
}

#[test]
fn cookie_refresh_needs_an_allowed_origin() {
    let server = serve(
        Backend::Memory,
        &[("TOKENLIFE_CORS_ORIGINS", "https://app.example.com")],
    );
    let login = server.login("alice", &password_of("alice")).expect(200);
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        login
            .header("set-cookie")
            .unwrap()
            .contains("HttpOnly; Secure; SameSite=Strict; Path=/refresh")
    );

    server
        .send("POST", "/refresh", &[("cookie", &cookie)], None)
        .expect_error(403, "access_denied");
    server
        .send(
            "POST",
            "/refresh",
            &[("cookie", &cookie), ("origin", "https://evil.example")],
            None,
        )
        .expect_error(403, "access_denied");
    let ok = server
        .send(
            "POST",
            "/refresh",
            &[("cookie", &cookie), ("origin", "https://app.example.com")],
            None,
        )
        .expect(200);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    // The issuer's own origin (a page served by the API's host) may use the cookie too.
    let cookie = ok
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let referer = format!("{}/some/page", server.base);
    server
        .send(
            "POST",
            "/refresh",
            &[("cookie", &cookie), ("referer", &referer)],
            None,
        )
        .expect(200);

    // A session bound to a client: its cookie refresh names the client in the body, or is
    // refused and changes nothing.
    let bound = server
        .post_json(
            "/login",
            json!({"username": "alice", "password": password_of("alice"), "client_id": "web"}),
            &[],
        )
        .expect(200);
    let cookie = bound
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let from_app = [
        ("cookie", cookie.as_str()),
        ("origin", "https://app.example.com"),
        ("content-type", "application/json"),
    ];
    server
        .send("POST", "/refresh", &from_app, None)
        .expect_error(400, "invalid_grant");
    server
        .send(
            "POST",
            "/refresh",
            &from_app,
            Some(br#"{"client_id":"web"}"#),
        )
        .expect(200);

    // Preflight: answered for the allowed origin only.
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let answer = server
        .send("OPTIONS", "/refresh", &preflight, None)
        .expect(204);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let answer = server
        .send(
            "OPTIONS",
            "/refresh",
            &[("origin", "https://evil.example")],
            None,
        )
        .expect_error(403, "access_denied");
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

both_backends!(concurrent_refreshes_without_grace => thirty_concurrent_refreshes_without_grace_rotate_exactly_once);

/// 30 concurrent refreshes of one fresh refresh token of alice, on a server with
/// `TOKENLIFE_REFRESH_GRACE` = `grace`.
fn race_on(backend: Backend, grace: &str) -> (Server, Vec<Answer>) {
    let server = serve(backend, &[("TOKENLIFE_REFRESH_GRACE", grace)]);
    let refresh = server
        .login("alice", &password_of("alice"))
        .expect(200)
        .text("refresh_token");
    let answers = race_refreshes(&server, &refresh);
    (server, answers)
}

fn thirty_concurrent_refreshes_without_grace_rotate_exactly_once(backend: Backend) {
    let (_server, answers) = race_on(backend, "0");
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one rotation: {answers:?}");
    for loser in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(loser.status, 400);
        assert_eq!(loser.body["error"], "invalid_grant");
    }
}

both_backends!(concurrent_refreshes_with_grace => thirty_concurrent_refreshes_with_grace_all_get_the_same_successor);

fn thirty_concurrent_refreshes_with_grace_all_get_the_same_successor(backend: Backend) {
    let (server, answers) = race_on(backend, "30");
    let successors: Vec<String> = answers
        .iter()
        .map(|a| {
            assert_eq!(a.status, 200, "{:?}", a.body);
            a.text("refresh_token")
        })
        .collect();
    assert!(
        successors.iter().all(|s| *s == successors[0]),
        "one successor for all"
    );
    // Exactly one rotation happened: the successor is generation 1 and rotates normally.
    assert_eq!(successors[0].split('.').nth(1), Some("1"));
    let next = server
        .refresh(&successors[0])
        .expect(200)
        .text("refresh_token");
    assert_eq!(next.split('.').nth(1), Some("2"));
}

/// Method, path, headers, body.
type BadRequest<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Option<Vec<u8>>);

both_backends!(bad_input => bad_input_gets_a_4xx_json_error_and_changes_nothing);

fn bad_input_gets_a_4xx_json_error_and_changes_nothing(backend: Backend) {
    let server = serve(backend, &[]);
    let login = server.login("alice", &password_of("alice")).expect(200);
    let (access, refresh) = (login.text("access_token"), login.text("refresh_token"));

    let huge = vec![b'a'; 100 * 1024];
    let huge_json = format!(
        "{{\"username\":\"alice\",\"password\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let huge_token = format!("Bearer {}", "A".repeat(20_000));
    let cases: Vec<BadRequest> = vec![
        (
            "POST",
            "/login",
            vec![("content-type", "application/json")],
            Some(b"{not json".to_vec()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/json")],
            Some(b"[1,2,3]".to_vec()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/json")],
            Some(br#"{"username":["a"],"password":"x"}"#.to_vec()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/json")],
            Some(b"{\"username\":\"al\\u0000ice\",\"password\":\"x\"}".to_vec()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/json")],
            Some(huge_json.into_bytes()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/x-www-form-urlencoded")],
            Some(huge.clone()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/x-www-form-urlencoded")],
            Some(b"username=a&username=b&password=x".to_vec()),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "application/x-www-form-urlencoded")],
            Some(vec![0xff, 0xfe, 0x00, 0x41]),
        ),
        (
            "POST",
            "/login",
            vec![("content-type", "image/png")],
            Some(vec![0x89, 0x50, 0x4e, 0x47]),
        ),
        ("POST", "/login", vec![], Some(b"username=alice".to_vec())),
        ("POST", "/login", vec![], None),
        (
            "POST",
            "/refresh",
            vec![("content-type", "application/json")],
            Some(br#"{"refresh_token":"%%%.1.@@@"}"#.to_vec()),
        ),
        (
            "POST",
            "/refresh",
            vec![("content-type", "application/json")],
            Some(format!("{{\"refresh_token\":\"{}\"}}", "A".repeat(5000)).into_bytes()),
        ),
        (
            "POST",
            "/revoke",
            vec![("content-type", "application/json")],
            Some(b"{\"token\": 5}".to_vec()),
        ),
        (
            "GET",
            "/userinfo",
            vec![("authorization", huge_token.as_str())],
            None,
        ),
        (
            "GET",
            "/userinfo",
            vec![("authorization", "Basic YWxpY2U6eA==")],
            None,
        ),
        (
            "GET",
            "/userinfo",
            vec![("authorization", "Bearer a.b.c")],
            None,
        ),
        (
            "GET",
            "/userinfo",
            vec![(
                "authorization",
                "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2ln",
            )],
            None,
        ),
        ("DELETE", "/login", vec![], None),
        ("PUT", "/.well-known/jwks.json", vec![], None),
        ("GET", "/admin/users/alice/revoke", vec![], None),
        ("GET", "/nowhere", vec![], None),
        ("GET", "/%00", vec![], None),
        ("POST", "/admin/users/%ZZ/revoke", vec![], None),
    ];
    for (method, path, headers, body) in &cases {
        let answer = server.send(method, path, headers, body.as_deref());
        assert!(
            (400..500).contains(&answer.status),
            "{method} {path} answered {}: {:?}",
            answer.status,
            answer.body
        );
        assert!(
            answer.body["error"].is_string(),
            "{method} {path}: {:?}",
            answer.body
        );
        assert!(answer.body["error_description"].is_string());
    }
    // Nothing changed: the tokens issued before all that still work.
    server.userinfo(&access).expect(200);
    server.refresh(&refresh).expect(200);
}

#[test]
fn bad_configuration_fails_at_start_naming_the_variable() {
    let output = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("TOKENLIFE_ACCESS_TTL", "fifteen minutes")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TOKENLIFE_ACCESS_TTL"), "{stderr}");

    let output = Command::new(BIN)
        .args(["serve", "--user", "no-password"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// Issue 10: a client that starts a request and never finishes its headers is cut off
/// (header read timeout), so idle connections cannot pin the server's resources.
#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let server = serve(Backend::Memory, &[]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 256];
    let closed = match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(_) => true, // an error answer, then the close
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the server cut the connection");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(25),
        "cut off after the header timeout, not left open: {waited:?}"
    );
}

/// Behind `TOKENLIFE_TRUSTED_PROXY_HOPS` proxies, the address sessions (and login limits and
/// the audit trail) record is the one the outermost trusted proxy wrote into
/// `X-Forwarded-For`, not what the client claimed left of it; without the setting the
/// header is ignored and the connection's peer counts.
#[test]
fn forwarded_addresses_are_believed_only_behind_trusted_proxies() {
    let forwarded = [("x-forwarded-for", "6.6.6.6, 203.0.113.9")];
    for (hops, expected) in [("0", "127.0.0.1"), ("1", "203.0.113.9")] {
        let server = serve(Backend::Memory, &[("TOKENLIFE_TRUSTED_PROXY_HOPS", hops)]);
        let login = server
            .post_json(
                "/login",
                json!({ "username": "alice", "password": password_of("alice") }),
                &forwarded,
            )
            .expect(200);
        let bearer = format!("Bearer {}", login.text("access_token"));
        let sessions = server
            .send("GET", "/sessions", &[("authorization", &bearer)], None)
            .expect(200);
        assert_eq!(
            sessions.body["sessions"][0]["source_ip"], expected,
            "{hops} hops"
        );
    }
}
