//! The revocation mirror (`TOKENLIFE_REVOCATION_CHECK=mirror`): this process's copy of the
//! revocation entries that can still matter to an access token, so that a verification
//! makes no AWS call.
//!
//! **What it holds.** Every entry written within the last [`RELEVANT_MS`] (the longest an
//! access token can live, plus the blocklist's margin), until it expires. An entry older
//! than that covers no live access token: every token an entry covers was issued before the
//! entry was written (a `jti` is revoked after its token exists; a session's or user's
//! entry is written in the same atomic step that stops new tokens for it), so it expired by
//! then. Memory is therefore bounded by the entries written in about a day — measured for
//! 100 000 entries in BENCHMARKS.md.
//!
//! **How it stays current.** A cold process reads every such entry once before its first
//! answer. Then, when a verification finds the copy older than `TOKENLIFE_REVOCATION_POLL`,
//! one caller reads what changed since the last read (the store's
//! `revocations_changed_since`: on DynamoDB a `Query` of the `by-change` index, no `Scan`)
//! while the others go on with the copy they have. Each read goes back
//! [`OVERLAP_MS`] before the last one began (the index is eventually consistent and
//! writers' clocks differ), and once a minute [`DEEP_OVERLAP_MS`] (16 minutes: AWS refuses
//! requests signed by a clock more than 15 minutes off, so no entry is stamped further
//! behind): an entry that reaches the index later than that is missed by warm processes
//! (cold ones read it) — see the README.
//!
//! **Bounded.** A copy holds at most [`MIRROR_MAX_ENTRIES`]; a process whose copy would
//! grow past it drops it and looks every verification up in the store from then on (as
//! `lookup` mode does), rather than run out of memory.
//!
//! **Failing closed.** When the copy has not been refreshed for longer than
//! `TOKENLIFE_REVOCATION_MAX_STALENESS` (reads failing), every verification answers 503
//! until a read succeeds; a cold process answers 503 until its first read succeeds.
//!
//! **The trade-off.** A revocation takes effect within the poll interval (plus the index's
//! propagation, usually well under a second), not at the next verification — also in the
//! process that wrote it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::clock::Clock;
use crate::config::{ACCESS_TTL_MAX_SECS, BLOCKLIST_MARGIN_SECS};
use crate::store::{Revocation, RevocationChange, RevocationKey, SessionStore, StoreError};

/// How long after its last write an entry can still cover a live access token.
pub const RELEVANT_MS: u64 = (ACCESS_TTL_MAX_SECS + BLOCKLIST_MARGIN_SECS) * 1000;
/// How far before the last read's start each read goes back.
pub const OVERLAP_MS: u64 = 10_000;
/// How far back the read of once a minute goes: past the 15 minutes of clock skew AWS
/// accepts in a signed request (SigV4), so an entry stamped by a writer whose clock is
/// behind — a laptop running the CLI — still reaches every warm copy within a minute.
pub const DEEP_OVERLAP_MS: u64 = 16 * 60_000;
/// How often a read goes back [`DEEP_OVERLAP_MS`].
const DEEP_EVERY_MS: u64 = 60_000;
/// How often entries past their end are dropped from the copy.
const SWEEP_EVERY_MS: u64 = 60_000;
/// The most entries a copy holds (~86 bytes each: ~43 MB). Past it — revocations written
/// faster than ~350 a minute all day long — the process stops mirroring and looks each
/// verification up in the store, as in `lookup` mode, until it ends.
pub const MIRROR_MAX_ENTRIES: usize = 500_000;

/// What the mirror keeps of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Seconds: the entry's `expires_at`, or the end of its relevance if sooner.
    until: u64,
    below_version: u64,
}

#[derive(Default)]
struct Copy {
    entries: HashMap<RevocationKey, Entry>,
    /// This process's clock when the last successful read began (ms); `None`: never read.
    read_at_ms: Option<u64>,
    deep_read_at_ms: u64,
    swept_at_ms: u64,
    /// When the last read failed (ms): while the copy is fresh enough, the next read waits
    /// a poll interval, so a failing store is not asked on every verification.
    failed_at_ms: Option<u64>,
    /// More entries than the bound: the copy was dropped; every verification looks up.
    overflowed: bool,
}

/// Where the mirror reads changes (a store's `revocations_changed_since`, at most `limit`
/// and one more), and where it looks entries up once it holds too many (the store's
/// `find_revocations`).
#[async_trait]
pub trait RevocationFeed: Send + Sync {
    async fn changed_since(
        &self,
        since_ms: u64,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationChange>, StoreError>;
    async fn lookup(&self, keys: &[RevocationKey]) -> Result<Vec<Revocation>, StoreError>;
}

/// A store as the mirror's feed.
pub struct StoreFeed(pub Arc<dyn SessionStore>);

#[async_trait]
impl RevocationFeed for StoreFeed {
    async fn changed_since(
        &self,
        since_ms: u64,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationChange>, StoreError> {
        self.0
            .revocations_changed_since(since_ms, live_after, limit)
            .await
    }

    async fn lookup(&self, keys: &[RevocationKey]) -> Result<Vec<Revocation>, StoreError> {
        self.0.find_revocations(keys).await
    }
}

pub struct RevocationMirror {
    feed: Arc<dyn RevocationFeed>,
    clock: Arc<dyn Clock>,
    poll_ms: u64,
    max_staleness_ms: u64,
    max_entries: usize,
    copy: RwLock<Copy>,
    /// One read at a time.
    reading: tokio::sync::Mutex<()>,
}

/// Why the mirror cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("revocation mirror: {0}")]
pub struct MirrorUnavailable(String);

impl From<MirrorUnavailable> for StoreError {
    fn from(error: MirrorUnavailable) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

impl RevocationMirror {
    /// A mirror holding at most `max_entries` ([`MIRROR_MAX_ENTRIES`] in service).
    pub fn new(
        feed: Arc<dyn RevocationFeed>,
        clock: Arc<dyn Clock>,
        poll_secs: u64,
        max_staleness_secs: u64,
        max_entries: usize,
    ) -> Self {
        Self {
            feed,
            clock,
            poll_ms: poll_secs.saturating_mul(1000),
            max_staleness_ms: max_staleness_secs.saturating_mul(1000),
            max_entries,
            copy: RwLock::new(Copy::default()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The entries the copy holds for `keys` (as `find_revocations` answers), after
    /// refreshing it if it is older than the poll interval; an error when it is older than
    /// the staleness bound and cannot be refreshed.
    pub async fn find(&self, keys: &[RevocationKey]) -> Result<Vec<Revocation>, StoreError> {
        let now_ms = self.clock.now_ms();
        let (overflowed, age) = {
            let copy = self.read_copy();
            let age = copy.read_at_ms.map(|at| now_ms.saturating_sub(at));
            (copy.overflowed, age)
        };
        if overflowed {
            return self.feed.lookup(keys).await;
        }
        if age.is_none_or(|age| age >= self.poll_ms) {
            self.refresh(now_ms, age).await?;
        }
        // One look at the copy: either it answers, or it has overflowed (then the store).
        let answer = {
            let copy = self.read_copy();
            (!copy.overflowed).then(|| {
                keys.iter()
                    .filter_map(|key| {
                        copy.entries.get(key).map(|entry| Revocation {
                            key: key.clone(),
                            expires_at: entry.until,
                            below_version: entry.below_version,
                        })
                    })
                    .collect()
            })
        };
        match answer {
            Some(found) => Ok(found),
            None => self.feed.lookup(keys).await,
        }
    }

    /// Entries held (tests, the memory benchmark).
    pub fn len(&self) -> usize {
        self.read_copy().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn age_ms(&self, now_ms: u64) -> Option<u64> {
        self.read_copy()
            .read_at_ms
            .map(|at| now_ms.saturating_sub(at))
    }

    fn fresh_enough(&self, age: Option<u64>) -> bool {
        age.is_some_and(|age| age <= self.max_staleness_ms)
    }

    /// Reads what changed: by this caller if no one else is reading; else this caller goes
    /// on with the copy — unless it is too old (or there is none), then it waits for that
    /// read and uses its result.
    async fn refresh(&self, now_ms: u64, age: Option<u64>) -> Result<(), StoreError> {
        let failed_recently = self
            .read_copy()
            .failed_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < self.poll_ms);
        if failed_recently && self.fresh_enough(age) {
            return Ok(());
        }
        let _reading = match self.reading.try_lock() {
            Ok(guard) => guard,
            Err(_) if self.fresh_enough(age) => return Ok(()),
            Err(_) => {
                let guard = self.reading.lock().await;
                let now_ms = self.clock.now_ms();
                let age = self.age_ms(now_ms);
                if age.is_some_and(|age| age < self.poll_ms) {
                    return Ok(());
                }
                // The read waited for just failed, and the copy is too old to answer: do
                // not queue another read behind it for every waiting caller.
                let just_failed = self
                    .read_copy()
                    .failed_at_ms
                    .is_some_and(|at| now_ms.saturating_sub(at) < self.poll_ms);
                if just_failed {
                    return Err(MirrorUnavailable(
                        "no successful read for longer than the staleness bound".into(),
                    )
                    .into());
                }
                guard
            }
        };
        match self.read_changes(now_ms).await {
            Ok(()) => Ok(()),
            Err(error) => {
                // When it ended: a slow failing read must not let every waiter start another.
                self.write_copy().failed_at_ms = Some(self.clock.now_ms());
                let age = self.age_ms(self.clock.now_ms());
                if self.fresh_enough(age) {
                    tracing::warn!(error = %error, "revocation mirror: read failed; using the copy");
                    Ok(())
                } else {
                    Err(MirrorUnavailable(format!(
                        "no successful read for longer than the staleness bound: {error}"
                    ))
                    .into())
                }
            }
        }
    }

    async fn read_changes(&self, started_ms: u64) -> Result<(), StoreError> {
        let (since_ms, deep) = {
            let copy = self.read_copy();
            match copy.read_at_ms {
                None => (started_ms.saturating_sub(RELEVANT_MS), true),
                Some(last) if started_ms.saturating_sub(copy.deep_read_at_ms) >= DEEP_EVERY_MS => {
                    (last.saturating_sub(DEEP_OVERLAP_MS), true)
                }
                Some(last) => (last.saturating_sub(OVERLAP_MS), false),
            }
        };
        let now_secs = started_ms / 1000;
        let changes = self
            .feed
            .changed_since(since_ms, now_secs, self.max_entries)
            .await?;
        let mut copy = self.write_copy();
        if changes.len() > self.max_entries
            || copy.entries.len().saturating_add(changes.len()) > self.max_entries.saturating_mul(2)
        {
            self.overflow(&mut copy);
            return Ok(());
        }
        for RevocationChange {
            revocation,
            changed_ms,
        } in changes
        {
            let relevant_until = changed_ms.saturating_add(RELEVANT_MS) / 1000;
            let until = revocation.expires_at.min(relevant_until);
            if until <= now_secs {
                continue;
            }
            let entry = copy.entries.entry(revocation.key).or_insert(Entry {
                until,
                below_version: revocation.below_version,
            });
            entry.until = entry.until.max(until);
            entry.below_version = entry.below_version.max(revocation.below_version);
        }
        copy.failed_at_ms = None;
        // Never move the mark back (a slower read that began earlier finishing later).
        copy.read_at_ms = Some(copy.read_at_ms.map_or(started_ms, |at| at.max(started_ms)));
        if deep {
            copy.deep_read_at_ms = started_ms;
        }
        if started_ms.saturating_sub(copy.swept_at_ms) >= SWEEP_EVERY_MS
            || copy.entries.len() > self.max_entries
        {
            copy.entries.retain(|_, entry| entry.until > now_secs);
            copy.swept_at_ms = started_ms;
        }
        if copy.entries.len() > self.max_entries {
            self.overflow(&mut copy);
        }
        Ok(())
    }

    /// The copy cannot hold what matters within the bound: drop it, and look every
    /// verification up in the store from now on.
    fn overflow(&self, copy: &mut Copy) {
        tracing::warn!(
            bound = self.max_entries,
            "revocation mirror: too many live entries; looking every verification up"
        );
        copy.entries = HashMap::new();
        copy.overflowed = true;
    }

    fn read_copy(&self) -> std::sync::RwLockReadGuard<'_, Copy> {
        self.copy.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_copy(&self) -> std::sync::RwLockWriteGuard<'_, Copy> {
        self.copy.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    /// The memory store's feed, which can be made to fail, and counts its reads.
    struct Feed {
        store: Arc<MemoryStore>,
        failing: AtomicBool,
        reads: AtomicUsize,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl RevocationFeed for Feed {
        async fn changed_since(
            &self,
            since_ms: u64,
            live_after: u64,
            limit: usize,
        ) -> Result<Vec<RevocationChange>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("injected".into()));
            }
            self.store
                .revocations_changed_since(since_ms, live_after, limit)
                .await
        }

        async fn lookup(&self, keys: &[RevocationKey]) -> Result<Vec<Revocation>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.store.find_revocations(keys).await
        }
    }

    struct Fixture {
        clock: Arc<ManualClock>,
        feed: Arc<Feed>,
        mirror: RevocationMirror,
    }

    /// A mirror polling every second, failing closed after 10 s.
    fn fixture() -> Fixture {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let feed = Arc::new(Feed {
            store: Arc::new(MemoryStore::new(clock.clone())),
            failing: AtomicBool::new(false),
            reads: AtomicUsize::new(0),
            lookups: AtomicUsize::new(0),
        });
        let mirror = RevocationMirror::new(feed.clone(), clock.clone(), 1, 10, 100);
        Fixture {
            clock,
            feed,
            mirror,
        }
    }

    impl Fixture {
        async fn revoke(&self, jti: &str) {
            let revocation = Revocation {
                key: RevocationKey::Token(jti.into()),
                expires_at: self.clock.now_secs() + 900,
                below_version: 0,
            };
            self.feed.store.put_revocation(&revocation).await.unwrap();
        }

        async fn revoked(&self, jti: &str) -> Result<bool, StoreError> {
            let found = self
                .mirror
                .find(&[RevocationKey::Token(jti.into())])
                .await?;
            Ok(found.iter().any(|r| r.expires_at > self.clock.now_secs()))
        }

        fn reads(&self) -> usize {
            self.feed.reads.swap(0, Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_revocation_takes_effect_within_the_poll_interval_with_one_read_per_interval() {
        let f = fixture();
        f.revoke("old").await;
        // Cold: one read before the first answer, which knows what was written before.
        assert!(f.revoked("old").await.unwrap());
        assert!(!f.revoked("new").await.unwrap());
        assert_eq!(f.reads(), 1);
        f.revoke("new").await;
        f.clock.advance_ms(999);
        for _ in 0..100 {
            assert!(!f.revoked("new").await.unwrap(), "not within the interval");
        }
        assert_eq!(f.reads(), 0, "no read within the poll interval");
        f.clock.advance_ms(1);
        assert!(f.revoked("new").await.unwrap(), "at the poll interval");
        assert!(f.revoked("old").await.unwrap());
        assert_eq!(f.reads(), 1);
    }

    #[tokio::test]
    async fn a_mirror_that_cannot_read_fails_closed_past_the_staleness_bound() {
        let f = fixture();
        f.feed.failing.store(true, Ordering::SeqCst);
        assert!(
            f.revoked("any").await.is_err(),
            "cold and unable to read: 503"
        );
        f.feed.failing.store(false, Ordering::SeqCst);
        f.revoke("a").await;
        assert!(f.revoked("a").await.unwrap());
        f.feed.failing.store(true, Ordering::SeqCst);
        f.reads();
        // Within the bound: the copy answers; a failing store is asked once per interval.
        for _ in 0..20 {
            f.clock.advance_ms(500);
            assert!(f.revoked("a").await.unwrap());
        }
        assert_eq!(f.reads(), 10);
        f.clock.advance_ms(1);
        assert!(matches!(
            f.revoked("a").await,
            Err(StoreError::Unavailable(_))
        ));
        // Back: answers again, with what changed meanwhile.
        f.feed.failing.store(false, Ordering::SeqCst);
        f.revoke("b").await;
        assert!(f.revoked("b").await.unwrap());
    }

    #[tokio::test]
    async fn entries_leave_the_copy_when_they_can_no_longer_matter() {
        let f = fixture();
        f.revoke("short").await; // expires in 900 s
        let user = Revocation {
            key: RevocationKey::User("u".into()),
            expires_at: f.clock.now_secs() + 30 * 86_400,
            below_version: 3,
        };
        f.feed.store.put_revocation(&user).await.unwrap();
        assert!(f.revoked("short").await.unwrap());
        assert_eq!(f.mirror.len(), 2);
        f.clock.advance_ms(901_000);
        assert!(!f.revoked("short").await.unwrap());
        assert_eq!(f.mirror.len(), 1, "swept");
        // The user entry lives on in the store, but no access token issued before it was
        // written can be alive past the relevance window: the copy lets it go.
        f.clock.advance_ms(RELEVANT_MS);
        f.mirror.find(&[]).await.unwrap();
        assert!(f.mirror.is_empty());
        // A cold mirror does not load it either.
        let cold = RevocationMirror::new(f.feed.clone(), f.clock.clone(), 1, 10, 100);
        cold.find(&[]).await.unwrap();
        assert!(cold.is_empty());
    }

    /// A writer whose clock is behind (a laptop running the CLI) stamps its entry before
    /// the reader's last read: the per-poll overlap misses it, the once-a-minute read finds
    /// it; a cold copy always does.
    #[tokio::test]
    async fn an_entry_stamped_behind_the_last_read_is_found_by_the_minute_read() {
        let reader = Arc::new(ManualClock::new(1_800_000_000_000));
        let writer = Arc::new(ManualClock::new(1_800_000_000_000 - 11_000));
        let store = Arc::new(MemoryStore::new(writer.clone()));
        let mirror = RevocationMirror::new(
            Arc::new(StoreFeed(store.clone())),
            reader.clone(),
            1,
            10,
            100,
        );
        let key = RevocationKey::User("laptop-banned".into());
        let covered =
            || async { mirror.find(std::slice::from_ref(&key)).await.unwrap().len() == 1 };
        assert!(!covered().await); // the cold read
        reader.advance_ms(500);
        writer.advance_ms(500);
        let ban = Revocation {
            key: key.clone(),
            expires_at: reader.now_secs() + 86_400,
            below_version: 2,
        };
        store.put_revocation(&ban).await.unwrap();
        for _ in 0..59 {
            reader.advance_ms(1_000);
            assert!(
                !covered().await,
                "stamped 11 s behind: outside the poll overlap"
            );
        }
        reader.advance_ms(1_000);
        assert!(covered().await, "the minute read goes back 16 minutes");
        let cold = RevocationMirror::new(Arc::new(StoreFeed(store)), reader.clone(), 1, 10, 100);
        assert_eq!(
            cold.find(std::slice::from_ref(&key)).await.unwrap().len(),
            1
        );
    }

    /// More live entries than the bound: the process drops its copy and looks every
    /// verification up (exact, like lookup mode) instead of growing without end.
    #[tokio::test]
    async fn past_its_bound_the_mirror_looks_every_verification_up() {
        let f = fixture(); // bound: 100 entries
        for i in 0..60 {
            f.revoke(&format!("a{i}")).await;
        }
        assert!(f.revoked("a0").await.unwrap());
        assert_eq!(f.mirror.len(), 60);
        f.clock.advance_ms(1_000);
        for i in 0..60 {
            f.revoke(&format!("b{i}")).await;
        }
        assert!(f.revoked("b59").await.unwrap(), "found by a lookup");
        assert!(f.mirror.is_empty(), "the copy is dropped");
        assert!(f.feed.lookups.load(Ordering::SeqCst) >= 1);
        // From now on a revocation counts at the next verification, as in lookup mode.
        f.revoke("c").await;
        assert!(f.revoked("c").await.unwrap());
        assert!(!f.revoked("never").await.unwrap());
    }
}
