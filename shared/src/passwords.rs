//! Password hashing with argon2id (PHC strings), and verification that takes the same time
//! whether or not the user exists: for an unknown user the same argon2id work is done on a
//! fixed salt (no dummy hash to compute at start, which keeps a Lambda's init short).
//!
//! **Bounded**: at most a few hashes run at once in a process (one per core by default,
//! `TOKENLIFE_HASHING_SLOTS`), each on a blocking thread; the others wait up to
//! `TOKENLIFE_HASHING_WAIT_MS` for a slot and are then refused with 503 and `Retry-After`,
//! quickly. So a login flood holds at most slots × argon2id memory (19 MiB each by
//! default), not one allocation per request in flight.

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
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    wait: std::time::Duration,
}

/// Salt of the stand-in work for unknown users; its value does not matter.
const STAND_IN_SALT: [u8; 16] = [0x5a; 16];

impl PasswordHasher {
    /// `slots`: hashes at once (0: one per core); `wait`: the longest wait for a slot.
    pub fn new(
        params: Argon2Params,
        slots: usize,
        wait: std::time::Duration,
    ) -> Result<Self, PasswordError> {
        let slots = match slots {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError(e.to_string()))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(slots)),
            wait,
        })
    }

    /// Runs `work` (a hash or a verification) on a blocking thread once a slot is free;
    /// a caller that cannot get one within the wait is refused: 503, try again.
    pub async fn run<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, crate::Error> {
        let slot = self.slots.clone().acquire_owned();
        let permit = match tokio::time::timeout(self.wait, slot).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(crate::Error::unavailable(
                    "too many password checks at once; retry",
                    "no password-hashing slot was free in time",
                ));
            }
        };
        let hasher = self.clone();
        // The slot goes with the work: should the caller stop waiting (a client gone), the
        // hash still holds its slot until it is done.
        tokio::task::spawn_blocking(move || {
            let result = work(&hasher);
            drop(permit);
            result
        })
        .await
        .map_err(|e| crate::Error::internal(format!("password hashing task: {e}")))
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
        PasswordHasher::new(Argon2Params::CHEAPEST, 0, std::time::Duration::from_secs(1)).unwrap()
    }

    /// With one slot and no time to wait, a hash that finds the slot taken is refused at
    /// once (503), while the one holding it completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_without_a_slot_is_refused_quickly() {
        let params = Argon2Params {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        };
        let hasher = std::sync::Arc::new(
            PasswordHasher::new(params, 1, std::time::Duration::from_millis(1)).unwrap(),
        );
        let busy = hasher.clone();
        let first = tokio::spawn(async move { busy.run(|h| h.hash("a long passphrase")).await });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let started = std::time::Instant::now();
        let second = hasher.run(|h| h.hash("another passphrase")).await;
        assert!(
            matches!(second, Err(crate::Error::Unavailable { .. })),
            "the second caller is refused"
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert!(first.await.unwrap().unwrap().is_ok(), "the first completes");
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
