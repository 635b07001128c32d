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
use crate::store::{MemoryStore, Session, SessionStore, User};

/// The issuer of test services that have no URL of their own.
pub const ISSUER: &str = "https://issuer.test";
/// Where the manual clock of a fixture starts (2027-01-15), in ms.
pub const START_MS: u64 = 1_800_000_000_000;

/// The one test password of a user (`alice` -> `alice-correct-horse`).
pub fn password_of(username: &str) -> String {
    format!("{username}-correct-horse")
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
        let changed = service.change_user(name, change, "test").await.unwrap();
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
    service.remove_user(rita, "test").await.unwrap();
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
