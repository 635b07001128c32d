//! Signing-key rotation: the lifecycle `pending -> active -> retiring -> retired`, decided
//! by pure functions ([`plan_step`], [`plan_retire`]) and carried out by [`KeyRotation`]
//! against a [`KeyRegistry`] and a [`KeyVault`] — the same code in the `rotate-keys`
//! Lambda, `tokenlife keys`, the admin routes and `serve`.
//!
//! One rotation step, in this order:
//! 1. retiring keys that stopped signing more than `retire_after` ago (the longest access
//!    token lifetime + leeway + the key cache TTL) become retired: every token they signed
//!    has expired, even one signed by a process whose cached key ring was a little stale;
//! 2. a pending key published more than `publish_delay` ago (default: the JWKS max-age plus
//!    the key cache TTL, so every cache — ours and the clients' — has seen it) becomes
//!    active; the active key becomes retiring;
//! 3. if no pending key is left, a new one is created and published.
//!
//! Times are whole seconds, so "more than" is strict: a key published at 100.9 s is not due
//! at 100 + delay.
//!
//! A registry without an active key (first run) gets one at once. An emergency retirement
//! moves a key straight to retired; if it was active, the pending key (or a new one)
//! becomes active at once.
//!
//! Concurrency: every change is one conditional write of the registry document on its
//! version. A step that loses re-reads and decides again (usually: nothing left to do); a
//! key it created for the losing write is destroyed again. A write that fails otherwise
//! (the store timed out) may still have landed, so its new keys are kept. Keys to retire are destroyed
//! (KMS: deletion scheduled, idempotent) before the write that records it: retiring them is
//! right whatever a concurrent writer did, and a failed write is simply retried by the next
//! step.

use std::sync::Arc;

use super::registry::{KeyRecord, KeyRegistry, KeyRegistryDocument, KeyState, SaveOutcome};
use super::vault::{KeyVault, NewKey};
use super::{KeyCache, PublicKey, SigningAlgorithm};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::metrics::{self, Count};

/// How many times a change re-reads the registry after losing a concurrent write.
const MAX_ATTEMPTS: usize = 5;

/// The timings of the lifecycle, all in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// What new keys are.
    pub algorithm: SigningAlgorithm,
    /// How long a pending key is published before it may sign.
    pub publish_delay_secs: u64,
    /// How long a key stays published after it stopped signing.
    pub retire_after_secs: u64,
    /// How long a retired key is still listed (its KMS deletion window), then forgotten.
    pub forget_after_secs: u64,
}

impl RotationPolicy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            algorithm: config.algorithm,
            publish_delay_secs: config.key_publish_delay_secs(),
            retire_after_secs: config.access_ttl_secs
                + config.leeway_secs
                + config.key_cache_ttl_secs,
            forget_after_secs: u64::from(config.key_deletion_window_days) * 86_400,
        }
    }
}

/// What one change of the registry does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// Keys to move to retired (from any state).
    pub retire: Vec<String>,
    /// The pending key to make active (the active key becomes retiring, unless retired).
    pub promote: Option<String>,
    /// Create a key that is active at once (there is no active key and nothing to promote).
    pub create_active: bool,
    /// Create and publish a pending key.
    pub create_pending: bool,
}

impl KeyChange {
    pub fn is_empty(&self) -> bool {
        self == &KeyChange::default()
    }
}

/// One rotation step's change (see the module doc for the order).
pub fn plan_step(registry: &KeyRegistryDocument, now: u64, policy: &RotationPolicy) -> KeyChange {
    let retire = registry
        .in_state(KeyState::Retiring)
        .filter(|key| key.state_since.saturating_add(policy.retire_after_secs) < now)
        .map(|key| key.kid.clone())
        .collect();
    let has_active = registry.in_state(KeyState::Active).next().is_some();
    let pending = registry.in_state(KeyState::Pending).next();
    let promote = pending
        .filter(|key| {
            !has_active || key.published_at.saturating_add(policy.publish_delay_secs) < now
        })
        .map(|key| key.kid.clone());
    KeyChange {
        retire,
        create_active: !has_active && pending.is_none(),
        create_pending: pending.is_none() || promote.is_some(),
        promote,
    }
}

/// What retiring `kid` at once does, or why it cannot be done.
pub fn plan_retire(registry: &KeyRegistryDocument, kid: &str) -> Result<KeyChange, Error> {
    let key = registry
        .find(kid)
        .ok_or_else(|| Error::NotFound(format!("no signing key with kid {kid:?}")))?;
    let mut change = KeyChange::default();
    match key.state {
        KeyState::Retired => {}
        KeyState::Active => {
            change.retire.push(kid.to_owned());
            change.promote = registry
                .in_state(KeyState::Pending)
                .next()
                .map(|key| key.kid.clone());
            change.create_active = change.promote.is_none();
        }
        KeyState::Pending | KeyState::Retiring => change.retire.push(kid.to_owned()),
    }
    Ok(change)
}

/// The registry after `change`, with `created` keys added; retired keys past the
/// `forget_after` window are dropped.
pub fn apply_change(
    registry: &KeyRegistryDocument,
    change: &KeyChange,
    created: Vec<KeyRecord>,
    now: u64,
    policy: &RotationPolicy,
) -> Vec<KeyRecord> {
    let promoting = change.promote.is_some() || change.create_active;
    let mut keys: Vec<KeyRecord> = registry
        .keys
        .iter()
        .cloned()
        .map(|mut key| {
            let next = if change.retire.contains(&key.kid) {
                KeyState::Retired
            } else if change.promote.as_deref() == Some(key.kid.as_str()) {
                KeyState::Active
            } else if promoting && key.state == KeyState::Active {
                KeyState::Retiring
            } else {
                key.state
            };
            if next != key.state {
                key.state = next;
                key.state_since = now;
            }
            // A data key that no longer signs needs no private half: the registry stops
            // holding one (see keys::data_key).
            if !matches!(key.state, KeyState::Active | KeyState::Pending) {
                key.wrapped = None;
            }
            key
        })
        .filter(|key| {
            key.state != KeyState::Retired
                || key.state_since.saturating_add(policy.forget_after_secs) > now
        })
        .collect();
    keys.extend(created);
    keys
}

/// What a change did, for people: one line per action, and the keys afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Whether the registry changed.
    pub changed: bool,
    pub actions: Vec<String>,
    pub keys: Vec<KeyRecord>,
}

/// Carries out rotation steps and emergency retirements.
pub struct KeyRotation {
    registry: Arc<dyn KeyRegistry>,
    vault: Arc<dyn KeyVault>,
    clock: Arc<dyn Clock>,
    policy: RotationPolicy,
    /// This process's key cache, forgotten after every change so that it signs and
    /// verifies with the new ring at once (other processes follow within its TTL).
    cache: Option<Arc<KeyCache>>,
}

impl KeyRotation {
    pub fn new(
        registry: Arc<dyn KeyRegistry>,
        vault: Arc<dyn KeyVault>,
        clock: Arc<dyn Clock>,
        policy: RotationPolicy,
    ) -> Self {
        Self {
            registry,
            vault,
            clock,
            policy,
            cache: None,
        }
    }

    /// Also forget `cache` after each change this rotation makes (or attempts).
    pub fn invalidating(mut self, cache: Arc<KeyCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Every key the registry holds, published first, newest first.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, Error> {
        let mut keys = self.registry.load_keys().await?.keys;
        keys.sort_by(|a, b| {
            (a.state, std::cmp::Reverse(a.published_at))
                .cmp(&(b.state, std::cmp::Reverse(b.published_at)))
        });
        Ok(keys)
    }

    /// One rotation step; afterwards, the active key's age is recorded ([`metrics`]).
    pub async fn step(&self) -> Result<RotationReport, Error> {
        let policy = self.policy;
        let result = self
            .change(move |registry, now| Ok(plan_step(registry, now, &policy)))
            .await;
        match &result {
            Ok(report) => {
                let now = self.clock.now_secs();
                if let Some(active) = report.keys.iter().find(|k| k.state == KeyState::Active) {
                    metrics::signing_key_age(now.saturating_sub(active.state_since));
                }
            }
            Err(_) => metrics::count(Count::RotationFailed),
        }
        result
    }

    /// Makes sure there is an active key, creating one if there is none (setup, `serve`).
    /// Leaves everything else alone: on a fresh registry, one active key and no pending.
    pub async fn ensure_active(&self) -> Result<RotationReport, Error> {
        self.change(|registry, _| {
            let mut change = KeyChange::default();
            if registry.in_state(KeyState::Active).next().is_none() {
                change.promote = registry
                    .in_state(KeyState::Pending)
                    .next()
                    .map(|key| key.kid.clone());
                change.create_active = change.promote.is_none();
            }
            Ok(change)
        })
        .await
    }

    /// Emergency retirement of `kid` (a leaked key): out of the JWKS at once.
    pub async fn retire(&self, kid: &str) -> Result<RotationReport, Error> {
        let mut report = self
            .change(|registry, _| plan_retire(registry, kid))
            .await?;
        if !report.changed {
            report.actions = vec![format!("{kid} is already retired")];
        }
        Ok(report)
    }

    /// Plans and applies one change (see [`Self::apply`]), then forgets this process's
    /// cached key ring, whatever the outcome (a failed write may still have landed).
    async fn change(
        &self,
        decide: impl Fn(&KeyRegistryDocument, u64) -> Result<KeyChange, Error>,
    ) -> Result<RotationReport, Error> {
        let report = self.apply(decide).await;
        if let Some(cache) = &self.cache {
            cache.invalidate();
        }
        report
    }

    async fn apply(
        &self,
        decide: impl Fn(&KeyRegistryDocument, u64) -> Result<KeyChange, Error>,
    ) -> Result<RotationReport, Error> {
        for _ in 0..MAX_ATTEMPTS {
            let registry = self.registry.load_keys().await?;
            let now = self.clock.now_secs();
            let change = decide(&registry, now)?;
            if change.is_empty() {
                return Ok(RotationReport {
                    changed: false,
                    actions: vec![nothing_to_do(&registry, now, &self.policy)],
                    keys: registry.keys,
                });
            }
            let mut created = Vec::new();
            for (wanted, state) in [
                (change.create_active, KeyState::Active),
                (change.create_pending, KeyState::Pending),
            ] {
                if wanted {
                    match self.create(state, now).await {
                        Ok(key) => created.push(key),
                        Err(error) => {
                            self.discard(&created).await;
                            return Err(error);
                        }
                    }
                }
            }
            for kid in &change.retire {
                let Some(key) = registry.find(kid) else {
                    continue;
                };
                if let Err(error) = self.vault.destroy_key(&key.key_ref).await {
                    self.discard(&created).await;
                    return Err(error.into());
                }
            }
            let actions = describe(&registry, &change, &created);
            let keys = apply_change(&registry, &change, created.clone(), now, &self.policy);
            match self.registry.save_keys(&keys, registry.version).await {
                Ok(SaveOutcome::Saved) => {
                    key_changes(&actions, &change, created.len());
                    return Ok(RotationReport {
                        changed: true,
                        actions,
                        keys,
                    });
                }
                Ok(SaveOutcome::Conflict) => {
                    // Conflict may mean our own write: it landed, its answer was lost, the
                    // SDK retried, and the retry failed the version condition. Re-read: keys
                    // the registry names are published and must live; only the others go.
                    let now_stored = match self.registry.load_keys().await {
                        Ok(stored) => stored,
                        Err(error) => {
                            for key in &created {
                                tracing::warn!(key = %key.key_ref, "registry write unconfirmed; this new key may be unused");
                            }
                            return Err(error.into());
                        }
                    };
                    let ours = |key: &KeyRecord| now_stored.find(&key.kid).is_some();
                    // Ours: exactly what we wrote, at the version we wrote it (also for a
                    // change that made no key), or a later version that still names the
                    // keys only this step made.
                    let landed = (now_stored.version == registry.version + 1
                        && now_stored.keys == keys)
                        || (!created.is_empty() && created.iter().all(ours));
                    if landed {
                        key_changes(&actions, &change, created.len());
                        return Ok(RotationReport {
                            changed: true,
                            actions,
                            keys: now_stored.keys,
                        });
                    }
                    let unpublished: Vec<KeyRecord> =
                        created.into_iter().filter(|key| !ours(key)).collect();
                    self.discard(&unpublished).await;
                }
                Err(error) => {
                    // The write may have landed (a timeout after DynamoDB applied it): the
                    // new keys may be in the registry, so they are kept, not destroyed. If
                    // it did not land they are unused KMS keys — a cost, logged here.
                    for key in &created {
                        tracing::warn!(key = %key.key_ref, "registry write failed; this new key may be unused");
                    }
                    return Err(error.into());
                }
            }
        }
        Err(Error::unavailable(
            "the key registry kept changing under this step; retry",
            "lost every conditional write of this step to concurrent steps",
        ))
    }

    async fn create(&self, state: KeyState, now: u64) -> Result<KeyRecord, Error> {
        let NewKey {
            key_ref,
            algorithm,
            public_key_der,
            wrapped,
        } = self.vault.create_key(self.policy.algorithm).await?;
        let public = PublicKey::from_spki_der(&public_key_der, algorithm)?;
        Ok(KeyRecord {
            kid: public.kid().to_owned(),
            key_ref,
            algorithm,
            public_key_der,
            state,
            published_at: now,
            state_since: now,
            wrapped,
        })
    }

    /// Destroys keys made for a write that certainly did not happen — the registry, re-read
    /// after the conflict, does not name them (best effort: they were never published, so
    /// a leftover is only a cost, and it is logged).
    async fn discard(&self, created: &[KeyRecord]) {
        for key in created {
            if let Err(error) = self.vault.destroy_key(&key.key_ref).await {
                tracing::warn!(key = %key.key_ref, error = %error, "could not destroy an unused new key");
            }
        }
    }
}

/// The audit records and counts of a registry change that landed.
fn key_changes(actions: &[String], change: &KeyChange, created: usize) {
    metrics::count_n(Count::KeyCreated, created as u64);
    metrics::count_n(Count::KeyPromoted, u64::from(change.promote.is_some()));
    metrics::count_n(Count::KeyRetired, change.retire.len() as u64);
    for action in actions {
        crate::audit::Record::new(crate::audit::Event::SigningKeyChanged, "succeeded")
            .reason(action.as_str())
            .emit();
    }
}

fn describe(
    registry: &KeyRegistryDocument,
    change: &KeyChange,
    created: &[KeyRecord],
) -> Vec<String> {
    let mut actions = Vec::new();
    for kid in &change.retire {
        let was = registry.find(kid).map_or("unknown", |key| key.state.name());
        actions.push(format!("retired {kid} (was {was})"));
    }
    if let Some(kid) = &change.promote {
        actions.push(format!("promoted {kid} to active"));
    }
    if change.promote.is_some() || change.create_active {
        for key in registry.in_state(KeyState::Active) {
            if !change.retire.contains(&key.kid) {
                actions.push(format!("{} is now retiring", key.kid));
            }
        }
    }
    for key in created {
        actions.push(format!("created {} key {}", key.state.name(), key.kid));
    }
    actions
}

fn nothing_to_do(registry: &KeyRegistryDocument, now: u64, policy: &RotationPolicy) -> String {
    let mut reasons = vec!["nothing to do".to_owned()];
    if let Some(key) = registry.in_state(KeyState::Pending).next() {
        let due = key.published_at.saturating_add(policy.publish_delay_secs);
        reasons.push(format!(
            "pending key {} may become active once more than {} s have passed",
            key.kid,
            due.saturating_sub(now)
        ));
    }
    for key in registry.in_state(KeyState::Retiring) {
        let due = key.state_since.saturating_add(policy.retire_after_secs);
        reasons.push(format!(
            "{} retires once more than {} s have passed",
            key.kid,
            due.saturating_sub(now)
        ));
    }
    reasons.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RotationPolicy = RotationPolicy {
        algorithm: SigningAlgorithm::Es256,
        publish_delay_secs: 300,
        retire_after_secs: 1000,
        forget_after_secs: 7 * 86_400,
    };

    fn key(kid: &str, state: KeyState, published_at: u64, state_since: u64) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            key_ref: format!("ref-{kid}"),
            algorithm: SigningAlgorithm::Es256,
            public_key_der: Vec::new(),
            state,
            published_at,
            state_since,
            wrapped: None,
        }
    }

    fn registry(keys: Vec<KeyRecord>) -> KeyRegistryDocument {
        KeyRegistryDocument { version: 1, keys }
    }

    fn new_key(kid: &str, state: KeyState, now: u64) -> KeyRecord {
        key(kid, state, now, now)
    }

    fn states(keys: &[KeyRecord]) -> Vec<(String, KeyState)> {
        let mut states: Vec<_> = keys.iter().map(|k| (k.kid.clone(), k.state)).collect();
        states.sort();
        states
    }

    #[test]
    fn an_empty_registry_gets_an_active_and_a_pending_key() {
        let change = plan_step(&KeyRegistryDocument::default(), 100, &POLICY);
        assert_eq!(
            change,
            KeyChange {
                create_active: true,
                create_pending: true,
                ..KeyChange::default()
            }
        );
    }

    #[test]
    fn the_first_step_after_setup_pre_publishes_the_next_key() {
        let after_setup = registry(vec![key("a", KeyState::Active, 0, 0)]);
        let change = plan_step(&after_setup, 10, &POLICY);
        assert_eq!(
            change,
            KeyChange {
                create_pending: true,
                ..KeyChange::default()
            }
        );
        let keys = apply_change(
            &after_setup,
            &change,
            vec![new_key("b", KeyState::Pending, 10)],
            10,
            &POLICY,
        );
        assert_eq!(
            states(&keys),
            [
                ("a".into(), KeyState::Active),
                ("b".into(), KeyState::Pending)
            ]
        );
    }

    #[test]
    fn a_pending_key_waits_out_the_publish_delay() {
        let doc = registry(vec![
            key("a", KeyState::Active, 0, 0),
            key("b", KeyState::Pending, 100, 100),
        ]);
        // Times are whole seconds, so "at least the delay" means strictly more whole
        // seconds: published at 100.9 s, a step at 400.0 s is only 299.1 s later.
        assert!(plan_step(&doc, 400, &POLICY).is_empty());
        let change = plan_step(&doc, 401, &POLICY);
        assert_eq!(change.promote.as_deref(), Some("b"));
        assert!(change.create_pending && !change.create_active);
        let keys = apply_change(
            &doc,
            &change,
            vec![new_key("c", KeyState::Pending, 400)],
            400,
            &POLICY,
        );
        assert_eq!(
            states(&keys),
            [
                ("a".into(), KeyState::Retiring),
                ("b".into(), KeyState::Active),
                ("c".into(), KeyState::Pending)
            ]
        );
        let a = keys.iter().find(|k| k.kid == "a").unwrap();
        assert_eq!((a.published_at, a.state_since), (0, 400));
    }

    #[test]
    fn a_retiring_key_retires_after_its_window_and_is_forgotten_later() {
        let doc = registry(vec![
            key("a", KeyState::Retiring, 0, 400),
            key("b", KeyState::Active, 100, 400),
            key("c", KeyState::Pending, 400, 400),
        ]);
        // Window not over, pending not due: nothing.
        assert!(plan_step(&doc, 700, &POLICY).is_empty());
        // Pending due, window not over: promote; "a" stays retiring, "b" joins it.
        let change = plan_step(&doc, 701, &POLICY);
        assert!(change.retire.is_empty());
        assert_eq!(change.promote.as_deref(), Some("c"));
        // Window over: retire "a" in the same step.
        assert!(plan_step(&doc, 1400, &POLICY).retire.is_empty());
        let change = plan_step(&doc, 1401, &POLICY);
        assert_eq!(change.retire, ["a"]);
        let keys = apply_change(
            &doc,
            &change,
            vec![new_key("d", KeyState::Pending, 1400)],
            1400,
            &POLICY,
        );
        assert_eq!(
            states(&keys),
            [
                ("a".into(), KeyState::Retired),
                ("b".into(), KeyState::Retiring),
                ("c".into(), KeyState::Active),
                ("d".into(), KeyState::Pending)
            ]
        );
        // The retired record is dropped once the deletion window is over.
        let later = registry(keys);
        let keys = apply_change(
            &later,
            &KeyChange::default(),
            Vec::new(),
            1400 + POLICY.forget_after_secs,
            &POLICY,
        );
        assert!(keys.iter().all(|k| k.kid != "a"));
    }

    #[test]
    fn a_pending_key_without_an_active_one_is_promoted_at_once() {
        let doc = registry(vec![key("b", KeyState::Pending, 100, 100)]);
        let change = plan_step(&doc, 101, &POLICY);
        assert_eq!(change.promote.as_deref(), Some("b"));
        assert!(!change.create_active && change.create_pending);
    }

    #[test]
    fn emergency_retire_of_the_active_key_promotes_the_pending_one_at_once() {
        let doc = registry(vec![
            key("a", KeyState::Active, 0, 0),
            key("b", KeyState::Pending, 100, 100),
        ]);
        let change = plan_retire(&doc, "a").unwrap();
        assert_eq!(change.retire, ["a"]);
        assert_eq!(change.promote.as_deref(), Some("b"));
        let keys = apply_change(&doc, &change, Vec::new(), 101, &POLICY);
        assert_eq!(
            states(&keys),
            [
                ("a".into(), KeyState::Retired),
                ("b".into(), KeyState::Active)
            ]
        );
    }

    #[test]
    fn emergency_retire_without_a_pending_key_creates_an_active_one() {
        let doc = registry(vec![key("a", KeyState::Active, 0, 0)]);
        let change = plan_retire(&doc, "a").unwrap();
        assert!(change.create_active && change.promote.is_none());
        let keys = apply_change(
            &doc,
            &change,
            vec![new_key("n", KeyState::Active, 5)],
            5,
            &POLICY,
        );
        assert_eq!(
            states(&keys),
            [
                ("a".into(), KeyState::Retired),
                ("n".into(), KeyState::Active)
            ]
        );
    }

    #[test]
    fn emergency_retire_of_other_states_and_unknown_keys() {
        let doc = registry(vec![
            key("a", KeyState::Retiring, 0, 0),
            key("b", KeyState::Active, 0, 0),
            key("c", KeyState::Pending, 0, 0),
            key("d", KeyState::Retired, 0, 0),
        ]);
        for kid in ["a", "c"] {
            let change = plan_retire(&doc, kid).unwrap();
            assert_eq!(change.retire, [kid]);
            assert!(change.promote.is_none() && !change.create_active);
            let keys = apply_change(&doc, &change, Vec::new(), 1, &POLICY);
            assert_eq!(
                keys.iter().filter(|k| k.state == KeyState::Active).count(),
                1
            );
        }
        assert!(plan_retire(&doc, "d").unwrap().is_empty());
        assert!(matches!(plan_retire(&doc, "zz"), Err(Error::NotFound(_))));
    }

    /// A registry whose writes land but answer "conflict" (the answer was lost and the
    /// SDK's retry failed the version condition).
    struct LandsThenConflicts(Arc<crate::store::MemoryStore>);

    #[async_trait::async_trait]
    impl KeyRegistry for LandsThenConflicts {
        async fn load_keys(&self) -> Result<KeyRegistryDocument, crate::store::StoreError> {
            self.0.load_keys().await
        }

        async fn save_keys(
            &self,
            keys: &[KeyRecord],
            expected_version: u64,
        ) -> Result<SaveOutcome, crate::store::StoreError> {
            assert_eq!(
                self.0.save_keys(keys, expected_version).await?,
                SaveOutcome::Saved
            );
            Ok(SaveOutcome::Conflict)
        }
    }

    /// Lost answers: every change is recognised as landed by the re-read — with new keys
    /// (kept, not destroyed) and without (a retire-only change) — and reported as a change.
    #[tokio::test]
    async fn a_write_whose_answer_is_lost_is_recognised_as_ours() {
        use crate::clock::ManualClock;
        use crate::keys::LocalVault;
        use crate::store::MemoryStore;

        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let vault = Arc::new(LocalVault::default());
        let rotation = KeyRotation::new(
            Arc::new(LandsThenConflicts(store.clone())),
            vault.clone(),
            clock.clone(),
            POLICY,
        );
        let made = rotation.ensure_active().await.unwrap();
        assert!(made.changed, "{:?}", made.actions);
        let step = rotation.step().await.unwrap();
        assert!(step.changed, "{:?}", step.actions);
        let keys = store.load_keys().await.unwrap().keys;
        assert_eq!(keys.len(), 2);
        for key in &keys {
            vault
                .signer(key)
                .expect("a published key was not destroyed");
        }
        let pending = keys.iter().find(|k| k.state == KeyState::Pending).unwrap();
        let retired = rotation.retire(&pending.kid).await.unwrap();
        assert!(retired.changed, "{:?}", retired.actions);
        assert_eq!(
            store
                .load_keys()
                .await
                .unwrap()
                .find(&pending.kid)
                .unwrap()
                .state,
            KeyState::Retired
        );
    }
}
