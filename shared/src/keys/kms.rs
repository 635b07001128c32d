//! A signer whose private key never leaves AWS KMS: `Sign` with `MessageType=DIGEST` (we
//! hash the JWS signing input with SHA-256 ourselves, so KMS receives 32 bytes whatever the
//! token size), `ECDSA_SHA_256` for ES256 and `RSASSA_PKCS1_V1_5_SHA_256` for RS256. KMS
//! returns ECDSA signatures DER-encoded; JWS needs fixed-width R‖S ([`der::ecdsa_der_to_fixed`]).
//!
//! The public half comes from `GetPublicKey` (DER SubjectPublicKeyInfo), fetched once when
//! a key is created and kept in the key registry, so a signer is built with no network call.
//!
//! [`KmsVault`] creates the keys rotation needs — `CreateKey` (SIGN_VERIFY, the algorithm's
//! key spec) — and retires them with `ScheduleKeyDeletion` after a configurable window
//! (7-30 days).
//!
//! **No role of ours can reach a key it did not make.** Keys are tagged
//! `tokenlife-registry=<keys table>`, and the login and refresh roles may `kms:Sign` only
//! with keys carrying that tag (template.yaml). So the right to tag must not reach beyond
//! our own keys: with `TOKENLIFE_KEY_MANAGER_ROLE` set (template.yaml sets it to the
//! rotate-keys role), each key is created untagged with its own key policy
//! ([`key_policy`]) — the account's administrators as in KMS's default policy, and tagging,
//! reading and retiring for the manager role — and then tagged under that policy. The
//! manager role's IAM policy grants `kms:CreateKey` of signing keys and no `kms:TagResource`
//! at all: it cannot tag (and so cannot pull into the registry's grants) any key of the
//! account that it did not create. Without that setting (a laptop, the emulators, an
//! operator's `tokenlife keys rotate`), keys get KMS's default key policy and the caller's
//! IAM rights tag them.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec, Tag};

use super::data_key::{self, DataKeySigner};
use super::registry::KeyRecord;
use super::vault::{KeyVault, NewKey};
use super::{KeyError, Signer, SigningAlgorithm, der};
use crate::secrets::sha256;

/// The tag every key tokenlife creates carries; its value is the keys table's name.
pub const REGISTRY_TAG: &str = "tokenlife-registry";

/// The pauses between tries of a `CreateKey` whose policy names a principal KMS does not
/// see yet (15 s in all: within the custom resource's work bound).
const POLICY_PRINCIPAL_WAITS: [std::time::Duration; 4] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(8),
];

pub struct KmsSigner {
    client: Client,
    key_id: String,
    algorithm: SigningAlgorithm,
    public_key_der: Vec<u8>,
}

impl KmsSigner {
    /// A signer for a key whose public half is already known (from the key registry).
    pub fn with_public_key(
        client: Client,
        key_id: &str,
        algorithm: SigningAlgorithm,
        public_key_der: Vec<u8>,
    ) -> Self {
        Self {
            client,
            key_id: key_id.to_owned(),
            algorithm,
            public_key_der,
        }
    }

    /// Looks the key up (`key_id` may be an id, ARN, or `alias/...`) and checks that its
    /// spec suits `algorithm`.
    pub async fn connect(
        client: Client,
        key_id: &str,
        algorithm: SigningAlgorithm,
    ) -> Result<Self, KeyError> {
        let output = client
            .get_public_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| kms_error("GetPublicKey", e))?;
        let spec_ok = output
            .key_spec()
            .is_some_and(|spec| key_spec_signs(spec, algorithm));
        if !spec_ok {
            return Err(KeyError::Invalid(format!(
                "KMS key {key_id} has spec {:?}, which cannot sign {}",
                output.key_spec(),
                algorithm.name()
            )));
        }
        let public_key_der = output
            .public_key()
            .map(|blob| blob.as_ref().to_vec())
            .ok_or_else(|| KeyError::Invalid(format!("KMS returned no public key for {key_id}")))?;
        Ok(Self {
            client,
            // Sign with the resolved key, not the alias: an alias moved mid-flight must not
            // make us sign with a key whose public half we do not publish.
            key_id: output.key_id().unwrap_or(key_id).to_owned(),
            algorithm,
            public_key_der,
        })
    }
}

#[async_trait]
impl Signer for KmsSigner {
    fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let spec = match self.algorithm {
            SigningAlgorithm::Es256 => SigningAlgorithmSpec::EcdsaSha256,
            SigningAlgorithm::Rs256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        };
        let output = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(sha256(message).to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(spec)
            .send()
            .await
            .map_err(|e| kms_error("Sign", e))?;
        let signature = output
            .signature()
            .ok_or_else(|| KeyError::Invalid("KMS Sign returned no signature".into()))?
            .as_ref();
        match self.algorithm {
            SigningAlgorithm::Es256 => der::ecdsa_der_to_fixed(signature, 32).ok_or_else(|| {
                KeyError::Invalid("KMS returned a malformed ECDSA signature".into())
            }),
            SigningAlgorithm::Rs256 => Ok(signature.to_vec()),
        }
    }
}

/// Signing keys in KMS, made and deleted for the key registry named by `registry_tag` —
/// or, with [`KmsVault::making_data_keys`], data keys wrapped by KMS ([`super::data_key`]).
/// It signs with either kind, whichever the active record is: a deployment switches modes
/// at its next rotation.
pub struct KmsVault {
    client: Client,
    registry_tag: String,
    deletion_window_days: i32,
    /// The key policy of every key it creates; `None`: KMS's default.
    policy: Option<String>,
    /// The wrapping key new keys are made under; `None`: new keys are KMS signing keys.
    wrapping_key: Option<String>,
    /// The signer of the data key last asked for (the active one): unwrapped once, at its
    /// first signature, and dropped (with the key) when another key becomes active.
    data_key: std::sync::Mutex<Option<std::sync::Arc<DataKeySigner>>>,
}

impl KmsVault {
    /// `manager`: the role ARN that new keys' own policies let tag and retire them (see
    /// the module docs); `None` for KMS's default key policy.
    pub fn new(
        client: Client,
        registry_tag: &str,
        deletion_window_days: u8,
        manager: Option<&str>,
    ) -> Self {
        Self {
            client,
            registry_tag: registry_tag.to_owned(),
            deletion_window_days: i32::from(deletion_window_days),
            policy: manager.map(|manager| key_policy(manager, registry_tag)),
            wrapping_key: None,
            data_key: std::sync::Mutex::new(None),
        }
    }

    /// New keys are data key pairs wrapped under `wrapping_key` (an id, ARN or alias).
    pub fn making_data_keys(mut self, wrapping_key: &str) -> Self {
        self.wrapping_key = Some(wrapping_key.to_owned());
        self
    }

    fn held_data_key(&self) -> std::sync::MutexGuard<'_, Option<std::sync::Arc<DataKeySigner>>> {
        self.data_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn data_key_signer(&self, key: &KeyRecord) -> std::sync::Arc<DataKeySigner> {
        let mut held = self.held_data_key();
        if let Some(signer) = held.as_ref().filter(|s| s.key_ref() == key.key_ref) {
            return signer.clone();
        }
        let signer = std::sync::Arc::new(DataKeySigner::new(
            self.client.clone(),
            &self.registry_tag,
            key,
        ));
        *held = Some(signer.clone());
        signer
    }
}

/// The key policy of a key made by role `manager`: the account's root (as in KMS's
/// default policy, so the account's administrators keep control and IAM policies — the
/// tag-conditioned `kms:Sign` of login and refresh — still apply), and for the manager what
/// rotation needs: describe, read the public key, tag, schedule deletion, and replace the
/// policy (KMS refuses a policy that would lock its creator out). The account and partition
/// come from the manager's ARN.
pub fn key_policy(manager: &str, registry_tag: &str) -> String {
    let mut arn = manager.splitn(6, ':');
    let partition = arn.nth(1).unwrap_or("aws");
    let account = arn.nth(2).unwrap_or("");
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:{partition}:iam::{account}:root") },
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "TokenlifeRotationManages",
                "Effect": "Allow",
                "Principal": { "AWS": manager },
                "Action": [
                    "kms:DescribeKey",
                    "kms:GetPublicKey",
                    "kms:ScheduleKeyDeletion",
                    "kms:PutKeyPolicy",
                ],
                "Resource": "*",
            },
            {
                "Sid": "TokenlifeRotationTagsForItsRegistry",
                "Effect": "Allow",
                "Principal": { "AWS": manager },
                "Action": "kms:TagResource",
                "Resource": "*",
                "Condition": {
                    "StringEquals": { format!("aws:RequestTag/{REGISTRY_TAG}"): registry_tag },
                    "ForAllValues:StringEquals": { "aws:TagKeys": [REGISTRY_TAG] },
                },
            },
        ],
    })
    .to_string()
}

#[async_trait]
impl KeyVault for KmsVault {
    async fn create_key(&self, algorithm: SigningAlgorithm) -> Result<NewKey, KeyError> {
        if let Some(wrapping_key) = &self.wrapping_key {
            return data_key::generate(&self.client, wrapping_key, &self.registry_tag, algorithm)
                .await;
        }
        let spec = match algorithm {
            SigningAlgorithm::Es256 => KeySpec::EccNistP256,
            SigningAlgorithm::Rs256 => KeySpec::Rsa2048,
        };
        let tag = Tag::builder()
            .tag_key(REGISTRY_TAG)
            .tag_value(&self.registry_tag)
            .build()
            .map_err(|e| KeyError::Invalid(format!("KMS tag: {e}")))?;
        // A role created moments ago (a first deploy) may not be visible to KMS yet: a policy
        // naming it is refused as malformed until it is. Wait and try again, a few times.
        let mut waits = POLICY_PRINCIPAL_WAITS.iter();
        let created = loop {
            let result = self
                .client
                .create_key()
                .key_spec(spec.clone())
                .key_usage(KeyUsageType::SignVerify)
                .description(format!(
                    "tokenlife access-token signing key ({})",
                    self.registry_tag
                ))
                .set_policy(self.policy.clone())
                .send()
                .await;
            match result {
                Ok(created) => break created,
                Err(e)
                    if self.policy.is_some()
                        && e.as_service_error()
                            .is_some_and(|e| e.is_malformed_policy_document_exception()) =>
                {
                    match waits.next() {
                        Some(wait) => tokio::time::sleep(*wait).await,
                        None => return Err(kms_error("CreateKey", e)),
                    }
                }
                Err(e) => return Err(kms_error("CreateKey", e)),
            }
        };
        tracing::info!(key = ?created.key_metadata().and_then(|m| m.arn()), "KMS signing key created");
        let arn = created
            .key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| KeyError::Invalid("KMS CreateKey returned no key ARN".into()))?
            .to_owned();
        // Tagged under the key's own policy (see the module docs), not an IAM right to tag.
        let tagged = self
            .client
            .tag_resource()
            .key_id(&arn)
            .tags(tag)
            .send()
            .await
            .map_err(|e| kms_error("TagResource", e));
        let connected = match tagged {
            Ok(_) => KmsSigner::connect(self.client.clone(), &arn, algorithm).await,
            Err(error) => Err(error),
        };
        let signer = match connected {
            Ok(signer) => signer,
            Err(error) => {
                // Never published: do not leave it behind.
                let _ = self.destroy_key(&arn).await;
                return Err(error);
            }
        };
        Ok(NewKey {
            key_ref: arn,
            algorithm,
            public_key_der: signer.public_key_der,
            wrapped: None,
        })
    }

    fn signer(&self, key: &KeyRecord) -> Result<std::sync::Arc<dyn Signer>, KeyError> {
        if data_key::is_data_key(&key.key_ref) {
            return Ok(self.data_key_signer(key));
        }
        // A KMS key is active: an unwrapped data key has no business staying in memory.
        self.held_data_key().take();
        Ok(std::sync::Arc::new(KmsSigner::with_public_key(
            self.client.clone(),
            &key.key_ref,
            key.algorithm,
            key.public_key_der.clone(),
        )))
    }

    async fn destroy_key(&self, key_ref: &str) -> Result<(), KeyError> {
        if data_key::is_data_key(key_ref) {
            // Nothing in KMS to delete: the wrapped copy leaves the registry with the key's
            // state (see keys::data_key).
            return Ok(());
        }
        match self
            .client
            .schedule_key_deletion()
            .key_id(key_ref)
            .pending_window_in_days(self.deletion_window_days)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already pending deletion, or gone.
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    e.is_kms_invalid_state_exception() || e.is_not_found_exception()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(kms_error("ScheduleKeyDeletion", e)),
        }
    }
}

/// Whether a KMS key of `spec` can sign `algorithm`.
pub fn key_spec_signs(spec: &KeySpec, algorithm: SigningAlgorithm) -> bool {
    match algorithm {
        SigningAlgorithm::Es256 => matches!(spec, KeySpec::EccNistP256),
        SigningAlgorithm::Rs256 => {
            matches!(spec, KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
        }
    }
}

/// Transient failures (network, timeouts, throttling, KMS internal errors — after the SDK's
/// retries) are Unavailable; the rest (disabled or missing key, access denied) are Invalid.
pub(crate) fn kms_error<E, R>(operation: &str, error: SdkError<E, R>) -> KeyError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let transient = match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => matches!(
            service.err().code().unwrap_or(""),
            "ThrottlingException"
                | "LimitExceededException"
                | "KMSInternalException"
                | "DependencyTimeoutException"
                | "KeyUnavailableException"
        ),
        _ => false,
    };
    let message = format!("KMS {operation}: {}", DisplayErrorContext(&error));
    if transient {
        KeyError::Unavailable(message)
    } else {
        KeyError::Invalid(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyState;
    use crate::keys::data_key::WrappedKey;

    fn record(key_ref: &str, wrapped: bool) -> KeyRecord {
        KeyRecord {
            kid: format!("kid-{key_ref}"),
            key_ref: key_ref.into(),
            algorithm: SigningAlgorithm::Es256,
            public_key_der: Vec::new(),
            state: KeyState::Active,
            published_at: 0,
            state_since: 0,
            wrapped: wrapped.then(|| WrappedKey {
                wrapping_key: "arn:aws:kms:eu-west-1:000000000000:key/w".into(),
                ciphertext: vec![1, 2, 3],
            }),
        }
    }

    /// The vault holds one data key's signer (so it unwraps once), and lets it go as soon as
    /// another key — a data key or a KMS key — is the active one: an unwrapped key does not
    /// outlive its time as the signing key. No AWS call is made.
    #[test]
    fn the_vault_holds_only_the_active_data_key() {
        let client = Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new("eu-west-1"))
                .build(),
        );
        let vault = KmsVault::new(client, "registry", 7, None);
        let held = || {
            vault
                .held_data_key()
                .as_ref()
                .map(|s| s.key_ref().to_owned())
        };
        let first = vault.data_key_signer(&record("data-key/a", true));
        let again = vault.data_key_signer(&record("data-key/a", true));
        assert!(std::sync::Arc::ptr_eq(&first, &again), "one signer per key");
        let weak = std::sync::Arc::downgrade(&first);
        drop((first, again));
        vault.signer(&record("data-key/b", true)).unwrap();
        assert_eq!(held().as_deref(), Some("data-key/b"));
        assert!(weak.upgrade().is_none(), "the previous data key is gone");
        let b = std::sync::Arc::downgrade(&vault.data_key_signer(&record("data-key/b", true)));
        vault
            .signer(&record("arn:aws:kms:eu-west-1:000000000000:key/k", false))
            .unwrap();
        assert_eq!(held(), None);
        assert!(b.upgrade().is_none(), "a KMS key active: no data key held");
        // A data key whose record lost its wrapped copy still makes a ring (it cannot sign).
        assert!(vault.signer(&record("data-key/c", false)).is_ok());
    }
}
