//! The lifecycle operations — login, refresh (rotation, grace window, reuse detection),
//! revoke, user-wide revocation, authorize (verify + revocation check), the JWKS, and the
//! signing-key operations (list, rotate, emergency retire).
//! Knows nothing of HTTP; every dependency comes in through [`TokenService::new`].
//!
//! Round trips per operation (the figures the DynamoDB backend must keep):
//! login = 1 user read + 1 sign + 1 write; refresh = 1 session read + 1 sign + 1 conditional
//! write (a grace-window retry: 1 read + 1 revocation read + 1 sign, no write);
//! authorize = 1 revocation lookup of the `jti`, `sid` and `sub` entries together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::audit::{self, Event, Record};
use crate::clock::Clock;
use crate::config::{ACCESS_TTL_MAX_SECS, BLOCKLIST_MARGIN_SECS, Config, RevocationCheck};
use crate::error::Error;
use crate::keys::{JwkSet, KeyCache, KeyError, KeyRecord, KeyRing, KeyRotation, RotationReport};
use crate::metrics::{self, Count};
use crate::passwords::{MAX_PASSWORD_BYTES, PasswordHasher};
use crate::refresh::{RefreshToken, new_reuse_key, new_session_id};
use crate::secrets::{b64url, constant_time_eq, random_bytes};
use crate::store::{
    Client, ClientStore, CreateOutcome, Device, ReplaceOutcome, Revocation, RevocationKey,
    Rotation, Session, SessionOwner, SessionStore, UserStore,
};
use crate::token::{
    AccessClaims, AccessTokenVerifier, MAX_TOKEN_BYTES, TokenError, header_kid, sign_access_token,
};

/// The scope that allows the admin routes.
pub const ADMIN_SCOPE: &str = "admin";
const MAX_USERNAME_CHARS: usize = 128;
/// How many times a refresh re-reads the session after losing a race.
const MAX_REFRESH_ATTEMPTS: usize = 6;

pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The authenticated client (the HTTP layer authenticates it); `None`: anonymous.
    pub client: Option<Client>,
    /// Space-separated subset of the user's scopes; all of them when absent.
    pub scope: Option<String>,
    /// Where the request came from, recorded on the session.
    pub device: Device,
}

impl LoginRequest {
    /// A plain password login: all of the user's scopes, no client id.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            client: None,
            scope: None,
            device: Device::default(),
        }
    }
}

pub struct RefreshRequest {
    pub refresh_token: String,
    /// The authenticated client; `None`: anonymous.
    pub client: Option<Client>,
    /// Space-separated subset of the session's scope.
    pub scope: Option<String>,
    /// Where the request came from, recorded on the session.
    pub device: Device,
}

impl RefreshRequest {
    /// A plain refresh: the session's scope, no client id.
    pub fn new(refresh_token: impl Into<String>) -> Self {
        Self {
            refresh_token: refresh_token.into(),
            client: None,
            scope: None,
            device: Device::default(),
        }
    }
}

/// A successful login or refresh (RFC 6749 section 5.1). Holds credentials: no Debug.
#[derive(Serialize)]
pub struct TokenGrant {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub scope: String,
}

/// Who asks for a revocation.
#[derive(Clone, Copy)]
enum Revoker<'a> {
    /// Whoever holds the token, trusted as such (a logout; trusted callers).
    Holder,
    /// A `/revoke` request naming no client.
    Anonymous,
    /// A `/revoke` request by this authenticated client.
    Client(&'a Client),
}

/// What a revocation request ended up revoking (the answer is 200 either way, RFC 7009).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// A refresh token: its whole session and the session's access tokens.
    Session,
    AccessToken,
    /// Unknown, malformed, foreign or already useless token.
    Nothing,
}

/// What the service runs on; built once at start (see [`crate::app`]).
pub struct Dependencies {
    pub users: Arc<dyn UserStore>,
    pub clients: Arc<dyn ClientStore>,
    pub sessions: Arc<dyn SessionStore>,
    /// The cached key ring every operation signs and verifies with.
    pub keys: Arc<KeyCache>,
    /// Moves signing keys through their lifecycle (same registry and vault as `keys`,
    /// whose cache it forgets after each change).
    pub rotation: KeyRotation,
    pub clock: Arc<dyn Clock>,
    pub passwords: Arc<PasswordHasher>,
}

pub struct TokenService {
    config: Config,
    issuer: String,
    deps: Dependencies,
    verifier: AccessTokenVerifier,
    revoked: RevokedTokens,
    verified: VerifiedTokens,
    /// `TOKENLIFE_REVOCATION_CHECK=mirror`: where verifications look revocations up.
    mirror: Option<mirror::RevocationMirror>,
}

/// Access tokens this process has verified — signature, `typ`, `iss`, `aud` — by the
/// SHA-256 of the token, with the id of the key ring that verified them. The same bytes
/// verify the same way under the same keys, so a token presented again (a client calling
/// an API, a resource server introspecting per request) skips the signature check while
/// that ring is the one in use; a rotation, an emergency retirement or a reload makes a new
/// ring, and every entry of the old one misses. Times and revocation are checked on every
/// presentation, as without it. Only tokens that verified are kept.
#[derive(Default)]
struct VerifiedTokens {
    entries: Mutex<HashMap<u64, Verified, BuildKeyed>>,
    /// The process's random SipHash key: a token's place in the cache. Not a cryptographic
    /// digest — a cached verification is only used for the very bytes it verified (compared
    /// in full on every hit), so a collision can cost a re-verification, never a forgery.
    hasher: std::hash::RandomState,
}

/// What the cache knows of a token, by the ring that verified it.
enum Verified {
    /// Verified once (by the ring, expiring at the time): the next presentation verifies
    /// again and keeps the claims. A token seen once (most are, behind an authorizer with
    /// its own result cache) costs the cache a few dozen bytes, not a copy of itself and
    /// its claims.
    Once(u64, u64),
    /// Verified at least twice: the token's bytes and claims, to skip the signature check.
    Claims(u64, Box<(Box<str>, AccessClaims)>),
}

/// Bound on the cache of verified tokens; when full, entries that cannot hit again go
/// (of an earlier key ring, or expired), and if that frees less than a tenth, all.
pub const VERIFIED_CACHE_ENTRIES: usize = 10_000;
/// Longer tokens are verified every time, never kept (their bytes and claims would be):
/// the cache stays under ~40 MB whatever the scopes, ~10 MB with ordinary tokens.
const VERIFIED_CACHE_TOKEN_BYTES: usize = 2048;

/// The cache's keys are already keyed SipHash values: the map uses them as they are.
#[derive(Default, Clone, Copy)]
struct BuildKeyed;

#[derive(Default)]
struct Keyed(u64);

impl std::hash::BuildHasher for BuildKeyed {
    type Hasher = Keyed;
    fn build_hasher(&self) -> Keyed {
        Keyed(0)
    }
}

impl std::hash::Hasher for Keyed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys reach here (write_u64); anything else is folded in, never lost.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl VerifiedTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Verified, BuildKeyed>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The token's key in the cache.
    fn key_of(&self, token: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, token)
    }

    fn get(&self, key: u64, token: &str, ring: u64) -> Option<AccessClaims> {
        match self.lock().get(&key) {
            Some(Verified::Claims(verified_by, entry))
                if *verified_by == ring
                    && constant_time_eq(entry.0.as_bytes(), token.as_bytes()) =>
            {
                Some(entry.1.clone())
            }
            _ => None,
        }
    }

    /// Notes that `ring` verified `token` (with `claims`).
    fn insert(&self, key: u64, token: &str, ring: u64, claims: &AccessClaims, now_secs: u64) {
        let evicted = {
            let mut entries = self.lock();
            let mut evicted = None;
            if entries.len() >= VERIFIED_CACHE_ENTRIES && !entries.contains_key(&key) {
                // What can never hit again goes: verified by an earlier ring, or expired.
                entries.retain(|_, entry| match entry {
                    Verified::Once(verified_by, exp) => *verified_by == ring && *exp > now_secs,
                    Verified::Claims(verified_by, e) => *verified_by == ring && e.1.exp > now_secs,
                });
                if entries.len() >= VERIFIED_CACHE_ENTRIES * 9 / 10 {
                    // Still nearly full: start afresh, and free the old map after the
                    // lock is released, not under it.
                    evicted = Some(std::mem::take(&mut *entries));
                }
            }
            let entry = match entries.get(&key) {
                // Kept already (a concurrent verification of the same token got there first).
                Some(Verified::Claims(verified_by, e))
                    if *verified_by == ring
                        && constant_time_eq(e.0.as_bytes(), token.as_bytes()) =>
                {
                    None
                }
                Some(Verified::Once(verified_by, _))
                    if *verified_by == ring && token.len() <= VERIFIED_CACHE_TOKEN_BYTES =>
                {
                    Some(Verified::Claims(
                        ring,
                        Box::new((token.into(), claims.clone())),
                    ))
                }
                _ => Some(Verified::Once(ring, claims.exp)),
            };
            if let Some(entry) = entry {
                entries.insert(key, entry);
            }
            evicted
        };
        drop(evicted);
    }
}

/// Access tokens this process has seen revoked, by `jti`, kept until they expire: a revoked
/// token never becomes valid again, so that answer is safe to cache (a second presentation
/// costs no lookup). "Not revoked" is never cached.
#[derive(Default)]
struct RevokedTokens {
    until: Mutex<HashMap<String, u64>>,
    /// Whether anything was ever cached: the hot path skips the lock while nothing is.
    used: AtomicBool,
}

/// Bound on the cache; when full, expired entries go, and if that is not enough, all.
const MAX_CACHED_REVOKED: usize = 10_000;

impl RevokedTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn contains(&self, jti: &str, now_secs: u64) -> bool {
        self.used.load(Ordering::Relaxed)
            && self.lock().get(jti).is_some_and(|&until| until > now_secs)
    }

    fn insert(&self, jti: &str, until: u64, now_secs: u64) {
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_REVOKED {
            cache.retain(|_, &mut u| u > now_secs);
            if cache.len() >= MAX_CACHED_REVOKED {
                cache.clear();
            }
        }
        cache.insert(jti.to_owned(), until);
        self.used.store(true, Ordering::Relaxed);
    }
}

impl TokenService {
    pub fn new(config: Config, issuer: String, deps: Dependencies) -> Self {
        let verifier = AccessTokenVerifier::new(&issuer, &config.audience, config.leeway_secs);
        let mirror = (config.revocation_check == RevocationCheck::Mirror).then(|| {
            mirror::RevocationMirror::new(
                Arc::new(mirror::StoreFeed(deps.sessions.clone())),
                deps.clock.clone(),
                config.revocation_poll_secs,
                config.revocation_max_staleness_secs,
                mirror::MIRROR_MAX_ENTRIES,
            )
        });
        Self {
            config,
            issuer,
            deps,
            verifier,
            revoked: RevokedTokens::default(),
            verified: VerifiedTokens::default(),
            mirror,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Password login: a new session, its first refresh token and an access token.
    pub async fn login(&self, request: LoginRequest) -> Result<TokenGrant, Error> {
        check_username(&request.username)?;
        check_password(&request.password)?;
        if let Some(client) = &request.client {
            clients::check_grant(client, clients::GRANT_PASSWORD)?;
        }
        let client_id = request.client.as_ref().map(|c| c.id.clone());
        // Login limiting, before any password work: the counters come with the user record.
        let limits = login_limits::Limits::of(&self.config, self.deps.clock.now_secs());
        let keys = limits.keys(&request.username, request.device.source_ip.as_deref());
        let (user, counts) = self
            .deps
            .users
            .find_user_for_login(&request.username, &keys)
            .await?;
        if let Err(refused) = limits.check(&counts) {
            metrics::count(Count::LoginThrottled);
            Record::new(Event::Login, "throttled")
                .reason(limits.exceeded(&counts).unwrap_or("limit"))
                .username(user.as_ref().map(|u| u.username.as_str()))
                .subject(user.as_ref().map(|u| u.id.as_str()))
                .client_id(client_id.as_deref())
                .emit();
            return Err(refused);
        }
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = request.password;
        // Unknown users cost the same argon2id work and get the same answer.
        let password_ok = self
            .deps
            .passwords
            .run(move |worker| worker.verify(&password, stored_hash.as_deref()))
            .await?;
        let user = match user {
            Some(user) if password_ok && !user.disabled => user,
            user => {
                let reason = match &user {
                    None => "unknown_user",
                    Some(_) if !password_ok => "bad_password",
                    Some(_) => "disabled",
                };
                metrics::count(Count::LoginFailed);
                Record::new(Event::Login, "failed")
                    .reason(reason)
                    .username(user.as_ref().map(|u| u.username.as_str()))
                    .subject(user.as_ref().map(|u| u.id.as_str()))
                    .client_id(client_id.as_deref())
                    .emit();
                self.deps
                    .users
                    .count_login_failure(&keys, limits.counters_expire_at())
                    .await?;
                return Err(Error::invalid_grant("invalid username or password"));
            }
        };
        let scope = match &request.client {
            Some(client) => {
                clients::client_scope(client, &user.scopes.join(" "), request.scope.as_deref())?
            }
            None => narrow_scope(&user.scopes.join(" "), request.scope.as_deref())?,
        };

        let now_ms = self.deps.clock.now_ms();
        let session_id = new_session_id(now_ms);
        let reuse_key = new_reuse_key();
        let refresh = RefreshToken::issue(&session_id, 0, &reuse_key);
        let session = Session {
            id: session_id,
            user_id: user.id.clone(),
            scope: scope.clone(),
            client_id,
            user_version: user.version,
            created_ms: now_ms,
            expires_at: now_ms / 1000 + self.config.refresh_ttl_secs,
            last_used_ms: now_ms,
            device: request.device,
            generation: 0,
            current_hash: refresh.hash(),
            reuse_key,
            last_rotation: None,
            ended: false,
        };
        // Sign first: if signing fails, nothing has been written.
        let access_token = self.issue_access_token(&session, &scope).await?;
        let owner_name = user.username.clone();
        let owner = SessionOwner {
            username: user.username,
            user_id: user.id,
            version: user.version,
        };
        match self.deps.sessions.create_session(&session, &owner).await? {
            CreateOutcome::Created => {}
            // An operator changed the user while the password was checked: decide again.
            CreateOutcome::OwnerChanged => {
                return Err(Error::unavailable(
                    "the account changed during the login; retry",
                    "the user record changed between the password check and the session write",
                ));
            }
        }
        metrics::count(Count::LoginSucceeded);
        Record::new(Event::Login, "succeeded")
            .subject(&session.user_id)
            .username(&owner_name)
            .sid(&session.id)
            .client_id(session.client_id.as_deref())
            .emit();
        Ok(self.grant(access_token, &refresh, scope))
    }

    /// Rotates a refresh token: exactly one rotation per token, however many concurrent
    /// requests present it; a retry inside the grace window gets the same successor; a spent
    /// token outside it ends the session (RFC 9700 reuse detection).
    pub async fn refresh(&self, request: RefreshRequest) -> Result<TokenGrant, Error> {
        let mut outcome = Count::RefreshRefused;
        let result = self.redeem(request, &mut outcome).await;
        // A dependency that failed is a 503, not a refusal: it is not counted here.
        if result
            .as_ref()
            .map_or_else(|e| e.private_detail().is_none(), |_| true)
        {
            metrics::count(outcome);
        }
        result
    }

    /// [`Self::refresh`], setting `outcome` to what it did when that was not a refusal.
    async fn redeem(
        &self,
        request: RefreshRequest,
        outcome: &mut Count,
    ) -> Result<TokenGrant, Error> {
        let presented = RefreshToken::parse(&request.refresh_token)
            .ok_or_else(|| Error::invalid_grant("malformed refresh token"))?;
        if let Some(client) = &request.client {
            clients::check_grant(client, clients::GRANT_REFRESH_TOKEN)?;
        }
        let client_id = request.client.as_ref().map(|c| c.id.clone());
        let unusable = || Error::invalid_grant("refresh token is invalid, expired or revoked");

        for attempt in 0..MAX_REFRESH_ATTEMPTS {
            if attempt > 1 {
                // Lost the race more than once (e.g. DynamoDB TransactionConflict while the
                // winner's transaction was still in flight): back off a little, with jitter.
                let jitter = u64::from(random_bytes::<1>()[0] % 10);
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 * attempt as u64 + jitter,
                ))
                .await;
            }
            let session = self
                .deps
                .sessions
                .find_session(presented.session_id())
                .await?
                .ok_or_else(unusable)?;
            // A guess (real session id, made-up secret) changes nothing.
            if !presented.is_genuine(&session.reuse_key) {
                return Err(unusable());
            }
            let now_ms = self.deps.clock.now_ms();
            if session.ended || session.expires_at <= now_ms / 1000 {
                return Err(unusable());
            }
            let just_spent_in_grace = presented.generation().checked_add(1)
                == Some(session.generation)
                && self.config.refresh_grace_secs > 0
                && session.last_rotation.as_ref().is_some_and(|rotation| {
                    now_ms.saturating_sub(rotation.at_ms) <= self.config.refresh_grace_secs * 1000
                });
            // Reuse detection comes first: a spent token ends the session whatever else the
            // request says (client, scope).
            if presented.generation() < session.generation && !just_spent_in_grace {
                self.end_session(&session).await?;
                *outcome = Count::RefreshReuseDetected;
                Record::new(Event::RefreshReuseDetected, "session_ended")
                    .subject(&session.user_id)
                    .sid(&session.id)
                    .client_id(session.client_id.as_deref())
                    .emit();
                return Err(Error::invalid_grant(
                    "refresh token was already used; the session has been revoked",
                ));
            }
            if presented.generation() > session.generation {
                return Err(unusable());
            }
            // A session bound to a client refreshes only for that client (RFC 6749 section 6,
            // RFC 9700): naming another client, or none, is refused and changes nothing.
            if session.client_id.is_some() && client_id != session.client_id {
                return Err(Error::invalid_grant(
                    "refresh token was issued to another client",
                ));
            }
            let scope = narrow_scope(&session.scope, request.scope.as_deref())?;

            if just_spent_in_grace {
                // Idempotent retry of the rotation that just happened: the same successor.
                let successor = session
                    .last_rotation
                    .as_ref()
                    .and_then(|rotation| presented.open_successor(&rotation.sealed_successor))
                    .filter(|s| constant_time_eq(&s.hash(), &session.current_hash))
                    .ok_or_else(unusable)?;
                if self.user_revocation_covers(&session).await? {
                    return Err(unusable());
                }
                let access_token = self.issue_access_token(&session, &scope).await?;
                *outcome = Count::RefreshGraceReplay;
                return Ok(self.grant(access_token, &successor, scope));
            }

            // The current token: rotate.
            if !constant_time_eq(&presented.hash(), &session.current_hash) {
                return Err(unusable());
            }
            let idle = self.config.refresh_idle_secs;
            if idle > 0 && now_ms.saturating_sub(session.last_used_ms) > idle * 1000 {
                return Err(Error::invalid_grant("the session has been idle too long"));
            }
            let successor =
                RefreshToken::issue(&session.id, session.generation + 1, &session.reuse_key);
            let updated = Session {
                generation: session.generation + 1,
                current_hash: successor.hash(),
                last_used_ms: now_ms,
                device: Device {
                    user_agent: request
                        .device
                        .user_agent
                        .clone()
                        .or_else(|| session.device.user_agent.clone()),
                    source_ip: request
                        .device
                        .source_ip
                        .clone()
                        .or_else(|| session.device.source_ip.clone()),
                },
                last_rotation: Some(Rotation {
                    at_ms: now_ms,
                    sealed_successor: presented.seal_successor(&successor),
                }),
                ..session.clone()
            };
            // Sign before the conditional write; hand out tokens only after it won.
            let access_token = self.issue_access_token(&session, &scope).await?;
            match self
                .deps
                .sessions
                .replace_session(&updated, session.generation)
                .await?
            {
                ReplaceOutcome::Replaced => {
                    *outcome = Count::RefreshRotated;
                    return Ok(self.grant(access_token, &successor, scope));
                }
                ReplaceOutcome::Conflict => continue,
                ReplaceOutcome::Ended => return Err(unusable()),
            }
        }
        Err(Error::unavailable(
            "too many concurrent refreshes; retry",
            "the session kept changing under this refresh",
        ))
    }

    /// RFC 7009 revocation of a refresh or access token by whoever holds it (trusted
    /// callers: tests, the CLI). Unknown tokens are not an error.
    pub async fn revoke(
        &self,
        token: &str,
        _token_type_hint: Option<&str>,
    ) -> Result<Revoked, Error> {
        self.revoke_as(token, audit::REVOKED, Revoker::Holder).await
    }

    /// `/revoke` (RFC 7009 section 2.1): by the authenticated `client`, only a token issued
    /// to it (another client's: `unauthorized_client`); with no client, a token issued to a
    /// public client or to none, but a confidential client's token only with that client's
    /// authentication (`invalid_client`). Refused means nothing revoked.
    pub async fn revoke_for(
        &self,
        token: &str,
        _token_type_hint: Option<&str>,
        client: Option<&Client>,
    ) -> Result<Revoked, Error> {
        let revoker = client.map_or(Revoker::Anonymous, Revoker::Client);
        self.revoke_as(token, audit::REVOKED, revoker).await
    }

    /// Logout with a refresh token — the user ending their own session, which holding the
    /// token proves: [`Self::revoke`], recorded as a logout.
    pub async fn logout_refresh_token(&self, token: &str) -> Result<Revoked, Error> {
        self.revoke_as(token, audit::LOGOUT, Revoker::Holder).await
    }

    /// Whether `revoker` may revoke a token issued to `issued_to` (see [`Self::revoke_for`]).
    async fn may_revoke(&self, revoker: Revoker<'_>, issued_to: Option<&str>) -> Result<(), Error> {
        match (revoker, issued_to) {
            (Revoker::Holder, _) | (Revoker::Anonymous, None) => Ok(()),
            (Revoker::Client(client), issued_to) if issued_to == Some(client.id.as_str()) => Ok(()),
            (Revoker::Client(_), _) => Err(Error::UnauthorizedClient(
                "the token was issued to another client".into(),
            )),
            (Revoker::Anonymous, Some(id)) => match self.deps.clients.find_client(id).await? {
                Some(client) if client.is_confidential() => Err(Error::InvalidClient(
                    "the token's client must authenticate to revoke it".into(),
                )),
                _ => Ok(()),
            },
        }
    }

    /// Revocation; `reason` names why in the audit trail.
    async fn revoke_as(
        &self,
        token: &str,
        reason: &'static str,
        revoker: Revoker<'_>,
    ) -> Result<Revoked, Error> {
        // The hint only saves a lookup; the token's shape tells the type exactly.
        if let Some(refresh) = RefreshToken::parse(token) {
            let Some(session) = self
                .deps
                .sessions
                .find_session(refresh.session_id())
                .await?
            else {
                return Ok(Revoked::Nothing);
            };
            if !refresh.is_genuine(&session.reuse_key) || session.ended {
                return Ok(Revoked::Nothing);
            }
            self.may_revoke(revoker, session.client_id.as_deref())
                .await?;
            self.end_session(&session).await?;
            session_ended(&session, reason);
            return Ok(Revoked::Session);
        }
        let claims = match self
            .with_key_ring(token, |ring| {
                self.verifier.verify_ignoring_time(ring, token)
            })
            .await
        {
            Ok(claims) => claims,
            Err(Error::InvalidToken(_)) => return Ok(Revoked::Nothing),
            Err(other) => return Err(other),
        };
        // Until no verifier could still accept it (any leeway, any skew).
        let until = claims.exp.saturating_add(BLOCKLIST_MARGIN_SECS);
        if until <= self.deps.clock.now_secs() {
            return Ok(Revoked::Nothing); // already useless
        }
        self.may_revoke(revoker, claims.client_id.as_deref())
            .await?;
        self.deps
            .sessions
            .put_revocation(&Revocation {
                key: RevocationKey::Token(claims.jti),
                expires_at: until,
                below_version: 0,
            })
            .await?;
        metrics::count(Count::RevokedAccessToken);
        Record::new(Event::AccessTokenRevoked, "succeeded")
            .reason(reason)
            .subject(&claims.sub)
            .sid(&claims.sid)
            .client_id(claims.client_id.as_deref())
            .emit();
        Ok(Revoked::AccessToken)
    }

    /// Logout with a bearer access token: ends the session it was issued in (its `sid`) and
    /// every access token of that session. The token must verify (signature, issuer,
    /// audience, times) but may already be revoked: logging out twice is still a success.
    pub async fn logout_access_token(&self, bearer: &str) -> Result<(), Error> {
        let now_secs = self.deps.clock.now_secs();
        let claims = self
            .with_key_ring(bearer, |ring| self.verifier.verify(ring, bearer, now_secs))
            .await?;
        let Some(session) = self.deps.sessions.find_session(&claims.sid).await? else {
            return Ok(());
        };
        if session.user_id == claims.sub && !session.ended {
            self.end_session(&session).await?;
            session_ended(&session, audit::LOGOUT);
        }
        Ok(())
    }

    /// Revokes every session and access token of `username` in one write (the user record
    /// and the user-wide entry together). For trusted callers: the admin route checks the
    /// admin scope first. A login after it is not affected.
    pub async fn revoke_user(&self, username: &str) -> Result<(), Error> {
        let end = UserChange {
            end_sessions: true,
            ..UserChange::default()
        };
        self.change_user(username, end).await?;
        Ok(())
    }

    /// Verifies a bearer access token: signature with the key its `kid` names (algorithm
    /// pinned by the key), `typ`, `iss`, `aud`, times, then revocation of its `jti`, `sid`
    /// or `sub` in one lookup (none when this process already knows the token is revoked).
    pub async fn authorize(&self, bearer: &str) -> Result<AccessClaims, Error> {
        let result = self.verify_access_token(bearer).await;
        metrics::count(match &result {
            Ok(_) => Count::VerificationAllowed,
            Err(Error::InvalidToken(reason)) => match reason {
                TokenError::Expired => Count::VerificationExpired,
                TokenError::Revoked => Count::VerificationRevoked,
                TokenError::BadSignature => Count::VerificationBadSignature,
                TokenError::UnknownKey => Count::VerificationUnknownKid,
                _ => Count::VerificationInvalid,
            },
            Err(_) => Count::VerificationUnavailable,
        });
        result
    }

    async fn verify_access_token(&self, bearer: &str) -> Result<AccessClaims, Error> {
        let now_secs = self.deps.clock.now_secs();
        if bearer.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge.into());
        }
        let key = self.verified.key_of(bearer);
        let ring = self.deps.keys.ring().await?;
        let claims = match self.verified.get(key, bearer, ring.id()) {
            Some(claims) => claims,
            None => match self.verifier.verify_ignoring_time(&ring, bearer) {
                Ok(claims) => {
                    self.verified
                        .insert(key, bearer, ring.id(), &claims, now_secs);
                    claims
                }
                // A key this ring does not know: the reload path (never cached).
                Err(TokenError::UnknownKey) => {
                    self.with_key_ring(bearer, |ring| {
                        self.verifier.verify_ignoring_time(ring, bearer)
                    })
                    .await?
                }
                Err(refused) => return Err(refused.into()),
            },
        };
        self.verifier.check_times(&claims, now_secs)?;
        if self.revoked.contains(&claims.jti, now_secs) {
            return Err(TokenError::Revoked.into());
        }
        let keys = [
            RevocationKey::Token(claims.jti.clone()),
            RevocationKey::Session(claims.sid.clone()),
            RevocationKey::User(claims.sub.clone()),
        ];
        let entries = match &self.mirror {
            Some(mirror) => mirror.find(&keys).await?,
            None => self.deps.sessions.find_revocations(&keys).await?,
        };
        let revoked = entries.iter().any(|entry| {
            entry.expires_at > now_secs
                && match entry.key {
                    RevocationKey::User(_) => claims.uv < entry.below_version,
                    _ => true,
                }
        });
        if revoked {
            let until = claims.exp.saturating_add(self.config.leeway_secs);
            self.revoked.insert(&claims.jti, until, now_secs);
            return Err(TokenError::Revoked.into());
        }
        Ok(claims)
    }

    pub async fn jwks(&self) -> Result<JwkSet, Error> {
        Ok(self.deps.keys.ring().await?.jwks())
    }

    /// Every signing key in the registry, with its state. For trusted callers (the CLI;
    /// the admin routes check the admin scope first).
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, Error> {
        self.deps.rotation.list().await
    }

    /// One key-rotation step (see [`crate::keys::rotation`]). For trusted callers: the
    /// rotate-keys schedule, the CLI, and the admin route after its scope check.
    pub async fn rotate_keys(&self) -> Result<RotationReport, Error> {
        self.deps.rotation.step().await
    }

    /// Emergency retirement of a signing key: out of the JWKS, its tokens rejected — by
    /// this process at once, by the others within the key cache TTL. For trusted callers.
    pub async fn retire_key(&self, kid: &str) -> Result<RotationReport, Error> {
        let result = self.deps.rotation.retire(kid).await;
        // Recorded whether or not it worked: a failed attempt may have destroyed the key
        // before the registry write failed.
        let outcome = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        Record::new(Event::SigningKeyEmergencyRetirement, outcome)
            .reason(kid)
            .emit();
        result
    }

    /// Records the active signing key's age now ([`metrics::signing_key_age`]); nothing
    /// when the key ring cannot be read or has no active key.
    pub async fn record_signing_key_age(&self) {
        if let Ok(ring) = self.deps.keys.ring().await
            && let Some(since) = ring.active_since()
        {
            metrics::signing_key_age(self.deps.clock.now_secs().saturating_sub(since));
        }
    }

    /// Creates an active key if the registry has none (setup, and `serve` at start).
    pub async fn ensure_active_key(&self) -> Result<RotationReport, Error> {
        self.deps.rotation.ensure_active().await
    }

    async fn issue_access_token(&self, session: &Session, scope: &str) -> Result<String, Error> {
        self.sign_token(
            session.user_id.clone(),
            session.client_id.clone(),
            session.id.clone(),
            session.user_version,
            scope,
        )
        .await
    }

    /// A client-credentials token: `sub` and `client_id` the client, a `sid` of its own
    /// that names no session (so no session operation ever matches it), `uv` the client's
    /// registration time (see [`Client::created_ms`]: removing the client revokes it).
    async fn issue_client_token(
        &self,
        client_id: &str,
        registered_ms: u64,
        scope: &str,
    ) -> Result<String, Error> {
        self.sign_token(
            client_id.to_owned(),
            Some(client_id.to_owned()),
            format!("cc.{}", b64url(&random_bytes::<16>())),
            registered_ms,
            scope,
        )
        .await
    }

    async fn sign_token(
        &self,
        sub: String,
        client_id: Option<String>,
        sid: String,
        uv: u64,
        scope: &str,
    ) -> Result<String, Error> {
        let now = self.deps.clock.now_secs();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub,
            aud: self.config.audience.clone(),
            exp: now + self.config.access_ttl_secs,
            iat: now,
            nbf: now,
            jti: b64url(&random_bytes::<16>()),
            client_id,
            scope: scope.to_owned(),
            sid,
            uv,
        };
        let ring = self.deps.keys.ring().await?;
        if let Some(since) = ring.active_since() {
            metrics::signing_key_age(now.saturating_sub(since));
        }
        match sign_access_token(&ring, &claims).await {
            // The key may have been retired since this process cached it (an emergency
            // retirement elsewhere: KMS refuses a key pending deletion). Re-read the
            // registry once and sign with the key that is active now.
            Err(KeyError::Invalid(reason)) => {
                self.deps.keys.invalidate();
                let fresh = self.deps.keys.ring().await?;
                if fresh.signer()?.1 == ring.signer()?.1 {
                    return Err(KeyError::Invalid(reason).into());
                }
                Ok(sign_access_token(&fresh, &claims).await?)
            }
            result => Ok(result?),
        }
    }

    /// Runs `check` with the key ring; when the token names a key the ring does not know,
    /// once more with a reloaded ring (rate-limited, see [`KeyCache::ring_for_unknown_kid`]).
    async fn with_key_ring<T>(
        &self,
        token: &str,
        check: impl Fn(&KeyRing) -> Result<T, TokenError>,
    ) -> Result<T, Error> {
        let ring = self.deps.keys.ring().await?;
        match check(&ring) {
            Err(TokenError::UnknownKey) => {
                let Some(kid) = header_kid(token) else {
                    return Err(TokenError::UnknownKey.into());
                };
                match self.deps.keys.ring_for_unknown_kid(&ring, &kid).await? {
                    Some(reloaded) => Ok(check(&reloaded)?),
                    None => Err(TokenError::UnknownKey.into()),
                }
            }
            result => Ok(result?),
        }
    }

    fn grant(&self, access_token: String, refresh: &RefreshToken, scope: String) -> TokenGrant {
        TokenGrant {
            access_token,
            token_type: "Bearer",
            expires_in: self.config.access_ttl_secs,
            refresh_token: refresh.expose(),
            scope,
        }
    }

    /// Ends a session and revokes its access tokens. The `sid` entry outlives any of them:
    /// a token issued now (even by a grace-window retry racing this) expires within the
    /// longest access lifetime the settings allow — a deploy may have shortened the current
    /// one — and the margin covers any verifier's leeway and clock skew.
    async fn end_session(&self, session: &Session) -> Result<(), Error> {
        self.end_session_id(&session.id).await
    }

    /// [`Self::end_session`] by the session's id alone (it need not be read first).
    pub(crate) async fn end_session_id(&self, id: &str) -> Result<(), Error> {
        let revocation = Revocation {
            key: RevocationKey::Session(id.to_owned()),
            expires_at: self.deps.clock.now_secs() + ACCESS_TTL_MAX_SECS + BLOCKLIST_MARGIN_SECS,
            below_version: 0,
        };
        Ok(self.deps.sessions.end_session(id, &revocation).await?)
    }

    async fn user_revocation_covers(&self, session: &Session) -> Result<bool, Error> {
        Ok(session.user_version < self.user_revoked_below(&session.user_id).await?)
    }
}

/// The audit record of a session that ended (`reason`: see [`audit::Event::SessionEnded`]).
fn session_ended(session: &Session, reason: &'static str) {
    metrics::count(Count::RevokedSession);
    Record::new(Event::SessionEnded, "succeeded")
        .reason(reason)
        .subject(&session.user_id)
        .sid(&session.id)
        .client_id(session.client_id.as_deref())
        .emit();
}

fn check_username(username: &str) -> Result<(), Error> {
    if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS {
        return Err(Error::invalid_request(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters"
        )));
    }
    if username.chars().any(char::is_control) {
        return Err(Error::invalid_request(
            "username must not contain control characters",
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), Error> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid_request(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The requested scopes if they are all within `granted`; all of `granted` if none asked.
fn narrow_scope(granted: &str, requested: Option<&str>) -> Result<String, Error> {
    let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(granted.to_owned());
    };
    let granted: Vec<&str> = granted.split(' ').filter(|s| !s.is_empty()).collect();
    let mut wanted: Vec<&str> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !granted.contains(&scope) {
            return Err(Error::InvalidScope(format!(
                "scope {scope:?} is not granted to this user"
            )));
        }
        if !wanted.contains(&scope) {
            wanted.push(scope);
        }
    }
    Ok(wanted.join(" "))
}

pub mod clients;
pub mod introspect;
pub mod login_limits;
pub mod mirror;
mod sessions;
#[cfg(test)]
mod tests;
mod users;

pub use sessions::{
    DEFAULT_SESSION_PAGE, MAX_ENDED_AT_ONCE, MAX_SESSION_PAGE, SessionList, SessionView,
};

pub use users::{
    Changed, DEFAULT_PAGE, MAX_PAGE, MIN_PASSWORD_CHARS, UserChange, UserList, UserView,
    check_new_password, check_scopes,
};
