//! Password hashing with argon2id (PHC strings), and verification that takes the same time
//! whether or not the user exists: for an unknown user the same argon2id work is done on a
//! fixed salt (no dummy hash to compute at start, which keeps a Lambda's init short).

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
}

/// Salt of the stand-in work for unknown users; its value does not matter.
const STAND_IN_SALT: [u8; 16] = [0x5a; 16];

impl PasswordHasher {
    pub fn new(params: Argon2Params) -> Result<Self, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError(e.to_string()))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        hash_with(&self.argon2, password.as_bytes())
    }

    /// Whether `password` matches `phc`; with `None` (no such user) or a corrupt stored
    /// hash it does the same argon2id work and answers false. CPU-bound: call from a
    /// blocking thread.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        match phc.map(PasswordHash::new) {
            Some(Ok(parsed)) => self
                .argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            _ => {
                let mut stand_in = [0u8; 32];
                let _ = self.argon2.hash_password_into(
                    password.as_bytes(),
                    &STAND_IN_SALT,
                    &mut stand_in,
                );
                false
            }
        }
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
        PasswordHasher::new(Argon2Params::CHEAPEST).unwrap()
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
