//! The embedded default: every store trait over maps behind one mutex, so that the
//! conditional writes are atomic exactly as DynamoDB's are. Expired records are treated as
//! absent by the callers and swept here from time to time so the process does not grow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    KeyRecord, KeyRegistry, KeyRegistryDocument, ReplaceOutcome, Revocation, RevocationKey,
    SaveOutcome, Session, SessionStore, StoreError, User, UserStore,
};
use crate::clock::Clock;

/// Sweep expired records once every this many writes.
const SWEEP_EVERY_WRITES: u64 = 1024;

pub struct MemoryStore {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    writes: AtomicU64,
}

#[derive(Default)]
struct State {
    users: HashMap<String, User>,
    sessions: HashMap<String, Session>,
    revocations: HashMap<RevocationKey, Revocation>,
    keys: KeyRegistryDocument,
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock,
            writes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; if one ever did, the maps are still
        // consistent (every write is a single insert), so carry on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks for a write, sweeping expired records now and then.
    fn lock_for_write(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY_WRITES
            == SWEEP_EVERY_WRITES - 1
        {
            let now = self.clock.now_secs();
            state.sessions.retain(|_, s| s.expires_at > now);
            state.revocations.retain(|_, r| r.expires_at > now);
        }
        state
    }

    /// Number of stored sessions (tests).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

impl State {
    fn user_revocation_covers(&self, session: &Session, now_secs: u64) -> bool {
        self.revocations
            .get(&RevocationKey::User(session.user_id.clone()))
            .is_some_and(|r| {
                r.expires_at > now_secs && session.created_ms <= r.sessions_created_until_ms
            })
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(username).cloned())
    }

    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.lock_for_write()
            .users
            .insert(user.username.clone(), user.clone());
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        self.lock_for_write()
            .sessions
            .insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn find_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().sessions.get(id).cloned())
    }

    async fn replace_session(
        &self,
        updated: &Session,
        expected_generation: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let now = self.clock.now_secs();
        let mut state = self.lock_for_write();
        let Some(stored) = state.sessions.get(&updated.id) else {
            return Ok(ReplaceOutcome::Ended);
        };
        if stored.ended || stored.expires_at <= now || state.user_revocation_covers(stored, now) {
            return Ok(ReplaceOutcome::Ended);
        }
        if stored.generation != expected_generation {
            return Ok(ReplaceOutcome::Conflict);
        }
        state.sessions.insert(updated.id.clone(), updated.clone());
        Ok(ReplaceOutcome::Replaced)
    }

    async fn end_session(&self, id: &str, revocation: &Revocation) -> Result<(), StoreError> {
        let mut state = self.lock_for_write();
        if let Some(session) = state.sessions.get_mut(id) {
            session.ended = true;
        }
        state
            .revocations
            .insert(revocation.key.clone(), revocation.clone());
        Ok(())
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let mut state = self.lock_for_write();
        let entry = state
            .revocations
            .entry(revocation.key.clone())
            .or_insert_with(|| revocation.clone());
        entry.expires_at = entry.expires_at.max(revocation.expires_at);
        entry.sessions_created_until_ms = entry
            .sessions_created_until_ms
            .max(revocation.sessions_created_until_ms);
        Ok(())
    }

    async fn find_revocations(
        &self,
        keys: &[RevocationKey],
    ) -> Result<Vec<Revocation>, StoreError> {
        let state = self.lock();
        Ok(keys
            .iter()
            .filter_map(|key| state.revocations.get(key).cloned())
            .collect())
    }
}

#[async_trait]
impl KeyRegistry for MemoryStore {
    async fn load_keys(&self) -> Result<KeyRegistryDocument, StoreError> {
        Ok(self.lock().keys.clone())
    }

    async fn save_keys(
        &self,
        keys: &[KeyRecord],
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock();
        if state.keys.version != expected_version {
            return Ok(SaveOutcome::Conflict);
        }
        state.keys = KeyRegistryDocument {
            version: expected_version + 1,
            keys: keys.to_vec(),
        };
        Ok(SaveOutcome::Saved)
    }
}
