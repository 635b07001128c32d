//! Third-party verifiers: Node `jose` checks our tokens against our JWKS, once per token
//! and as a long-running JWKS client (used by the rotation tests).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tokenlife::both_backends;
use tokenlife::config::Backend;
use tokenlife::testkit::password_of;
use tokenlife::testkit::serve::Server;

use super::serve;

both_backends!(jose_verifies_our_tokens => a_third_party_verifier_accepts_our_tokens_against_our_jwks);

fn a_third_party_verifier_accepts_our_tokens_against_our_jwks(backend: Backend) {
    jose_verifies(backend, &[]);
}

/// Tokens signed in this process with a KMS-wrapped data key (`TOKENLIFE_SIGNING=data-key`,
/// set up by `tokenlife setup` on the emulators: wrapping key, alias, data key pair).
#[test]
fn a_third_party_verifier_accepts_data_key_tokens() {
    jose_verifies(Backend::Aws, &[("TOKENLIFE_SIGNING", "data-key")]);
}

fn jose_verifies(backend: Backend, settings: &[(&str, &str)]) {
    let verifier = jose_script("verify.mjs");
    for alg in ["ES256", "RS256"] {
        let mut env = vec![("TOKENLIFE_ALG", alg), ("TOKENLIFE_AUDIENCE", "orders-api")];
        env.extend_from_slice(settings);
        let server = serve(backend, &env);
        let access = server
            .login("alice", &password_of("alice"))
            .expect(200)
            .text("access_token");
        let mut forged = access.clone();
        forged.replace_range(forged.len() - 6.., "AAAAAA");
        let jwks_url = format!("{}/.well-known/jwks.json", server.base);
        let output = Command::new("node")
            .arg(&verifier)
            .args([&jwks_url, &server.base, "orders-api", &access, &forged])
            .output()
            .expect("node runs (Node 20 is on the machine)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "jose said: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            lines[0]["ok"], true,
            "{alg}: jose refused our token: {}",
            lines[0]
        );
        assert_eq!(lines[0]["alg"], alg);
        assert_eq!(
            lines[1]["ok"], false,
            "{alg}: jose accepted a forged signature"
        );
        let me = server.userinfo(&access).expect(200);
        assert_eq!(lines[0]["sub"], me.body["sub"]);
    }
}

/// The path of an installed `tests/jose/<script>` (`./scripts/test` installs them).
fn jose_script(script: &str) -> std::path::PathBuf {
    let Ok(verifier) = std::env::var("TOKENLIFE_TEST_JOSE_VERIFIER") else {
        panic!(
            "TOKENLIFE_TEST_JOSE_VERIFIER is not set: run ./scripts/test, which installs the Node jose \
             verifier (tests/jose) with npm and sets it, or set it to the path of an installed verify.mjs"
        );
    };
    std::path::Path::new(&verifier).with_file_name(script)
}

/// A long-running third-party JWKS client (jose's `createRemoteJWKSet`, with its own cache
/// of our key set): `tests/jose/verify-stream.mjs`.
pub struct JoseClient {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl JoseClient {
    /// Caches the key set for `cache_max_age_ms`; refetches on an unknown kid at most once
    /// per `cooldown_ms`.
    pub fn start(server: &Server, audience: &str, cache_max_age_ms: u64, cooldown_ms: u64) -> Self {
        let mut child = Command::new("node")
            .arg(jose_script("verify-stream.mjs"))
            .arg(format!("{}/.well-known/jwks.json", server.base))
            .args([&server.base, audience])
            .args([cache_max_age_ms.to_string(), cooldown_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs (Node 20 is on the machine)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub fn verify(&mut self, token: &str) -> Value {
        use std::io::Write;
        writeln!(self.stdin, "{token}").expect("jose client is running");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("jose client said {line:?}"))
    }
}

impl Drop for JoseClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
