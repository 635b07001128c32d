//! The AWS backend against real servers that speak the AWS wire protocols: DynamoDB Local
//! (the DynamoDB store) and ministack (KMS), through the real aws-sdk-rust clients. Every
//! test creates its own uniquely named tables and key, so tests run in parallel.
//!
//! Needs `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_KMS`: `./scripts/test` starts the
//! emulators and sets them. Without them these tests FAIL, saying so; they never skip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use tokenlife::app::AwsClients;
use tokenlife::clock::{Clock, ManualClock, SystemClock};
use tokenlife::config::{Argon2Params, Backend, Config, RevocationCheck, Signing};
use tokenlife::keys::{RotationPolicy, SigningAlgorithm};
use tokenlife::refresh::new_session_id;
use tokenlife::secrets::{b64url, b64url_decode};
use tokenlife::service::TokenGrant;
use tokenlife::setup::{ensure_tables, ensure_tables_and_signing_key};
use tokenlife::store::{
    CreateOutcome, DynamoStore, MemoryStore, ReplaceOutcome, Revocation, RevocationKey,
    SaveOutcome, Session, SessionOwner, SessionStore, TableNames, User, UserStore,
};
use tokenlife::testkit::{
    On, Users, password_of, require_emulators, sample_session, sample_user,
    thirty_concurrent_refreshes_rotate_exactly_once, unique,
};
use tokenlife::{App, Error, TokenService};

/// Counts the AWS calls that go on the wire (retries included), by operation, and keeps
/// the last BatchGetItem's body.
#[derive(Debug, Default)]
struct CallCounter {
    calls: Mutex<Vec<String>>,
    /// The body of the last request of each operation.
    last_body: Mutex<HashMap<String, String>>,
}

impl CallCounter {
    fn take(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for call in self.calls.lock().unwrap().drain(..) {
            *counts.entry(call).or_default() += 1;
        }
        counts
    }
}

/// The operation of a request: JSON-protocol services name it in X-Amz-Target,
/// "Service.Operation".
fn operation_of<'a>(context: &'a BeforeTransmitInterceptorContextRef<'_>) -> &'a str {
    let target = context
        .request()
        .headers()
        .get("x-amz-target")
        .unwrap_or("?");
    target.rsplit('.').next().unwrap_or(target)
}

#[derive(Debug)]
struct Counting(Arc<CallCounter>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "CountingInterceptor"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = operation_of(context).to_owned();
        let body = context.request().body().bytes().unwrap_or_default();
        self.0.last_body.lock().unwrap().insert(
            operation.clone(),
            String::from_utf8_lossy(body).into_owned(),
        );
        self.0.calls.lock().unwrap().push(operation);
        Ok(())
    }
}

/// Loses the answer of the first request of one operation to one table: the write lands
/// in DynamoDB, then
/// the client sees a 500 in its place (as after a dropped connection or a gateway error),
/// so the SDK retries the same request.
#[derive(Debug, Clone)]
struct LoseFirstAnswer {
    /// The operation (`PutItem`, `TransactWriteItems`) and a table it writes.
    operation: &'static str,
    table: String,
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Set until the first matching request has gone out.
    armed: std::sync::atomic::AtomicBool,
    /// The request in flight is the one whose answer is lost.
    this_one: std::sync::atomic::AtomicBool,
    /// Answers lost so far.
    lost: std::sync::atomic::AtomicUsize,
}

impl Intercept for LoseFirstAnswer {
    fn name(&self) -> &'static str {
        "LoseFirstAnswer"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use std::sync::atomic::Ordering::SeqCst;
        let hit_operation = operation_of(context) == self.operation;
        let body = context.request().body().bytes().unwrap_or_default();
        let to_table = String::from_utf8_lossy(body).contains(&format!("\"{}\"", self.table));
        let hit = hit_operation && to_table && self.state.armed.swap(false, SeqCst);
        self.state.this_one.store(hit, SeqCst);
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.state.this_one.swap(false, SeqCst) {
            let response = context.response_mut();
            assert!(response.status().is_success(), "the real write landed");
            *response.status_mut() = 500u16.try_into()?;
            *response.body_mut() = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"answer lost (injected)"}"#.into();
            self.state.lost.fetch_add(1, SeqCst);
        }
        Ok(())
    }
}

async fn counted_clients(counter: &Arc<CallCounter>) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(Counting(counter.clone()))
        .build();
    let kms = aws_sdk_kms::config::Builder::from(&sdk)
        .interceptor(Counting(counter.clone()))
        .build();
    AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
        kms: aws_sdk_kms::Client::from_conf(kms),
    }
}

struct Fixture {
    service: Arc<TokenService>,
    counter: Arc<CallCounter>,
    clients: AwsClients,
    tables: TableNames,
    clock: Arc<ManualClock>,
}

async fn fixture_with(edit: impl FnOnce(&mut Config)) -> Fixture {
    require_emulators();
    let mut config = aws_config_named(&unique("t"));
    edit(&mut config);
    let counter = Arc::new(CallCounter::default());
    let clients = counted_clients(&counter).await;
    ensure_tables_and_signing_key(&config, &clients)
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let tables = config.tables.clone();
    counter.take(); // setup's calls
    let app = App::aws(
        config,
        "https://issuer.test",
        clients.clone(),
        clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(counter.take(), counts(&[]), "no AWS call at start");
    // The first use reads the key registry, once: the public keys are in it, no KMS call.
    app.service.jwks().await.unwrap();
    app.service.jwks().await.unwrap();
    assert_eq!(counter.take(), counts(&[("GetItem", 1)]));
    Fixture {
        service: app.service,
        counter,
        clients,
        tables,
        clock,
    }
}

impl Fixture {
    async fn add_alice(&self) {
        On(&self.service).add_user("alice", &["user"]).await;
    }

    async fn login(&self) -> TokenGrant {
        On(&self.service).login("alice").await
    }

    async fn refresh(&self, token: &str) -> Result<TokenGrant, Error> {
        On(&self.service).refresh(token).await
    }

    /// A second service on the same tables and clock, with its own caches: another
    /// Lambda instance, as far as tokenlife can tell.
    async fn another_process(&self) -> Arc<TokenService> {
        App::aws(
            self.service.config().clone(),
            "https://issuer.test",
            self.clients.clone(),
            self.clock.clone(),
        )
        .await
        .unwrap()
        .service
    }

    /// Another process on the same tables whose first PutItem to `table` lands but loses
    /// its answer (see [`LoseFirstAnswer`]), and the fault's counters.
    async fn losing_first_answer_to(
        &self,
        operation: &'static str,
        table: &str,
    ) -> (Arc<TokenService>, Arc<FaultState>) {
        let fault = LoseFirstAnswer {
            operation,
            table: table.to_owned(),
            state: Arc::new(FaultState {
                armed: true.into(),
                ..FaultState::default()
            }),
        };
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(fault.clone())
            .build();
        let clients = AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            kms: self.clients.kms.clone(),
        };
        let service = App::aws(
            self.service.config().clone(),
            "https://issuer.test",
            clients,
            self.clock.clone(),
        )
        .await
        .unwrap()
        .service;
        (service, fault.state)
    }

    fn store(&self) -> DynamoStore {
        DynamoStore::new(
            self.clients.dynamodb.clone(),
            self.tables.clone(),
            self.clock.clone(),
        )
    }

    async fn scan(&self, table: &str) -> Vec<HashMap<String, AttributeValue>> {
        self.clients
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
    }
}

fn counts(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The store contract, run against both backends: conditional rotation, user-wide
/// revocation inside the rotation, ending sessions, revocation entries.
async fn store_contract(users: &dyn UserStore, sessions: &dyn SessionStore, now_ms: u64) {
    let user = sample_user();
    assert_eq!(users.find_user("alice").await.unwrap(), None);
    assert_eq!(users.create_user(&user).await.unwrap(), SaveOutcome::Saved);
    assert_eq!(users.find_user("alice").await.unwrap(), Some(user.clone()));
    // The name is taken (by another user: another id).
    let impostor = User {
        id: "user-2".into(),
        ..user.clone()
    };
    assert_eq!(
        users.create_user(&impostor).await.unwrap(),
        SaveOutcome::Conflict
    );
    let disabled = User {
        disabled: true,
        version: 2,
        ..user.clone()
    };
    assert_eq!(
        users.update_user(&disabled, None).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        users.find_user("alice").await.unwrap(),
        Some(disabled.clone())
    );
    // Another change made from a stale read (of version 1) is refused and changes nothing;
    // the same change again is recognised as already made (a retry whose answer was lost).
    let stale_change = User {
        scopes: vec!["other".into()],
        ..disabled.clone()
    };
    assert_eq!(
        users.update_user(&stale_change, None).await.unwrap(),
        SaveOutcome::Conflict
    );
    assert_eq!(
        users.find_user("alice").await.unwrap(),
        Some(disabled.clone())
    );
    assert_eq!(
        users.update_user(&disabled, None).await.unwrap(),
        SaveOutcome::Saved
    );
    let enabled = User {
        disabled: false,
        version: 3,
        ..user.clone()
    };
    assert_eq!(
        users.update_user(&enabled, None).await.unwrap(),
        SaveOutcome::Saved
    );

    // A session is written only while its owner is as the login read it.
    let owner = |version| SessionOwner {
        username: "alice".into(),
        user_id: "user-1".into(),
        version,
    };
    let stale = sample_session(now_ms - 20);
    assert_eq!(
        sessions.create_session(&stale, &owner(1)).await.unwrap(),
        CreateOutcome::OwnerChanged
    );
    assert_eq!(sessions.find_session(&stale.id).await.unwrap(), None);
    let session = sample_session(now_ms - 10);
    assert_eq!(
        sessions.create_session(&session, &owner(3)).await.unwrap(),
        CreateOutcome::Created
    );
    assert_eq!(
        sessions.find_session(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(sessions.find_session("nope").await.unwrap(), None);

    let rotated = Session {
        generation: 1,
        current_hash: [3; 32],
        last_rotation: Some(tokenlife::store::Rotation {
            at_ms: now_ms,
            sealed_successor: vec![4; 76],
        }),
        ..session.clone()
    };
    assert_eq!(
        sessions.replace_session(&rotated, 5).await.unwrap(),
        ReplaceOutcome::Conflict
    );
    assert_eq!(
        sessions.replace_session(&rotated, 0).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    assert_eq!(
        sessions.find_session(&session.id).await.unwrap(),
        Some(rotated.clone())
    );
    assert_eq!(
        sessions.replace_session(&rotated, 0).await.unwrap(),
        ReplaceOutcome::Conflict
    );

    // A user-wide revocation covering the session stops its rotation, atomically.
    let later = Session {
        id: new_session_id(now_ms + 5),
        created_ms: now_ms + 5,
        user_version: 3,
        ..session.clone()
    };
    assert_eq!(
        sessions.create_session(&later, &owner(3)).await.unwrap(),
        CreateOutcome::Created
    );
    // Sessions made under versions below 2 (the first one, version 1) are revoked.
    let ban = |below_version, expires_at| Revocation {
        key: RevocationKey::User("user-1".into()),
        expires_at,
        below_version,
    };
    sessions
        .put_revocation(&ban(2, now_ms / 1000 + 3600))
        .await
        .unwrap();
    let next = Session {
        generation: 2,
        ..rotated.clone()
    };
    assert_eq!(
        sessions.replace_session(&next, 1).await.unwrap(),
        ReplaceOutcome::Ended
    );
    // ...but not a session of a later version.
    let later_next = Session {
        generation: 1,
        ..later.clone()
    };
    assert_eq!(
        sessions.replace_session(&later_next, 0).await.unwrap(),
        ReplaceOutcome::Replaced
    );
    // A user-wide revocation never moves back.
    sessions
        .put_revocation(&ban(1, now_ms / 1000 + 3600))
        .await
        .unwrap();
    let found = sessions
        .find_revocations(&[RevocationKey::User("user-1".into())])
        .await
        .unwrap();
    assert_eq!(found, vec![ban(2, now_ms / 1000 + 3600)]);

    // Ending a session: flag and sid entry together; idempotent; fine for unknown sessions.
    let sid_entry = |id: &str| Revocation {
        key: RevocationKey::Session(id.to_owned()),
        expires_at: now_ms / 1000 + 900,
        below_version: 0,
    };
    sessions
        .end_session(&later.id, &sid_entry(&later.id))
        .await
        .unwrap();
    sessions
        .end_session(&later.id, &sid_entry(&later.id))
        .await
        .unwrap();
    assert!(
        sessions
            .find_session(&later.id)
            .await
            .unwrap()
            .unwrap()
            .ended
    );
    let after_end = Session {
        generation: 2,
        ..later_next.clone()
    };
    assert_eq!(
        sessions.replace_session(&after_end, 1).await.unwrap(),
        ReplaceOutcome::Ended
    );
    assert!(
        sessions
            .find_session(&later.id)
            .await
            .unwrap()
            .unwrap()
            .ended
    );
    sessions
        .end_session("unknown-session", &sid_entry("unknown-session"))
        .await
        .unwrap();
    assert_eq!(
        sessions.find_session("unknown-session").await.unwrap(),
        None,
        "no session made up"
    );

    // One lookup for several keys; absent ones are simply missing.
    let jti = Revocation {
        key: RevocationKey::Token("jti-1".into()),
        expires_at: now_ms / 1000 + 900,
        below_version: 0,
    };
    sessions.put_revocation(&jti).await.unwrap();
    let mut found = sessions
        .find_revocations(&[
            RevocationKey::Token("jti-1".into()),
            RevocationKey::Token("jti-2".into()),
            RevocationKey::Session("unknown-session".into()),
            RevocationKey::User("nobody".into()),
        ])
        .await
        .unwrap();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(found, vec![jti, sid_entry("unknown-session")]);

    // A change that ends sessions writes the user and the user-wide entry together.
    let below = 4;
    let narrowed = User {
        scopes: vec!["user".into()],
        version: 4,
        ..enabled.clone()
    };
    assert_eq!(
        users
            .update_user(&narrowed, Some(&ban(below, now_ms / 1000 + 7200)))
            .await
            .unwrap(),
        SaveOutcome::Saved
    );
    let entries = sessions
        .find_revocations(&[RevocationKey::User("user-1".into())])
        .await
        .unwrap();
    assert_eq!(entries, vec![ban(below, now_ms / 1000 + 7200)]);
    // Refused as a whole: neither the user nor the entry changes.
    let refused = User {
        disabled: true,
        version: 4,
        ..narrowed.clone()
    };
    assert_eq!(
        users
            .update_user(&refused, Some(&ban(below + 1, now_ms / 1000 + 9000)))
            .await
            .unwrap(),
        SaveOutcome::Conflict
    );
    assert_eq!(
        users.find_user("alice").await.unwrap(),
        Some(narrowed.clone())
    );
    assert_eq!(
        sessions
            .find_revocations(&[RevocationKey::User("user-1".into())])
            .await
            .unwrap(),
        entries
    );
    // An entry older than the one stored does not stop the change (the stored one covers it).
    let older = User {
        disabled: true,
        version: 5,
        ..narrowed.clone()
    };
    assert_eq!(
        users
            .update_user(&older, Some(&ban(below - 1, now_ms / 1000 + 7200)))
            .await
            .unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        sessions
            .find_revocations(&[RevocationKey::User("user-1".into())])
            .await
            .unwrap(),
        entries
    );

    // Pages: every user once, none more than the limit at a time.
    for name in ["bob", "carol", "dave"] {
        let other = User {
            id: format!("id-{name}"),
            username: name.into(),
            ..user.clone()
        };
        assert_eq!(users.create_user(&other).await.unwrap(), SaveOutcome::Saved);
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = users.list_users(after.as_deref(), 2).await.unwrap();
        assert!(page.users.len() <= 2);
        listed.extend(page.users.into_iter().map(|u| u.username));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    listed.sort();
    assert_eq!(listed, ["alice", "bob", "carol", "dave"]);

    // Removal: only of the version read; with its entry.
    assert_eq!(
        users
            .delete_user(&narrowed, &ban(below + 5, now_ms / 1000 + 7200))
            .await
            .unwrap(),
        SaveOutcome::Conflict
    );
    assert_eq!(
        users
            .delete_user(&older, &ban(below + 5, now_ms / 1000 + 7200))
            .await
            .unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(users.find_user("alice").await.unwrap(), None);
    assert_eq!(
        sessions
            .find_revocations(&[RevocationKey::User("user-1".into())])
            .await
            .unwrap(),
        vec![ban(below + 5, now_ms / 1000 + 7200)]
    );
    assert_eq!(
        sessions
            .create_session(&sample_session(now_ms), &owner(5))
            .await
            .unwrap(),
        CreateOutcome::OwnerChanged,
        "no session for a removed user"
    );
}

#[tokio::test]
async fn the_store_contract_holds_for_memory_and_dynamodb() {
    let now_ms = SystemClock.now_ms();
    let memory = MemoryStore::new(Arc::new(ManualClock::new(now_ms)));
    store_contract(&memory, &memory, now_ms).await;

    let f = fixture_with(|_| {}).await;
    let dynamo = f.store();
    store_contract(&dynamo, &dynamo, f.clock.now_ms()).await;
}

#[tokio::test]
async fn each_operation_makes_the_minimum_of_aws_calls() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    f.counter.take();

    let grant = f.login().await;
    assert_eq!(
        f.counter.take(),
        counts(&[("BatchGetItem", 1), ("Sign", 1), ("TransactWriteItems", 1)]),
        "login (the user and the login-limiting counters in one BatchGetItem)"
    );

    let renewed = f.refresh(&grant.refresh_token).await.unwrap();
    assert_eq!(
        f.counter.take(),
        counts(&[("GetItem", 1), ("Sign", 1), ("TransactWriteItems", 1)]),
        "refresh"
    );

    f.service.authorize(&renewed.access_token).await.unwrap();
    assert_eq!(f.counter.take(), counts(&[("BatchGetItem", 1)]), "verify");
    // Strongly consistent: a revocation that answered 200 binds the next verification.
    let body: serde_json::Value =
        serde_json::from_str(&f.counter.last_body.lock().unwrap()["BatchGetItem"]).unwrap();
    let request = body["RequestItems"][&f.tables.revocations].clone();
    assert_eq!(request["ConsistentRead"], true, "{body}");
    assert_eq!(request["Keys"].as_array().map(Vec::len), Some(3));

    f.service.revoke(&renewed.access_token, None).await.unwrap();
    f.counter.take();
    assert!(f.service.authorize(&renewed.access_token).await.is_err());
    assert_eq!(
        f.counter.take(),
        counts(&[("BatchGetItem", 1)]),
        "verify, first revoked answer"
    );
    assert!(f.service.authorize(&renewed.access_token).await.is_err());
    assert_eq!(
        f.counter.take(),
        counts(&[]),
        "verify, cached revoked answer"
    );

    let disable = tokenlife::service::UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    f.service.change_user("alice", disable).await.unwrap();
    assert_eq!(
        f.counter.take(),
        counts(&[("GetItem", 1), ("TransactWriteItems", 1)]),
        "a user change that ends the user's sessions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_refreshes_rotate_exactly_once_on_dynamodb() {
    for grace in [0, 5] {
        let f = fixture_with(|c| c.refresh_grace_secs = grace).await;
        f.add_alice().await;
        thirty_concurrent_refreshes_rotate_exactly_once(&f.service, &f.store()).await;
    }
}

#[tokio::test]
async fn a_table_dump_yields_no_usable_token_or_password() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let first = f.login().await;
    let second = f.refresh(&first.refresh_token).await.unwrap();
    let mut dump = String::new();
    let mut raw_values: Vec<Vec<u8>> = Vec::new();
    for table in [&f.tables.users, &f.tables.sessions, &f.tables.revocations] {
        for item in f.scan(table).await {
            for value in item.values() {
                dump.push_str(&format!("{value:?}\n"));
                match value {
                    AttributeValue::B(blob) => raw_values.push(blob.as_ref().to_vec()),
                    AttributeValue::S(text) => raw_values.push(text.as_bytes().to_vec()),
                    _ => {}
                }
            }
        }
    }
    assert!(!dump.contains(&password_of("alice")));
    for token in [&first.refresh_token, &second.refresh_token] {
        let secret = token.rsplit('.').next().unwrap();
        assert!(
            !dump.contains(secret),
            "a refresh secret is stored in clear"
        );
        let secret_bytes = b64url_decode(secret).unwrap();
        for value in &raw_values {
            assert!(
                !value
                    .windows(16)
                    .any(|w| secret_bytes.windows(16).any(|s| s == w)),
                "16 bytes of a refresh secret are stored"
            );
        }
    }
    // The dump did contain the session (we looked at the right tables).
    assert!(dump.contains(first.refresh_token.split('.').next().unwrap()));
}

#[tokio::test]
async fn expired_but_present_entries_count_as_absent() {
    let f = fixture_with(|c| c.leeway_secs = 0).await;
    f.add_alice().await;
    let grant = f.login().await;
    let claims = f.service.authorize(&grant.access_token).await.unwrap();
    let now = f.clock.now_secs();
    let store = f.store();
    // Revocation entries whose time is over but that DynamoDB has not deleted yet.
    for key in [
        RevocationKey::Token(claims.jti.clone()),
        RevocationKey::Session(claims.sid.clone()),
        RevocationKey::User(claims.sub.clone()),
    ] {
        store
            .put_revocation(&Revocation {
                key,
                expires_at: now - 1,
                below_version: 100,
            })
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .find_revocations(&[RevocationKey::Token(claims.jti.clone())])
            .await
            .unwrap()
            .len(),
        1
    );
    f.service.authorize(&grant.access_token).await.unwrap();
    f.refresh(&grant.refresh_token).await.unwrap();

    // A session past its absolute end, still stored, cannot refresh.
    let other = f.login().await;
    f.clock.advance_secs(Config::default().refresh_ttl_secs);
    let sid = other.refresh_token.split('.').next().unwrap();
    assert!(
        store.find_session(sid).await.unwrap().is_some(),
        "still stored"
    );
    assert!(matches!(
        f.refresh(&other.refresh_token).await,
        Err(Error::InvalidGrant(_))
    ));
}

#[tokio::test]
async fn kms_signatures_always_verify_es256_and_rs256() {
    // ~1 ECDSA signature in 128 has an r or s with a leading zero byte; 300 signatures
    // exercise the DER -> R||S padding with high probability, and every one must verify.
    for (alg, rounds) in [
        (SigningAlgorithm::Es256, 300),
        (SigningAlgorithm::Rs256, 20),
    ] {
        let f = fixture_with(|c| c.algorithm = alg).await;
        f.add_alice().await;
        let jwks = f.service.jwks().await.unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].alg, alg.name());
        let grant = f.login().await;
        let mut token = grant.refresh_token;
        for _ in 0..rounds {
            let renewed = f.refresh(&token).await.unwrap();
            f.service.authorize(&renewed.access_token).await.unwrap();
            token = renewed.refresh_token;
        }
    }
}

/// Mirror mode on DynamoDB Local: a cold process reads the live entries through the
/// `by-change` index (Query, never Scan) before its first answer; then verifications make
/// no AWS call, and a revocation written by another process takes effect at the next poll
/// with one Query.
#[tokio::test]
async fn mirror_mode_verifies_with_no_aws_call_and_sees_revocations_at_the_next_poll() {
    let f = fixture_with(|c| c.revocation_check = RevocationCheck::Mirror).await;
    f.add_alice().await;
    let kept = f.login().await.access_token;
    let doomed = f.login().await.access_token;
    let revoker = f.another_process().await;
    revoker.revoke(&doomed, None).await.unwrap();
    let early = f.login().await.access_token;
    f.counter.take();

    // Cold: the index, a Query per UTC day of the last day and a bit.
    assert!(
        f.service.authorize(&doomed).await.is_err(),
        "revoked before"
    );
    let cold = f.counter.take();
    assert_eq!(cold.keys().collect::<Vec<_>>(), vec!["Query"], "{cold:?}");
    assert!((1..=3).contains(&cold["Query"]), "{cold:?}");
    let query: serde_json::Value =
        serde_json::from_str(&f.counter.last_body.lock().unwrap()["Query"]).unwrap();
    assert_eq!(query["IndexName"], "by-change");
    assert_eq!(query["TableName"], f.tables.revocations.as_str());

    for _ in 0..50 {
        f.service.authorize(&kept).await.unwrap();
    }
    assert_eq!(
        f.counter.take(),
        counts(&[]),
        "no AWS call per verification"
    );

    revoker.revoke(&early, None).await.unwrap();
    f.counter.take();
    f.service
        .authorize(&early)
        .await
        .expect("within the poll interval the copy does not know yet");
    f.clock.advance_ms(1_000);
    assert!(
        f.service.authorize(&early).await.is_err(),
        "at the next poll"
    );
    let poll = f.counter.take();
    assert_eq!(poll.keys().collect::<Vec<_>>(), vec!["Query"], "{poll:?}");
    assert!(poll["Query"] <= 2, "one day, two around midnight: {poll:?}");
    f.service.authorize(&kept).await.unwrap();

    // Revoking it again writes nothing: no new change in the feed, no index write.
    let after_ms = f.clock.now_ms() + 1;
    f.clock.advance_ms(5_000);
    revoker.revoke(&early, None).await.unwrap();
    let changes = f
        .store()
        .revocations_changed_since(after_ms, f.clock.now_secs(), 100)
        .await
        .unwrap();
    assert!(changes.is_empty(), "{changes:?}");
}

/// Tables made before mirror mode (or in lookup mode) lack the `by-change` index: `check`
/// says so in mirror mode, and `setup` adds it (UpdateTable) and says so once.
#[tokio::test]
async fn setup_adds_the_mirror_index_to_tables_made_without_it() {
    require_emulators();
    let clients = clients_at(None, None).await;
    let mut config = aws_config_named(&unique("ix"));
    ensure_tables(&clients.dynamodb, &config).await.unwrap();
    config.revocation_check = RevocationCheck::Mirror;
    let revocations_finding = |findings: Vec<tokenlife::setup::Finding>| {
        findings
            .into_iter()
            .find(|f| f.what.contains(&config.tables.revocations))
            .unwrap()
    };
    let before = revocations_finding(tokenlife::setup::check(&config, &clients).await);
    assert!(
        before
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("by-change")),
        "{before:?}"
    );
    let report = ensure_tables(&clients.dynamodb, &config).await.unwrap();
    assert!(
        report
            .iter()
            .any(|line| line.contains("index by-change created")),
        "{report:?}"
    );
    let again = ensure_tables(&clients.dynamodb, &config).await.unwrap();
    assert!(
        !again.iter().any(|line| line.contains("created")),
        "{again:?}"
    );
    // DynamoDB Local leaves an index added to a table CREATING; AWS makes it ACTIVE once
    // built. Either way `check` no longer says it is missing.
    let after = revocations_finding(tokenlife::setup::check(&config, &clients).await);
    assert!(
        after.problem.is_none()
            || after
                .problem
                .as_deref()
                .is_some_and(|p| p.contains("not ACTIVE yet")),
        "{after:?}"
    );
}

/// Data-key signing on the emulators: setup makes the wrapping key (under its default alias)
/// and a data key pair; logins sign locally after one `Decrypt` per process, with the
/// registry's encryption context; no `Sign` at all; the wrapped key opens under no other
/// record's context.
#[tokio::test]
async fn data_key_signing_unwraps_once_per_process_and_never_calls_sign() {
    for alg in [SigningAlgorithm::Es256, SigningAlgorithm::Rs256] {
        let f = fixture_with(|c| {
            c.signing = Signing::DataKey;
            c.algorithm = alg;
        })
        .await;
        let keys = f.service.list_keys().await.unwrap();
        let [active] = keys.as_slice() else {
            panic!("one key: {keys:?}")
        };
        assert!(tokenlife::keys::data_key::is_data_key(&active.key_ref));
        let wrapped = active.wrapped.clone().expect("a wrapped private key");
        f.add_alice().await;
        f.counter.take();

        let logins = 5;
        let mut grants = Vec::new();
        for _ in 0..logins {
            grants.push(f.login().await);
        }
        assert_eq!(
            f.counter.take(),
            counts(&[
                ("BatchGetItem", logins),
                ("TransactWriteItems", logins),
                ("Decrypt", 1)
            ]),
            "{alg:?}: N logins = 1 Decrypt + N x (DynamoDB calls), 0 Sign"
        );
        let decrypt: serde_json::Value =
            serde_json::from_str(&f.counter.last_body.lock().unwrap()["Decrypt"]).unwrap();
        assert_eq!(
            decrypt["EncryptionContext"],
            serde_json::json!({
                "tokenlife-registry": f.tables.keys,
                "tokenlife-key": active.key_ref,
            })
        );
        f.refresh(&grants[0].refresh_token).await.unwrap();
        assert_eq!(
            f.counter.take(),
            counts(&[("GetItem", 1), ("TransactWriteItems", 1)]),
            "refresh"
        );
        for grant in &grants {
            assert_eq!(kid_of(&grant.access_token), active.kid);
            f.service.authorize(&grant.access_token).await.unwrap();
        }
        // Another process (Lambda instance) unwraps for itself, once.
        let other = f.another_process().await;
        On(&other).login("alice").await;
        On(&other).login("alice").await;
        assert_eq!(f.counter.take()["Decrypt"], 1);

        // The wrapped key opens only under its own record's context.
        let elsewhere = f
            .clients
            .kms
            .decrypt()
            .key_id(&wrapped.wrapping_key)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(
                wrapped.ciphertext.clone(),
            ))
            .set_encryption_context(Some(tokenlife::keys::data_key::encryption_context(
                &f.tables.keys,
                "data-key/another-record",
            )))
            .send()
            .await;
        assert!(
            elsewhere
                .unwrap_err()
                .into_service_error()
                .is_invalid_ciphertext_exception(),
            "{alg:?}: opened under another context"
        );
    }
}

/// A deployment switches modes at its next rotation: a KMS-key registry gets a data key
/// pending, promoted and signing, while the KMS key's tokens still verify; the data key's
/// wrapped copy leaves the registry when it stops signing, and an emergency retirement of
/// it works like a KMS key's.
#[tokio::test]
async fn signing_modes_switch_at_a_rotation_and_both_kinds_verify() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let kms_token = f.login().await.access_token;
    let mut config = f.service.config().clone();
    config.signing = Signing::DataKey;
    config.key_publish_delay = Some(0);
    let rotator = App::aws(
        config,
        "https://issuer.test",
        f.clients.clone(),
        f.clock.clone(),
    )
    .await
    .unwrap()
    .service;
    // The wrapping key: what `tokenlife setup` makes in this mode.
    let mut setup_config = rotator.config().clone();
    setup_config.signing = Signing::DataKey;
    ensure_tables_and_signing_key(&setup_config, &f.clients)
        .await
        .unwrap();
    rotator.rotate_keys().await.unwrap(); // a data key, pending
    f.clock.advance_ms(1_000);
    rotator.rotate_keys().await.unwrap(); // promoted, and the next one pending
    let keys = rotator.list_keys().await.unwrap();
    let data_key = keys
        .iter()
        .find(|k| k.state == tokenlife::keys::KeyState::Active)
        .unwrap();
    assert!(tokenlife::keys::data_key::is_data_key(&data_key.key_ref));
    assert!(data_key.wrapped.is_some());
    let retiring = keys
        .iter()
        .find(|k| !tokenlife::keys::data_key::is_data_key(&k.key_ref))
        .unwrap();
    assert_eq!(retiring.state, tokenlife::keys::KeyState::Retiring);
    assert!(retiring.wrapped.is_none());

    let verifier = f.another_process().await;
    let data_token = On(&rotator).login("alice").await.access_token;
    assert_eq!(kid_of(&data_token), data_key.kid);
    verifier.authorize(&kms_token).await.unwrap();
    verifier.authorize(&data_token).await.unwrap();
    assert_eq!(
        verifier.jwks().await.unwrap().keys.len(),
        3,
        "retiring, active, pending"
    );

    // Emergency retirement of the data key: refused at once here, a new key signs, and
    // the registry no longer holds the retired key's wrapped copy.
    let leaked = data_key.kid.clone();
    rotator.retire_key(&leaked).await.unwrap();
    assert!(rotator.authorize(&data_token).await.is_err());
    let after = On(&rotator).login("alice").await.access_token;
    assert_ne!(kid_of(&after), leaked);
    let keys = rotator.list_keys().await.unwrap();
    let retired = keys.iter().find(|k| k.kid == leaked).unwrap();
    assert_eq!(retired.state, tokenlife::keys::KeyState::Retired);
    assert!(retired.wrapped.is_none(), "the wrapped copy is gone");
    // Only the keys that may still sign (the promoted pending one, active now, and the
    // next pending one) have a wrapped copy stored.
    let raw = f.scan(&f.tables.keys).await;
    assert_eq!(raw.len(), 1);
    let stored = format!("{raw:?}");
    let may_sign = keys
        .iter()
        .filter(|k| {
            matches!(
                k.state,
                tokenlife::keys::KeyState::Active | tokenlife::keys::KeyState::Pending
            )
        })
        .count();
    assert_eq!(stored.matches("wrapped_private_key").count(), may_sign);
}

/// A ministack of this test's own, so that it can be stopped mid-test.
struct OwnKms {
    child: std::process::Child,
    endpoint: String,
}

impl OwnKms {
    fn start() -> OwnKms {
        let binary = std::env::var("TOKENLIFE_TEST_MINISTACK").unwrap_or_else(|_| {
            panic!("TOKENLIFE_TEST_MINISTACK is not set: run ./scripts/test, which installs ministack and sets it")
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(binary)
            .env("GATEWAY_PORT", port.to_string())
            .env("BIND_HOST", "127.0.0.1")
            .env("SERVICES", "kms")
            .env("IOT_MTLS_ENABLED", "0")
            .env("SFTP_ENABLED", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ministack");
        for _ in 0..150 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return OwnKms {
                    child,
                    endpoint: format!("http://127.0.0.1:{port}"),
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("ministack did not answer on port {port} within 15 s");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnKms {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Clients from the standard configuration, with endpoint overrides.
async fn clients_at(dynamodb: Option<&str>, kms: Option<&str>) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let mut dynamodb_config = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(endpoint) = dynamodb {
        dynamodb_config = dynamodb_config.endpoint_url(endpoint);
    }
    let mut kms_config = aws_sdk_kms::config::Builder::from(&sdk);
    if let Some(endpoint) = kms {
        kms_config = kms_config.endpoint_url(endpoint);
    }
    AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb_config.build()),
        kms: aws_sdk_kms::Client::from_conf(kms_config.build()),
    }
}

/// A config of the aws backend with its own tables and key, and cheap password hashing.
fn aws_config_named(name: &str) -> Config {
    Config {
        backend: Backend::Aws,
        stack: name.to_owned(),
        tables: TableNames::for_stack(name),
        argon2: Argon2Params::CHEAPEST,
        ..Config::default()
    }
}

fn json_request(method: &str, path: &str, body: serde_json::Value) -> lambda_http::Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(lambda_http::Body::from(body.to_string()))
        .unwrap()
}

fn assert_unavailable(response: &lambda_http::Response<lambda_http::Body>, what: &str) {
    assert_eq!(
        response.status().as_u16(),
        503,
        "{what}: {:?}",
        response.body()
    );
    assert!(
        response.headers().contains_key("retry-after"),
        "{what}: Retry-After"
    );
    let body: serde_json::Value = match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("{what}: body {other:?}"),
    };
    assert_eq!(body["error"], "temporarily_unavailable", "{what}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        !description.contains("127.0.0.1"),
        "{what}: no internals in the answer: {description}"
    );
}

#[tokio::test]
async fn a_kms_outage_is_a_503_and_writes_nothing() {
    require_emulators();
    let mut kms = OwnKms::start();
    let config = aws_config_named(&unique("kms-down"));
    let clients = clients_at(None, Some(&kms.endpoint)).await;
    ensure_tables_and_signing_key(&config, &clients)
        .await
        .unwrap();
    let tables = config.tables.clone();
    let app = App::aws(
        config,
        "https://issuer.test",
        clients.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let service = app.service;
    service
        .put_user("alice", &password_of("alice"), vec!["user".into()])
        .await
        .unwrap();
    let login = serde_json::json!({"username": "alice", "password": password_of("alice")});
    let endpoints = None;
    let response = tokenlife::http::handle(
        &service,
        endpoints,
        json_request("POST", "/login", login.clone()),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let grant: serde_json::Value = match response.body() {
        lambda_http::Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    };

    kms.stop();
    let scan = || async {
        let mut items = clients
            .dynamodb
            .scan()
            .table_name(&tables.sessions)
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        items.sort_by_key(|item| format!("{:?}", item.get("id")));
        items
    };
    let before = scan().await;
    assert_eq!(before.len(), 1);

    let response =
        tokenlife::http::handle(&service, endpoints, json_request("POST", "/login", login)).await;
    assert_unavailable(&response, "login while KMS is down");
    let refresh = serde_json::json!({"refresh_token": grant["refresh_token"]});
    let response = tokenlife::http::handle(
        &service,
        endpoints,
        json_request("POST", "/refresh", refresh),
    )
    .await;
    assert_unavailable(&response, "refresh while KMS is down");
    assert_eq!(scan().await, before, "nothing was written");

    // Verification needs no KMS: the public keys come from the key registry.
    let bearer = format!("Bearer {}", grant["access_token"].as_str().unwrap());
    let request = lambda_http::http::Request::builder()
        .uri("/userinfo")
        .header("authorization", bearer)
        .body(lambda_http::Body::Empty)
        .unwrap();
    let response = tokenlife::http::handle(&service, endpoints, request).await;
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn a_dynamodb_outage_is_a_503() {
    require_emulators();
    let config = aws_config_named(&unique("ddb-down"));
    // A DynamoDB endpoint where nothing listens.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clients = clients_at(Some(&format!("http://127.0.0.1:{dead_port}")), None).await;
    let app = App::aws(
        config,
        "https://issuer.test",
        clients,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let endpoints = None;
    let login = serde_json::json!({"username": "alice", "password": password_of("alice")});
    let response = tokenlife::http::handle(
        &app.service,
        endpoints,
        json_request("POST", "/login", login),
    )
    .await;
    assert_unavailable(&response, "login while DynamoDB is down");
    let token = format!(
        "{}.0.{}",
        new_session_id(SystemClock.now_ms()),
        b64url(&[1u8; 48])
    );
    let refresh = serde_json::json!({"refresh_token": token});
    let response = tokenlife::http::handle(
        &app.service,
        endpoints,
        json_request("POST", "/refresh", refresh),
    )
    .await;
    assert_unavailable(&response, "refresh while DynamoDB is down");
}

#[tokio::test]
async fn the_authorizer_allows_valid_and_denies_expired_forged_and_revoked_tokens_on_aws() {
    let f = fixture_with(|c| c.leeway_secs = 0).await;
    f.add_alice().await;
    let event = |token: &str| {
        serde_json::json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:eu-west-1:123456789012:abc123/$default/GET/orders",
            "identitySource": [format!("Bearer {token}")],
            "headers": { "authorization": format!("Bearer {token}") },
        })
    };
    let decide = |token: String| {
        let service = f.service.clone();
        let event = event(&token);
        async move {
            match tokenlife::authorizer::authorize_event(&service, &event).await {
                Ok(tokenlife::authorizer::AuthorizerResponse::HttpApi(answer)) => {
                    answer.is_authorized
                }
                other => panic!("expected a simple response, got {other:?}"),
            }
        }
    };
    let valid = f.login().await.access_token;
    assert!(decide(valid.clone()).await, "valid");

    let revoked = f.login().await.access_token;
    f.service.revoke(&revoked, None).await.unwrap();
    assert!(!decide(revoked).await, "revoked");

    let stranger = fixture_with(|_| {}).await;
    stranger.add_alice().await;
    assert!(
        !decide(stranger.login().await.access_token).await,
        "signed by another key"
    );

    f.clock.advance_secs(Config::default().access_ttl_secs);
    assert!(!decide(valid).await, "expired");
}

/// The key states in the registry, in `list_keys` order (pending, active, retiring, retired).
async fn key_states(service: &TokenService) -> Vec<&'static str> {
    service
        .list_keys()
        .await
        .unwrap()
        .iter()
        .map(|key| key.state.name())
        .collect()
}

/// Runs `n` rotation steps at once, spread over `services` (separate processes, as far as
/// their key caches go); returns how many changed the registry.
async fn concurrent_steps(services: &[Arc<TokenService>], n: usize) -> usize {
    let mut steps = tokio::task::JoinSet::new();
    for i in 0..n {
        let service = services[i % services.len()].clone();
        steps.spawn(async move { service.rotate_keys().await.unwrap() });
    }
    let mut changed = 0;
    while let Some(report) = steps.join_next().await {
        changed += usize::from(report.unwrap().changed);
    }
    changed
}

/// Concurrent rotation steps, at each point of the lifecycle, leave exactly one pending and
/// one active key: one step wins each conditional write; the others re-read and find
/// nothing left to do.
async fn concurrent_rotation_steps(services: &[Arc<TokenService>], clock: &ManualClock) {
    let policy = RotationPolicy::from_config(services[0].config());
    assert_eq!(key_states(&services[0]).await, ["active"], "after setup");
    assert_eq!(concurrent_steps(services, 8).await, 1);
    assert_eq!(key_states(&services[0]).await, ["pending", "active"]);
    clock.advance_secs(policy.publish_delay_secs + 1);
    assert_eq!(concurrent_steps(services, 8).await, 1);
    assert_eq!(
        key_states(&services[0]).await,
        ["pending", "active", "retiring"]
    );
    clock.advance_secs(policy.retire_after_secs + 1);
    assert_eq!(concurrent_steps(services, 8).await, 1);
    assert_eq!(
        key_states(&services[0]).await,
        ["pending", "active", "retiring", "retired"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotation_steps_in_memory() {
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let config = Config {
        argon2: Argon2Params::CHEAPEST,
        ..Config::default()
    };
    let app = App::embedded(config, "https://issuer.test", clock.clone())
        .await
        .unwrap();
    concurrent_rotation_steps(&[app.service], &clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotation_steps_on_dynamodb_and_kms() {
    let f = fixture_with(|_| {}).await;
    let other = f.another_process().await;
    concurrent_rotation_steps(&[f.service.clone(), other], &f.clock).await;

    // Keys made for losing writes were destroyed again: the only keys of this registry
    // that KMS still has enabled are the three published ones.
    let mut enabled = Vec::new();
    let mut marker = None;
    loop {
        let page = f
            .clients
            .kms
            .list_keys()
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        for key in page.keys() {
            let key_id = key.key_id().unwrap();
            let tags = f
                .clients
                .kms
                .list_resource_tags()
                .key_id(key_id)
                .send()
                .await
                .unwrap();
            let ours = tags.tags().iter().any(|tag| {
                tag.tag_key() == tokenlife::keys::kms::REGISTRY_TAG
                    && tag.tag_value() == f.tables.keys
            });
            if !ours {
                continue;
            }
            let described = f.clients.kms.describe_key().key_id(key_id).send().await;
            let state = described
                .unwrap()
                .key_metadata()
                .unwrap()
                .key_state()
                .cloned();
            if state == Some(aws_sdk_kms::types::KeyState::Enabled) {
                enabled.push(key.key_arn().unwrap().to_owned());
            }
        }
        marker = page.next_marker().map(str::to_owned);
        if !page.truncated() {
            break;
        }
    }
    let mut published: Vec<String> = f
        .service
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|key| key.state.is_published())
        .map(|key| key.key_ref)
        .collect();
    published.sort();
    enabled.sort();
    assert_eq!(enabled, published);
}

/// After an emergency retirement by another process, this process's cached signing key is
/// pending deletion in KMS: its next login re-reads the registry and signs with the key that
/// is active now, instead of failing until its cache expires.
#[tokio::test]
async fn a_login_right_after_an_emergency_retirement_elsewhere_uses_the_new_key() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let before = f.login().await.access_token;
    let other = f.another_process().await;
    let leaked = other.list_keys().await.unwrap()[0].kid.clone();
    other.retire_key(&leaked).await.unwrap();
    // No time passes: this process's key cache is still fresh.
    let after = f.login().await.access_token;
    assert_eq!(kid_of(&before), leaked);
    assert_ne!(kid_of(&after), leaked);
    f.service.authorize(&after).await.unwrap();
    assert!(f.service.authorize(&before).await.is_err());
}

/// Moves a manual clock forward to the start of second `secs`.
fn advance_to(clock: &ManualClock, secs: u64) {
    let target = secs * 1000;
    assert!(clock.now_ms() <= target, "the clock only moves forward");
    clock.advance_ms(target - clock.now_ms());
}

/// The `kid` a token names (the library's own header reader).
fn kid_of(token: &str) -> String {
    tokenlife::token::header_kid(token).expect("a token with a kid")
}

/// The lifecycle with the default timings (900 s tokens, 30 s leeway, 60 s key cache, 300 s
/// JWKS max-age: publish delay 360 s, retire window 990 s), to the second, with three
/// processes on one registry — a signer, a verifier and the one that rotates — each with
/// its own key cache. The worst case for the retire window: the signer loads its keys just
/// before a promotion and signs with the old key for a whole cache TTL; that last token
/// still verifies in the last second before it expires, and the old key retires only after.
#[tokio::test]
async fn the_retire_window_covers_a_stale_signer_to_the_second() {
    let f = fixture_with(|_| {}).await;
    // The signer is the fixture's own service (`f.login`).
    let (verifier, rotator) = (f.another_process().await, f.another_process().await);
    let policy = RotationPolicy::from_config(rotator.config());
    assert_eq!(
        (policy.publish_delay_secs, policy.retire_after_secs),
        (360, 990)
    );
    f.add_alice().await;
    let login = || async { f.login().await.access_token };
    let t0 = f.clock.now_secs() + 1;
    advance_to(&f.clock, t0);
    let token0 = login().await;
    let a = kid_of(&token0);
    verifier.authorize(&token0).await.unwrap(); // the verifier's cache: loaded at t0

    // Pre-publish B. The verifier sees it once its cache expires.
    let step = rotator.rotate_keys().await.unwrap();
    assert!(
        step.actions[0].starts_with("created pending key"),
        "{step:?}"
    );
    let b = step.keys[1].kid.clone();
    advance_to(&f.clock, t0 + 59);
    assert_eq!(verifier.jwks().await.unwrap().keys.len(), 1, "cached");
    advance_to(&f.clock, t0 + 60);
    assert_eq!(verifier.jwks().await.unwrap().keys.len(), 2);

    // Not due at exactly the publish delay; B does not sign while pending.
    advance_to(&f.clock, t0 + 360);
    assert!(!rotator.rotate_keys().await.unwrap().changed);
    assert_eq!(kid_of(&login().await), a); // the signer's cache: loaded at t0 + 360

    // Promotion, one second later. The signer's cached ring still says A for 59 s more.
    advance_to(&f.clock, t0 + 361);
    let step = rotator.rotate_keys().await.unwrap();
    assert!(
        step.actions
            .iter()
            .any(|a| a == &format!("promoted {b} to active")),
        "{step:?}"
    );
    advance_to(&f.clock, t0 + 419);
    let last_of_a = login().await;
    assert_eq!(kid_of(&last_of_a), a, "stale signer");
    advance_to(&f.clock, t0 + 420);
    let first_of_b = login().await;
    assert_eq!(kid_of(&first_of_b), b);
    verifier.authorize(&first_of_b).await.unwrap();

    // A's last token (exp t0 + 1319, + 30 s leeway) verifies until its very last second...
    advance_to(&f.clock, t0 + 1348);
    verifier.authorize(&last_of_a).await.unwrap();
    assert!(matches!(
        verifier.authorize(&token0).await,
        Err(Error::InvalidToken(_))
    ));
    // ...and A is retired only after the window (promotion + 990 s, strictly more).
    advance_to(&f.clock, t0 + 1351);
    rotator.rotate_keys().await.unwrap();
    assert!(
        rotator
            .list_keys()
            .await
            .unwrap()
            .iter()
            .any(|k| k.kid == a && k.state.name() == "retiring")
    );
    advance_to(&f.clock, t0 + 1352);
    let step = rotator.rotate_keys().await.unwrap();
    assert!(
        step.actions
            .contains(&format!("retired {a} (was retiring)")),
        "{step:?}"
    );
    assert!(verifier.authorize(&last_of_a).await.is_err());
    advance_to(&f.clock, t0 + 1352 + 60);
    let jwks = verifier.jwks().await.unwrap();
    assert!(jwks.keys.iter().all(|k| k.kid != a), "A left every JWKS");
}

/// Issue 11 item 1: a rotation step's registry write lands but its answer is lost; the
/// SDK's retry then fails the version condition and reads as a conflict. The step must
/// recognise its own write (re-read), keep the key it just published, and say it changed
/// something — not destroy a published key and report "nothing to do".
#[tokio::test]
async fn a_registry_write_whose_answer_is_lost_keeps_its_new_key() {
    let f = fixture_with(|_| {}).await;
    let (service, fault) = f.losing_first_answer_to("PutItem", &f.tables.keys).await;

    let report = service.rotate_keys().await.unwrap();
    assert_eq!(
        fault.lost.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the fault fired"
    );
    assert!(
        report.changed,
        "the step did publish a key: {:?}",
        report.actions
    );
    let keys = service.list_keys().await.unwrap();
    let pending = keys
        .iter()
        .find(|k| k.state == tokenlife::keys::KeyState::Pending)
        .expect("the new key is in the registry");
    // ...and KMS still has it: it will sign after its promotion.
    let state = f
        .clients
        .kms
        .describe_key()
        .key_id(&pending.key_ref)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_state()
        .cloned();
    assert_eq!(state, Some(aws_sdk_kms::types::KeyState::Enabled));
}

/// Issue 11 item 1, session create: a login's session write lands but its answer is lost;
/// the SDK's retry fails `attribute_not_exists(id)`. The login must succeed (its session
/// exists), not answer 500 with a session nobody can use.
#[tokio::test]
async fn a_session_write_whose_answer_is_lost_still_logs_in() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let (service, fault) = f
        .losing_first_answer_to("TransactWriteItems", &f.tables.sessions)
        .await;
    let grant = On(&service).login("alice").await;
    assert_eq!(fault.lost.load(std::sync::atomic::Ordering::SeqCst), 1);
    service.authorize(&grant.access_token).await.unwrap();
    On(&service).refresh(&grant.refresh_token).await.unwrap();
}

/// Issue 13: a change that takes something away from a user ends their sessions in the
/// same write, on both backends (see the case in the test kit).
#[tokio::test]
async fn changes_that_take_away_end_sessions_on_both_backends() {
    let memory = tokenlife::testkit::Embedded::start().await;
    tokenlife::testkit::changes_that_take_away_end_sessions(&memory.service, &memory.clock).await;
    let f = fixture_with(|_| {}).await;
    tokenlife::testkit::changes_that_take_away_end_sessions(&f.service, &f.clock).await;
}

/// A user change whose transaction lands but whose answer is lost: the SDK's retry (or
/// our re-read) must report it made, and the sessions it ended stay ended.
#[tokio::test]
async fn a_user_change_whose_answer_is_lost_is_reported_made() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let grant = f.login().await;
    let (service, fault) = f
        .losing_first_answer_to("TransactWriteItems", &f.tables.users)
        .await;
    let disable = tokenlife::service::UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    let changed = service.change_user("alice", disable).await.unwrap();
    assert_eq!(fault.lost.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(changed.sessions_ended && changed.user.disabled);
    assert!(f.refresh(&grant.refresh_token).await.is_err());
    assert!(service.authorize(&grant.access_token).await.is_err());
}

/// A service on new tables without a signing key: a deployment as its tables were just
/// created (by the stack, or `ensure_tables`).
async fn on_fresh_tables(config: Config, clients: &AwsClients) -> Arc<TokenService> {
    require_emulators();
    ensure_tables(&clients.dynamodb, &config).await.unwrap();
    App::aws(
        config,
        "https://issuer.test",
        clients.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
    .service
}

/// A stand-in for CloudFormation's pre-signed response URL: records each request (method,
/// headers, body) and answers every one with `status`.
struct ResponseUrl {
    url: String,
    seen: Arc<Mutex<Vec<(String, String, serde_json::Value)>>>,
}

impl ResponseUrl {
    async fn start(status: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/cloudformation-response/FirstSigningKey?X-Amz-Signature=abc",
            listener.local_addr().unwrap()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut bytes = Vec::new();
                let mut buffer = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let (head, body) = loop {
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        break (String::from_utf8_lossy(&bytes).into_owned(), Vec::new());
                    }
                    bytes.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = text[..end].to_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        let mut body = bytes[end + 4..].to_vec();
                        while body.len() < length {
                            let n = stream.read(&mut buffer).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            body.extend_from_slice(&buffer[..n]);
                        }
                        break (head, body);
                    }
                };
                let method = head.split(' ').next().unwrap_or("").to_owned();
                let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                record
                    .lock()
                    .unwrap()
                    .push((method, head.to_ascii_lowercase(), body));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Self { url, seen }
    }

    fn answers(&self) -> Vec<(String, String, serde_json::Value)> {
        self.seen.lock().unwrap().clone()
    }
}

fn custom_resource_event(case: &str, url: &str, keys_table: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../events/rotate-keys/custom-resource-{case}.json"));
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("__RESPONSE_URL__", url)
        .replace("__KEYS_TABLE__", keys_table);
    serde_json::from_str(&text).unwrap()
}

/// Issue 13: the custom resource gives a freshly deployed stack (tables, no key) an active
/// key at Create, changes nothing at Update and Delete, and answers CloudFormation's URL in
/// every case — with FAILED and a reason when the work fails — so a stack never hangs.
#[tokio::test]
async fn the_custom_resource_gives_a_new_stack_its_first_key_and_always_answers() {
    use tokenlife::rotate_keys::{RotateKeysError, handle_event};
    require_emulators();
    let config = aws_config_named(&unique("cr"));
    let clients = AwsClients::from_env().await;
    let keys_table = config.tables.keys.clone();
    let service = on_fresh_tables(config, &clients).await;
    On(&service).add_user("alice", &["user"]).await;
    assert!(
        matches!(
            service
                .login(tokenlife::service::LoginRequest::new(
                    "alice",
                    password_of("alice")
                ))
                .await,
            Err(Error::Unavailable { .. })
        ),
        "no key yet: logins answer 503, as right after a deploy without the custom resource"
    );

    let url = ResponseUrl::start(200).await;
    let physical = format!("tokenlife-signing-key:{keys_table}");
    handle_event(
        &service,
        &custom_resource_event("create", &url.url, &keys_table),
    )
    .await
    .unwrap();
    let answers = url.answers();
    assert_eq!(answers.len(), 1);
    let (method, head, body) = &answers[0];
    assert_eq!(method, "PUT");
    assert!(
        head.starts_with("put /cloudformation-response/firstsigningkey?x-amz-signature=abc "),
        "{head}"
    );
    assert!(
        !head.contains("content-type"),
        "the URL was signed without a content type: {head}"
    );
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], physical.as_str());
    assert_eq!(body["LogicalResourceId"], "FirstSigningKey");
    assert_eq!(body["RequestId"], "8c3ac2c4-6a1b-4f0e-9c5d-2a7e1f0b3c4d");
    assert!(
        body["StackId"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:cloudformation:")
    );
    let keys = service.list_keys().await.unwrap();
    let active: Vec<_> = keys
        .iter()
        .filter(|k| k.state == tokenlife::keys::KeyState::Active)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(body["Data"]["ActiveKid"], active[0].kid.as_str());
    let grant = On(&service).login("alice").await;
    service.authorize(&grant.access_token).await.unwrap();

    // Update and Delete: answered, nothing changed.
    for case in ["update", "delete"] {
        let url = ResponseUrl::start(200).await;
        handle_event(
            &service,
            &custom_resource_event(case, &url.url, &keys_table),
        )
        .await
        .unwrap();
        let (_, _, body) = &url.answers()[0];
        assert_eq!(body["Status"], "SUCCESS", "{case}: {body}");
        assert_eq!(body["PhysicalResourceId"], physical.as_str(), "{case}");
        assert_eq!(
            service.list_keys().await.unwrap(),
            keys,
            "{case} changed the keys"
        );
    }

    // The work fails (here: the stack's tables are missing): FAILED, with a reason.
    let broken = App::aws(
        aws_config_named(&unique("missing")),
        "https://issuer.test",
        clients,
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
    .service;
    let url = ResponseUrl::start(200).await;
    handle_event(
        &broken,
        &custom_resource_event("create", &url.url, &keys_table),
    )
    .await
    .unwrap();
    let (_, _, body) = &url.answers()[0];
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(
        body["Reason"].as_str().unwrap().contains("signing key"),
        "{body}"
    );
    assert!(
        body["PhysicalResourceId"]
            .as_str()
            .unwrap()
            .starts_with("tokenlife-signing-key:")
    );

    // An unknown request type: FAILED too.
    let mut odd = custom_resource_event("create", &url.url, &keys_table);
    odd["RequestType"] = "Explode".into();
    handle_event(&service, &odd).await.unwrap();
    let (_, _, body) = url.answers().pop().unwrap();
    assert_eq!(body["Status"], "FAILED");

    // An answer that cannot be delivered is retried, then the invocation fails.
    let refusing = ResponseUrl::start(403).await;
    let result = handle_event(
        &service,
        &custom_resource_event("update", &refusing.url, &keys_table),
    )
    .await;
    assert!(
        matches!(result, Err(RotateKeysError::CustomResourceUndelivered(_))),
        "{result:?}"
    );
    assert_eq!(refusing.answers().len(), 3, "three tries");
}

/// Review of issue 13: what a user change ends is decided by versions, not clocks. An
/// operator whose laptop runs ten minutes slow disables a user: the session made a moment
/// ago (later than the laptop's "now") ends all the same. (With a time cutoff it survived.)
#[tokio::test]
async fn a_change_made_with_a_slow_clock_still_ends_every_session() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let grant = f.login().await;
    let slow_clock = Arc::new(ManualClock::new(f.clock.now_ms() - 600_000));
    let laptop = App::aws(
        f.service.config().clone(),
        "https://cli.invalid",
        f.clients.clone(),
        slow_clock,
    )
    .await
    .unwrap()
    .service;
    let disable = tokenlife::service::UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    assert!(
        laptop
            .change_user("alice", disable)
            .await
            .unwrap()
            .sessions_ended
    );
    assert!(matches!(
        f.refresh(&grant.refresh_token).await,
        Err(Error::InvalidGrant(_))
    ));
    assert!(f.service.authorize(&grant.access_token).await.is_err());
}

/// `check` tells a usable deployment from one that is not, and changes nothing.
#[tokio::test]
async fn check_names_what_makes_a_deployment_unusable() {
    use tokenlife::setup::check;
    require_emulators();
    let config = aws_config_named(&unique("chk"));
    let clients = AwsClients::from_env().await;
    let problems = |findings: &[tokenlife::setup::Finding]| -> Vec<String> {
        findings
            .iter()
            .filter_map(|f| f.problem.as_ref().map(|p| format!("{}: {p}", f.what)))
            .collect()
    };
    // Nothing there: each table named.
    let findings = check(&config, &clients).await;
    let missing = problems(&findings);
    assert_eq!(missing.len(), 6, "five tables and the keys: {missing:?}");
    assert!(missing[0].contains(&config.tables.users) && missing[0].contains("does not exist"));
    // Tables but no key (what a deploy without the custom resource left).
    ensure_tables(&clients.dynamodb, &config).await.unwrap();
    let findings = check(&config, &clients).await;
    assert_eq!(problems(&findings).len(), 1, "{findings:?}");
    assert!(problems(&findings)[0].contains("no active signing key"));
    assert!(
        findings[1].what.contains("TTL on expires_at"),
        "{findings:?}"
    );
    // Set up: all good; checking changed nothing.
    ensure_tables_and_signing_key(&config, &clients)
        .await
        .unwrap();
    let findings = check(&config, &clients).await;
    assert!(problems(&findings).is_empty(), "{findings:?}");
    assert!(findings.iter().any(|f| f.what.contains("enabled")));
    assert_eq!(check(&config, &clients).await, findings);
}

/// Issue 11 item 2: with a key manager role (template.yaml: rotate-keys'), a key is created
/// untagged with its own key policy — the account's administrators, and tagging, reading
/// and retiring for the manager — and tagged afterwards under that policy, so the role
/// needs (and has) no IAM right to tag keys it did not make.
#[tokio::test]
async fn keys_are_created_with_their_own_policy_and_tagged_under_it() {
    require_emulators();
    let manager = "arn:aws:iam::000000000000:role/auth-RotateKeysFunctionRole-AbC";
    let mut config = aws_config_named(&unique("kp"));
    config.key_manager_role = Some(manager.to_owned());
    let counter = Arc::new(CallCounter::default());
    let clients = counted_clients(&counter).await;
    let keys_table = config.tables.keys.clone();
    let service = on_fresh_tables(config, &clients).await;
    counter.take();
    service.ensure_active_key().await.unwrap();
    let calls = counter.take();
    assert_eq!(calls.get("CreateKey"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("TagResource"), Some(&1), "{calls:?}");
    let bodies = counter.last_body.lock().unwrap().clone();
    let create: serde_json::Value = serde_json::from_str(&bodies["CreateKey"]).unwrap();
    assert!(create.get("Tags").is_none(), "created untagged: {create}");
    assert_eq!(create["KeyUsage"], "SIGN_VERIFY");
    let policy: serde_json::Value =
        serde_json::from_str(create["Policy"].as_str().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "{policy}");
    assert_eq!(
        statements[0]["Principal"]["AWS"],
        "arn:aws:iam::000000000000:root"
    );
    assert_eq!(statements[0]["Action"], "kms:*");
    assert_eq!(statements[1]["Principal"]["AWS"], manager);
    let actions: Vec<&str> = statements[1]["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(actions.contains(&"kms:ScheduleKeyDeletion"));
    assert!(
        !actions.contains(&"kms:Sign"),
        "signing is granted by tag, to login and refresh"
    );
    // Tagging: only with this registry's tag, and no other.
    assert_eq!(statements[2]["Action"], "kms:TagResource");
    assert_eq!(statements[2]["Principal"]["AWS"], manager);
    assert_eq!(
        statements[2]["Condition"]["StringEquals"]["aws:RequestTag/tokenlife-registry"],
        keys_table.as_str()
    );
    assert_eq!(
        statements[2]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        serde_json::json!(["tokenlife-registry"])
    );
    // Tagged for the registry, under the key's own policy.
    let active = service.list_keys().await.unwrap().remove(0);
    let tags = clients
        .kms
        .list_resource_tags()
        .key_id(&active.key_ref)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|tag| tag.tag_key() == tokenlife::keys::kms::REGISTRY_TAG
                && tag.tag_value() == keys_table)
    );
    // Without a manager role: KMS's default policy (no Policy sent).
    let mut plain = aws_config_named(&unique("kp"));
    plain.key_manager_role = None;
    on_fresh_tables(plain, &clients)
        .await
        .ensure_active_key()
        .await
        .unwrap();
    let create: serde_json::Value =
        serde_json::from_str(&counter.last_body.lock().unwrap()["CreateKey"]).unwrap();
    assert!(create.get("Policy").is_none(), "{create}");
}

/// Issue 12: "your devices" on both backends (see the case in the test kit); on DynamoDB a
/// listing is one Query of the index plus one read of the user-wide entry.
#[tokio::test]
async fn your_devices_on_both_backends() {
    let memory = tokenlife::testkit::Embedded::start().await;
    tokenlife::testkit::your_devices(&memory.service, &memory.clock).await;
    let f = fixture_with(|_| {}).await;
    tokenlife::testkit::your_devices(&f.service, &f.clock).await;

    f.add_alice().await;
    let grant = f.login().await;
    let me = f.service.authorize(&grant.access_token).await.unwrap();
    f.counter.take();
    let list = f
        .service
        .list_sessions(&me.sub, Some(&me.sid), None, None)
        .await
        .unwrap();
    assert_eq!(list.sessions.len(), 1);
    assert_eq!(
        f.counter.take(),
        counts(&[("Query", 1), ("BatchGetItem", 1)]),
        "a listing"
    );
}

/// Review of issue 12: ended sessions stay in the index until TTL deletes them, and
/// DynamoDB counts a query's limit before its filter; a page of "your devices" must still
/// find the live session behind them (a page of one, behind three ended newer ones).
#[tokio::test]
async fn a_session_page_looks_past_ended_sessions() {
    let f = fixture_with(|_| {}).await;
    f.add_alice().await;
    let live = f.login().await;
    let me = f.service.authorize(&live.access_token).await.unwrap();
    for _ in 0..3 {
        f.clock.advance_ms(10);
        let newer = f.login().await;
        f.service
            .logout_access_token(&newer.access_token)
            .await
            .unwrap();
    }
    let page = f
        .service
        .list_sessions(&me.sub, None, None, Some(1))
        .await
        .unwrap();
    let sids: Vec<&str> = page.sessions.iter().map(|s| s.sid.as_str()).collect();
    assert_eq!(sids, [me.sid.as_str()], "{page:?}");
}

/// Issue 10: login limiting on both backends (see the case in the test kit); on DynamoDB a
/// refused login costs one read and no write, a failed one one read and one write.
#[tokio::test]
async fn login_limits_hold_on_both_backends() {
    let small = |c: &mut Config| {
        c.login_failures_per_user_and_address = 3;
        c.login_failures_per_user = 5;
        c.login_failures_per_address = 8;
    };
    let memory = tokenlife::testkit::Embedded::start_with(small).await;
    tokenlife::testkit::login_limits_hold(&memory.service, &memory.clock).await;
    let f = fixture_with(small).await;
    tokenlife::testkit::login_limits_hold(&f.service, &f.clock).await;

    f.add_alice().await;
    f.counter.take();
    let wrong = tokenlife::service::LoginRequest::new("alice", "a wrong passphrase");
    assert!(f.service.login(wrong).await.is_err());
    assert_eq!(
        f.counter.take(),
        counts(&[("BatchGetItem", 1), ("TransactWriteItems", 1)]),
        "a failed login"
    );
    for _ in 0..2 {
        let wrong = tokenlife::service::LoginRequest::new("alice", "a wrong passphrase");
        assert!(f.service.login(wrong).await.is_err());
    }
    f.counter.take();
    let refused = f
        .service
        .login(tokenlife::service::LoginRequest::new(
            "alice",
            password_of("alice"),
        ))
        .await;
    assert!(matches!(refused, Err(Error::TooManyRequests { .. })));
    assert_eq!(
        f.counter.take(),
        counts(&[("BatchGetItem", 1)]),
        "a refused login"
    );
}
