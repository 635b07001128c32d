//! Data-key signing (`TOKENLIFE_SIGNING=data-key`): signing keys made by KMS, held wrapped
//! in the key registry, and used in this process — 0 KMS calls per token after a process's
//! first signature with a key, instead of one `Sign` each.
//!
//! **Creating** ([`generate`], rotate-keys or `tokenlife setup`): one
//! `GenerateDataKeyPairWithoutPlaintext` (ECC_NIST_P256 or RSA_2048) under the deployment's
//! symmetric wrapping key. KMS returns the public key and the private key encrypted under
//! the wrapping key; the plaintext private key never reaches the creator. The registry
//! record keeps both ([`WrappedKey`]), with a `key_ref` of `data-key/<random>`.
//!
//! **Encryption context** ([`encryption_context`]): `tokenlife-registry=<keys table>`
//! (the same name the KMS signing keys are tagged with) and `tokenlife-key=<key_ref>`. The
//! IAM policies of template.yaml allow `Decrypt` and `GenerateDataKeyPairWithoutPlaintext`
//! only with this registry's context, so the roles cannot unwrap anything else with the
//! wrapping key; and a wrapped key copied into another record does not decrypt. (The `kid`
//! is the public key's thumbprint, known only once KMS has answered, so the context names
//! the record by its `key_ref` instead; [`DataKeySigner`] checks that the unwrapped key's
//! public half is the record's, i.e. that its thumbprint is the `kid`.)
//!
//! **Signing** ([`DataKeySigner`]): the first signature unwraps the key with one
//! `kms:Decrypt`; the key then stays in memory while it is the active key of the process's
//! key ring (the vault keeps one: see [`super::KmsVault`]). The decrypted PKCS#8 bytes are
//! wiped as soon as aws-lc has parsed them; aws-lc wipes its own copy when the key is
//! freed. What cannot be wiped: the HTTP response buffers the SDK decoded the plaintext
//! from (freed, not cleared), and whatever a core dump or a debugger of the live process
//! sees.
//!
//! **Retiring**: a key that stops being active loses its wrapped copy from the registry in
//! the same write (rotation's `apply_change`), and nothing needs deleting in KMS. Unlike a
//! KMS signing key, whose private half no one ever held, a data key has been in the memory
//! of every warm login and refresh process that signed with it: retiring it stops *us*
//! signing with it (and verifiers reject its tokens) within the key-cache TTL, but it
//! cannot un-leak a key that escaped from process memory. The README says the same.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeyPairSpec;
use zeroize::Zeroizing;

use super::kms::{REGISTRY_TAG, kms_error};
use super::registry::KeyRecord;
use super::vault::NewKey;
use super::{KeyError, LocalSigner, PublicKey, Signer, SigningAlgorithm};
use crate::secrets::{b64url, random_bytes};

/// The start of every data key's `key_ref`.
pub const DATA_KEY_PREFIX: &str = "data-key/";
/// The encryption-context member naming the key's registry record.
pub const KEY_CONTEXT: &str = "tokenlife-key";
/// The tag of a wrapping key `tokenlife setup` makes (value: the keys table). Deliberately
/// not [`REGISTRY_TAG`], which grants rotation the right to retire a key.
pub const WRAPPING_TAG: &str = "tokenlife-wrapping";

/// A private key as KMS wrapped it: only `kms:Decrypt` with the wrapping key (and the
/// encryption context) turns it back into a key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The wrapping key's ARN, as KMS named it when it made the pair.
    pub wrapping_key: String,
    /// `PrivateKeyCiphertextBlob`.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("wrapping_key", &self.wrapping_key)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Whether a registry `key_ref` names a data key (rather than a KMS signing key).
pub fn is_data_key(key_ref: &str) -> bool {
    key_ref.starts_with(DATA_KEY_PREFIX)
}

/// The encryption context of the data key `key_ref` of the registry `registry`.
pub fn encryption_context(registry: &str, key_ref: &str) -> HashMap<String, String> {
    HashMap::from([
        (REGISTRY_TAG.to_owned(), registry.to_owned()),
        (KEY_CONTEXT.to_owned(), key_ref.to_owned()),
    ])
}

/// Makes a data key pair for `algorithm` under `wrapping_key` (id, ARN or alias): one
/// `GenerateDataKeyPairWithoutPlaintext`.
pub async fn generate(
    client: &Client,
    wrapping_key: &str,
    registry: &str,
    algorithm: SigningAlgorithm,
) -> Result<NewKey, KeyError> {
    let key_ref = format!("{DATA_KEY_PREFIX}{}", b64url(&random_bytes::<16>()));
    let spec = match algorithm {
        SigningAlgorithm::Es256 => DataKeyPairSpec::EccNistP256,
        SigningAlgorithm::Rs256 => DataKeyPairSpec::Rsa2048,
    };
    let output = client
        .generate_data_key_pair_without_plaintext()
        .key_id(wrapping_key)
        .key_pair_spec(spec)
        .set_encryption_context(Some(encryption_context(registry, &key_ref)))
        .send()
        .await
        .map_err(|e| kms_error("GenerateDataKeyPairWithoutPlaintext", e))?;
    let missing = |what: &str| {
        KeyError::Invalid(format!(
            "KMS GenerateDataKeyPairWithoutPlaintext returned no {what}"
        ))
    };
    let public_key_der = output
        .public_key()
        .ok_or_else(|| missing("public key"))?
        .as_ref()
        .to_vec();
    let ciphertext = output
        .private_key_ciphertext_blob()
        .ok_or_else(|| missing("wrapped private key"))?
        .as_ref()
        .to_vec();
    let wrapping_key = output
        .key_id()
        .ok_or_else(|| missing("wrapping key id"))?
        .to_owned();
    // What KMS made must be a key we can publish (the algorithm's type and size).
    PublicKey::from_spki_der(&public_key_der, algorithm)?;
    tracing::info!(key = %key_ref, wrapping_key = %wrapping_key, "data key pair created");
    Ok(NewKey {
        key_ref,
        algorithm,
        public_key_der,
        wrapped: Some(WrappedKey {
            wrapping_key,
            ciphertext,
        }),
    })
}

/// Signs with a data key, unwrapping it with one `kms:Decrypt` at its first signature.
pub struct DataKeySigner {
    client: Client,
    registry: String,
    key_ref: String,
    kid: String,
    algorithm: SigningAlgorithm,
    public_key_der: Vec<u8>,
    /// `None`: the record lost its wrapped copy (an older version re-saved the registry):
    /// signing fails, verifying does not care.
    wrapped: Option<WrappedKey>,
    unwrapped: tokio::sync::OnceCell<LocalSigner>,
}

impl DataKeySigner {
    /// A signer for `record` of the registry `registry` (no network call yet). A record
    /// without its wrapped key makes a signer that cannot sign — never a key ring that
    /// cannot verify.
    pub fn new(client: Client, registry: &str, record: &KeyRecord) -> Self {
        Self {
            client,
            registry: registry.to_owned(),
            key_ref: record.key_ref.clone(),
            kid: record.kid.clone(),
            algorithm: record.algorithm,
            public_key_der: record.public_key_der.clone(),
            wrapped: record.wrapped.clone(),
            unwrapped: tokio::sync::OnceCell::new(),
        }
    }

    pub fn key_ref(&self) -> &str {
        &self.key_ref
    }

    async fn unwrap(&self) -> Result<LocalSigner, KeyError> {
        let wrapped = self.wrapped.as_ref().ok_or_else(|| {
            KeyError::Invalid(format!(
                "the registry holds no wrapped private key for {}",
                self.kid
            ))
        })?;
        let output = self
            .client
            .decrypt()
            .key_id(&wrapped.wrapping_key)
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .set_encryption_context(Some(encryption_context(&self.registry, &self.key_ref)))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", e))?;
        let pkcs8 = Zeroizing::new(
            output
                .plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| KeyError::Invalid("KMS Decrypt returned no plaintext".into()))?,
        );
        let signer = LocalSigner::from_pkcs8(self.algorithm, &pkcs8)?;
        let unwrapped = PublicKey::from_spki_der(signer.public_key_der(), self.algorithm)?;
        if unwrapped.kid() != self.kid {
            return Err(KeyError::Invalid(format!(
                "the wrapped private key of {} is not the pair of its published public key",
                self.kid
            )));
        }
        tracing::info!(kid = %self.kid, "data key unwrapped for signing");
        Ok(signer)
    }
}

#[async_trait]
impl Signer for DataKeySigner {
    fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // One Decrypt per process and key; concurrent first signatures wait for it, and a
        // failed one is tried again by the next signature.
        let signer = self.unwrapped.get_or_try_init(|| self.unwrap()).await?;
        signer.sign(message).await
    }
}
