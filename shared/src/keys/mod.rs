//! Signing keys: the [`Signer`] trait (local keys now; KMS and locally-held KMS data keys
//! fit behind it later), public keys as RFC 7517 JWKs with RFC 7638 thumbprint `kid`s, and
//! the [`KeyRing`] that pairs the active signer with every published verification key.
//!
//! Verification pins the algorithm per key: a token is checked only with the algorithm the
//! key's JWK declares, never the one its header asks for.

pub mod der;
pub mod kms;
mod local;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use crate::secrets::{b64url, sha256};
pub use kms::KmsSigner;
pub use local::LocalSigner;

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

    pub fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
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

/// A published verification key, ready to verify with.
#[derive(Clone)]
pub struct PublicKey {
    pub jwk: Jwk,
    pub algorithm: SigningAlgorithm,
    pub decoding_key: DecodingKey,
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
        let (jwk, decoding_key) = match (algorithm, parsed) {
            (SigningAlgorithm::Es256, der::SpkiKey::P256 { x, y }) => {
                let (x, y) = (b64url(&x), b64url(&y));
                // RFC 7638: required members only, lexicographic order, no whitespace.
                let thumbprint_input =
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                let decoding_key = DecodingKey::from_ec_components(&x, &y)
                    .map_err(|e| KeyError::Invalid(e.to_string()))?;
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
                (jwk, decoding_key)
            }
            (SigningAlgorithm::Rs256, der::SpkiKey::Rsa { n, e }) => {
                if n.len() < 256 {
                    return Err(KeyError::Invalid(
                        "RSA keys must be at least 2048 bits".into(),
                    ));
                }
                let decoding_key = DecodingKey::from_rsa_raw_components(&n, &e);
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
                (jwk, decoding_key)
            }
            (algorithm, _) => {
                return Err(KeyError::Invalid(format!(
                    "the key type does not match {}",
                    algorithm.name()
                )));
            }
        };
        Ok(Self {
            jwk,
            algorithm,
            decoding_key,
        })
    }

    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }
}

type KeyRingFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<KeyRing, KeyError>> + Send>>;

/// The key ring, ready now (local keys) or loaded on first use (KMS: `GetPublicKey` is a
/// network call, kept out of a Lambda's init). A failed load is retried by the next caller.
pub struct Keys {
    ring: tokio::sync::OnceCell<KeyRing>,
    load: Option<Box<dyn Fn() -> KeyRingFuture + Send + Sync>>,
}

impl Keys {
    pub fn ready(ring: KeyRing) -> Self {
        Self {
            ring: tokio::sync::OnceCell::new_with(Some(ring)),
            load: None,
        }
    }

    pub fn lazy<F, Fut>(load: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<KeyRing, KeyError>> + Send + 'static,
    {
        Self {
            ring: tokio::sync::OnceCell::new(),
            load: Some(Box::new(move || Box::pin(load()))),
        }
    }

    pub async fn get(&self) -> Result<&KeyRing, KeyError> {
        self.ring
            .get_or_try_init(|| async {
                match &self.load {
                    Some(load) => load().await,
                    None => Err(KeyError::Invalid(
                        "no key ring and no way to load one".into(),
                    )),
                }
            })
            .await
    }
}

/// The active signer and every published verification key, looked up by `kid`.
pub struct KeyRing {
    signer: Arc<dyn Signer>,
    signer_kid: String,
    published: Vec<PublicKey>,
    by_kid: HashMap<String, usize>,
}

impl KeyRing {
    /// A ring whose only key is `signer`'s.
    pub fn single(signer: Arc<dyn Signer>) -> Result<Self, KeyError> {
        Self::new(signer, Vec::new())
    }

    /// A ring that signs with `signer` and publishes `published` plus the signer's own
    /// public key (added if missing).
    pub fn new(signer: Arc<dyn Signer>, mut published: Vec<PublicKey>) -> Result<Self, KeyError> {
        let own = PublicKey::from_spki_der(signer.public_key_der(), signer.algorithm())?;
        let signer_kid = own.kid().to_owned();
        if !published.iter().any(|k| k.kid() == signer_kid) {
            published.push(own);
        }
        let by_kid = published
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kid().to_owned(), i))
            .collect();
        Ok(Self {
            signer,
            signer_kid,
            published,
            by_kid,
        })
    }

    pub fn signer(&self) -> &dyn Signer {
        self.signer.as_ref()
    }

    pub fn signer_kid(&self) -> &str {
        &self.signer_kid
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

    #[test]
    fn key_type_must_match_algorithm() {
        let signer = LocalSigner::generate(SigningAlgorithm::Es256).unwrap();
        assert!(
            PublicKey::from_spki_der(signer.public_key_der(), SigningAlgorithm::Rs256).is_err()
        );
    }
}
