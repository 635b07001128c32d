//! Password hashing with argon2id (PHC strings), and verification that takes the same time
//! whether or not the user exists: unknown users are checked against a dummy hash made at
//! start with the same parameters.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::Argon2Params;
use crate::secrets::random_bytes;

/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

pub struct PasswordHasher {
    argon2: Argon2<'static>,
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(params: Argon2Params) -> Result<Self, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_password: [u8; 32] = random_bytes();
        let dummy_hash = hash_with(&argon2, &dummy_password)?;
        Ok(Self { argon2, dummy_hash })
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        hash_with(&self.argon2, password.as_bytes())
    }

    /// Whether `password` matches `phc`; with `None` (no such user) it does the same work
    /// against the dummy hash and answers false. CPU-bound: call from a blocking thread.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let (phc, real) = match phc {
            Some(phc) => (phc, true),
            None => (self.dummy_hash.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(phc) else {
            // A corrupt stored hash: still spend the time, then refuse.
            let dummy = PasswordHash::new(&self.dummy_hash).expect("dummy hash is valid");
            let _ = self.argon2.verify_password(password.as_bytes(), &dummy);
            return false;
        };
        let matched = self
            .argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matched && real
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, PasswordError> {
    let salt_bytes: [u8; 16] = random_bytes();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError(e.to_string()))?;
    argon2
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hashes_verify_and_are_argon2id_phc() {
        let hasher = cheap();
        let phc = hasher.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(!phc.contains("correct horse"));
        assert!(hasher.verify("correct horse", Some(&phc)));
        assert!(!hasher.verify("wrong horse", Some(&phc)));
        assert_ne!(phc, hasher.hash("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn unknown_users_and_corrupt_hashes_never_verify() {
        let hasher = cheap();
        assert!(!hasher.verify("anything", None));
        assert!(!hasher.verify("", None));
        assert!(!hasher.verify("x", Some("not a phc string")));
    }
}
