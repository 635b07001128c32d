//! Cold start of each Lambda `bootstrap`: the time from process start until its first
//! `GET /2018-06-01/runtime/invocation/next` — everything the function does at init —
//! against a minimal Lambda Runtime API of ours on a loopback port.
//!
//! `cargo lambda build --release` first, then `cargo bench -p tokenlife-tests --bench
//! cold_start` (or pass bootstrap paths as arguments). Each bootstrap is started 30 times on
//! each backend (`memory`; `aws` with endpoints nobody answers, which proves init makes no
//! network call: it would hang or fail). Prints a Markdown table of median and p90.
//!
//! Without `--bench` (as `cargo test --benches` runs it, in the test command) it is a smoke
//! run: each function's debug binary (`cargo build --workspace --bins`) started twice per
//! backend; it still fails if a function makes a network call at init or never asks for
//! its first invocation.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Lambda functions, by binary name.
const FUNCTIONS: &[&str] = &[
    "login",
    "refresh",
    "revoke",
    "jwks",
    "authorizer",
    "rotate-keys",
];

fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn bootstraps() -> Vec<PathBuf> {
    let args: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    if !args.is_empty() {
        return args;
    }
    let target = target_dir();
    if smoke() {
        return FUNCTIONS
            .iter()
            .map(|f| target.join("debug").join(f))
            .collect();
    }
    let mut found: Vec<PathBuf> = FUNCTIONS
        .iter()
        .map(|f| target.join("lambda").join(f).join("bootstrap"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
}

/// Starts `bootstrap` and returns the time until it asks for its first invocation.
fn time_to_first_next(bootstrap: &Path, listener: &TcpListener, backend: &str) -> Duration {
    let port = listener.local_addr().unwrap().port();
    let function = function_name(bootstrap);
    let start = Instant::now();
    let mut child = Command::new(bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", &function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/cold-start")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART")
        .env("AWS_SECRET_ACCESS_KEY", "cold-start")
        .env("AWS_SESSION_TOKEN", "cold-start")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Nothing listens here: a network call at init would fail or hang the start.
        .env("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:9")
        .env("TOKENLIFE_BACKEND", backend)
        .env("TOKENLIFE_ISSUER", "https://auth.example.com")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bootstrap.display()));
    // Wait for the connection, but notice a bootstrap that dies during init (e.g. a network
    // call at init that failed) instead of waiting forever.
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} ({backend}) exited during init: {status}",
                        bootstrap.display()
                    );
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{} ({backend}) did not start within 10 s",
                    bootstrap.display()
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut request_line = String::new();
    BufReader::new(&stream)
        .read_line(&mut request_line)
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        request_line.starts_with("GET /2018-06-01/runtime/invocation/next"),
        "{}: first request was {request_line:?}",
        bootstrap.display()
    );
    drop(stream);
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

/// `target/lambda/<function>/bootstrap` or `target/debug/<function>`.
fn function_name(binary: &Path) -> String {
    let named = if binary.file_name().is_some_and(|n| n == "bootstrap") {
        binary.parent().and_then(Path::file_name)
    } else {
        binary.file_name()
    };
    named
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = if smoke() { 2 } else { 30 };
    let bootstraps = bootstraps();
    if let Some(missing) = bootstraps.iter().find(|b| !b.exists()) {
        eprintln!(
            "{} is missing: `cargo build --workspace --bins` builds it",
            missing.display()
        );
        std::process::exit(1);
    }
    if smoke() {
        println!("(smoke run of debug binaries: not a measurement; `cargo bench` measures)");
    }
    if bootstraps.is_empty() {
        eprintln!("no bootstraps: run `cargo lambda build --release` first, or pass their paths");
        std::process::exit(1);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    println!("| function | backend | init median (ms) | init p90 (ms) | size (bytes) |");
    println!("|---|---|---|---|---|");
    for bootstrap in &bootstraps {
        let size = std::fs::metadata(bootstrap).map(|m| m.len()).unwrap_or(0);
        for backend in ["memory", "aws"] {
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| time_to_first_next(bootstrap, &listener, backend))
                .collect();
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "| {} | {backend} | {:.1} | {:.1} | {size} |",
                function_name(bootstrap),
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.9)),
            );
        }
    }
}
