//! The `tokenlife serve` harness: the real binary on a free port with its own users (and,
//! on the aws backend, its own tables and key), driven over HTTP; its output is kept to be
//! checked for leaked secrets. Used by the end-to-end tests.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::password_of;
use crate::config::Backend;

/// Environment for an `aws` server with its own tables and key; fails (never skips) when the
/// emulators are not configured.
pub fn aws_env() -> Vec<(String, String)> {
    super::require_emulators();
    vec![
        ("TOKENLIFE_BACKEND".into(), "aws".into()),
        // One name for the deployment, as an operator would give it.
        ("TOKENLIFE_STACK".into(), super::unique("e2e")),
    ]
}

/// The confidential client every harness server has (`--client` on the embedded default,
/// `tokenlife clients add` on aws; its secret is [`Server::service_secret`]): every grant,
/// any scope, may introspect.
pub const TEST_SERVICE_CLIENT: &str = "svc";

pub struct Server {
    /// The `tokenlife` binary it runs (and `keys_command` runs).
    binary: PathBuf,
    child: Child,
    pub base: String,
    /// Its Prometheus metrics (`--metrics-addr`, on a port of its own).
    pub metrics_url: String,
    /// The secret of [`TEST_SERVICE_CLIENT`].
    pub service_secret: String,
    /// The TOKENLIFE_* settings it runs with (for `tokenlife keys` against the same tables).
    pub env: Vec<(String, String)>,
    output: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `binary serve` on a free port with users `alice` and `root` (admin), on
    /// `backend` (on aws: fresh tables and key, set up twice to check `setup` is
    /// idempotent), with the settings `env` on top of cheap password hashing.
    pub fn start(binary: impl Into<PathBuf>, backend: Backend, env: &[(&str, &str)]) -> Server {
        let binary = binary.into();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if backend == Backend::Aws {
            env.extend(aws_env());
            // `tokenlife setup`, twice: the second run must succeed and change nothing.
            for run in 0..2 {
                let output = tokenlife(&binary, &env)
                    .arg("setup")
                    .output()
                    .expect("run tokenlife setup");
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "setup failed: {stdout} {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                if run == 1 {
                    assert!(
                        !stdout.contains("created") && !stdout.contains("turned on"),
                        "second setup changed something: {stdout}"
                    );
                }
            }
        }
        // The kit's clients: on aws registered by `tokenlife clients add`, as an operator
        // would (serve's --client is for the embedded default only).
        let (client_args, service_secret) = match backend {
            Backend::Memory => {
                let secret = password_of(TEST_SERVICE_CLIENT);
                let mut args: Vec<String> = Vec::new();
                for id in super::TEST_CLIENTS {
                    args.extend(["--client".into(), id.into()]);
                }
                args.extend(["--client".into(), format!("{TEST_SERVICE_CLIENT}:{secret}")]);
                (args, secret)
            }
            Backend::Aws => {
                let add = |args: &[&str]| -> Value {
                    let output = tokenlife(&binary, &env)
                        .args(["clients", "add"])
                        .args(args)
                        .arg("--json")
                        .output()
                        .expect("run tokenlife clients add");
                    assert!(
                        output.status.success(),
                        "clients add failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    serde_json::from_slice(&output.stdout).expect("clients add --json")
                };
                for id in super::TEST_CLIENTS {
                    add(&[id, "--id", id, "--scope", "*"]);
                }
                let service = add(&[
                    TEST_SERVICE_CLIENT,
                    "--id",
                    TEST_SERVICE_CLIENT,
                    "--confidential",
                    "--scope",
                    "*",
                    "--grant",
                    "password",
                    "--grant",
                    "refresh_token",
                    "--grant",
                    "client_credentials",
                    "--introspect",
                ]);
                let secret = service["client_secret"].as_str().unwrap().to_owned();
                (Vec::new(), secret)
            }
        };
        let mut child = tokenlife(&binary, &env)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--user", &format!("alice:{}", password_of("alice"))])
            .args(["--user", &format!("root:{}:admin", password_of("root"))])
            .args(&client_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tokenlife serve");
        // The first line on stdout names the base URL; logs go to stderr.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        let base = match first.trim().strip_prefix(crate::http::LISTENING) {
            Some(base) => base.to_owned(),
            None => {
                let mut rest = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut rest);
                }
                panic!("no banner; stdout: {first:?}; stderr: {rest}")
            }
        };
        // The second names the metrics URL.
        let mut second = String::new();
        let _ = stdout.read_line(&mut second);
        let metrics_url = second
            .trim()
            .strip_prefix(crate::http::METRICS_AT)
            .unwrap_or_else(|| panic!("no metrics line: {second:?}"))
            .to_owned();
        let output = Arc::new(Mutex::new(first + &second));
        for stream in [
            Box::new(stdout) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Server {
            binary,
            child,
            base,
            metrics_url,
            service_secret,
            env,
            output,
            agent,
        }
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut builder = http_request(method, &url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .unwrap();
        let mut response = self.agent.run(request).expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    pub fn post_json(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", path, &all, Some(body.to_string().as_bytes()))
    }

    pub fn post_form(&self, path: &str, form: &str) -> Answer {
        self.send(
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(form.as_bytes()),
        )
    }

    pub fn login(&self, username: &str, password: &str) -> Answer {
        self.post_json(
            "/login",
            json!({ "username": username, "password": password }),
            &[],
        )
    }

    pub fn userinfo(&self, access_token: &str) -> Answer {
        let bearer = format!("Bearer {access_token}");
        self.send("GET", "/userinfo", &[("authorization", &bearer)], None)
    }

    pub fn refresh(&self, refresh_token: &str) -> Answer {
        self.post_json("/refresh", json!({ "refresh_token": refresh_token }), &[])
    }

    /// `GET` on the metrics listener at `path`: the status, `Content-Type` and text.
    pub fn metrics_get(&self, path: &str) -> (u16, String, String) {
        let base = self.metrics_url.trim_end_matches("/metrics");
        let mut response = self
            .agent
            .run(
                http_request("GET", &format!("{base}{path}"))
                    .body(Vec::new())
                    .unwrap(),
            )
            .expect("request reaches the metrics listener");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), content_type, text)
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Fails if the server ever printed any of `secrets`.
    pub fn assert_output_free_of(&self, secrets: &[&str]) {
        std::thread::sleep(Duration::from_millis(200));
        let output = self.output.lock().unwrap();
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            for part in super::secret_parts(secret) {
                assert!(
                    !output.contains(part),
                    "the server printed a secret or a part of one: {:.6}...",
                    part
                );
            }
        }
    }
}

/// `binary` with exactly the settings `env` on top of cheap password hashing: no
/// `TOKENLIFE_*` variable of the test's own environment leaks in.
fn tokenlife(binary: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TOKENLIFE_") {
            command.env_remove(key);
        }
    }
    command
        .env("TOKENLIFE_ARGON2_MEMORY_KIB", "1024")
        .env("TOKENLIFE_ARGON2_ITERATIONS", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

fn http_request(method: &str, url: &str) -> ureq::http::request::Builder {
    ureq::http::Request::builder().method(method).uri(url)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer: status, headers, JSON body (`null` if none).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {:?}", self.body))
            .to_owned()
    }

    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{:?}", self.body);
        self
    }

    pub fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["error"], code, "{:?}", self.body);
        assert!(self.body["error_description"].is_string());
        self
    }
}

/// 30 threads present the same refresh token at once.
pub fn race_refreshes(server: &Server, refresh_token: &str) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(30));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|_| {
                let barrier = barrier.clone();
                scope.spawn(move || {
                    barrier.wait();
                    server.refresh(refresh_token)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

impl Server {
    /// The signing keys as (kid, state), from the admin route.
    pub fn keys(&self) -> Vec<(String, String)> {
        let admin = self
            .login("root", &password_of("root"))
            .expect(200)
            .text("access_token");
        let bearer = format!("Bearer {admin}");
        let answer = self
            .send("GET", "/admin/keys", &[("authorization", &bearer)], None)
            .expect(200);
        answer.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k.text_of("kid"), k.text_of("state")))
            .collect()
    }

    /// A rotation step or an emergency retirement (`command` = ["rotate"] or ["retire",
    /// kid]): through the admin route on the embedded default (the keys live in the server),
    /// through `tokenlife keys` — another process — on aws. Returns what was done.
    /// Runs `tokenlife <args>` with this server's settings (same tables), `stdin` piped in.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        self.cli_with(args, stdin, &[])
    }

    /// [`Server::cli`] with some settings changed.
    pub fn cli_with(
        &self,
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> std::process::Output {
        use std::io::Write;
        let mut child = tokenlife(&self.binary, &self.env)
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tokenlife");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("tokenlife ran")
    }

    /// An access token of `root` (the admin user every server starts with).
    pub fn admin_token(&self) -> String {
        self.login("root", &password_of("root"))
            .expect(200)
            .text("access_token")
    }

    pub fn keys_command(&self, backend: Backend, command: &[&str]) -> String {
        match backend {
            Backend::Memory => {
                let admin = self.admin_token();
                let path = match command {
                    ["rotate"] => "/admin/keys/rotate".to_owned(),
                    ["retire", kid] => format!("/admin/keys/{kid}/retire"),
                    other => panic!("no route for {other:?}"),
                };
                let bearer = format!("Bearer {admin}");
                let answer = self.send("POST", &path, &[("authorization", &bearer)], None);
                assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
                answer.body["actions"].to_string()
            }
            Backend::Aws => {
                let output = tokenlife(&self.binary, &self.env)
                    .arg("keys")
                    .args(command)
                    .output()
                    .expect("run tokenlife keys");
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                assert!(
                    output.status.success(),
                    "tokenlife keys {command:?}: {stdout} {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                stdout
            }
        }
    }
}

pub trait TextOf {
    fn text_of(&self, field: &str) -> String;
}

impl TextOf for Value {
    fn text_of(&self, field: &str) -> String {
        self[field].as_str().unwrap_or_default().to_owned()
    }
}
