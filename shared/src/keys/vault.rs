//! Where private keys are made, used and destroyed: the [`KeyVault`] trait, with KMS
//! behind it in `aws` mode ([`super::kms::KmsVault`]) and this process's memory in `memory`
//! mode ([`LocalVault`]). The registry records which vault key (`key_ref`) each `kid` is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::data_key::WrappedKey;
use super::registry::KeyRecord;
use super::{KeyError, LocalSigner, Signer, SigningAlgorithm};
use crate::secrets::{b64url, random_bytes};

/// A key the vault just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub key_ref: String,
    pub algorithm: SigningAlgorithm,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// A data key's wrapped private half (see [`super::data_key`]).
    pub wrapped: Option<WrappedKey>,
}

#[async_trait]
pub trait KeyVault: Send + Sync {
    /// Makes a new signing key for `algorithm`.
    async fn create_key(&self, algorithm: SigningAlgorithm) -> Result<NewKey, KeyError>;
    /// A signer for the key a record names. Makes no network call.
    fn signer(&self, key: &KeyRecord) -> Result<Arc<dyn Signer>, KeyError>;
    /// Destroys the private half (KMS: schedules its deletion). Destroying a key that is
    /// already gone or scheduled is not an error.
    async fn destroy_key(&self, key_ref: &str) -> Result<(), KeyError>;
}

/// Private keys held in this process only (the embedded default). They die with it.
#[derive(Default)]
pub struct LocalVault {
    keys: Mutex<HashMap<String, Arc<LocalSigner>>>,
}

impl LocalVault {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LocalSigner>>> {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl KeyVault for LocalVault {
    async fn create_key(&self, algorithm: SigningAlgorithm) -> Result<NewKey, KeyError> {
        // RSA key generation takes tens of milliseconds: off the async workers.
        let signer = tokio::task::spawn_blocking(move || LocalSigner::generate(algorithm))
            .await
            .map_err(|_| KeyError::Invalid("key generation was interrupted".into()))??;
        let key_ref = format!("local:{}", b64url(&random_bytes::<12>()));
        let new_key = NewKey {
            key_ref: key_ref.clone(),
            algorithm,
            public_key_der: signer.public_key_der().to_vec(),
            wrapped: None,
        };
        self.lock().insert(key_ref, Arc::new(signer));
        Ok(new_key)
    }

    fn signer(&self, key: &KeyRecord) -> Result<Arc<dyn Signer>, KeyError> {
        match self.lock().get(&key.key_ref) {
            Some(signer) => Ok(signer.clone()),
            None => Err(KeyError::Invalid(format!(
                "the private key of {} is not held by this process",
                key.kid
            ))),
        }
    }

    async fn destroy_key(&self, key_ref: &str) -> Result<(), KeyError> {
        self.lock().remove(key_ref);
        Ok(())
    }
}
