//! Signing keys: the [`Signer`] trait (local keys, KMS, KMS-wrapped [`data_key`]s), public keys as RFC 7517 JWKs with RFC 7638 thumbprint `kid`s, the
//! [`registry`] of every key's lifecycle state, its [`rotation`], the [`vault`]s that hold
//! private keys, and [`KeyCache`]: the cached [`KeyRing`] that pairs the active signer with
//! every published verification key.
//!
//! Verification pins the algorithm per key: a token is checked only with the algorithm the
//! key's JWK declares, never the one its header asks for.

pub mod data_key;
pub mod der;
pub mod kms;
mod local;
pub mod registry;
pub mod rotation;
pub mod vault;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::secrets::{b64url, sha256};
use crate::store::StoreError;
pub use kms::{KmsSigner, KmsVault};
pub use local::LocalSigner;
pub use registry::{KeyRecord, KeyRegistry, KeyRegistryDocument, KeyState, SaveOutcome};
pub use rotation::{KeyRotation, RotationPolicy, RotationReport};
pub use vault::{KeyVault, LocalVault, NewKey};

/// The JWS algorithms tokenlife signs with. `none` and HMAC are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256 (KMS ECC_NIST_P256).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (KMS RSA_2048).
    Rs256,
}

impl SigningAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key service could not be reached or refused for now (retry later).
    #[error("signing key service unavailable: {0}")]
    Unavailable(String),
    #[error("invalid key: {0}")]
    Invalid(String),
}

/// Something that signs JWS signing input with one key.
#[async_trait]
pub trait Signer: Send + Sync {
    fn algorithm(&self) -> SigningAlgorithm;
    /// DER SubjectPublicKeyInfo of the public half.
    fn public_key_der(&self) -> &[u8];
    /// The JWS signature of `message` (for ES256: fixed-width R||S, 64 bytes).
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// One member of a JWK Set (RFC 7517), public members only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// A published verification key, ready to verify with: parsed once by aws-lc (an RSA key's
/// Montgomery form, an EC point's validation) rather than at every verification.
#[derive(Clone)]
pub struct PublicKey {
    pub jwk: Jwk,
    pub algorithm: SigningAlgorithm,
    verifier: ParsedPublicKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.jwk.kid)
            .field("alg", &self.algorithm)
            .finish()
    }
}

impl PublicKey {
    /// Builds the JWK and the verification key from a DER SubjectPublicKeyInfo; the `kid` is
    /// the key's RFC 7638 thumbprint, so it is stable and unique per key.
    pub fn from_spki_der(der: &[u8], algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let parsed = der::parse_spki(der)
            .ok_or_else(|| KeyError::Invalid("not a P-256 or RSA SubjectPublicKeyInfo".into()))?;
        let (jwk, verification) = match (algorithm, parsed) {
            (SigningAlgorithm::Es256, der::SpkiKey::P256 { x, y }) => {
                let (x, y) = (b64url(&x), b64url(&y));
                // RFC 7638: required members only, lexicographic order, no whitespace.
                let thumbprint_input =
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let jwk = Jwk {
                    kty: "EC".into(),
                    kid: b64url(&sha256(thumbprint_input.as_bytes())),
                    use_: "sig".into(),
                    alg: algorithm.name().into(),
                    crv: Some("P-256".into()),
                    x: Some(x),
                    y: Some(y),
                    n: None,
                    e: None,
                };
                (
                    jwk,
                    &signature::ECDSA_P256_SHA256_FIXED as &'static dyn VerificationAlgorithm,
                )
            }
            (SigningAlgorithm::Rs256, der::SpkiKey::Rsa { n, e }) => {
                // 2048 to 4096 bits, exactly (the verifier's signature buffer holds 4096).
                let significant = n.iter().position(|&b| b != 0).map_or(&n[..0], |i| &n[i..]);
                let bits = (significant.len() * 8).saturating_sub(
                    significant
                        .first()
                        .map_or(8, |b| b.leading_zeros() as usize),
                );
                if !(2048..=4096).contains(&bits) {
                    return Err(KeyError::Invalid(format!(
                        "RSA keys must have 2048 to 4096 bits, not {bits}"
                    )));
                }
                let (n, e) = (b64url(&n), b64url(&e));
                let thumbprint_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                let jwk = Jwk {
                    kty: "RSA".into(),
                    kid: b64url(&sha256(thumbprint_input.as_bytes())),
                    use_: "sig".into(),
                    alg: algorithm.name().into(),
                    crv: None,
                    x: None,
                    y: None,
                    n: Some(n),
                    e: Some(e),
                };
                (
                    jwk,
                    &signature::RSA_PKCS1_2048_8192_SHA256 as &'static dyn VerificationAlgorithm,
                )
            }
            (algorithm, _) => {
                return Err(KeyError::Invalid(format!(
                    "the key type does not match {}",
                    algorithm.name()
                )));
            }
        };
        let verifier = ParsedPublicKey::new(verification, der)
            .map_err(|e| KeyError::Invalid(format!("aws-lc refused the public key: {e}")))?;
        Ok(Self {
            jwk,
            algorithm,
            verifier,
        })
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// Whether `signature` is this key's signature of `message`, by the key's own algorithm
    /// (ES256: fixed-width R||S; RS256: PKCS#1 v1.5 with SHA-256; keys of 2048 to 4096 bits).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }
}

/// The key ring every operation uses, rebuilt from the registry at most every
/// `cache_ttl`: signers pick up a promotion, verifiers a new or retired key, within that
/// time (a process that changed the registry itself [`KeyCache::invalidate`]; rotation does it itselfs at once). Loaded
/// on first use, so a Lambda's init makes no network call; a failed load is retried by the
/// next caller. A token whose `kid` is unknown may force one early reload, at most once per
/// [`UNKNOWN_KID_RELOAD_INTERVAL_MS`].
pub struct KeyCache {
    registry: Arc<dyn KeyRegistry>,
    vault: Arc<dyn KeyVault>,
    clock: Arc<dyn Clock>,
    cache_ttl_ms: u64,
    cached: RwLock<Option<CachedRing>>,
    /// Bumped by every [`KeyCache::invalidate`]: a reload stores its ring only if no
    /// invalidation happened since it began reading.
    generation: AtomicU64,
    /// One reload at a time; the others wait for its result.
    reloading: tokio::sync::Mutex<()>,
    last_unknown_kid_reload_ms: AtomicU64,
}

/// The fewest milliseconds between two reloads forced by unknown `kid`s: garbage `kid`s
/// cannot make a process hammer the registry.
pub const UNKNOWN_KID_RELOAD_INTERVAL_MS: u64 = 5_000;

/// How many times a reload reads again when this process changed the registry meanwhile.
const MAX_RELOAD_ATTEMPTS: usize = 4;

struct CachedRing {
    ring: Arc<KeyRing>,
    loaded_ms: u64,
}

impl KeyCache {
    pub fn new(
        registry: Arc<dyn KeyRegistry>,
        vault: Arc<dyn KeyVault>,
        clock: Arc<dyn Clock>,
        cache_ttl_secs: u64,
    ) -> Self {
        Self {
            registry,
            vault,
            clock,
            cache_ttl_ms: cache_ttl_secs.saturating_mul(1000),
            cached: RwLock::new(None),
            generation: AtomicU64::new(0),
            reloading: tokio::sync::Mutex::new(()),
            last_unknown_kid_reload_ms: AtomicU64::new(0),
        }
    }

    /// The current ring: cached if younger than the cache TTL, else reloaded.
    pub async fn ring(&self) -> Result<Arc<KeyRing>, KeyError> {
        if let Some(ring) = self.fresh(self.clock.now_ms()) {
            return Ok(ring);
        }
        let _reloading = self.reloading.lock().await;
        // Someone else may have reloaded while we waited.
        if let Some(ring) = self.fresh(self.clock.now_ms()) {
            return Ok(ring);
        }
        self.reload().await
    }

    /// A ring reloaded because a token named `kid`, which `stale` does not know — or
    /// `None` when a reload happened too recently (the token is then rejected).
    pub async fn ring_for_unknown_kid(
        &self,
        stale: &KeyRing,
        kid: &str,
    ) -> Result<Option<Arc<KeyRing>>, KeyError> {
        let rate_limited = |now: u64| {
            let last = self.last_unknown_kid_reload_ms.load(Ordering::Relaxed);
            last != 0 && now.saturating_sub(last) < UNKNOWN_KID_RELOAD_INTERVAL_MS
        };
        let knowing = |ring: Arc<KeyRing>| ring.verification_key(kid).is_some().then_some(ring);
        let now = self.clock.now_ms();
        if rate_limited(now) {
            // Rate-limited, but a reload by someone else since may know it.
            return Ok(self.fresh(now).and_then(knowing));
        }
        let _reloading = self.reloading.lock().await;
        // Single flight: whoever waited here re-checks, so that N concurrent unknown kids
        // cost one reload, not N in a row.
        let now = self.clock.now_ms();
        if let Some(ring) = self
            .fresh(now)
            .filter(|ring| !std::ptr::eq(ring.as_ref(), stale))
            .and_then(knowing)
        {
            return Ok(Some(ring));
        }
        if rate_limited(now) {
            return Ok(self.fresh(now).and_then(knowing));
        }
        self.last_unknown_kid_reload_ms
            .store(now, Ordering::Relaxed);
        self.reload().await.map(Some)
    }

    /// Forgets the cached ring: the next use reloads (after this process changed the
    /// registry).
    pub fn invalidate(&self) {
        let mut cached = self.write_cache();
        self.generation.fetch_add(1, Ordering::SeqCst);
        *cached = None;
    }

    fn fresh(&self, now_ms: u64) -> Option<Arc<KeyRing>> {
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|c| now_ms.saturating_sub(c.loaded_ms) < self.cache_ttl_ms)
            .map(|c| c.ring.clone())
    }

    /// Reads the registry and caches its ring — unless this process changed the registry
    /// (an invalidation) while it read: that read may predate the change (a retirement),
    /// so it reads again rather than store, or hand out, a ring that change ended.
    async fn reload(&self) -> Result<Arc<KeyRing>, KeyError> {
        for _ in 0..MAX_RELOAD_ATTEMPTS {
            let generation = self.generation.load(Ordering::SeqCst);
            let registry = self.registry.load_keys().await.map_err(KeyError::from)?;
            let ring = KeyRing::from_registry(&registry.keys, self.vault.as_ref());
            let mut cached = self.write_cache();
            if self.generation.load(Ordering::SeqCst) != generation {
                continue;
            }
            let ring = Arc::new(ring?);
            *cached = Some(CachedRing {
                ring: ring.clone(),
                loaded_ms: self.clock.now_ms(),
            });
            return Ok(ring);
        }
        Err(KeyError::Unavailable(
            "the key registry kept changing during a reload; retry".into(),
        ))
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, Option<CachedRing>> {
        self.cached.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl From<StoreError> for KeyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(what) => KeyError::Unavailable(format!("key registry: {what}")),
            StoreError::Broken(what) => KeyError::Invalid(format!("key registry: {what}")),
        }
    }
}

/// The active signer (if any) and every published verification key, looked up by `kid`.
pub struct KeyRing {
    /// Unique in this process: a new ring (a rotation, a retirement, a reload) is a new id.
    id: u64,
    signer: Option<(Arc<dyn Signer>, String)>,
    /// When the active key became active (Unix seconds).
    active_since: Option<u64>,
    published: Vec<PublicKey>,
    by_kid: HashMap<String, usize>,
}

impl KeyRing {
    /// A ring whose only key is `signer`'s (token tests).
    #[cfg(test)]
    pub(crate) fn single(signer: Arc<dyn Signer>) -> Result<Self, KeyError> {
        let own = PublicKey::from_spki_der(signer.public_key_der(), signer.algorithm())?;
        let kid = own.kid().to_owned();
        Ok(Self::assemble(Some((signer, kid)), None, vec![own]))
    }

    /// The ring the registry describes: every published key verifies; the active one
    /// signs (through `vault`). A record whose public key does not parse, or whose `kid`
    /// does not match it, is refused rather than published.
    pub fn from_registry(keys: &[KeyRecord], vault: &dyn KeyVault) -> Result<Self, KeyError> {
        let mut published = Vec::new();
        let mut signer = None;
        let mut active_since = None;
        for record in keys.iter().filter(|k| k.state.is_published()) {
            let key = PublicKey::from_spki_der(&record.public_key_der, record.algorithm)?;
            if key.kid() != record.kid {
                return Err(KeyError::Invalid(format!(
                    "registry key {} does not match its public key",
                    record.kid
                )));
            }
            if record.state == KeyState::Active {
                signer = Some((vault.signer(record)?, record.kid.clone()));
                active_since = Some(record.state_since);
            }
            published.push(key);
        }
        Ok(Self::assemble(signer, active_since, published))
    }

    fn assemble(
        signer: Option<(Arc<dyn Signer>, String)>,
        active_since: Option<u64>,
        published: Vec<PublicKey>,
    ) -> Self {
        let by_kid = published
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid().to_owned(), i))
            .collect();
        static NEXT_RING_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT_RING_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            signer,
            active_since,
            published,
            by_kid,
        }
    }

    /// The active key's signer and `kid`; an error (503) while the registry has no active
    /// key yet — before `tokenlife setup` or the first rotate-keys run.
    pub fn signer(&self) -> Result<(&dyn Signer, &str), KeyError> {
        self.signer
            .as_ref()
            .map(|(signer, kid)| (signer.as_ref(), kid.as_str()))
            .ok_or_else(|| {
                KeyError::Unavailable(
                    "there is no active signing key (run `tokenlife setup` or the rotate-keys function)"
                        .into(),
                )
            })
    }

    /// This ring's id, unique in the process: what a verification made with it stays valid
    /// for (see `TokenService`'s cache of verified tokens).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// When the active key became active (Unix seconds), if there is one.
    pub fn active_since(&self) -> Option<u64> {
        self.active_since
    }

    pub fn verification_key(&self, kid: &str) -> Option<&PublicKey> {
        self.by_kid.get(kid).map(|&i| &self.published[i])
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.published.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_jwk_has_thumbprint_kid_and_pinned_alg() {
        let signer = LocalSigner::generate(SigningAlgorithm::Es256).unwrap();
        let key =
            PublicKey::from_spki_der(signer.public_key_der(), SigningAlgorithm::Es256).unwrap();
        assert_eq!(key.jwk.kty, "EC");
        assert_eq!(key.jwk.alg, "ES256");
        assert_eq!(key.jwk.use_, "sig");
        assert_eq!(key.jwk.kid.len(), 43);
        assert_eq!(key.jwk.x.as_ref().unwrap().len(), 43);
        // The same key always has the same kid; another key another.
        let again =
            PublicKey::from_spki_der(signer.public_key_der(), SigningAlgorithm::Es256).unwrap();
        assert_eq!(again.kid(), key.kid());
        let other = LocalSigner::generate(SigningAlgorithm::Es256).unwrap();
        let other =
            PublicKey::from_spki_der(other.public_key_der(), SigningAlgorithm::Es256).unwrap();
        assert_ne!(other.kid(), key.kid());
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 section 3.1: the example RSA key's thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let e = "AQAB";
        let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        assert_eq!(
            b64url(&sha256(input.as_bytes())),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rsa_jwk_round_trips() {
        let signer = LocalSigner::generate(SigningAlgorithm::Rs256).unwrap();
        let key =
            PublicKey::from_spki_der(signer.public_key_der(), SigningAlgorithm::Rs256).unwrap();
        assert_eq!(key.jwk.kty, "RSA");
        assert_eq!(key.jwk.e.as_deref(), Some("AQAB"));
        assert_eq!(key.jwk.n.as_ref().unwrap().len(), 342);
    }

    /// ES256 keys published without delay, retired after 100 s, forgotten after 1000 s.
    fn test_policy() -> RotationPolicy {
        RotationPolicy {
            algorithm: SigningAlgorithm::Es256,
            publish_delay_secs: 0,
            retire_after_secs: 100,
            forget_after_secs: 1000,
        }
    }

    /// An in-memory registry and local vault on a manual clock, and a rotation over them
    /// that publishes without delay.
    fn local_rotation() -> (
        Arc<crate::clock::ManualClock>,
        Arc<crate::store::MemoryStore>,
        Arc<LocalVault>,
        KeyRotation,
    ) {
        let clock = Arc::new(crate::clock::ManualClock::new(1_800_000_000_000));
        let store = Arc::new(crate::store::MemoryStore::new(clock.clone()));
        let vault = Arc::new(LocalVault::default());
        let rotation = KeyRotation::new(store.clone(), vault.clone(), clock.clone(), test_policy());
        (clock, store, vault, rotation)
    }

    /// Two processes' key caches over one registry: the one that did not rotate learns of
    /// the new key when its cache expires, or earlier through one rate-limited reload when a
    /// token names a kid it does not know.
    #[tokio::test]
    async fn a_stale_cache_reloads_once_for_an_unknown_kid() {
        let (clock, store, vault, rotation) = local_rotation();
        let here = KeyCache::new(store.clone(), vault.clone(), clock.clone(), 60);
        rotation.ensure_active().await.unwrap();
        let first = here.ring().await.unwrap();
        assert_eq!(first.jwks().keys.len(), 1);

        // Elsewhere: a key is pre-published and promoted (no publish delay here).
        rotation.step().await.unwrap();
        clock.advance_secs(1);
        rotation.step().await.unwrap();
        let registry = store.load_keys().await.unwrap();
        let new_kid = registry
            .in_state(KeyState::Active)
            .next()
            .unwrap()
            .kid
            .clone();

        // Our cache is still fresh and does not know it...
        let cached = here.ring().await.unwrap();
        assert!(Arc::ptr_eq(&cached, &first));
        assert!(cached.verification_key(&new_kid).is_none());
        // ...a token naming it forces one reload...
        let reloaded = here
            .ring_for_unknown_kid(&cached, &new_kid)
            .await
            .unwrap()
            .expect("reloaded");
        assert!(reloaded.verification_key(&new_kid).is_some());
        assert_eq!(reloaded.signer().unwrap().1, new_kid);
        // ...and garbage kids right after cause no further reload.
        assert!(
            here.ring_for_unknown_kid(&reloaded, "made-up")
                .await
                .unwrap()
                .is_none()
        );
        clock.advance_ms(UNKNOWN_KID_RELOAD_INTERVAL_MS);
        let again = here
            .ring_for_unknown_kid(&reloaded, "made-up")
            .await
            .unwrap()
            .expect("allowed again after the interval");
        assert!(!Arc::ptr_eq(&again, &reloaded));
        // The cache TTL alone also brings changes in.
        let published = again.jwks().keys.len();
        rotation.step().await.unwrap(); // promotes the pending key, pre-publishes another
        clock.advance_secs(59);
        assert_eq!(here.ring().await.unwrap().jwks().keys.len(), published);
        clock.advance_secs(1);
        assert_eq!(here.ring().await.unwrap().jwks().keys.len(), published + 1);
    }

    /// A registry whose loads, while `held`, read the document and then wait for `release`
    /// before answering: a reload in flight.
    struct HeldRegistry {
        inner: Arc<crate::store::MemoryStore>,
        held: std::sync::atomic::AtomicBool,
        entered: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait]
    impl KeyRegistry for HeldRegistry {
        async fn load_keys(&self) -> Result<KeyRegistryDocument, StoreError> {
            let document = self.inner.load_keys().await;
            if self.held.swap(false, Ordering::SeqCst) {
                self.entered.notify_one();
                self.release.notified().await;
            }
            document
        }

        async fn save_keys(
            &self,
            keys: &[KeyRecord],
            expected_version: u64,
        ) -> Result<SaveOutcome, StoreError> {
            self.inner.save_keys(keys, expected_version).await
        }
    }

    /// A reload that read the registry before this process retired a key must not store
    /// that ring after the retirement: "refused by this process at once" holds even with a
    /// reload in flight (found in review: it stored the stale ring for a whole TTL).
    #[tokio::test]
    async fn a_reload_in_flight_does_not_bring_back_a_retired_key() {
        let (clock, store, vault, rotation) = local_rotation();
        rotation.ensure_active().await.unwrap();
        // A pre-published key, which leaks (its stale ring still builds: the active key's
        // private key is untouched).
        rotation.step().await.unwrap();
        let registry = Arc::new(HeldRegistry {
            inner: store.clone(),
            held: std::sync::atomic::AtomicBool::new(false),
            entered: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        });
        let cache = Arc::new(KeyCache::new(
            registry.clone(),
            vault.clone(),
            clock.clone(),
            60,
        ));
        let leaked = store
            .load_keys()
            .await
            .unwrap()
            .in_state(KeyState::Pending)
            .next()
            .unwrap()
            .kid
            .clone();
        assert!(
            cache
                .ring()
                .await
                .unwrap()
                .verification_key(&leaked)
                .is_some()
        );
        // A reload starts (the cache was forgotten) and has read the registry...
        cache.invalidate();
        registry.held.store(true, Ordering::SeqCst);
        let reloading = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.ring().await.map(|_| ()) })
        };
        registry.entered.notified().await;
        // ...when this process retires the key and forgets its ring, as KeyRotation does.
        let retiring = KeyRotation::new(store.clone(), vault.clone(), clock.clone(), test_policy())
            .invalidating(cache.clone());
        retiring.retire(&leaked).await.unwrap();
        registry.release.notify_one();
        reloading.await.unwrap().unwrap();
        let ring = cache.ring().await.unwrap();
        assert!(ring.signer().is_ok());
        assert!(
            ring.verification_key(&leaked).is_none(),
            "the retired key came back with a reload that read the registry before"
        );
    }

    /// A registry that counts its loads.
    struct CountingRegistry {
        inner: Arc<crate::store::MemoryStore>,
        loads: AtomicU64,
    }

    #[async_trait]
    impl KeyRegistry for CountingRegistry {
        async fn load_keys(&self) -> Result<KeyRegistryDocument, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent callers pile up behind the reload.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            self.inner.load_keys().await
        }

        async fn save_keys(
            &self,
            keys: &[KeyRecord],
            expected_version: u64,
        ) -> Result<SaveOutcome, StoreError> {
            self.inner.save_keys(keys, expected_version).await
        }
    }

    /// Many concurrent tokens with made-up kids cost one registry reload, not one each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_unknown_kids_cost_one_reload() {
        let (clock, store, vault, rotation) = local_rotation();
        rotation.ensure_active().await.unwrap();
        let registry = Arc::new(CountingRegistry {
            inner: store,
            loads: AtomicU64::new(0),
        });
        let cache = Arc::new(KeyCache::new(registry.clone(), vault, clock, 60));
        let stale = cache.ring().await.unwrap();
        assert_eq!(registry.loads.load(Ordering::SeqCst), 1);
        // A reload in progress (held here) while 20 requests with made-up kids arrive: they
        // all pass the rate limit before any of them can record a reload.
        let in_progress = cache.reloading.lock().await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (cache, stale) = (cache.clone(), stale.clone());
                tokio::spawn(async move {
                    cache
                        .ring_for_unknown_kid(&stale, &format!("made-up-{i}"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(in_progress);
        for task in tasks {
            let _ = task.await.unwrap();
        }
        assert_eq!(
            registry.loads.load(Ordering::SeqCst),
            2,
            "one reload for 20 concurrent unknown kids"
        );
    }

    #[test]
    fn key_type_must_match_algorithm() {
        let signer = LocalSigner::generate(SigningAlgorithm::Es256).unwrap();
        assert!(
            PublicKey::from_spki_der(signer.public_key_der(), SigningAlgorithm::Rs256).is_err()
        );
    }
}
