//! The embedded default: every store trait over maps behind one mutex, so that the
//! conditional writes are atomic exactly as DynamoDB's are. Expired records are treated as
//! absent by the callers and swept here from time to time so the process does not grow.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    Client, ClientPage, ClientStore, CreateOutcome, KeyRecord, KeyRegistry, KeyRegistryDocument,
    ReplaceOutcome, Revocation, RevocationChange, RevocationKey, SaveOutcome, Session,
    SessionCursor, SessionOwner, SessionPage, SessionStore, SessionSummary, StoreError, User,
    UserPage, UserStore,
};
use crate::clock::Clock;

/// Sweep expired records once every this many writes.
const SWEEP_EVERY_WRITES: u64 = 1024;
/// The most login-limiting counters kept: past it (a flood of distinct names or addresses
/// within one window) new counters are not started, existing ones still count.
const MAX_LOGIN_COUNTERS: usize = 100_000;

pub struct MemoryStore {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    writes: AtomicU64,
}

#[derive(Default)]
struct State {
    /// By username, in order (the listing's order).
    users: BTreeMap<String, User>,
    /// By client id, in order.
    clients: BTreeMap<String, Client>,
    sessions: HashMap<String, Session>,
    revocations: HashMap<RevocationKey, Revocation>,
    /// When each revocation entry was last written (ms): the mirror's feed.
    revocation_changes: HashMap<RevocationKey, u64>,
    keys: KeyRegistryDocument,
    /// Login-limiting counters: key -> (failures, expires_at).
    login_failures: HashMap<String, (u64, u64)>,
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
            let State {
                revocations,
                revocation_changes,
                ..
            } = &mut *state;
            revocation_changes.retain(|key, _| revocations.contains_key(key));
            state
                .login_failures
                .retain(|_, (_, expires)| *expires > now);
        }
        state
    }

    /// Number of stored sessions (tests).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }
}

impl State {
    /// Writes a revocation entry at `now_ms`; a higher `below_version` and a later expiry
    /// win.
    fn put_revocation(&mut self, revocation: &Revocation, now_ms: u64) {
        let before = self.revocations.get(&revocation.key).cloned();
        let entry = self
            .revocations
            .entry(revocation.key.clone())
            .or_insert_with(|| revocation.clone());
        entry.expires_at = entry.expires_at.max(revocation.expires_at);
        entry.below_version = entry.below_version.max(revocation.below_version);
        // As on DynamoDB: a write that changes nothing is not a change.
        if before.as_ref() != Some(entry) {
            self.revocation_changes
                .insert(revocation.key.clone(), now_ms);
        }
    }

    /// Whether the stored user is exactly `version` of user `id`.
    fn user_is(&self, username: &str, id: &str, version: u64) -> bool {
        self.users
            .get(username)
            .is_some_and(|u| u.id == id && u.version == version)
    }

    fn user_revocation_covers(&self, session: &Session, now_secs: u64) -> bool {
        self.revocations
            .get(&RevocationKey::User(session.user_id.clone()))
            .is_some_and(|r| r.expires_at > now_secs && session.user_version < r.below_version)
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.lock().users.get(username).cloned())
    }

    async fn find_user_for_login(
        &self,
        username: &str,
        keys: &[String],
    ) -> Result<(Option<User>, Vec<u64>), StoreError> {
        let now = self.clock.now_secs();
        let state = self.lock();
        let counts = keys
            .iter()
            .map(|key| match state.login_failures.get(key) {
                Some((count, expires)) if *expires > now => *count,
                _ => 0,
            })
            .collect();
        Ok((state.users.get(username).cloned(), counts))
    }

    async fn count_login_failure(
        &self,
        keys: &[String],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_secs();
        let mut state = self.lock_for_write();
        if state.login_failures.len() >= MAX_LOGIN_COUNTERS {
            state
                .login_failures
                .retain(|_, (_, expires)| *expires > now);
        }
        for key in keys {
            let full = state.login_failures.len() >= MAX_LOGIN_COUNTERS;
            match state.login_failures.get_mut(key) {
                Some(entry) if entry.1 > now => entry.0 += 1,
                Some(entry) => *entry = (1, expires_at),
                None if !full => {
                    state.login_failures.insert(key.clone(), (1, expires_at));
                }
                None => {}
            }
        }
        Ok(())
    }

    async fn create_user(&self, user: &User) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock_for_write();
        if state.users.contains_key(&user.username) {
            return Ok(SaveOutcome::Conflict);
        }
        state.users.insert(user.username.clone(), user.clone());
        Ok(SaveOutcome::Saved)
    }

    async fn update_user(
        &self,
        user: &User,
        ending_sessions: Option<&Revocation>,
    ) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock_for_write();
        // As on DynamoDB: the very same change again is a retry of one already made.
        if state.users.get(&user.username) == Some(user) {
            return Ok(SaveOutcome::Saved);
        }
        if !state.user_is(&user.username, &user.id, user.version.saturating_sub(1)) {
            return Ok(SaveOutcome::Conflict);
        }
        state.users.insert(user.username.clone(), user.clone());
        if let Some(revocation) = ending_sessions {
            state.put_revocation(revocation, self.clock.now_ms());
        }
        Ok(SaveOutcome::Saved)
    }

    async fn delete_user(
        &self,
        user: &User,
        ending_sessions: &Revocation,
    ) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock_for_write();
        match state.users.get(&user.username) {
            // As on DynamoDB: gone, whoever removed it (each removal wrote its entry).
            None => return Ok(SaveOutcome::Saved),
            Some(stored) if stored.id != user.id => return Ok(SaveOutcome::Saved),
            Some(stored) if stored.version != user.version => return Ok(SaveOutcome::Conflict),
            Some(_) => {}
        }
        state.users.remove(&user.username);
        state.put_revocation(ending_sessions, self.clock.now_ms());
        Ok(SaveOutcome::Saved)
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> Result<UserPage, StoreError> {
        use std::ops::Bound;
        let state = self.lock();
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        let mut rest = state
            .users
            .range::<String, _>((start, Bound::Unbounded))
            .map(|(_, user)| user.clone());
        let users: Vec<User> = rest.by_ref().take(limit).collect();
        let next = match rest.next() {
            Some(_) => users.last().map(|u| u.username.clone()),
            None => None,
        };
        Ok(UserPage { users, next })
    }
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self.lock().clients.get(id).cloned())
    }

    async fn create_client(&self, client: &Client) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock_for_write();
        if state.clients.contains_key(&client.id) {
            return Ok(SaveOutcome::Conflict);
        }
        state.clients.insert(client.id.clone(), client.clone());
        Ok(SaveOutcome::Saved)
    }

    async fn update_client(&self, client: &Client) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock_for_write();
        match state.clients.get(&client.id) {
            // As on DynamoDB: the very same change again is a retry of one already made.
            Some(stored) if stored == client => Ok(SaveOutcome::Saved),
            Some(stored)
                if stored.version + 1 == client.version
                    && stored.created_ms == client.created_ms =>
            {
                state.clients.insert(client.id.clone(), client.clone());
                Ok(SaveOutcome::Saved)
            }
            _ => Ok(SaveOutcome::Conflict),
        }
    }

    async fn delete_client(
        &self,
        client: &Client,
        ending_tokens: &Revocation,
    ) -> Result<SaveOutcome, StoreError> {
        let mut state = self.lock_for_write();
        match state.clients.get(&client.id) {
            None => return Ok(SaveOutcome::Saved),
            Some(stored) if stored.created_ms != client.created_ms => {
                return Ok(SaveOutcome::Saved);
            }
            Some(stored) if stored.version != client.version => return Ok(SaveOutcome::Conflict),
            Some(_) => {}
        }
        state.clients.remove(&client.id);
        state.put_revocation(ending_tokens, self.clock.now_ms());
        Ok(SaveOutcome::Saved)
    }

    async fn list_clients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ClientPage, StoreError> {
        use std::ops::Bound;
        let state = self.lock();
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        let mut rest = state
            .clients
            .range::<String, _>((start, Bound::Unbounded))
            .map(|(_, client)| client.clone());
        let clients: Vec<Client> = rest.by_ref().take(limit).collect();
        let next = match rest.next() {
            Some(_) => clients.last().map(|c| c.id.clone()),
            None => None,
        };
        Ok(ClientPage { clients, next })
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(
        &self,
        session: &Session,
        owner: &SessionOwner,
    ) -> Result<CreateOutcome, StoreError> {
        let mut state = self.lock_for_write();
        if !state.user_is(&owner.username, &owner.user_id, owner.version) {
            return Ok(CreateOutcome::OwnerChanged);
        }
        state.sessions.insert(session.id.clone(), session.clone());
        Ok(CreateOutcome::Created)
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
        state
            .revocation_changes
            .insert(revocation.key.clone(), self.clock.now_ms());
        Ok(())
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let now_ms = self.clock.now_ms();
        self.lock_for_write().put_revocation(revocation, now_ms);
        Ok(())
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage, StoreError> {
        let now = self.clock.now_secs();
        let state = self.lock();
        let mut live: Vec<&Session> = state
            .sessions
            .values()
            .filter(|s| s.user_id == user_id && !s.ended && s.expires_at > now)
            .collect();
        // Newest first; the id breaks ties, as the DynamoDB index's order does not matter
        // for them (a cursor names both).
        live.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        let mut rest = live
            .into_iter()
            .filter(|s| after.is_none_or(|c| (s.created_ms, &s.id) < (c.created_ms, &c.id)));
        let sessions: Vec<SessionSummary> = rest
            .by_ref()
            .take(limit)
            .map(SessionSummary::from)
            .collect();
        let next = match rest.next() {
            Some(_) => sessions.last().map(|s| SessionCursor {
                created_ms: s.created_ms,
                id: s.id.clone(),
            }),
            None => None,
        };
        Ok(SessionPage { sessions, next })
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

    async fn revocations_changed_since(
        &self,
        since_ms: u64,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationChange>, StoreError> {
        let state = self.lock();
        Ok(state
            .revocations
            .iter()
            .filter(|(_, revocation)| revocation.expires_at > live_after)
            .filter_map(|(key, revocation)| {
                let changed_ms = *state.revocation_changes.get(key)?;
                (changed_ms >= since_ms).then(|| RevocationChange {
                    revocation: revocation.clone(),
                    changed_ms,
                })
            })
            .take(limit.saturating_add(1))
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
