//! A signer whose private key lives in this process: generated at start (the embedded
//! default, and tests; never written anywhere), or an unwrapped KMS data key pair
//! ([`super::data_key`]).

use async_trait::async_trait;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

use super::{KeyError, Signer, SigningAlgorithm};

pub struct LocalSigner {
    key: LocalKey,
    public_key_der: Vec<u8>,
    rng: SystemRandom,
}

enum LocalKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl LocalSigner {
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let failed = |what: &str| KeyError::Invalid(format!("could not generate {what} key"));
        let (key, public_key_der) = match algorithm {
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| failed("P-256"))?;
                let der = pair.public_key().as_der().map_err(|_| failed("P-256"))?;
                let der = der.as_ref().to_vec();
                (LocalKey::Ec(pair), der)
            }
            SigningAlgorithm::Rs256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("RSA"))?;
                let der = pair.public_key().as_der().map_err(|_| failed("RSA"))?;
                let der = der.as_ref().to_vec();
                (LocalKey::Rsa(pair), der)
            }
        };
        Ok(Self {
            key,
            public_key_der,
            rng: SystemRandom::new(),
        })
    }

    /// A signer for a PKCS#8 private key (an unwrapped KMS data key pair). The caller
    /// wipes `pkcs8`; the parsed key lives in aws-lc, whose allocator wipes it when freed.
    pub fn from_pkcs8(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let failed = || {
            KeyError::Invalid(format!(
                "the private key is not a PKCS#8 {} key",
                algorithm.name()
            ))
        };
        let (key, public_key_der) = match algorithm {
            SigningAlgorithm::Es256 => {
                let pair =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                        .map_err(|_| failed())?;
                let der = pair.public_key().as_der().map_err(|_| failed())?;
                let der = der.as_ref().to_vec();
                (LocalKey::Ec(pair), der)
            }
            SigningAlgorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| failed())?;
                let der = pair.public_key().as_der().map_err(|_| failed())?;
                let der = der.as_ref().to_vec();
                (LocalKey::Rsa(pair), der)
            }
        };
        Ok(Self {
            key,
            public_key_der,
            rng: SystemRandom::new(),
        })
    }
}

#[async_trait]
impl Signer for LocalSigner {
    fn algorithm(&self) -> SigningAlgorithm {
        match self.key {
            LocalKey::Ec(_) => SigningAlgorithm::Es256,
            LocalKey::Rsa(_) => SigningAlgorithm::Rs256,
        }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = || KeyError::Invalid("local signing failed".into());
        match &self.key {
            LocalKey::Ec(pair) => pair
                .sign(&self.rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| failed()),
            LocalKey::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| failed())?;
                Ok(sig)
            }
        }
    }
}
