//! The key registry: every signing key tokenlife knows, with its lifecycle state, stored
//! as ONE versioned document (a single DynamoDB item, or a map entry in memory).
//!
//! One document rather than an item per key, because the rules that matter span keys —
//! "exactly one active", "at most one pending" — and a single conditional write on the
//! document's version enforces them for any change, however many rotation steps race. The
//! document stays small: retired keys are forgotten once their KMS deletion window is over.
//!
//! Each record carries the key's public half (DER SubjectPublicKeyInfo), so building the
//! JWKS and the verification keys needs one registry read and no KMS call.

use async_trait::async_trait;

use super::SigningAlgorithm;
use super::data_key::WrappedKey;
use crate::store::StoreError;

/// Where a key is in its life. Only `Active` signs; every state but `Retired` is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyState {
    /// Published in the JWKS, not signing yet, so every verifier knows it before it signs.
    Pending,
    /// The one key that signs.
    Active,
    /// Published, no longer signing, until every token it signed has expired.
    Retiring,
    /// Gone from the JWKS; tokens it signed are rejected; its private half is being deleted.
    Retired,
}

impl KeyState {
    pub const ALL: [KeyState; 4] = [
        KeyState::Pending,
        KeyState::Active,
        KeyState::Retiring,
        KeyState::Retired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring => "retiring",
            KeyState::Retired => "retired",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.name() == name)
    }

    /// Whether keys in this state are in the JWKS and verify tokens.
    pub fn is_published(self) -> bool {
        self != KeyState::Retired
    }
}

/// One signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of the public key: the `kid` of its JWK and of its tokens.
    pub kid: String,
    /// Where the private half lives: a KMS key ARN (`aws`), `data-key/<id>` for a data key
    /// (wrapped in [`KeyRecord::wrapped`]), or a key id inside this process (`memory`).
    pub key_ref: String,
    pub algorithm: SigningAlgorithm,
    /// DER SubjectPublicKeyInfo of the public half.
    pub public_key_der: Vec<u8>,
    pub state: KeyState,
    /// When the key was created and published (epoch seconds).
    pub published_at: u64,
    /// When it entered its current state (epoch seconds). For a retiring key: when its
    /// successor was promoted, i.e. when it stopped signing.
    pub state_since: u64,
    /// A data key's private half, wrapped by KMS (`TOKENLIFE_SIGNING=data-key`); `None` for
    /// KMS and in-process keys, and for a data key that no longer signs (dropped when it
    /// leaves `Active`).
    pub wrapped: Option<WrappedKey>,
}

/// The registry document as read: its records and the version a write must expect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRegistryDocument {
    /// 0 when nothing was ever saved.
    pub version: u64,
    pub keys: Vec<KeyRecord>,
}

impl KeyRegistryDocument {
    pub fn in_state(&self, state: KeyState) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(move |key| key.state == state)
    }

    pub fn find(&self, kid: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|key| key.kid == kid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Someone saved another version first: read again and decide again.
    Conflict,
}

/// Where the registry document lives. Implemented by both stores.
#[async_trait]
pub trait KeyRegistry: Send + Sync {
    /// The current document (strongly consistent); version 0 and no keys if none exists.
    async fn load_keys(&self) -> Result<KeyRegistryDocument, StoreError>;
    /// Stores `keys` as version `expected_version + 1`, only if the stored version is still
    /// `expected_version` (0: only if no document exists yet).
    async fn save_keys(
        &self,
        keys: &[KeyRecord],
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError>;
}
