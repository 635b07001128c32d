//! `serve --metrics-addr`: what a lifecycle counted, read back through prometheus_client's
//! own parser (PyPI, the reference implementation of the text format), on both backends;
//! and the metrics stay off the API's address.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokenlife::both_backends;
use tokenlife::config::Backend;
use tokenlife::secrets::{b64url, b64url_decode};
use tokenlife::testkit::password_of;

use super::serve;

both_backends!(metrics_count_the_lifecycle => a_lifecycle_is_counted_in_the_prometheus_text);

fn a_lifecycle_is_counted_in_the_prometheus_text(backend: Backend) {
    let server = serve(
        backend,
        &[
            ("TOKENLIFE_ACCESS_TTL", "2"),
            ("TOKENLIFE_LEEWAY", "0"),
            ("TOKENLIFE_REFRESH_GRACE", "0"),
            ("TOKENLIFE_LOGIN_FAILURES_PER_USER_AND_ADDRESS", "1"),
        ],
    );
    let mut secrets = vec![password_of("alice")];

    let first = server.login("alice", &password_of("alice")).expect(200);
    let (access, refresh) = (first.text("access_token"), first.text("refresh_token"));
    server.userinfo(&access).expect(200);
    // One failure for a name that does not exist, then its limit.
    server
        .login("nobody", "wrong")
        .expect_error(400, "invalid_grant");
    server.login("nobody", "wrong").expect(429);

    // Refused tokens, one per reason.
    server.userinfo("a.b.c").expect_error(401, "invalid_token");
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let signature = parts[2].clone();
    let flipped = if signature.as_bytes()[10] == b'A' {
        "B"
    } else {
        "A"
    };
    parts[2] = format!("{}{flipped}{}", &signature[..10], &signature[11..]);
    server
        .userinfo(&parts.join("."))
        .expect_error(401, "invalid_token");
    let mut header: Value =
        serde_json::from_slice(&b64url_decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"] = "no-such-key".into();
    let unknown_kid = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        access.split_once('.').unwrap().1
    );
    server
        .userinfo(&unknown_kid)
        .expect_error(401, "invalid_token");

    // Rotation, reuse (the session ends), a revoked token, a refused refresh.
    let renewed = server.refresh(&refresh).expect(200);
    let (access2, refresh2) = (renewed.text("access_token"), renewed.text("refresh_token"));
    server.refresh(&refresh).expect_error(400, "invalid_grant");
    server.userinfo(&access2).expect_error(401, "invalid_token");
    server.refresh(&refresh2).expect_error(400, "invalid_grant");

    // Revocation of an access token, then of a session.
    let second = server.login("alice", &password_of("alice")).expect(200);
    let (access3, refresh3) = (second.text("access_token"), second.text("refresh_token"));
    server
        .post_form("/revoke", &format!("token={access3}"))
        .expect(200);
    server
        .post_form("/revoke", &format!("token={refresh3}"))
        .expect(200);

    // An expired token (checked before revocation: the first session ended long ago).
    std::thread::sleep(Duration::from_millis(2_100));
    server.userinfo(&access).expect_error(401, "invalid_token");
    secrets.extend([access, refresh, access2, refresh2, access3, refresh3]);

    let (status, content_type, text) = server.metrics_get("/metrics");
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the metrics");
    }
    let families = parse(&text);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        families
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .find(|s| {
                s["name"] == name
                    && labels.iter().all(|(k, v)| s["labels"][*k] == *v)
                    && s["labels"].as_object().unwrap().len() == labels.len()
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {text}"))["value"]
            .as_f64()
            .unwrap()
    };
    let outcomes = [
        ("tokenlife_logins_total", "succeeded", 2.0),
        ("tokenlife_logins_total", "failed", 1.0),
        ("tokenlife_logins_total", "throttled", 1.0),
        ("tokenlife_refreshes_total", "rotated", 1.0),
        ("tokenlife_refreshes_total", "grace_replay", 0.0),
        ("tokenlife_refreshes_total", "reuse_detected", 1.0),
        ("tokenlife_refreshes_total", "refused", 1.0),
        ("tokenlife_revocations_total", "access_token", 1.0),
        ("tokenlife_revocations_total", "session", 1.0),
        ("tokenlife_revocations_total", "user", 0.0),
        ("tokenlife_verifications_total", "allowed", 1.0),
        ("tokenlife_verifications_total", "invalid", 1.0),
        ("tokenlife_verifications_total", "bad_signature", 1.0),
        ("tokenlife_verifications_total", "unknown_kid", 1.0),
        ("tokenlife_verifications_total", "revoked", 1.0),
        ("tokenlife_verifications_total", "expired", 1.0),
        ("tokenlife_verifications_total", "unavailable", 0.0),
    ];
    for (name, outcome, expected) in outcomes {
        assert_eq!(
            value(name, &[("outcome", outcome)]),
            expected,
            "{name} {outcome}"
        );
    }
    // serve makes the first key itself on memory; on aws `tokenlife setup` made it.
    let created = if backend == Backend::Memory { 1.0 } else { 0.0 };
    let key_changes = "tokenlife_signing_key_changes_total";
    assert_eq!(value(key_changes, &[("outcome", "created")]), created);
    let age = value("tokenlife_signing_key_age_seconds", &[]);
    assert!((0.0..600.0).contains(&age), "key age {age}");

    let types: Vec<(&str, &str)> = families
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
        .collect();
    assert!(
        types.contains(&("tokenlife_logins", "counter")),
        "{types:?}"
    );
    assert!(types.contains(&("tokenlife_signing_key_age_seconds", "gauge")));
    assert!(types.contains(&("tokenlife_aws_call_duration_seconds", "histogram")));
    let calls = |service: &str, operation: &str| {
        families
            .iter()
            .flat_map(|f| f["samples"].as_array().unwrap())
            .filter(|s| {
                s["name"] == "tokenlife_aws_call_duration_seconds_count"
                    && s["labels"]["service"] == service
                    && s["labels"]["operation"] == operation
            })
            .map(|s| s["value"].as_f64().unwrap())
            .sum::<f64>()
    };
    match backend {
        // Three tokens signed by KMS (two logins, one refresh); every login read its user
        // and limits in one BatchGetItem.
        Backend::Aws => {
            assert_eq!(calls("KMS", "Sign"), 3.0, "{text}");
            assert!(calls("DynamoDB", "BatchGetItem") >= 4.0, "{text}");
        }
        Backend::Memory => assert!(
            !text.contains("tokenlife_aws_call_duration_seconds_count"),
            "{text}"
        ),
    }

    // Only GET /metrics, and only on the metrics address.
    assert_eq!(server.metrics_get("/").0, 404);
    assert_eq!(server.metrics_get("/login").0, 404);
    assert_eq!(server.send("GET", "/metrics", &[], None).status, 404);
}

/// `text` as prometheus_client reads it (`tests/prometheus_parse.py`).
fn parse(text: &str) -> Vec<Value> {
    let Ok(python) = std::env::var("TOKENLIFE_TEST_PYTHON") else {
        panic!(
            "TOKENLIFE_TEST_PYTHON is not set: run ./scripts/test, which installs prometheus-client \
             (PyPI) in its venv and sets it, or set it to a python that has prometheus_client"
        );
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/prometheus_parse.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the prometheus_client parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse it: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
