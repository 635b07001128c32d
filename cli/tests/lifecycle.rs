//! End to end: the real `tokenlife serve` binary on a free port, driven over HTTP through the
//! whole lifecycle, concurrent refreshes, bad input, and a third-party verifier (Node
//! `jose`) checking our tokens against our JWKS. The server's own output is checked for
//! leaked secrets at the end of each test.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

const ALICE_PASSWORD: &str = "alice-Pa55word";
const ROOT_PASSWORD: &str = "root-Pa55word";

/// Which backend a server runs on: the embedded default, or DynamoDB Local + ministack
/// (fresh tables and key per server, created with `tokenlife setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Aws,
}

/// Environment for an `aws` server with its own tables and key; fails (never skips) when the
/// emulators are not configured.
fn aws_env() -> Vec<(String, String)> {
    for variable in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS"] {
        if std::env::var(variable).is_err() {
            panic!(
                "{variable} is not set: the aws-backend tests need DynamoDB Local and ministack. \
                 Run ./scripts/test (it starts them), or `scripts/emulators start && . \"$(scripts/emulators env)\"`"
            );
        }
    }
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("e2e-{}-{stamp}-{n}", std::process::id());
    vec![
        ("TOKENLIFE_BACKEND".into(), "aws".into()),
        ("TOKENLIFE_USERS_TABLE".into(), format!("{name}-users")),
        (
            "TOKENLIFE_SESSIONS_TABLE".into(),
            format!("{name}-sessions"),
        ),
        (
            "TOKENLIFE_REVOCATIONS_TABLE".into(),
            format!("{name}-revocations"),
        ),
        ("TOKENLIFE_KEYS_TABLE".into(), format!("{name}-keys")),
    ]
}

struct Server {
    child: Child,
    base: String,
    /// The TOKENLIFE_* settings it runs with (for `tokenlife keys` against the same tables).
    env: Vec<(String, String)>,
    output: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Server {
    fn start(backend: Backend, env: &[(&str, &str)]) -> Server {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if backend == Backend::Aws {
            env.extend(aws_env());
            // `tokenlife setup`, twice: the second run must succeed and change nothing.
            for run in 0..2 {
                let output = Command::new(env!("CARGO_BIN_EXE_tokenlife"))
                    .arg("setup")
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .output()
                    .expect("run tokenlife setup");
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "setup failed: {stdout} {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                if run == 1 {
                    assert!(
                        !stdout.contains("created") && !stdout.contains("turned on"),
                        "second setup changed something: {stdout}"
                    );
                }
            }
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenlife"));
        command
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(["--user", &format!("alice:{ALICE_PASSWORD}")])
            .args(["--user", &format!("root:{ROOT_PASSWORD}:admin")])
            .env("TOKENLIFE_ARGON2_MEMORY_KIB", "1024")
            .env("TOKENLIFE_ARGON2_ITERATIONS", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("TOKENLIFE_") && !key.starts_with("TOKENLIFE_ARGON2") {
                command.env_remove(key);
            }
        }
        for (key, value) in &env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start tokenlife serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // Log lines (such as the key created at start) may come before the banner.
        let mut first = String::new();
        let mut logs = String::new();
        while stdout.read_line(&mut first).unwrap() > 0
            && !first.starts_with("tokenlife listening on ")
        {
            logs.push_str(&std::mem::take(&mut first));
        }
        let base = first
            .trim()
            .strip_prefix("tokenlife listening on ")
            .unwrap_or_else(|| {
                let mut rest = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut rest);
                panic!("no banner; stdout: {logs}{first}; stderr: {rest}")
            })
            .to_owned();
        let output = Arc::new(Mutex::new(logs + &first));
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Server {
            child,
            base,
            env,
            output,
            agent,
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut builder = http_request(method, &url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .unwrap();
        let mut response = self.agent.run(request).expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    fn post_json(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", path, &all, Some(body.to_string().as_bytes()))
    }

    fn post_form(&self, path: &str, form: &str) -> Answer {
        self.send(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(form.as_bytes()),
        )
    }

    fn login(&self, username: &str, password: &str) -> Answer {
        self.post_json(
            "/login",
            json!({ "username": username, "password": password }),
            &[],
        )
    }

    fn userinfo(&self, access_token: &str) -> Answer {
        let bearer = format!("Bearer {access_token}");
        self.send("GET", "/userinfo", &[("authorization", &bearer)], None)
    }

    fn refresh(&self, refresh_token: &str) -> Answer {
        self.post_json("/refresh", json!({ "refresh_token": refresh_token }), &[])
    }

    /// Fails if the server ever printed any of `secrets`.
    fn assert_output_free_of(&self, secrets: &[&str]) {
        std::thread::sleep(Duration::from_millis(200));
        let output = self.output.lock().unwrap();
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            assert!(
                !output.contains(secret),
                "the server printed a secret: {secret:.12}..."
            );
            // Nor any long piece of a token.
            if secret.len() > 40 {
                for part in secret.split('.').filter(|p| p.len() >= 16) {
                    assert!(!output.contains(part), "the server printed a token part");
                }
            }
        }
    }
}

fn http_request(method: &str, url: &str) -> ureq::http::request::Builder {
    ureq::http::Request::builder().method(method).uri(url)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {:?}", self.body))
            .to_owned()
    }

    fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{:?}", self.body);
        self
    }

    fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["error"], code, "{:?}", self.body);
        assert!(self.body["error_description"].is_string());
        self
    }
}

#[test]
fn lifecycle_over_http_in_memory() {
    the_whole_lifecycle_over_http(Backend::Memory);
}

#[test]
fn lifecycle_over_http_on_aws() {
    the_whole_lifecycle_over_http(Backend::Aws);
}

fn the_whole_lifecycle_over_http(backend: Backend) {
    let server = Server::start(
        backend,
        &[
            ("TOKENLIFE_ACCESS_TTL", "2"),
            ("TOKENLIFE_LEEWAY", "0"),
            ("TOKENLIFE_REFRESH_GRACE", "0"),
        ],
    );
    let mut secrets: Vec<String> = vec![ALICE_PASSWORD.into(), ROOT_PASSWORD.into()];

    // login -> userinfo
    let login = server.login("alice", ALICE_PASSWORD).expect(200);
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
    let login = server.login("alice", ALICE_PASSWORD).expect(200);
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
    let login = server.login("alice", ALICE_PASSWORD).expect(200);
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
        .login("root", ROOT_PASSWORD)
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
    let again = server.login("alice", ALICE_PASSWORD).expect(200);
    server.userinfo(&again.text("access_token")).expect(200);
    server.refresh(&again.text("refresh_token")).expect(200);

    // The OAuth token endpoint, as an OAuth client library would call it.
    let form =
        format!("grant_type=password&username=alice&password={ALICE_PASSWORD}&client_id=cli");
    let grant = server.post_form("/token", &form).expect(200);
    secrets.push(grant.text("refresh_token"));
    let form = format!(
        "grant_type=refresh_token&refresh_token={}",
        grant.text("refresh_token")
    );
    let grant = server.post_form("/token", &form).expect(200);
    secrets.push(grant.text("refresh_token"));
    server
        .post_form("/token", "grant_type=client_credentials")
        .expect_error(400, "unsupported_grant_type");

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
    let output = server.output.lock().unwrap();
    assert!(output.contains("alice"), "the banner names the users");
}

#[test]
fn cookie_refresh_needs_an_allowed_origin() {
    let server = Server::start(
        Backend::Memory,
        &[("TOKENLIFE_CORS_ORIGINS", "https://app.example.com")],
    );
    let login = server.login("alice", ALICE_PASSWORD).expect(200);
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

/// 30 threads present the same refresh token at once.
fn race_refreshes(server: &Server, refresh_token: &str) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(30));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|_| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    barrier.wait();
                    server.refresh(refresh_token)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_refreshes_without_grace_in_memory() {
    thirty_concurrent_refreshes_without_grace_rotate_exactly_once(Backend::Memory);
}

#[test]
fn concurrent_refreshes_without_grace_on_aws() {
    thirty_concurrent_refreshes_without_grace_rotate_exactly_once(Backend::Aws);
}

fn thirty_concurrent_refreshes_without_grace_rotate_exactly_once(backend: Backend) {
    let server = Server::start(backend, &[("TOKENLIFE_REFRESH_GRACE", "0")]);
    let refresh = server
        .login("alice", ALICE_PASSWORD)
        .expect(200)
        .text("refresh_token");
    let answers = race_refreshes(&server, &refresh);
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one rotation: {answers:?}");
    for loser in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(loser.status, 400);
        assert_eq!(loser.body["error"], "invalid_grant");
    }
}

#[test]
fn concurrent_refreshes_with_grace_in_memory() {
    thirty_concurrent_refreshes_with_grace_all_get_the_same_successor(Backend::Memory);
}

#[test]
fn concurrent_refreshes_with_grace_on_aws() {
    thirty_concurrent_refreshes_with_grace_all_get_the_same_successor(Backend::Aws);
}

fn thirty_concurrent_refreshes_with_grace_all_get_the_same_successor(backend: Backend) {
    let server = Server::start(backend, &[("TOKENLIFE_REFRESH_GRACE", "30")]);
    let refresh = server
        .login("alice", ALICE_PASSWORD)
        .expect(200)
        .text("refresh_token");
    let answers = race_refreshes(&server, &refresh);
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

#[test]
fn bad_input_in_memory() {
    bad_input_gets_a_4xx_json_error_and_changes_nothing(Backend::Memory);
}

#[test]
fn bad_input_on_aws() {
    bad_input_gets_a_4xx_json_error_and_changes_nothing(Backend::Aws);
}

fn bad_input_gets_a_4xx_json_error_and_changes_nothing(backend: Backend) {
    let server = Server::start(backend, &[]);
    let login = server.login("alice", ALICE_PASSWORD).expect(200);
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
fn jose_verifies_our_tokens_in_memory() {
    a_third_party_verifier_accepts_our_tokens_against_our_jwks(Backend::Memory);
}

#[test]
fn jose_verifies_our_tokens_on_aws() {
    a_third_party_verifier_accepts_our_tokens_against_our_jwks(Backend::Aws);
}

fn a_third_party_verifier_accepts_our_tokens_against_our_jwks(backend: Backend) {
    let Ok(verifier) = std::env::var("TOKENLIFE_TEST_JOSE_VERIFIER") else {
        panic!(
            "TOKENLIFE_TEST_JOSE_VERIFIER is not set: run ./scripts/test, which installs the Node jose \
             verifier (tests/jose) with npm and sets it, or set it to the path of an installed verify.mjs"
        );
    };
    for alg in ["ES256", "RS256"] {
        let server = Server::start(
            backend,
            &[("TOKENLIFE_ALG", alg), ("TOKENLIFE_AUDIENCE", "orders-api")],
        );
        let access = server
            .login("alice", ALICE_PASSWORD)
            .expect(200)
            .text("access_token");
        let mut forged = access.clone();
        forged.replace_range(forged.len() - 6.., "AAAAAA");
        let jwks_url = format!("{}/.well-known/jwks.json", server.base);
        let output = Command::new("node")
            .arg(&verifier)
            .args([&jwks_url, &server.base, "orders-api", &access, &forged])
            .output()
            .expect("node runs (Node 20 is on the machine)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "jose said: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            lines[0]["ok"], true,
            "{alg}: jose refused our token: {}",
            lines[0]
        );
        assert_eq!(lines[0]["alg"], alg);
        assert_eq!(
            lines[1]["ok"], false,
            "{alg}: jose accepted a forged signature"
        );
        let me = server.userinfo(&access).expect(200);
        assert_eq!(lines[0]["sub"], me.body["sub"]);
    }
}

#[test]
fn bad_configuration_fails_at_start_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_tokenlife"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("TOKENLIFE_ACCESS_TTL", "fifteen minutes")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TOKENLIFE_ACCESS_TTL"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_tokenlife"))
        .args(["serve", "--user", "no-password"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// The path of an installed `tests/jose/<script>` (`./scripts/test` installs them).
fn jose_script(script: &str) -> std::path::PathBuf {
    let Ok(verifier) = std::env::var("TOKENLIFE_TEST_JOSE_VERIFIER") else {
        panic!(
            "TOKENLIFE_TEST_JOSE_VERIFIER is not set: run ./scripts/test, which installs the Node jose \
             verifier (tests/jose) with npm and sets it, or set it to the path of an installed verify.mjs"
        );
    };
    std::path::Path::new(&verifier).with_file_name(script)
}

/// A long-running third-party JWKS client (jose's `createRemoteJWKSet`, with its own cache
/// of our key set): `tests/jose/verify-stream.mjs`.
struct JoseClient {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl JoseClient {
    /// Caches the key set for `cache_max_age_ms`; refetches on an unknown kid at most once
    /// per `cooldown_ms`.
    fn start(server: &Server, audience: &str, cache_max_age_ms: u64, cooldown_ms: u64) -> Self {
        let mut child = Command::new("node")
            .arg(jose_script("verify-stream.mjs"))
            .arg(format!("{}/.well-known/jwks.json", server.base))
            .args([&server.base, audience])
            .args([cache_max_age_ms.to_string(), cooldown_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs (Node 20 is on the machine)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn verify(&mut self, token: &str) -> Value {
        use std::io::Write;
        writeln!(self.stdin, "{token}").expect("jose client is running");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("jose client said {line:?}"))
    }
}

impl Drop for JoseClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The `kid` and `exp` of an access token (read, not verified).
fn kid_and_exp(token: &str) -> (String, u64) {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&tokenlife::secrets::b64url_decode(payload).unwrap()).unwrap();
    (
        tokenlife::token::header_kid(token).expect("a token with a kid"),
        claims["exp"].as_u64().unwrap(),
    )
}

impl Server {
    /// The signing keys as (kid, state), from the admin route.
    fn keys(&self) -> Vec<(String, String)> {
        let admin = self
            .login("root", ROOT_PASSWORD)
            .expect(200)
            .text("access_token");
        let bearer = format!("Bearer {admin}");
        let answer = self
            .send("GET", "/admin/keys", &[("authorization", &bearer)], None)
            .expect(200);
        answer.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k.text_of("kid"), k.text_of("state")))
            .collect()
    }

    /// A rotation step or an emergency retirement (`command` = ["rotate"] or ["retire",
    /// kid]): through the admin route on the embedded default (the keys live in the server),
    /// through `tokenlife keys` — another process — on aws. Returns what was done.
    fn keys_command(&self, backend: Backend, command: &[&str]) -> String {
        match backend {
            Backend::Memory => {
                let admin = self
                    .login("root", ROOT_PASSWORD)
                    .expect(200)
                    .text("access_token");
                let path = match command {
                    ["rotate"] => "/admin/keys/rotate".to_owned(),
                    ["retire", kid] => format!("/admin/keys/{kid}/retire"),
                    other => panic!("no route for {other:?}"),
                };
                let bearer = format!("Bearer {admin}");
                let answer = self.send("POST", &path, &[("authorization", &bearer)], None);
                assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
                answer.body["actions"].to_string()
            }
            Backend::Aws => {
                let output = Command::new(env!("CARGO_BIN_EXE_tokenlife"))
                    .arg("keys")
                    .args(command)
                    .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .output()
                    .expect("run tokenlife keys");
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                assert!(
                    output.status.success(),
                    "tokenlife keys {command:?}: {stdout} {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                stdout
            }
        }
    }
}

trait TextOf {
    fn text_of(&self, field: &str) -> String;
}

impl TextOf for Value {
    fn text_of(&self, field: &str) -> String {
        self[field].as_str().unwrap_or_default().to_owned()
    }
}

/// Short lifetimes so that a whole key lifecycle takes seconds: access tokens live 3 s, no
/// leeway, key rings are re-read every second, clients may cache the JWKS for a second. The
/// publish delay is left to its default (max-age + cache TTL = 2 s); a retiring key goes
/// 3 + 0 + 1 = 4 s after its successor's promotion.
const FAST_KEY_LIFECYCLE: &[(&str, &str)] = &[
    ("TOKENLIFE_ACCESS_TTL", "3"),
    ("TOKENLIFE_LEEWAY", "0"),
    ("TOKENLIFE_KEY_CACHE_TTL", "1"),
    ("TOKENLIFE_JWKS_MAX_AGE", "1"),
];

/// One token issued during the rotation test.
struct Issued {
    token: String,
    kid: String,
    exp: u64,
    /// When the answer of the login that made it arrived: a token signed with a key before
    /// that key's promotion began would have arrived before the step started. (When the
    /// login was *sent* proves nothing: a login in flight may be signed after the step.)
    answered_ms: u64,
}

#[test]
fn keys_rotate_with_no_failed_verification_in_memory() {
    keys_rotate_with_no_failed_verification(Backend::Memory);
}

#[test]
fn keys_rotate_with_no_failed_verification_on_aws() {
    keys_rotate_with_no_failed_verification(Backend::Aws);
}

/// While a loop logs in and verifies continuously — with /userinfo and with a jose JWKS
/// client that caches our key set for the JWKS max-age — rotation steps move keys through
/// pending -> active -> retiring -> retired. No verification may fail; old tokens verify
/// until they expire (before their key retires); new tokens carry a new kid only after its
/// promotion. (A client that caches the JWKS for longer than the max-age does fail here:
/// with a 10 s cache, about a fifth of jose's verifications fail.)
fn keys_rotate_with_no_failed_verification(backend: Backend) {
    let server = Server::start(backend, FAST_KEY_LIFECYCLE);
    // jose may refetch on an unknown kid only once a minute: it must know every key from
    // the pre-published JWKS, not from a refetch after a failure.
    let mut jose = JoseClient::start(&server, "tokenlife", 1000, 60_000);
    let first = server.keys();
    assert_eq!(first.len(), 1, "setup leaves one key: {first:?}");
    assert_eq!(first[0].1, "active");
    let key_a = first[0].0.clone();

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (issued, failures, verifications, steps) = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            let mut issued: Vec<Issued> = Vec::new();
            let mut failures: Vec<String> = Vec::new();
            let mut verifications = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let token = server
                    .login("alice", ALICE_PASSWORD)
                    .expect(200)
                    .text("access_token");
                let answered_ms = now_ms();
                let (kid, exp) = kid_and_exp(&token);
                issued.push(Issued {
                    token,
                    kid,
                    exp,
                    answered_ms,
                });
                // The newest token, and the oldest still-valid token of each key (the one
                // nearest its expiry); a margin of a second keeps clear of expiry itself.
                let now_secs = now_ms() / 1000;
                let mut to_check: Vec<&Issued> = vec![issued.last().unwrap()];
                for candidate in issued.iter().filter(|t| t.exp > now_secs + 1) {
                    if !to_check.iter().any(|t| t.kid == candidate.kid) {
                        to_check.push(candidate);
                    }
                }
                for token in to_check {
                    let answer = server.userinfo(&token.token);
                    if answer.status != 200 {
                        failures.push(format!("userinfo {}: {:?}", token.kid, answer.body));
                    }
                    let answer = jose.verify(&token.token);
                    if answer["ok"] != true {
                        failures.push(format!("jose {}: {answer}", token.kid));
                    }
                    verifications += 2;
                }
            }
            (issued, failures, verifications)
        });
        let mut steps = Vec::new();
        let mut step = |label: &str| {
            let started_ms = now_ms();
            let said = server.keys_command(backend, &["rotate"]);
            steps.push((label.to_owned(), started_ms, said));
        };
        std::thread::sleep(Duration::from_millis(1500));
        step("pre-publish B");
        // More than the publish delay (2 s, in whole seconds).
        std::thread::sleep(Duration::from_millis(3200));
        step("promote B, pre-publish C");
        // More than the retire window (4 s, in whole seconds).
        std::thread::sleep(Duration::from_millis(5200));
        step("retire A, promote C, pre-publish D");
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (issued, failures, verifications) = traffic.join().unwrap();
        (issued, failures, verifications, steps)
    });

    assert!(
        failures.is_empty(),
        "{backend:?}: {} of {verifications} verifications failed: {failures:#?}\nsteps: {steps:#?}",
        failures.len()
    );
    for (label, _, said) in &steps {
        assert!(
            said.contains("created pending key"),
            "{label}: every step pre-publishes the next key: {said}"
        );
    }
    assert!(steps[1].2.contains("promoted"), "{:?}", steps[1]);
    assert!(
        steps[2].2.contains(&format!("retired {key_a}")),
        "{:?}",
        steps[2]
    );
    // The kids in order of issue: A, then B only after B's promotion began, then C only
    // after its own.
    let mut kids: Vec<&str> = Vec::new();
    for token in &issued {
        if kids.last() != Some(&token.kid.as_str()) {
            kids.push(&token.kid);
        }
    }
    assert_eq!(
        kids.len(),
        3,
        "{backend:?}: signing keys in use, in order: {kids:?}"
    );
    assert_eq!(kids[0], key_a);
    for (kid, step) in [(kids[1], &steps[1]), (kids[2], &steps[2])] {
        let first_use = issued.iter().find(|t| t.kid == kid).unwrap();
        assert!(
            first_use.answered_ms >= step.1,
            "{kid} signed before the step that promoted it ({})",
            step.0
        );
    }
    assert!(
        issued.len() > 20 && verifications > 40,
        "the loop ran: {} logins, {verifications} verifications",
        issued.len()
    );
    // A is gone from the JWKS, and its tokens are refused (they had all expired, too).
    let jwks = server
        .send("GET", "/.well-known/jwks.json", &[], None)
        .expect(200);
    let published: Vec<String> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.text_of("kid"))
        .collect();
    assert!(!published.contains(&key_a), "{published:?}");
    assert_eq!(
        published.len(),
        3,
        "B retiring, C active, D pending: {published:?}"
    );
    let last_of_a = issued.iter().rev().find(|t| t.kid == key_a).unwrap();
    server.userinfo(&last_of_a.token).expect(401);
    let states: Vec<String> = server.keys().into_iter().map(|(_, state)| state).collect();
    assert_eq!(states, ["pending", "active", "retiring", "retired"]);
}

#[test]
fn a_leaked_key_is_retired_at_once_in_memory() {
    a_leaked_key_is_retired_at_once(Backend::Memory);
}

#[test]
fn a_leaked_key_is_retired_at_once_on_aws() {
    a_leaked_key_is_retired_at_once(Backend::Aws);
}

/// Emergency retirement of the active key: its unexpired tokens are refused (within the key
/// cache TTL, 1 s here), it leaves the JWKS, the pre-published key signs at once, logins go
/// on, and a jose client with a fresh copy of the JWKS refuses the old tokens too.
fn a_leaked_key_is_retired_at_once(backend: Backend) {
    let server = Server::start(
        backend,
        &[
            ("TOKENLIFE_KEY_CACHE_TTL", "1"),
            ("TOKENLIFE_JWKS_MAX_AGE", "1"),
        ],
    );
    let leaked_token = server
        .login("alice", ALICE_PASSWORD)
        .expect(200)
        .text("access_token");
    let (leaked, _) = kid_and_exp(&leaked_token);
    server.userinfo(&leaked_token).expect(200);
    server.keys_command(backend, &["rotate"]); // pre-publishes the next key
    let said = server.keys_command(backend, &["retire", &leaked]);
    assert!(said.contains(&format!("retired {leaked}")), "{said}");
    assert!(
        said.contains("promoted"),
        "the pending key signs at once: {said}"
    );

    // Within the key cache TTL (the aws server learns it from the registry).
    let deadline = now_ms() + 3000;
    while server.userinfo(&leaked_token).status == 200 {
        assert!(now_ms() < deadline, "the leaked key's token still verifies");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
        .userinfo(&leaked_token)
        .expect_error(401, "invalid_token");
    let jwks = server
        .send("GET", "/.well-known/jwks.json", &[], None)
        .expect(200);
    assert!(
        !jwks.body.to_string().contains(&leaked),
        "the leaked key left the JWKS"
    );
    let fresh = server
        .login("alice", ALICE_PASSWORD)
        .expect(200)
        .text("access_token");
    let (kid, _) = kid_and_exp(&fresh);
    assert_ne!(kid, leaked);
    server.userinfo(&fresh).expect(200);
    let mut jose = JoseClient::start(&server, "tokenlife", 1000, 60_000);
    assert_eq!(jose.verify(&fresh)["ok"], true);
    assert_eq!(jose.verify(&leaked_token)["ok"], false);
    let states: Vec<(String, String)> = server.keys();
    assert!(
        states.contains(&(leaked.clone(), "retired".into())),
        "{states:?}"
    );
    assert!(states.contains(&(kid, "active".into())), "{states:?}");
    // Retiring it again changes nothing and says so.
    let again = server.keys_command(backend, &["retire", &leaked]);
    assert!(again.contains("already retired"), "{again}");
}
