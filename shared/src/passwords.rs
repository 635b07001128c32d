//! Password hashing with argon2id (PHC strings), and verification that takes the same time
//! whether or not the user exists: for an unknown user the same argon2id work is done on a
//! fixed salt (no dummy hash to compute at start, which keeps a Lambda's init short).
//!
//! **Bounded**: hashes run on a few long-lived worker threads (one per core by default,
//! `TOKENLIFE_HASHING_SLOTS`), each reusing its own argon2id working memory (19 MiB by
//! default) from one hash to the next and giving it back after [`IDLE_RELEASE`] without
//! work. A caller waits up to `TOKENLIFE_HASHING_WAIT_MS` for a free worker and is then
//! refused with 503 and `Retry-After`, quickly. So a login flood holds at most workers ×
//! argon2id memory, allocated once, not one allocation per request in flight (with a
//! fresh allocation per hash, freed blocks piled up in the allocator's per-thread arenas:
//! 360 MiB of RSS at 4 connections, measured by `scripts/bench-load`).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::config::Argon2Params;
use crate::secrets::{constant_time_eq, random_bytes};

/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A worker gives its working memory back after this long without work.
pub const IDLE_RELEASE: Duration = Duration::from_secs(10);
/// The largest cost a stored hash may ask for (the configuration's largest); a hash
/// asking for more is treated as corrupt.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 100;
const MAX_PARALLELISM: u32 = 64;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Salt of the stand-in work for unknown users; its value does not matter.
const STAND_IN_SALT: [u8; 16] = [0x5a; 16];

/// A piece of hashing work, run by a worker.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

pub struct PasswordHasher {
    /// One job channel per worker thread; `free` lists the workers without work.
    workers: Vec<mpsc::Sender<Job>>,
    free: Arc<Mutex<Vec<usize>>>,
    /// As many permits as workers: a permit means a free worker (a worker goes back on
    /// the free list before its permit is released).
    slots: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

/// Makes glibc's malloc serve every allocation of 4 MiB or more (the workers' argon2id
/// memory) with its own mmap, given back to the OS when freed. By default the threshold
/// follows the largest block freed so far: after a worker's first release, the next
/// working memory came from a per-thread arena and stayed in RSS after release (measured
/// with `scripts/bench-load`: 51 MiB after a flood instead of 9). Setting it once turns
/// that adjustment off for the process. Elsewhere (macOS, musl) nothing is done.
fn large_blocks_go_back_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes a malloc parameter; it is called once, before the
        // workers that make the large allocations start.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
        });
    }
}

/// What a worker thread holds: the cost parameters and its reusable working memory.
pub struct Worker {
    argon2: Argon2<'static>,
    params: Params,
    memory: Vec<Block>,
}

impl PasswordHasher {
    /// `slots`: workers, hashes at once (0: one per core); `wait`: the longest wait for one.
    pub fn new(params: Argon2Params, slots: usize, wait: Duration) -> Result<Self, PasswordError> {
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
        large_blocks_go_back_to_the_os();
        let mut workers = Vec::with_capacity(slots);
        for index in 0..slots {
            let (sender, jobs) = mpsc::channel::<Job>();
            let mut worker = Worker {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
                params: params.clone(),
                memory: Vec::new(),
            };
            std::thread::Builder::new()
                .name(format!("tokenlife-hash-{index}"))
                .spawn(move || {
                    loop {
                        match jobs.recv_timeout(IDLE_RELEASE) {
                            Ok(job) => job(&mut worker),
                            Err(mpsc::RecvTimeoutError::Timeout) => worker.memory = Vec::new(),
                            // The hasher is gone.
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        }
                    }
                })
                .map_err(|e| PasswordError(format!("cannot start a hashing worker: {e}")))?;
            workers.push(sender);
        }
        Ok(Self {
            workers,
            free: Arc::new(Mutex::new((0..slots).collect())),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            wait,
        })
    }

    /// Runs `work` (a hash or a verification) on a free worker; a caller that cannot get
    /// one within the wait is refused: 503, try again.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Worker) -> T + Send + 'static,
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
        let lock = |free: &Mutex<Vec<usize>>| {
            free.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop()
        };
        let index = lock(&self.free).ok_or_else(|| {
            crate::Error::internal("a hashing permit without a free worker".to_owned())
        })?;
        let (answer, result) = tokio::sync::oneshot::channel();
        let free = self.free.clone();
        // The worker and the permit go back together when the work is done, even if the
        // caller stopped waiting (a client gone): the work holds its slot until the end. A
        // panic in the work is contained: the caller gets an error, the worker goes on.
        let job: Job = Box::new(move |worker| {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(worker)));
            if outcome.is_err() {
                worker.memory = Vec::new();
            }
            let _ = answer.send(outcome.ok());
            free.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(index);
            drop(permit);
        });
        self.workers[index]
            .send(job)
            .map_err(|_| crate::Error::internal("a hashing worker is gone".to_owned()))?;
        match result.await {
            Ok(Some(answer)) => Ok(answer),
            _ => Err(crate::Error::internal(
                "a hashing job failed without an answer".to_owned(),
            )),
        }
    }
}

impl Worker {
    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub fn hash(&mut self, password: &str) -> Result<String, PasswordError> {
        let error = |e: &dyn std::fmt::Display| PasswordError(e.to_string());
        let salt_bytes: [u8; 16] = random_bytes();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| error(&e))?;
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let memory = reserve(&mut self.memory, self.params.block_count())
            .ok_or_else(|| PasswordError("no memory for the hash".into()))?;
        self.argon2
            .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut output, memory)
            .map_err(|e| error(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&self.params).try_into().map_err(|e| error(&e))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&output).map_err(|e| error(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches `phc` (with the cost the PHC string names); with `None`
    /// (no such user) or a corrupt stored hash it does the configured argon2id work and
    /// answers false.
    pub fn verify(&mut self, password: &str, phc: Option<&str>) -> bool {
        if let Some(stored) = phc.and_then(|phc| Stored::parse(phc).ok()) {
            let mut output = vec![0u8; stored.hash.len()];
            let argon2 = Argon2::new(stored.algorithm, stored.version, stored.params.clone());
            let computed =
                reserve(&mut self.memory, stored.params.block_count()).and_then(|memory| {
                    argon2
                        .hash_password_into_with_memory(
                            password.as_bytes(),
                            &stored.salt,
                            &mut output,
                            memory,
                        )
                        .ok()
                });
            // A stored hash of another cost leaves the memory at the configured size.
            self.memory.truncate(self.params.block_count());
            if computed.is_some() {
                return constant_time_eq(&output, &stored.hash);
            }
        }
        let mut stand_in = [0u8; 32];
        if let Some(memory) = reserve(&mut self.memory, self.params.block_count()) {
            let _ = self.argon2.hash_password_into_with_memory(
                password.as_bytes(),
                &STAND_IN_SALT,
                &mut stand_in,
                memory,
            );
        }
        false
    }
}

/// The working memory for `blocks` blocks, reusing (and growing) the worker's; `None` if
/// it cannot be had (no abort on a failed allocation).
fn reserve(memory: &mut Vec<Block>, blocks: usize) -> Option<&mut [Block]> {
    if memory.len() < blocks {
        memory.try_reserve_exact(blocks - memory.len()).ok()?;
        memory.resize(blocks, Block::default());
    }
    Some(&mut memory[..blocks])
}

/// A stored PHC string, taken apart.
struct Stored {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Stored {
    fn parse(phc: &str) -> Result<Self, PasswordError> {
        let error = |e: &dyn std::fmt::Display| PasswordError(e.to_string());
        let parsed = PasswordHash::new(phc).map_err(|e| error(&e))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| error(&e))?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| error(&e))?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(|e| error(&e))?;
        if params.m_cost() > MAX_MEMORY_KIB
            || params.t_cost() > MAX_ITERATIONS
            || params.p_cost() > MAX_PARALLELISM
        {
            return Err(PasswordError(
                "the stored hash asks for too much work".into(),
            ));
        }
        let mut salt = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or_else(|| PasswordError("no salt".into()))?
            .decode_b64(&mut salt)
            .map_err(|e| error(&e))?
            .to_vec();
        let hash = parsed
            .hash
            .ok_or_else(|| PasswordError("no hash".into()))?
            .as_bytes()
            .to_vec();
        Ok(Self {
            algorithm,
            version,
            params,
            salt,
            hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn worker(params: Argon2Params) -> Worker {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .unwrap();
        Worker {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()),
            params,
            memory: Vec::new(),
        }
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
        let hasher = Arc::new(PasswordHasher::new(params, 1, Duration::from_millis(1)).unwrap());
        let busy = hasher.clone();
        let first = tokio::spawn(async move { busy.run(|h| h.hash("a long passphrase")).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = std::time::Instant::now();
        let second = hasher.run(|h| h.hash("another passphrase")).await;
        assert!(
            matches!(second, Err(crate::Error::Unavailable { .. })),
            "the second caller is refused"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(first.await.unwrap().unwrap().is_ok(), "the first completes");
    }

    /// Many callers at once, two workers: every one is served (each waits for a worker),
    /// and the answers are each caller's own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_share_the_workers() {
        let hasher = Arc::new(
            PasswordHasher::new(Argon2Params::CHEAPEST, 2, Duration::from_secs(30)).unwrap(),
        );
        let phc = hasher
            .run(|w| w.hash("the right one"))
            .await
            .unwrap()
            .unwrap();
        let mut calls = Vec::new();
        for i in 0..40 {
            let hasher = hasher.clone();
            let phc = phc.clone();
            calls.push(tokio::spawn(async move {
                let password = if i % 2 == 0 {
                    "the right one"
                } else {
                    "a wrong one"
                };
                hasher.run(move |w| w.verify(password, Some(&phc))).await
            }));
        }
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), i % 2 == 0);
        }
    }

    #[test]
    fn hashes_verify_and_are_argon2id_phc() {
        let mut hasher = worker(Argon2Params::CHEAPEST);
        let phc = hasher.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(!phc.contains("correct horse"));
        assert!(hasher.verify("correct horse", Some(&phc)));
        assert!(!hasher.verify("wrong horse", Some(&phc)));
        assert_ne!(phc, hasher.hash("correct horse").unwrap(), "salts differ");
    }

    /// The PHC strings are the argon2 crate's own: hashes stored before (made by its
    /// `hash_password`) verify here, and hashes made here verify with its verifier — also
    /// when the stored cost differs from the configured one.
    #[test]
    fn hashes_are_compatible_with_the_argon2_crate() {
        let mut ours = worker(Argon2Params {
            memory_kib: 256,
            iterations: 2,
            parallelism: 1,
        });
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(128, 3, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let stored = theirs
            .hash_password(b"an old password", &salt)
            .unwrap()
            .to_string();
        assert!(ours.verify("an old password", Some(&stored)));
        assert!(!ours.verify("an old passwore", Some(&stored)));
        let made = ours.hash("a new password").unwrap();
        let parsed = PasswordHash::new(&made).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"a new password", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"a new passwore", &parsed)
                .is_err()
        );
    }

    /// A panic in a job reaches its caller as an error; the worker and its slot go on
    /// (with one slot: every later job still runs).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_leaves_the_pool_whole() {
        let hasher =
            PasswordHasher::new(Argon2Params::CHEAPEST, 1, Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            let failed = hasher.run(|_| -> bool { panic!("a bug in a job") }).await;
            assert!(matches!(failed, Err(crate::Error::Internal { .. })));
            let phc = hasher
                .run(|w| w.hash("still works"))
                .await
                .unwrap()
                .unwrap();
            let verified = hasher
                .run(move |w| w.verify("still works", Some(&phc)))
                .await;
            assert!(verified.unwrap());
        }
    }

    /// The working memory is allocated once and reused from one hash to the next; a stored
    /// hash of another cost leaves it at the configured size.
    #[test]
    fn the_working_memory_is_reused() {
        let mut hasher = worker(Argon2Params {
            memory_kib: 512,
            iterations: 1,
            parallelism: 1,
        });
        let phc = hasher.hash("first").unwrap();
        assert_eq!(hasher.memory.len(), 512);
        let at = hasher.memory.as_ptr();
        hasher.verify("first", Some(&phc));
        hasher.verify("someone unknown", None);
        hasher.hash("second").unwrap();
        assert_eq!(hasher.memory.as_ptr(), at);
        assert_eq!(hasher.memory.len(), 512);
        let bigger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"old", &SaltString::encode_b64(&[1u8; 16]).unwrap())
        .unwrap()
        .to_string();
        assert!(hasher.verify("old", Some(&bigger)));
        assert_eq!(hasher.memory.len(), 512);
    }

    #[test]
    fn unknown_users_and_corrupt_hashes_never_verify() {
        let mut hasher = worker(Argon2Params::CHEAPEST);
        assert!(!hasher.verify("anything", None));
        assert!(!hasher.verify("", None));
        assert!(!hasher.verify("x", Some("not a phc string")));
        let greedy = "$argon2id$v=19$m=8388608,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(
            !hasher.verify("x", Some(greedy)),
            "a memory cost past the largest"
        );
        let slow = "$argon2id$v=19$m=64,t=4294967295,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(
            !hasher.verify("x", Some(slow)),
            "a time cost past the largest"
        );
        assert!(hasher.memory.len() < 1024);
    }
}
