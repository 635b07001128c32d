//! Issue 15's two opt-in modes, measured on the emulators (DynamoDB Local, ministack):
//!
//! 1. **Signing**: signatures per second of one signer (sequential, and 32 in flight) and
//!    p50/p99 of a whole login (`TokenService::login`, cheapest argon2: BatchGetItem + hash +
//!    sign + TransactWriteItems) and refresh (GetItem + sign + TransactWriteItems) on
//!    DynamoDB Local, with a data key (`TOKENLIFE_SIGNING=data-key`:
//!    local signing after one Decrypt) vs a KMS `Sign` — ministack's round trip, and the
//!    same with 15 ms added before every KMS request (an HTTP client wrapper) to model real
//!    KMS.
//! 2. **Revocation checks**: verifications per second and p50/p99 of `authorize` on
//!    DynamoDB Local in `lookup` mode (one BatchGetItem each) vs `mirror` mode (none).
//! 3. **Mirror memory**: the heap the mirror holds for 100 000 live entries (a counting
//!    allocator around the system one), loaded from the in-memory store.
//!
//! Run: `scripts/emulators start && . "$(scripts/emulators env)"` then `cargo bench -p
//! tokenlife-tests --bench aws_modes`; it prints Markdown tables (BENCHMARKS.md "Past the
//! AWS ceilings"). Without `--bench` (the test command) it is a smoke run of seconds over
//! every path (tests/aws.rs counts their AWS calls).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use tokenlife::app::AwsClients;
use tokenlife::clock::{Clock, ManualClock, SystemClock};
use tokenlife::config::{Argon2Params, Backend, Config, RevocationCheck, Signing};
use tokenlife::keys::{KeyState, KeyVault, KmsVault, SigningAlgorithm};
use tokenlife::service::mirror::{RevocationMirror, StoreFeed};
use tokenlife::setup::ensure_tables_and_signing_key;
use tokenlife::store::{MemoryStore, Revocation, RevocationKey, SessionStore, TableNames};
use tokenlife::testkit::{On, Users, require_emulators, unique};
use tokenlife::{App, TokenService};

/// Net heap bytes allocated by this process (the mirror's figure is a difference).
static HEAP: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// (operations per sample run, mirror entries)
fn sizes() -> (usize, usize) {
    if measuring() {
        (400, 100_000)
    } else {
        (5, 1_000)
    }
}

/// Adds `delay` before every request of a client: a model of a far-away service.
#[derive(Debug)]
struct Delayed {
    inner: SharedHttpConnector,
    delay: Duration,
}

impl HttpConnector for Delayed {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, delay) = (self.inner.clone(), self.delay);
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(delay).await;
            inner.call(request).await
        })
    }
}

async fn clients(kms_delay: Duration) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let mut kms = aws_sdk_kms::config::Builder::from(&sdk);
    if !kms_delay.is_zero() {
        // The emulators speak plain HTTP on loopback.
        let base = aws_smithy_http_client::Builder::new().build_http();
        kms = kms.http_client(http_client_fn(move |settings, components| {
            SharedHttpConnector::new(Delayed {
                inner: base.http_connector(settings, components),
                delay: kms_delay,
            })
        }));
    }
    AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).build(),
        ),
        kms: aws_sdk_kms::Client::from_conf(kms.build()),
    }
}

fn config(edit: impl FnOnce(&mut Config)) -> Config {
    let name = unique("bench");
    let mut config = Config {
        backend: Backend::Aws,
        stack: name.clone(),
        tables: TableNames::for_stack(&name),
        argon2: Argon2Params::CHEAPEST,
        ..Config::default()
    };
    edit(&mut config);
    config
}

/// A deployment on fresh tables, set up as `tokenlife setup` would.
async fn deployment(config: Config, clients: &AwsClients) -> Arc<TokenService> {
    ensure_tables_and_signing_key(&config, clients)
        .await
        .unwrap();
    App::aws(
        config,
        "https://issuer.bench",
        clients.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
    .service
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Latencies of `n` sequential calls, sorted.
async fn latencies<F, Fut>(n: usize, mut call: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        call().await;
        all.push(start.elapsed());
    }
    all.sort();
    all
}

/// Signatures per second with `in_flight` concurrent signers of one key, over `n` each.
async fn signing_rate(signer: Arc<dyn tokenlife::keys::Signer>, n: usize, in_flight: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let signer = signer.clone();
        tasks.spawn(async move {
            for i in 0..n {
                signer
                    .sign(format!("bench message {i}").as_bytes())
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    (n * in_flight) as f64 / start.elapsed().as_secs_f64()
}

async fn signing(n: usize) {
    println!("\n### Signing: data key vs KMS Sign (ministack), per algorithm\n");
    println!(
        "| alg | mode | signatures/s, 1 at a time | signatures/s, 32 in flight | login p50 / p99 (ms) | refresh p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for alg in [SigningAlgorithm::Es256, SigningAlgorithm::Rs256] {
        for (mode, signing, delay) in [
            ("data key", Signing::DataKey, Duration::ZERO),
            ("KMS Sign (ministack)", Signing::Kms, Duration::ZERO),
            ("KMS Sign + 15 ms", Signing::Kms, Duration::from_millis(15)),
        ] {
            let clients = clients(delay).await;
            let config = config(|c| {
                c.algorithm = alg;
                c.signing = signing;
            });
            let keys_table = config.tables.keys.clone();
            let service = deployment(config, &clients).await;
            let record = service
                .list_keys()
                .await
                .unwrap()
                .into_iter()
                .find(|k| k.state == KeyState::Active)
                .unwrap();
            let vault = KmsVault::new(clients.kms.clone(), &keys_table, 7, None);
            let signer = vault.signer(&record).unwrap();
            signer
                .sign(b"warm up (a data key unwraps here)")
                .await
                .unwrap();
            let sequential = signing_rate(signer.clone(), n, 1).await;
            let concurrent = signing_rate(signer, n.div_ceil(8), 32).await;

            On(&service).add_user("alice", &["user"]).await;
            let mut logins = Vec::new();
            for _ in 0..n.min(200) {
                let start = Instant::now();
                On(&service).login("alice").await;
                logins.push(start.elapsed());
            }
            logins.sort();
            let mut token = On(&service).login("alice").await.refresh_token;
            let mut refreshes = Vec::new();
            for _ in 0..n.min(200) {
                let start = Instant::now();
                token = On(&service).refresh(&token).await.unwrap().refresh_token;
                refreshes.push(start.elapsed());
            }
            refreshes.sort();
            println!(
                "| {} | {mode} | {sequential:.0} | {concurrent:.0} | {} / {} | {} / {} |",
                alg.name(),
                ms(percentile(&logins, 0.5)),
                ms(percentile(&logins, 0.99)),
                ms(percentile(&refreshes, 0.5)),
                ms(percentile(&refreshes, 0.99)),
            );
        }
    }
}

async fn revocation_checks(n: usize) {
    println!("\n### Verification on DynamoDB Local: lookup vs mirror\n");
    println!("| mode | verifications/s, 1 at a time | p50 (ms) | p99 (ms) |");
    println!("|---|---|---|---|");
    let clients = clients(Duration::ZERO).await;
    for (name, check) in [
        ("lookup (BatchGetItem)", RevocationCheck::Lookup),
        ("mirror", RevocationCheck::Mirror),
    ] {
        let service = deployment(config(|c| c.revocation_check = check), &clients).await;
        On(&service).add_user("alice", &["user"]).await;
        let token = On(&service).login("alice").await.access_token;
        service.authorize(&token).await.unwrap(); // warm: key ring, mirror's first read
        let n = n * 10;
        let start = Instant::now();
        let all = latencies(n, || async {
            service.authorize(&token).await.unwrap();
        })
        .await;
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!(
            "| {name} | {rate:.0} | {} | {} |",
            ms(percentile(&all, 0.5)),
            ms(percentile(&all, 0.99))
        );
    }
}

async fn mirror_memory(entries: usize) {
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let store = Arc::new(MemoryStore::new(clock.clone()));
    // A realistic mix: mostly access tokens (`jti`, 22 characters), some sessions and users.
    for i in 0..entries {
        let id = format!("{:022}", i);
        let key = match i % 10 {
            0 => RevocationKey::Session(format!("s{id}")),
            1 => RevocationKey::User(format!("u{id}")),
            _ => RevocationKey::Token(id),
        };
        let revocation = Revocation {
            key,
            expires_at: clock.now_secs() + 3_600,
            below_version: 2,
        };
        store.put_revocation(&revocation).await.unwrap();
    }
    let before = HEAP.load(Ordering::SeqCst);
    let mirror = RevocationMirror::new(
        Arc::new(StoreFeed(store.clone())),
        clock,
        1,
        10,
        tokenlife::service::mirror::MIRROR_MAX_ENTRIES,
    );
    let start = Instant::now();
    mirror.find(&[]).await.unwrap();
    let load = start.elapsed();
    let held = HEAP.load(Ordering::SeqCst) - before;
    assert_eq!(mirror.len(), entries);
    println!("\n### Revocation mirror memory\n");
    println!("| live entries | heap held | per entry | load from the in-memory store |");
    println!("|---|---|---|---|");
    println!(
        "| {entries} | {:.1} MiB | {} bytes | {} ms |",
        held as f64 / 1_048_576.0,
        held / entries as isize,
        load.as_millis()
    );
}

fn main() {
    require_emulators();
    let (n, entries) = sizes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        mirror_memory(entries).await;
        revocation_checks(n).await;
        signing(n).await;
    });
    if !measuring() {
        println!("\n(smoke run: figures not meaningful; `cargo bench` for measurements)");
    }
}
