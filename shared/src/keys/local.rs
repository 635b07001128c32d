//! A signer whose private key lives in this process (the embedded default, and tests).
//! Generated at start; the private key is never written anywhere.

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
