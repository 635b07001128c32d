//! The audit trail as production writes it (the JSON subscriber of `tokenlife::logging`),
//! captured while a whole lifecycle runs through the HTTP handler: every event with its
//! fields, the request's context (id, address, user agent, actor), and no secret anywhere
//! in the log.
//!
//! A test binary of its own: tracing caches each log site's interest across threads, and a
//! site first reached by a test with no subscriber, while this one installs its own, can
//! be cached as "never" — records this test waits for would then go missing.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_http::{Body, Request, Response};
use serde_json::Value;

use tokenlife::audit::{self, Event, MAX_USER_AGENT_CHARS};
use tokenlife::http::handle;
use tokenlife::http::request::PeerAddr;
use tokenlife::logging::subscriber;
use tokenlife::testkit::{Embedded, Users, body_json, password_of, secret_parts};

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    fn audit_records(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
            .filter(|record| record["target"] == audit::TARGET)
            .collect()
    }
}

const USER_AGENT_TAIL: &str = "this part is past the truncation";

/// With a tab (the one control character a header value may hold), which the records
/// drop.
fn user_agent() -> String {
    format!("\t{} {USER_AGENT_TAIL}", "A".repeat(MAX_USER_AGENT_CHARS))
}

struct Client<'a> {
    fixture: &'a Embedded,
    address: &'static str,
}

impl Client<'_> {
    async fn send(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        form: &[(&str, &str)],
        json: Option<Value>,
    ) -> Response<Body> {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("https://issuer.test{path}"))
            .header("user-agent", user_agent());
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = if let Some(json) = json {
            builder = builder.header("content-type", "application/json");
            Body::from(json.to_string())
        } else if form.is_empty() {
            Body::Empty
        } else {
            builder = builder.header("content-type", "application/x-www-form-urlencoded");
            let text = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            Body::from(text)
        };
        let mut request: Request = builder.body(body).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(self.address.parse().unwrap()));
        handle(&self.fixture.service, None, request).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response<Body> {
        self.send("POST", path, None, form, None).await
    }

    async fn login(&self, username: &str, password: &str) -> Response<Body> {
        let form = [
            ("username", username),
            ("password", password),
            ("client_id", "web-app"),
        ];
        self.post("/login", &form).await
    }

    /// A successful login's access and refresh tokens.
    async fn tokens(&self, username: &str) -> (String, String) {
        let response = self.login(username, &password_of(username)).await;
        assert_eq!(response.status(), 200, "{:?}", body_json(response.body()));
        let body = body_json(response.body());
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }
}

fn sid_of(refresh_token: &str) -> &str {
    refresh_token.split('.').next().unwrap()
}

#[tokio::test]
async fn the_audit_trail_names_every_event_and_holds_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _default = tracing::subscriber::set_default(subscriber(
        true,
        tracing::level_filters::LevelFilter::INFO,
        move || writer.clone(),
    ));

    let f = Embedded::start_with(|c| {
        c.login_failures_per_user_and_address = 2;
        c.refresh_cookie = false;
    })
    .await;
    f.add_user("alice", &["user"]).await;
    f.add_user("root", &["user", "admin"]).await;
    let alice_sub = f.service.user("alice").await.unwrap().sub;
    let root_sub = f.service.user("root").await.unwrap().sub;
    let here = Client {
        fixture: &f,
        address: "198.51.100.7",
    };
    let there = Client {
        fixture: &f,
        address: "2001:db8::9",
    };
    let wrong = "wrong-password-but-long-enough";
    let mut secrets: Vec<String> = vec![
        password_of("alice"),
        password_of("root"),
        password_of("bob"),
        wrong.to_owned(),
    ];

    // Logins: an unknown user, a wrong password twice, then throttled; a success elsewhere.
    assert_eq!(
        here.login("mallory-or-a-password", wrong).await.status(),
        400
    );
    assert_eq!(here.login("alice", wrong).await.status(), 400);
    assert_eq!(here.login("alice", wrong).await.status(), 400);
    assert_eq!(
        here.login("alice", &password_of("alice")).await.status(),
        429
    );
    let (access, first_refresh) = there.tokens("alice").await;
    // Rotation, then the spent token again after the grace window: reuse.
    let rotated = there
        .post(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_refresh),
                ("client_id", "web-app"),
            ],
        )
        .await;
    assert_eq!(rotated.status(), 200);
    let rotated_refresh = body_json(rotated.body())["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    f.clock
        .advance_secs(f.service.config().refresh_grace_secs + 1);
    let replay = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first_refresh.as_str()),
        ("client_id", "web-app"),
    ];
    assert_eq!(there.post("/token", &replay).await.status(), 400);
    secrets.extend([access, first_refresh.clone(), rotated_refresh]);

    // Revocation of an access token; logout with a refresh token.
    let (access, refresh) = there.tokens("alice").await;
    assert_eq!(
        there.post("/revoke", &[("token", &access)]).await.status(),
        200
    );
    assert_eq!(
        there
            .post("/logout", &[("refresh_token", &refresh)])
            .await
            .status(),
        200
    );
    let logged_out_sid = sid_of(&refresh).to_owned();
    secrets.extend([access, refresh]);

    // "Your devices": one session ended by its user, then all the others.
    let (laptop_access, laptop_refresh) = there.tokens("alice").await;
    let (phone_access, phone_refresh) = there.tokens("alice").await;
    let (_, tablet_refresh) = there.tokens("alice").await;
    let path = format!("/sessions/{}", sid_of(&laptop_refresh));
    let ended = there
        .send("DELETE", &path, Some(&phone_access), &[], None)
        .await;
    assert_eq!(ended.status(), 200);
    let others = there
        .send(
            "POST",
            "/sessions/revoke-others",
            Some(&phone_access),
            &[],
            None,
        )
        .await;
    assert_eq!(body_json(others.body())["ended"], 1);
    // A non-admin at an admin route.
    let refused = there
        .send("GET", "/admin/users", Some(&phone_access), &[], None)
        .await;
    assert_eq!(refused.status(), 403);
    secrets.extend([laptop_access, laptop_refresh, phone_access.clone()]);
    secrets.extend([phone_refresh, tablet_refresh]);

    // Admin actions, by root.
    let (root_access, root_refresh) = here.tokens("root").await;
    let admin = |method: &'static str, path: String, json: Option<Value>| {
        let root_access = root_access.clone();
        let here = &here;
        async move {
            here.send(method, &path, Some(&root_access), &[], json)
                .await
        }
    };
    let bob_password = password_of("bob");
    let created = admin(
        "POST",
        "/admin/users".into(),
        Some(serde_json::json!({"username": "bob", "password": bob_password})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let disabled = admin(
        "PATCH",
        "/admin/users/bob".into(),
        Some(serde_json::json!({"disabled": true})),
    )
    .await;
    assert_eq!(disabled.status(), 200);
    let new_password = "bob-second-password-horse";
    secrets.push(new_password.to_owned());
    let changed = admin(
        "POST",
        "/admin/users/bob/password".into(),
        Some(serde_json::json!({"password": new_password})),
    )
    .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(
        admin("POST", "/admin/users/alice/revoke".into(), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        admin("DELETE", "/admin/users/bob".into(), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        admin("POST", "/admin/keys/rotate".into(), None)
            .await
            .status(),
        200
    );
    // Clients: registered, authenticated (and once not), its secret rotated, removed.
    let registered = admin(
        "POST",
        "/admin/clients".into(),
        Some(serde_json::json!({"name": "billing", "client_id": "billing", "confidential": true})),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let client_secret = body_json(registered.body())["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let credentials = [
        ("grant_type", "client_credentials"),
        ("client_id", "billing"),
        ("client_secret", client_secret.as_str()),
    ];
    let granted = here.post("/token", &credentials).await;
    assert_eq!(granted.status(), 200);
    let client_token = body_json(granted.body())["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong_secret = [
        ("grant_type", "client_credentials"),
        ("client_id", "billing"),
        ("client_secret", "not-the-secret-at-all"),
    ];
    assert_eq!(here.post("/token", &wrong_secret).await.status(), 401);
    let rotated = admin("POST", "/admin/clients/billing/rotate-secret".into(), None).await;
    assert_eq!(rotated.status(), 200);
    let rotated_secret = body_json(rotated.body())["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        admin("DELETE", "/admin/clients/billing".into(), None)
            .await
            .status(),
        200
    );
    secrets.extend([client_secret, client_token, rotated_secret]);
    secrets.push("not-the-secret-at-all".to_owned());

    // Ends the one active key (a new one is made), by root, whose token still verifies:
    // this process re-reads the ring only for tokens of a kid it does not know.
    let keys = f.service.list_keys().await.unwrap();
    let active = keys.iter().find(|k| k.state.name() == "active").unwrap();
    let active = active.kid.clone();
    let retire = format!("/admin/keys/{active}/retire");
    assert_eq!(admin("POST", retire, None).await.status(), 200);
    secrets.extend([root_access.clone(), root_refresh]);

    let records = captured.audit_records();
    let find = |event: &str, outcome: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["event"] == event && r["outcome"] == outcome)
            .collect()
    };
    let one = |event: &str, outcome: &str| -> &Value {
        let found = find(event, outcome);
        assert_eq!(found.len(), 1, "{event} {outcome}: {records:#?}");
        found[0]
    };

    // Every event of the table was seen.
    for event in Event::ALL {
        assert!(
            records.iter().any(|r| r["event"] == event.name()),
            "no {} record: {records:#?}",
            event.name()
        );
    }
    // Client authentication: names the client (it exists) and why, never the secret.
    let refused = one("client_authentication_failed", "refused");
    assert_eq!(refused["client_id"], "billing");
    assert_eq!(refused["reason"], "wrong_secret");
    assert_eq!(refused["level"], "WARN");
    assert_eq!(refused["source_ip"], "198.51.100.7");
    assert_eq!(
        one("client_secret_rotated", "succeeded")["reason"],
        "overlap 86400"
    );
    assert_eq!(
        one("client_removed", "succeeded")["actor"],
        root_sub.as_str()
    );
    // Logins.
    let failed = find("login", "failed");
    assert_eq!(failed.len(), 3);
    let unknown_user = failed
        .iter()
        .find(|r| r["reason"] == "unknown_user")
        .unwrap();
    assert!(unknown_user.get("username").is_none(), "{unknown_user}");
    assert!(unknown_user.get("sub").is_none());
    let bad_passwords: Vec<_> = failed
        .iter()
        .filter(|r| r["reason"] == "bad_password")
        .collect();
    assert_eq!(bad_passwords.len(), 2);
    for bad in bad_passwords {
        assert_eq!(bad["username"], "alice");
        assert_eq!(bad["sub"], alice_sub.as_str());
        assert_eq!(bad["client_id"], "web-app");
        assert_eq!(bad["level"], "WARN");
    }
    let throttled = one("login", "throttled");
    assert_eq!(throttled["reason"], "user_and_address");
    assert_eq!(throttled["username"], "alice");
    assert_eq!(throttled["source_ip"], "198.51.100.7");
    let succeeded = find("login", "succeeded");
    assert_eq!(succeeded.len(), 6, "five logins of alice, one of root");
    assert!(succeeded.iter().all(|r| r["username"].is_string()
        && r["sub"].is_string()
        && r["sid"].is_string()
        && r["client_id"] == "web-app"
        && r["level"] == "INFO"));
    let reuse = one("refresh_reuse_detected", "session_ended");
    assert_eq!(reuse["sid"], sid_of(&first_refresh));
    assert_eq!(reuse["sub"], alice_sub.as_str());
    assert_eq!(reuse["level"], "WARN");
    let revoked = one("access_token_revoked", "succeeded");
    assert_eq!(revoked["sub"], alice_sub.as_str());
    let ended = find("session_ended", "succeeded");
    let reasons: Vec<&str> = ended
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["logout", "by_user"]);
    assert_eq!(ended[0]["sid"], logged_out_sid.as_str());
    assert_eq!(ended[1]["actor"], alice_sub.as_str());
    assert_eq!(one("other_sessions_ended", "succeeded")["count"], 1);
    let refused = one("admin_refused", "refused");
    assert_eq!(refused["reason"], "/admin/users");
    assert_eq!(refused["sub"], alice_sub.as_str());
    // Admin actions: each names the user and, as its actor, the admin.
    let created = find("user_created", "succeeded");
    let bob = created.iter().find(|r| r["username"] == "bob").unwrap();
    assert_eq!(bob["actor"], root_sub.as_str());
    let changes: Vec<&str> = find("user_changed", "succeeded")
        .iter()
        .filter(|r| r["actor"] == root_sub.as_str())
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["disabled", "password", "revoke_all"]);
    let revocations: Vec<(&str, &str)> = find("user_sessions_revoked", "succeeded")
        .iter()
        .map(|r| {
            (
                r["username"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        revocations,
        [
            ("bob", "disabled"),
            ("bob", "password"),
            ("alice", "revoke_all"),
            ("bob", "removed")
        ]
    );
    assert_eq!(one("user_removed", "succeeded")["username"], "bob");
    let retirement = one("signing_key_emergency_retirement", "succeeded");
    assert_eq!(retirement["reason"], active.as_str());
    assert_eq!(retirement["level"], "WARN");
    assert_eq!(retirement["actor"], root_sub.as_str());
    let key = find("signing_key_changed", "succeeded");
    assert!(key.iter().any(|r| {
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("created pending key")
            && r["actor"] == root_sub.as_str()
    }));

    // Every record made in a request carries the request's id, address and user agent.
    // (What the fixture made before the first request has none: the first key, the kit's
    // three clients, two users.)
    let in_requests: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("request_id").is_some())
        .collect();
    assert_eq!(in_requests.len(), records.len() - 6, "{records:#?}");
    for record in in_requests {
        assert!(
            record["request_id"]
                .as_str()
                .is_some_and(|id| id.len() >= 8)
        );
        assert!(["198.51.100.7", "2001:db8::9"].contains(&record["source_ip"].as_str().unwrap()));
        let agent = record["user_agent"].as_str().unwrap();
        assert_eq!(agent, "A".repeat(MAX_USER_AGENT_CHARS));
        assert!(!agent.contains(USER_AGENT_TAIL));
    }
    // No secret, nor a part of one, anywhere in the log (audit records or not).
    let log = captured.text();
    for secret in &secrets {
        for part in secret_parts(secret) {
            assert!(!log.contains(part), "the log holds a secret or part of one");
        }
    }
}

/// What the level lets through: the chosen level for our own targets (the first version
/// wrote nothing at all but the runtime's lines: a "default directive" is ignored when
/// other directives are given), never more than INFO for any other crate (the runtime logs
/// whole events at DEBUG, the AWS SDK bodies at TRACE), and always the audit trail.
#[test]
fn levels_keep_our_lines_cap_the_runtime_and_keep_the_audit_trail() {
    use tracing::level_filters::LevelFilter;
    let cases = [
        (LevelFilter::INFO, true, false, false, true),
        (LevelFilter::TRACE, true, true, false, true),
        (LevelFilter::WARN, false, false, false, true),
    ];
    for (level, ours, ours_debug, others_debug, audit) in cases {
        let captured = Captured::default();
        let writer = captured.clone();
        let _default =
            tracing::subscriber::set_default(subscriber(true, level, move || writer.clone()));
        let device = tokenlife::store::Device::new(Some("ua"), Some("192.0.2.1".into()));
        let context = audit::Context::request("req-1".into(), &device);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(audit::in_context(context, async {
            tracing::info!(target: "tokenlife::http", "ours");
            tracing::debug!(target: "tokenlife::service", "our detail");
            tracing::debug!(target: "lambda_runtime", "a whole event");
            tracing::trace!(target: "aws_smithy_runtime::client", "a response body");
            audit::Record::new(Event::UserCreated, "succeeded").emit();
        }));
        let text = captured.text();
        assert_eq!(text.contains("\"ours\""), ours, "{level}: {text}");
        assert_eq!(text.contains("our detail"), ours_debug, "{level}: {text}");
        assert_eq!(
            text.contains("a whole event"),
            others_debug,
            "{level}: {text}"
        );
        assert_eq!(
            text.contains("a response body"),
            others_debug,
            "{level}: {text}"
        );
        assert_eq!(text.contains("user_created"), audit, "{level}: {text}");
        if audit {
            let line = text.lines().find(|l| l.contains("user_created")).unwrap();
            let record: Value = serde_json::from_str(line).unwrap();
            assert_eq!(record["request_id"], "req-1");
            assert_eq!(record["source_ip"], "192.0.2.1");
        }
    }
}

#[test]
fn readme_lists_every_audit_event_as_declared() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let table = audit::readme_table();
    assert!(
        readme.contains(&table),
        "README.md's audit event table differs from audit::Event; it should read:\n\n{table}"
    );
}
