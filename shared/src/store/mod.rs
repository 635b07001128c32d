//! Storage: the records tokenlife keeps and the traits every backend implements — users,
//! registered clients, sessions, revocations, and the signing-key registry ([`KeyRegistry`], defined with the
//! keys). The in-memory backend ([`memory`]) is the embedded default; a DynamoDB backend
//! implements the same traits.
//!
//! Contract for every backend:
//! - Every read-modify-write is conditional ([`SessionStore::replace_session`] succeeds only
//!   if the generation is still the expected one): no read-then-write races.
//! - Records carry an explicit expiry; "present but expired" is treated as absent by the
//!   callers (DynamoDB's TTL deletes late), and backends may delete expired records.
//! - Only hashes of refresh-token secrets are stored (see [`crate::refresh`]).
//! - A dependency that is down is [`StoreError::Unavailable`]; nothing is half-written.

pub mod dynamodb;
pub mod memory;

use async_trait::async_trait;

pub use crate::keys::{KeyRecord, KeyRegistry, KeyRegistryDocument, SaveOutcome};
pub use dynamodb::{DynamoStore, TableNames};
pub use memory::MemoryStore;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached, throttled us, or timed out (after the SDK's retries).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be read back, or the store refused a request as invalid
    /// (a missing table, a bug): not the caller's fault, not transient.
    #[error("storage error: {0}")]
    Broken(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id: the `sub` of the user's tokens.
    pub id: String,
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub scopes: Vec<String>,
    pub disabled: bool,
    /// When the user was created (ms).
    pub created_ms: u64,
    /// Bumped by every change: writes are conditioned on it, and so is a login's session
    /// (a login never outlives a change made while it checked the password). 0 for a user
    /// never stored.
    pub version: u64,
}

/// A page of users, in the store's order (stable across pages, not alphabetical on every
/// backend), and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<User>,
    /// The username to continue after; `None` on the last page.
    pub next: Option<String>,
}

/// A registered OAuth client (RFC 6749 section 2). Confidential clients hold a secret, of
/// which only the SHA-256 is stored; public ones identify themselves by id alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// For people.
    pub name: String,
    /// SHA-256 (base64url) of its secret; `None` for a public client.
    pub secret_hash: Option<String>,
    /// The secret it had before its last rotation (hash) and until when it still works
    /// (seconds): two secrets work for a while, so a rotation needs no downtime.
    pub previous_secret: Option<(String, u64)>,
    /// The grants it may use (`password`, `refresh_token`, `client_credentials`).
    pub grant_types: Vec<String>,
    /// The scopes its tokens may carry; `*` for any.
    pub scopes: Vec<String>,
    /// Whether it may introspect tokens issued to other clients.
    pub may_introspect: bool,
    /// When it was registered (ms): also the `uv` of its client-credentials tokens, so that
    /// removing it revokes them (a user-wide revocation of its id) and a client registered
    /// again under the same id is not covered by that.
    pub created_ms: u64,
    /// Bumped by every change; writes are conditioned on it.
    pub version: u64,
}

impl Client {
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }
}

/// A page of clients, and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPage {
    pub clients: Vec<Client>,
    /// The client id to continue after; `None` on the last page.
    pub next: Option<String>,
}

/// A login session: the family of refresh tokens made by one login and its rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub scope: String,
    pub client_id: Option<String>,
    /// The user record's version when the session was created: a user-wide revocation
    /// ends the sessions made under earlier versions.
    pub user_version: u64,
    pub created_ms: u64,
    /// Absolute end (seconds): the session never outlives it however often it is refreshed.
    /// Also the record's TTL attribute.
    pub expires_at: u64,
    pub last_used_ms: u64,
    /// Where it was last used from ("your devices"): the client's `User-Agent`, truncated,
    /// and source address, as of the login or the last refresh.
    pub device: Device,
    /// Rotation counter: the generation of the one current refresh token.
    pub generation: u64,
    /// SHA-256 of the current refresh token's secret.
    pub current_hash: [u8; 32],
    /// Key of the tags that tell genuine spent tokens from guesses.
    pub reuse_key: [u8; 32],
    /// The last rotation, for the grace window.
    pub last_rotation: Option<Rotation>,
    pub ended: bool,
}

/// What a session shows of the device that uses it. Both parts are what the client says or
/// where the request came from: shown to the session's own user, never trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// At most [`Device::MAX_USER_AGENT_CHARS`] characters, no control characters.
    pub user_agent: Option<String>,
    pub source_ip: Option<String>,
}

impl Device {
    pub const MAX_USER_AGENT_CHARS: usize = 200;

    /// A device as recorded: the user agent truncated and stripped of control characters.
    pub fn new(user_agent: Option<&str>, source_ip: Option<String>) -> Self {
        let user_agent = user_agent
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(Self::MAX_USER_AGENT_CHARS)
                    .collect::<String>()
            })
            .filter(|ua| !ua.is_empty());
        Self {
            user_agent,
            source_ip: source_ip.filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()),
        }
    }
}

/// What a listing shows of a session ("your devices"): never its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: String,
    pub user_id: String,
    pub client_id: Option<String>,
    pub user_version: u64,
    pub created_ms: u64,
    pub last_used_ms: u64,
    pub expires_at: u64,
    pub device: Device,
}

impl From<&Session> for SessionSummary {
    fn from(session: &Session) -> Self {
        Self {
            id: session.id.clone(),
            user_id: session.user_id.clone(),
            client_id: session.client_id.clone(),
            user_version: session.user_version,
            created_ms: session.created_ms,
            last_used_ms: session.last_used_ms,
            expires_at: session.expires_at,
            device: session.device.clone(),
        }
    }
}

/// Where a listing of sessions goes on: after the session created at `created_ms` with
/// id `id` (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub created_ms: u64,
    pub id: String,
}

/// A page of a user's live sessions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    pub next: Option<SessionCursor>,
}

/// What the grace window needs of the last rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub at_ms: u64,
    /// The successor's secret, sealed under a key only the spent token's holder can derive.
    pub sealed_successor: Vec<u8>,
}

/// What a revocation entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationKey {
    /// One access token, by `jti`.
    Token(String),
    /// Every access token of a session, by `sid`.
    Session(String),
    /// Every session of a user made under a user-record version below the entry's
    /// `below_version`, and their access tokens (whose `uv` claim carries that version), by
    /// `sub`. Versions, not times: no clock decides what a change ended.
    User(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub key: RevocationKey,
    /// After this (seconds) the entry is moot: every token it covers has expired. TTL.
    pub expires_at: u64,
    /// For [`RevocationKey::User`]: sessions (and access tokens) of a user-record version
    /// below this are revoked; 0 for the other kinds.
    pub below_version: u64,
}

/// A revocation entry as the revocation mirror's feed reads it: with the time of its last
/// write (by the writer's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationChange {
    pub revocation: Revocation,
    pub changed_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceOutcome {
    Replaced,
    /// The stored session no longer has the expected generation (another rotation won), or
    /// the backend could not tell why the write was refused: reload and decide again.
    Conflict,
    /// The session is gone, ended, or its user's sessions were revoked.
    Ended,
}

/// Who a new session belongs to, as the login saw them: the session is written only if the
/// user record is still this one (same id, same version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub username: String,
    pub user_id: String,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The owner changed (or was removed) since the login read it: nothing was written.
    OwnerChanged,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// For a login: the user and the current values of the login-limiting counters `keys`
    /// (0 for an absent or expired one), in one round trip — on DynamoDB one BatchGetItem
    /// across the users table and the revocations table, where the counters live.
    async fn find_user_for_login(
        &self,
        username: &str,
        keys: &[String],
    ) -> Result<(Option<User>, Vec<u64>), StoreError>;
    /// Adds one failed login to each counter of `keys`, which expire at `expires_at`
    /// (seconds): one write.
    async fn count_login_failure(&self, keys: &[String], expires_at: u64)
    -> Result<(), StoreError>;
    /// Creates `user` (its `version` is 1) if no user has its username; `Conflict` if one
    /// does. A write whose answer was lost and whose retry found it is `Saved`.
    async fn create_user(&self, user: &User) -> Result<SaveOutcome, StoreError>;
    /// Replaces the user if the stored one has `user.version - 1`; with `ending_sessions`
    /// (a user-wide revocation), writes that entry in the same atomic step, so the change
    /// and the end of the user's sessions land together or not at all.
    async fn update_user(
        &self,
        user: &User,
        ending_sessions: Option<&Revocation>,
    ) -> Result<SaveOutcome, StoreError>;
    /// Deletes the user if the stored one is `user` (same version), and writes
    /// `ending_sessions` in the same atomic step.
    async fn delete_user(
        &self,
        user: &User,
        ending_sessions: &Revocation,
    ) -> Result<SaveOutcome, StoreError>;
    /// At most `limit` users after the username `after` (from the start when `None`).
    async fn list_users(&self, after: Option<&str>, limit: usize) -> Result<UserPage, StoreError>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError>;
    /// Registers `client` (version 1) if no client has its id; `Conflict` if one does.
    async fn create_client(&self, client: &Client) -> Result<SaveOutcome, StoreError>;
    /// Replaces the client if the stored one has `client.version - 1`.
    async fn update_client(&self, client: &Client) -> Result<SaveOutcome, StoreError>;
    /// Deletes the client if the stored one is `client` (same version), and writes
    /// `ending_tokens` (a user-wide revocation of its id) in the same atomic step. A client
    /// already gone is `Saved`.
    async fn delete_client(
        &self,
        client: &Client,
        ending_tokens: &Revocation,
    ) -> Result<SaveOutcome, StoreError>;
    /// At most `limit` clients after the id `after` (from the start when `None`).
    async fn list_clients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ClientPage, StoreError>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Writes a new session if its owner is still as the login read it, atomically (in
    /// DynamoDB a transaction: the put plus a condition check on the user record).
    async fn create_session(
        &self,
        session: &Session,
        owner: &SessionOwner,
    ) -> Result<CreateOutcome, StoreError>;
    async fn find_session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Writes `updated` only if the stored session still has `expected_generation`, is not
    /// ended, and no unexpired user-wide revocation covers it — atomically (in DynamoDB a
    /// transaction: conditional update plus a condition check on the user entry).
    async fn replace_session(
        &self,
        updated: &Session,
        expected_generation: u64,
    ) -> Result<ReplaceOutcome, StoreError>;
    /// Marks the session ended and writes `revocation` (its `Session` entry, so its access
    /// tokens die too) in one atomic step. Idempotent.
    async fn end_session(&self, id: &str, revocation: &Revocation) -> Result<(), StoreError>;
    /// Writes a revocation entry (for users, a higher `below_version` wins; an entry never
    /// moves back).
    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError>;
    /// The user's sessions that are neither ended nor past their absolute end, newest first:
    /// at most `limit` after `after`. On DynamoDB a `Query` of the sessions table's
    /// `by-user` index (user, then creation time), repeated (a few times at most) while
    /// ended or expired sessions leave the page short: a page may still come back short,
    /// even empty, with a `next`.
    async fn list_sessions(
        &self,
        user_id: &str,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage, StoreError>;
    /// The entries present for `keys`, in one round trip. Expired entries may be returned.
    async fn find_revocations(&self, keys: &[RevocationKey])
    -> Result<Vec<Revocation>, StoreError>;
    /// The revocation mirror's feed: the entries last written at or after `since_ms` (by
    /// the writer's clock) and expiring after `live_after` (seconds). On DynamoDB one
    /// `Query` (and its pages) per UTC day of the revocations table's `by-change` index —
    /// never a `Scan`; eventually consistent, so an entry may show up a little after its
    /// write (the mirror reads an overlap again). Stops once it has more than `limit`
    /// entries (the mirror's bound: it then falls back to lookups).
    async fn revocations_changed_since(
        &self,
        since_ms: u64,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationChange>, StoreError>;
}
