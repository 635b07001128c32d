//! Test support, one kit for every test in the workspace (compiled only for this crate's
//! unit tests and with the `testkit` feature, which only the test crates turn on): shared
//! constants and passwords, the embedded-service fixture on a manual clock, the emulator
//! check, unique resource names, the concurrent-refresh race (run on every store), the
//! `both_backends!` macro, and (feature `testkit`) the `tokenlife serve` harness in
//! `serve`.

#[cfg(feature = "testkit")]
pub mod serve;

use std::sync::Arc;

use lambda_http::Body;

use crate::App;
use crate::clock::{Clock, ManualClock};
use crate::config::{Argon2Params, Config};
use crate::error::Error;
use crate::keys::LocalVault;
use crate::service::{LoginRequest, RefreshRequest, TokenGrant, TokenService};
use crate::store::{Client, MemoryStore, Session, SessionStore, User};

/// The issuer of test services that have no URL of their own.
pub const ISSUER: &str = "https://issuer.test";
/// Where the manual clock of a fixture starts (2027-01-15), in ms.
pub const START_MS: u64 = 1_800_000_000_000;

/// The one test password of a user (`alice` -> `alice-correct-horse`).
pub fn password_of(username: &str) -> String {
    format!("{username}-correct-horse")
}

/// What must never appear in a log for a secret: the whole of it and every long piece
/// of a token (a JWT's segments; a refresh token's secret — its first part is the session
/// id, an identifier the audit records name on purpose).
pub fn secret_parts(secret: &str) -> Vec<&str> {
    let mut parts = vec![secret];
    let segments: Vec<&str> = secret.split('.').collect();
    let is_refresh_token = segments.len() == 3 && segments[1].parse::<u64>().is_ok();
    parts.extend(
        segments
            .into_iter()
            .skip(usize::from(is_refresh_token))
            .filter(|part| part.len() >= 16),
    );
    parts
}

/// The default configuration with the cheapest password hashing (tests log in often).
pub fn test_config() -> Config {
    Config {
        argon2: Argon2Params::CHEAPEST,
        ..Config::default()
    }
}

/// An embedded service (in-memory stores, keys held in the process) on a manual clock.
pub struct Embedded {
    pub service: Arc<TokenService>,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    vault: Arc<LocalVault>,
}

impl Embedded {
    /// [`test_config`] changed by `edit`, issuer [`ISSUER`] unless `edit` sets one.
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Self {
        Self::start_at(START_MS, edit).await
    }

    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// On a clock that starts at `start_ms`.
    pub async fn start_at(start_ms: u64, edit: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        edit(&mut config);
        let clock = Arc::new(ManualClock::new(start_ms));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let vault = Arc::new(LocalVault::default());
        let app = App::embedded_on(config, ISSUER, clock.clone(), store.clone(), vault.clone())
            .await
            .expect("an embedded service starts");
        register_test_clients(&app.service).await;
        Self {
            service: app.service,
            store,
            clock,
            vault,
        }
    }

    /// Another process of the same deployment (same store, keys and clock), with its own
    /// caches and [`test_config`] changed by `edit` — e.g. after a deploy changed a setting.
    pub async fn another_process(&self, edit: impl FnOnce(&mut Config)) -> Arc<TokenService> {
        let mut config = test_config();
        edit(&mut config);
        App::embedded_on(
            config,
            ISSUER,
            self.clock.clone(),
            self.store.clone(),
            self.vault.clone(),
        )
        .await
        .expect("another embedded service starts")
        .service
    }

    /// At the real time (for tests that compare with tokens of other services).
    pub async fn start_now(edit: impl FnOnce(&mut Config)) -> Self {
        Self::start_at(crate::clock::SystemClock.now_ms(), edit).await
    }
}

/// Users, logins and refreshes with the kit's passwords, on any service.
#[async_trait::async_trait]
pub trait Users: Sync {
    fn service(&self) -> &TokenService;

    /// Creates `name` with [`password_of`] and `scopes`.
    async fn add_user(&self, name: &str, scopes: &[&str]) {
        self.service()
            .put_user(
                name,
                &password_of(name),
                scopes.iter().map(|s| s.to_string()).collect(),
            )
            .await
            .expect("user created");
    }

    async fn login(&self, name: &str) -> TokenGrant {
        self.service()
            .login(LoginRequest::new(name, password_of(name)))
            .await
            .expect("login succeeds")
    }

    async fn refresh(&self, token: &str) -> Result<TokenGrant, Error> {
        self.service().refresh(RefreshRequest::new(token)).await
    }
}

impl Users for Embedded {
    fn service(&self) -> &TokenService {
        &self.service
    }
}

/// Any service, as a [`Users`] (its own `login`/`refresh` take requests; these take names).
pub struct On<'a>(pub &'a TokenService);

impl Users for On<'_> {
    fn service(&self) -> &TokenService {
        self.0
    }
}

/// The public clients every kit deployment has registered (the kit's HTTP requests name
/// them): any scope, the password and refresh grants.
pub const TEST_CLIENTS: [&str; 3] = ["cli", "web", "web-app"];

/// A public client record `id` (any scope, password and refresh grants), as the HTTP layer
/// hands an authenticated client to the service.
pub fn public_client(id: &str) -> Client {
    Client {
        id: id.to_owned(),
        name: id.to_owned(),
        secret_hash: None,
        previous_secret: None,
        grant_types: vec!["password".into(), "refresh_token".into()],
        scopes: vec!["*".into()],
        may_introspect: false,
        created_ms: START_MS,
        version: 1,
    }
}

/// Registers the [`TEST_CLIENTS`] on `service`.
pub async fn register_test_clients(service: &TokenService) {
    for id in TEST_CLIENTS {
        service
            .register_client(crate::service::clients::NewClient {
                id: Some(id.to_owned()),
                name: id.to_owned(),
                scopes: vec!["*".into()],
                ..Default::default()
            })
            .await
            .expect("test client registered");
    }
}

/// A stored user record (`alice`, id `user-1`, scopes `user admin`) for store-level tests.
pub fn sample_user() -> User {
    User {
        id: "user-1".into(),
        username: "alice".into(),
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA".into(),
        scopes: vec!["user".into(), "admin".into()],
        disabled: false,
        created_ms: START_MS,
        version: 1,
    }
}

/// A fresh session of [`sample_user`] (version 1) created at `created_ms`, for an hour,
/// never rotated.
pub fn sample_session(created_ms: u64) -> Session {
    Session {
        id: crate::refresh::new_session_id(created_ms),
        user_id: "user-1".into(),
        scope: "user".into(),
        client_id: None,
        user_version: 1,
        created_ms,
        expires_at: created_ms / 1000 + 3600,
        last_used_ms: created_ms,
        device: crate::store::Device::new(Some("Mozilla/5.0 (test)"), Some("192.0.2.1".into())),
        generation: 0,
        current_hash: [1; 32],
        reuse_key: [2; 32],
        last_rotation: None,
        ended: false,
    }
}

/// The JSON of a handler's response body (`null` if it is none).
pub fn body_json(body: &Body) -> serde_json::Value {
    let bytes: &[u8] = match body {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"null",
    };
    serde_json::from_slice(bytes).unwrap_or(serde_json::Value::Null)
}

/// Fails (never skips) when the emulators' endpoints are not configured, saying how to
/// start them.
pub fn require_emulators() {
    for variable in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_KMS"] {
        if std::env::var(variable).is_err() {
            panic!(
                "{variable} is not set: this test needs DynamoDB Local and ministack. Run \
                 ./scripts/test (it starts them), or `scripts/emulators start && . \"$(scripts/emulators env)\"` \
                 before cargo test"
            );
        }
    }
}

/// A name no other test (or test process) uses: `<prefix>-<random>`, valid for DynamoDB
/// tables.
pub fn unique(prefix: &str) -> String {
    let random = crate::secrets::b64url(&crate::secrets::random_bytes::<6>());
    format!("{prefix}-{}", random.replace(['-', '_'], "x"))
}

/// 30 concurrent refreshes of one fresh refresh token of `alice` (who must exist), on any
/// service and store: with grace 0 exactly one rotation succeeds and the others are reuse
/// (the session ends); with a grace window every request gets the same successor and the
/// session rotated exactly once. Needs a multi-threaded runtime.
pub async fn thirty_concurrent_refreshes_rotate_exactly_once(
    service: &Arc<TokenService>,
    sessions: &dyn SessionStore,
) {
    let grace = service.config().refresh_grace_secs;
    let token = On(service).login("alice").await.refresh_token;
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let service = service.clone();
            let token = token.clone();
            tokio::spawn(async move { service.refresh(RefreshRequest::new(token)).await })
        })
        .collect();
    let mut successors = Vec::new();
    for task in tasks {
        match task.await.expect("the refresh task ran") {
            Ok(grant) => successors.push(grant.refresh_token),
            Err(Error::InvalidGrant(_)) => {}
            Err(other) => panic!("grace {grace}: unexpected {other:?}"),
        }
    }
    let sid = token.split('.').next().unwrap_or_default();
    let session = sessions
        .find_session(sid)
        .await
        .expect("the store answers")
        .expect("the session exists");
    if grace == 0 {
        assert_eq!(
            successors.len(),
            1,
            "grace 0: exactly one rotation succeeds"
        );
        assert!(session.ended, "the others were reuse: the session ended");
    } else {
        assert_eq!(
            successors.len(),
            30,
            "grace {grace}: every request succeeds"
        );
        assert!(
            successors.iter().all(|s| *s == successors[0]),
            "one successor for all"
        );
        assert_eq!(session.generation, 1, "exactly one rotation");
        assert!(!session.ended);
    }
}

/// Issue 13's rule, on any service: each change that takes something away from a user
/// (disabled, a new password, a scope removed, removal) ends every session the user had —
/// no refresh mints a token, the access tokens are refused — while a change that only adds
/// (a scope, enabling) leaves them alone and applies at the next login.
pub async fn changes_that_take_away_end_sessions(service: &TokenService, clock: &ManualClock) {
    use crate::service::UserChange;
    let on = &On(service);
    let assert_ended = |grant: TokenGrant, what: &'static str| async move {
        assert!(
            matches!(
                service.authorize(&grant.access_token).await,
                Err(Error::InvalidToken(crate::token::TokenError::Revoked))
            ),
            "{what}: the access token is refused"
        );
        assert!(
            matches!(
                on.refresh(&grant.refresh_token).await,
                Err(Error::InvalidGrant(_))
            ),
            "{what}: the refresh token is refused"
        );
    };
    let change = |name: &'static str, change: UserChange| async move {
        let changed = service.change_user(name, change).await.unwrap();
        clock.advance_ms(1); // a login after the change is after it on the clock too
        changed
    };
    let suffix = unique("u");
    let name =
        |base: &str| -> &'static str { Box::leak(format!("{base}-{suffix}").into_boxed_str()) };

    // Disabled: sessions end, logins are refused; enabled again: logins work (sessions stay ended).
    let dora = name("dora");
    on.add_user(dora, &["user"]).await;
    let grant = on.login(dora).await;
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    assert!(change(dora, disable).await.sessions_ended);
    assert_ended(grant, "disabled").await;
    assert!(
        service
            .login(LoginRequest::new(dora, password_of(dora)))
            .await
            .is_err()
    );
    let enable = UserChange {
        disabled: Some(false),
        ..UserChange::default()
    };
    assert!(!change(dora, enable).await.sessions_ended);
    on.login(dora).await;

    // A new password: sessions end, the old password is refused, the new one works.
    let paul = name("paul");
    on.add_user(paul, &["user"]).await;
    let grant = on.login(paul).await;
    let new_password = "a brand new passphrase";
    let passwd = UserChange {
        password: Some(new_password.into()),
        ..UserChange::default()
    };
    assert!(change(paul, passwd).await.sessions_ended);
    assert_ended(grant, "password").await;
    assert!(
        service
            .login(LoginRequest::new(paul, password_of(paul)))
            .await
            .is_err()
    );
    let fresh = service
        .login(LoginRequest::new(paul, new_password))
        .await
        .unwrap();
    service.authorize(&fresh.access_token).await.unwrap();
    on.refresh(&fresh.refresh_token).await.unwrap();

    // A scope taken away: sessions end; the next login has the scopes left.
    let sam = name("sam");
    on.add_user(sam, &["user", "admin"]).await;
    let grant = on.login(sam).await;
    let narrow = UserChange {
        scopes: Some(vec!["user".into()]),
        ..UserChange::default()
    };
    assert!(change(sam, narrow).await.sessions_ended);
    assert_ended(grant, "scope removed").await;
    assert_eq!(on.login(sam).await.scope, "user");

    // A scope added: nothing ends; the next login has it.
    let grant = on.login(sam).await;
    let widen = UserChange {
        scopes: Some(vec!["user".into(), "reports".into()]),
        ..UserChange::default()
    };
    assert!(!change(sam, widen).await.sessions_ended);
    service.authorize(&grant.access_token).await.unwrap();
    let renewed = on.refresh(&grant.refresh_token).await.unwrap();
    assert_eq!(
        renewed.scope, "user",
        "a session keeps the scopes it was created with"
    );
    assert_eq!(on.login(sam).await.scope, "user reports");

    // Removed: sessions end, logins fail, the name is free for a new user (a new sub).
    let rita = name("rita");
    on.add_user(rita, &["user"]).await;
    let before = service.user(rita).await.unwrap();
    let grant = on.login(rita).await;
    service.remove_user(rita).await.unwrap();
    clock.advance_ms(1);
    assert_ended(grant, "removed").await;
    assert!(
        service
            .login(LoginRequest::new(rita, password_of(rita)))
            .await
            .is_err()
    );
    assert!(matches!(service.user(rita).await, Err(Error::NotFound(_))));
    on.add_user(rita, &["user"]).await;
    assert_ne!(service.user(rita).await.unwrap().sub, before.sub);
    on.login(rita).await;
}

/// Issue 12's "your devices", on any service: sessions listed newest first with their
/// devices and the current one marked, in pages; refreshes update "last used"; a user ends
/// one of their sessions (another user's is 404), or all others; ended, expired and
/// user-wide revoked sessions are not listed.
pub async fn your_devices(service: &TokenService, clock: &ManualClock) {
    use crate::store::Device;
    let suffix = unique("d");
    let ada = format!("ada-{suffix}");
    let bob = format!("bob-{suffix}");
    let on = &On(service);
    on.add_user(&ada, &["user"]).await;
    on.add_user(&bob, &["user"]).await;
    let login_from = |user_agent: &str, ip: &str| LoginRequest {
        device: Device::new(Some(user_agent), Some(ip.to_owned())),
        ..LoginRequest::new(ada.clone(), password_of(&ada))
    };
    let phone = service
        .login(login_from("Phone/1.0", "198.51.100.7"))
        .await
        .unwrap();
    clock.advance_ms(1000);
    let laptop = service
        .login(login_from("Laptop/1.0", "2001:db8::1"))
        .await
        .unwrap();
    clock.advance_ms(1000);
    let tablet = service
        .login(login_from("Tablet/1.0\u{7}", "203.0.113.9"))
        .await
        .unwrap();
    let bobs = on.login(&bob).await;
    let me = service.authorize(&tablet.access_token).await.unwrap();
    let sid_of = |grant: &TokenGrant| grant.refresh_token.split('.').next().unwrap().to_owned();

    let list = service
        .list_sessions(&me.sub, Some(&me.sid), None, None)
        .await
        .unwrap();
    let sids: Vec<&str> = list.sessions.iter().map(|s| s.sid.as_str()).collect();
    assert_eq!(
        sids,
        [sid_of(&tablet), sid_of(&laptop), sid_of(&phone)],
        "newest first"
    );
    assert!(list.sessions[0].current && !list.sessions[1].current);
    assert_eq!(
        list.sessions[0].user_agent.as_deref(),
        Some("Tablet/1.0"),
        "no control characters"
    );
    assert_eq!(list.sessions[1].source_ip.as_deref(), Some("2001:db8::1"));
    assert!(list.next_cursor.is_none());

    // Pages of two.
    let first = service
        .list_sessions(&me.sub, None, None, Some(2))
        .await
        .unwrap();
    assert_eq!(first.sessions.len(), 2);
    let cursor = first.next_cursor.expect("a second page");
    let second = service
        .list_sessions(&me.sub, None, Some(&cursor), Some(2))
        .await
        .unwrap();
    assert_eq!(second.sessions.len(), 1);
    assert_eq!(second.sessions[0].sid, sid_of(&phone));
    assert!(second.next_cursor.is_none());
    assert!(
        service
            .list_sessions(&me.sub, None, Some("not-a-cursor!"), None)
            .await
            .is_err()
    );

    // A refresh updates when and where from.
    clock.advance_ms(5000);
    let refreshed = service
        .refresh(RefreshRequest {
            device: Device::new(Some("Phone/2.0"), Some("198.51.100.8".into())),
            ..RefreshRequest::new(phone.refresh_token.clone())
        })
        .await
        .unwrap();
    let list = service
        .list_sessions(&me.sub, None, None, None)
        .await
        .unwrap();
    let phone_view = list
        .sessions
        .iter()
        .find(|s| s.sid == sid_of(&phone))
        .unwrap();
    assert_eq!(phone_view.user_agent.as_deref(), Some("Phone/2.0"));
    assert_eq!(phone_view.last_used_at, clock.now_secs());

    // Another user's session, or none: 404, nothing changes.
    for sid in [sid_of(&bobs), "no-such-session".to_owned()] {
        assert!(matches!(
            service
                .end_session_of(&me.sub, &sid, crate::audit::BY_USER)
                .await,
            Err(Error::NotFound(_))
        ));
    }
    service.authorize(&bobs.access_token).await.unwrap();

    // End the laptop's session: its tokens stop working, it is no longer listed, and
    // ending it again is 404.
    service
        .end_session_of(&me.sub, &sid_of(&laptop), crate::audit::BY_USER)
        .await
        .unwrap();
    assert!(service.authorize(&laptop.access_token).await.is_err());
    assert!(on.refresh(&laptop.refresh_token).await.is_err());
    assert!(matches!(
        service
            .end_session_of(&me.sub, &sid_of(&laptop), crate::audit::BY_USER)
            .await,
        Err(Error::NotFound(_))
    ));
    let listed = service
        .list_sessions(&me.sub, None, None, None)
        .await
        .unwrap();
    assert_eq!(listed.sessions.len(), 2);

    // Sign out everywhere else: only the current one is left.
    assert_eq!(
        service.end_other_sessions(&me.sub, &me.sid).await.unwrap(),
        (1, false)
    );
    assert!(on.refresh(&refreshed.refresh_token).await.is_err());
    let left = service
        .list_sessions(&me.sub, Some(&me.sid), None, None)
        .await
        .unwrap();
    assert_eq!(left.sessions.len(), 1);
    assert!(left.sessions[0].current);
    service.authorize(&tablet.access_token).await.unwrap();

    // A user-wide revocation (a new password) ends it too: not listed any more.
    let change = crate::service::UserChange {
        password: Some("another long passphrase".into()),
        ..Default::default()
    };
    service.change_user(&ada, change).await.unwrap();
    clock.advance_ms(1);
    assert!(
        service
            .list_sessions(&me.sub, None, None, None)
            .await
            .unwrap()
            .sessions
            .is_empty()
    );

    // Logout with an access token ends its session (and is still a success a second time,
    // when the token is already revoked); bob's other session is untouched.
    let bob_id = service.authorize(&bobs.access_token).await.unwrap().sub;
    let bobs_second = on.login(&bob).await;
    service
        .logout_access_token(&bobs_second.access_token)
        .await
        .unwrap();
    service
        .logout_access_token(&bobs_second.access_token)
        .await
        .unwrap();
    assert!(service.authorize(&bobs_second.access_token).await.is_err());
    assert!(on.refresh(&bobs_second.refresh_token).await.is_err());
    service.authorize(&bobs.access_token).await.unwrap();

    // Past their absolute end, sessions are not listed either.
    assert_eq!(
        service
            .list_sessions(&bob_id, None, None, None)
            .await
            .unwrap()
            .sessions
            .len(),
        1
    );
    clock.advance_secs(service.config().refresh_ttl_secs + 1);
    assert!(
        service
            .list_sessions(&bob_id, None, None, None)
            .await
            .unwrap()
            .sessions
            .is_empty()
    );
}

/// Issue 10's login limiting, on any service: failed logins of one username from one
/// address, of one username from many addresses, and from one address for many usernames
/// reach their limits, and then logins are refused with 429 until the window ends — the
/// right password included — with no password check; other addresses (for the first
/// limit), other users and the next window are not affected.
pub async fn login_limits_hold(service: &TokenService, clock: &ManualClock) {
    use crate::store::Device;
    let config = service.config();
    let per_pair = config.login_failures_per_user_and_address;
    let per_user = config.login_failures_per_user;
    let per_address = config.login_failures_per_address;
    let suffix = unique("l");
    let carl = format!("carl-{suffix}");
    let dana = format!("dana-{suffix}");
    let on = &On(service);
    on.add_user(&carl, &["user"]).await;
    on.add_user(&dana, &["user"]).await;
    let from = |user: &str, password: &str, ip: &str| LoginRequest {
        device: Device::new(None, Some(ip.to_owned())),
        ..LoginRequest::new(user, password)
    };
    let wrong = "not the right passphrase";
    let refused = |attempt: Result<TokenGrant, Error>| match attempt {
        Err(Error::TooManyRequests { retry_after_secs }) => retry_after_secs,
        other => panic!("expected 429, got {:?}", other.err()),
    };
    let failed = |attempt: Result<TokenGrant, Error>, what: &str| {
        assert!(
            matches!(attempt, Err(Error::InvalidGrant(_))),
            "{what}: {:?}",
            attempt.err()
        )
    };

    // One user from one address: that address is refused, the user's own address is not.
    for i in 0..per_pair {
        failed(
            service.login(from(&carl, wrong, "198.51.100.1")).await,
            &format!("pair {i}"),
        );
    }
    let right = password_of(&carl);
    let wait = refused(service.login(from(&carl, &right, "198.51.100.1")).await);
    assert!((1..=config.login_window_secs).contains(&wait));
    service
        .login(from(&carl, &right, "198.51.100.2"))
        .await
        .expect("another address");

    // One user from many addresses: past the user's limit, every address is refused.
    for i in 0..per_user {
        let ip = format!("203.0.113.{i}");
        failed(
            service.login(from(&dana, wrong, &ip)).await,
            &format!("spread {i}"),
        );
    }
    let wait = refused(
        service
            .login(from(&dana, &password_of(&dana), "192.0.2.200"))
            .await,
    );
    on.login(&carl).await; // other users go on
    // The next window starts afresh.
    clock.advance_secs(wait);
    on.login(&dana).await;

    // One address, many usernames (known or not).
    let stuffing = "192.0.2.99";
    for i in 0..per_address {
        let user = format!("guess-{i}-{suffix}");
        failed(
            service.login(from(&user, wrong, stuffing)).await,
            &format!("stuffing {i}"),
        );
    }
    refused(
        service
            .login(from(&dana, &password_of(&dana), stuffing))
            .await,
    );
    service
        .login(from(&dana, &password_of(&dana), "192.0.2.100"))
        .await
        .expect("another address is not affected");
}

/// Two tests from one case function: a module `<name>` with tests `in_memory` and
/// `on_aws`, calling `case(Backend::Memory)` / `case(Backend::Aws)` (a function of the
/// module that uses the macro). With `async`, the case is awaited in a `#[tokio::test]`;
/// `async multi_thread` runs it on 4 worker threads.
///
/// ```ignore
/// both_backends!(lifecycle_over_http => the_whole_lifecycle_over_http);
/// both_backends!(async multi_thread concurrent_steps => concurrent_rotation_steps);
/// ```
#[macro_export]
macro_rules! both_backends {
    ($name:ident => $case:ident) => {
        mod $name {
            #[test]
            fn in_memory() {
                super::$case($crate::config::Backend::Memory);
            }
            #[test]
            fn on_aws() {
                super::$case($crate::config::Backend::Aws);
            }
        }
    };
    (async $name:ident => $case:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_memory() {
                super::$case($crate::config::Backend::Memory).await;
            }
            #[tokio::test]
            async fn on_aws() {
                super::$case($crate::config::Backend::Aws).await;
            }
        }
    };
    (async multi_thread $name:ident => $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn in_memory() {
                super::$case($crate::config::Backend::Memory).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_aws() {
                super::$case($crate::config::Backend::Aws).await;
            }
        }
    };
}
