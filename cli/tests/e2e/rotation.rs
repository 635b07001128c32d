//! Signing-key rotation end to end: no failed verification through a whole key
//! lifecycle, and an emergency retirement.

use std::time::Duration;

use serde_json::Value;
use tokenlife::both_backends;
use tokenlife::config::Backend;
use tokenlife::testkit::password_of;
use tokenlife::testkit::serve::TextOf;

use super::serve;
use super::verifiers::JoseClient;

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

both_backends!(keys_rotate_with_no_failed_verification => keys_rotate_with_no_failed_verification);

/// While a loop logs in and verifies continuously — with /userinfo and with a jose JWKS
/// client that caches our key set for the JWKS max-age — rotation steps move keys through
/// pending -> active -> retiring -> retired. No verification may fail; old tokens verify
/// until they expire (before their key retires); new tokens carry a new kid only after its
/// promotion. (A client that caches the JWKS for longer than the max-age does fail here:
/// with a 10 s cache, about a fifth of jose's verifications fail.)
fn keys_rotate_with_no_failed_verification(backend: Backend) {
    let server = serve(backend, FAST_KEY_LIFECYCLE);
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
                    .login("alice", &password_of("alice"))
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

both_backends!(a_leaked_key_is_retired_at_once => a_leaked_key_is_retired_at_once);

/// Emergency retirement of the active key: its unexpired tokens are refused (within the key
/// cache TTL, 1 s here), it leaves the JWKS, the pre-published key signs at once, logins go
/// on, and a jose client with a fresh copy of the JWKS refuses the old tokens too.
fn a_leaked_key_is_retired_at_once(backend: Backend) {
    let server = serve(
        backend,
        &[
            ("TOKENLIFE_KEY_CACHE_TTL", "1"),
            ("TOKENLIFE_JWKS_MAX_AGE", "1"),
        ],
    );
    let leaked_token = server
        .login("alice", &password_of("alice"))
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
        .login("alice", &password_of("alice"))
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
