//! `tokenlife serve`: an HTTP/1.1 server (hyper) that turns each request into the same
//! `lambda_http::Request` API Gateway would produce and answers it with the shared handler.
//!
//! Bounded against slow and idle clients: at most [`MAX_CONNECTIONS`] connections at once
//! (the accept loop waits for one to end), each for at most [`CONNECTION_LIFETIME`],
//! request headers within [`HEADER_TIMEOUT`], the body within [`BODY_TIMEOUT`]; password
//! hashing is bounded by the service itself.
//!
//! Output contract (scripts rely on it): the first line on stdout is
//! `tokenlife listening on <base URL>`, printed once the server accepts connections; with
//! `--metrics-addr`, the second is `tokenlife metrics at <URL>`; the rest of stdout is the
//! human banner; logs go to stderr.
//!
//! Metrics ([`tokenlife::metrics`], Prometheus text) are served only on their own
//! listener, off by default and never on the API's address: `GET /metrics`, nothing else.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokenlife::clock::SystemClock;
use tokenlife::config::Backend;
use tokenlife::http::handlers::new_user_scopes;
use tokenlife::http::request::{MAX_BODY_BYTES, PeerAddr, client_address};
use tokenlife::http::{LISTENING, METRICS_AT, ROUTES, handle, response};
use tokenlife::service::clients::{
    ANY_SCOPE, GRANT_PASSWORD, GRANT_REFRESH_TOKEN, GRANTS, NewClient,
};
use tokenlife::{App, Config, Error, TokenService};
use tokio::net::TcpListener;

/// Connections served at once (below the common limit of 1024 open files, with room for
/// the listener, the AWS SDK's connections and the rest).
const MAX_CONNECTIONS: usize = 512;
/// The longest a connection lives (then it is closed gracefully; clients reconnect), and
/// how long its last answer may take then.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a client may take to send a request's headers, and then its body.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Development only: create or update a user at start (repeatable); `:admin` adds the
    /// admin scope. The password is in argv (visible to other local users and kept in shell
    /// history): for a deployment use `tokenlife users add --password-stdin`.
    #[arg(long = "user", value_name = "NAME:PASSWORD[:admin]", value_parser = UserArg::parse)]
    users: Vec<UserArg>,
    /// Development only, embedded default only: register a client at start (repeatable) —
    /// `ID` a public one, `ID:SECRET` a confidential one (the secret in argv, like --user's
    /// password) — allowed every grant and any scope (`*`, which never covers `admin`), and
    /// a confidential one to introspect any token. On aws, `tokenlife clients add`.
    #[arg(long = "client", value_name = "ID[:SECRET]", value_parser = ClientArg::parse)]
    clients: Vec<ClientArg>,
    /// Serve Prometheus metrics at `GET /metrics` on this address (e.g. 127.0.0.1:9464),
    /// apart from the API; off unless given. Counts and timings only, never a secret, but
    /// keep it off the internet.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Clone)]
struct UserArg {
    name: String,
    password: String,
    admin: bool,
}

#[derive(Clone)]
struct ClientArg {
    id: String,
    secret: Option<String>,
}

impl ClientArg {
    /// `ID` or `ID:SECRET` (ids have no ':'; the secret may).
    fn parse(text: &str) -> Result<Self, String> {
        let (id, secret) = match text.split_once(':') {
            Some((id, secret)) => (id, Some(secret.to_owned())),
            None => (text, None),
        };
        if id.is_empty() || secret.as_deref() == Some("") {
            return Err("--client wants ID or ID:SECRET, both non-empty".into());
        }
        Ok(Self {
            id: id.to_owned(),
            secret,
        })
    }
}

impl UserArg {
    /// `NAME:PASSWORD` or `NAME:PASSWORD:admin` (the password may itself contain ':').
    fn parse(text: &str) -> Result<Self, String> {
        let (name, rest) = text
            .split_once(':')
            .ok_or("--user wants NAME:PASSWORD[:admin]")?;
        let (password, admin) = match rest.strip_suffix(":admin") {
            Some(password) => (password, true),
            None => (rest, false),
        };
        if name.is_empty() || password.is_empty() {
            return Err(
                "--user wants NAME:PASSWORD[:admin] with a non-empty name and password".into(),
            );
        }
        Ok(Self {
            name: name.to_owned(),
            password: password.to_owned(),
            admin,
        })
    }
}

pub fn run(args: ServeArgs, config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    match runtime.block_on(serve(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("tokenlife serve: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs, config: Config) -> Result<(), String> {
    if !args.clients.is_empty() && config.backend != Backend::Memory {
        return Err(
            "--client registers development clients in the embedded default only; on aws, \
             register them with `tokenlife clients add` (a secret chosen by hand has no place \
             in a deployment)"
                .into(),
        );
    }
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let base_url = format!("http://{local}");
    let app = App::from_config(config, &base_url, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    // An active signing key from the start (on aws: created in KMS if the registry is empty).
    app.service
        .ensure_active_key()
        .await
        .map_err(|e| format!("signing key: {}", e.for_operator()))?;
    for user in &args.users {
        let scopes = new_user_scopes(None, user.admin);
        app.service
            .put_user(&user.name, &user.password, scopes)
            .await
            .map_err(|e| format!("cannot create user {:?}: {}", user.name, e.for_operator()))?;
    }
    let metrics_url = match args.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, app.service.clone()).await?),
        None => None,
    };
    for client in &args.clients {
        let confidential = client.secret.is_some();
        let grants = if confidential {
            GRANTS.to_vec()
        } else {
            vec![GRANT_PASSWORD, GRANT_REFRESH_TOKEN]
        };
        let registered = app
            .service
            .register_client(NewClient {
                id: Some(client.id.clone()),
                name: client.id.clone(),
                confidential,
                grant_types: grants.into_iter().map(String::from).collect(),
                scopes: vec![ANY_SCOPE.to_owned()],
                may_introspect: confidential,
                secret: client.secret.clone(),
            })
            .await;
        let outcome = registered.map(|_| ());
        outcome.map_err(|e| {
            format!(
                "cannot register client {:?}: {}",
                client.id,
                e.for_operator()
            )
        })?;
    }
    print_banner(&base_url, metrics_url.as_deref(), &app.service, &args.users);

    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // At the limit, wait for a connection to end before accepting another.
        let Ok(slot) = connections.clone().acquire_owned().await else {
            return Err("the connection limit is gone".into());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: pause rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = app.service.clone();
        tokio::spawn(async move {
            let answer = service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&service, peer, request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), answer);
            tokio::pin!(connection);
            // A connection lives at most CONNECTION_LIFETIME: a client that pipelines
            // requests and never reads the answers cannot hold its slot for ever.
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                }
            }
            drop(slot);
        });
    }
}

/// Connections to the metrics listener at once (a scraper or two, and curl), each for one
/// request and at most [`METRICS_CONNECTION_LIFETIME`]: a client that opens connections
/// and idles holds a slot for seconds, not minutes.
const MAX_METRICS_CONNECTIONS: usize = 8;
const METRICS_CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the metrics listener on `addr`; its URL.
async fn serve_metrics(addr: SocketAddr, service: Arc<TokenService>) -> Result<String, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_METRICS_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = connections.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let answer = service_fn(move |request: hyper::Request<Incoming>| {
                    let service = service.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(metrics_answer(&service, &request).await)
                    }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .keep_alive(false)
                    .header_read_timeout(METRICS_CONNECTION_LIFETIME)
                    .serve_connection(TokioIo::new(stream), answer);
                let _ = tokio::time::timeout(METRICS_CONNECTION_LIFETIME, connection).await;
                drop(slot);
            });
        }
    });
    Ok(format!("http://{local}/metrics"))
}

/// `GET /metrics`: the Prometheus text; anything else a 404 or 405.
async fn metrics_answer(
    service: &TokenService,
    request: &hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let plain = |status: u16, text: String| {
        let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(404, "not found: metrics are at /metrics\n".into());
    }
    if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        let mut response = plain(405, "only GET /metrics\n".into());
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    // The key age as of now, not of the last token signed.
    service.record_signing_key_age().await;
    plain(200, tokenlife::metrics::prometheus_text())
}

/// Reads the body (up to the limit), builds the `lambda_http::Request`, and answers it with
/// the shared handler.
async fn answer(
    service: &TokenService,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    // The source address sessions, limits and the audit trail record: the connection's
    // peer, or what the trusted proxies in front say.
    let hops = service.config().trusted_proxy_hops;
    parts
        .extensions
        .insert(PeerAddr(client_address(peer.ip(), &parts.headers, hops)));
    let body = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect());
    let response = match body.await {
        Err(_) => response::error(&Error::InvalidRequest(
            "the request body did not arrive in time".into(),
        )),
        Ok(Err(_)) => response::error(&Error::PayloadTooLarge),
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            let body = if bytes.is_empty() {
                lambda_http::Body::Empty
            } else {
                lambda_http::Body::Binary(bytes.to_vec())
            };
            handle(service, None, lambda_http::Request::from_parts(parts, body)).await
        }
    };
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// The one-screen "how to try it". Never prints a password.
fn print_banner(
    base_url: &str,
    metrics_url: Option<&str>,
    service: &TokenService,
    users: &[UserArg],
) {
    let mut text = format!("{LISTENING}{base_url}\n");
    if let Some(url) = metrics_url {
        text += &format!("{METRICS_AT}{url}\n");
    }
    let config = service.config();
    text += &match config.backend {
        Backend::Memory => format!(
            "  embedded default: in-memory stores, {} keys held in this process\n",
            config.algorithm.name()
        ),
        Backend::Aws => format!(
            "  aws backend: tables {}, {}, {}, {}; {} keys in KMS\n",
            config.tables.users,
            config.tables.sessions,
            config.tables.revocations,
            config.tables.keys,
            config.algorithm.name(),
        ),
    };
    text += &format!(
        "  issuer {}  audience {}\n\nRoutes:\n",
        service.issuer(),
        service.config().audience
    );
    for route in ROUTES {
        text += &format!("  {:<5} {base_url}{}\n", route.method, route.path);
    }
    text += "\nUsers: ";
    if users.is_empty() {
        text += "none (add some with --user NAME:PASSWORD[:admin])\n";
    } else {
        let names: Vec<String> = users
            .iter()
            .map(|u| {
                if u.admin {
                    format!("{} (admin)", u.name)
                } else {
                    u.name.clone()
                }
            })
            .collect();
        text += &format!("{}\n", names.join(", "));
    }
    let example_user = users.first().map_or("alice", |u| u.name.as_str());
    text += &format!(
        "\nTry it:\n  curl -s -X POST {base_url}/login -H 'content-type: application/json' \\\n       -d '{{\"username\":\"{example_user}\",\"password\":\"<password>\"}}'\n  curl -s {base_url}/userinfo -H \"authorization: Bearer $ACCESS_TOKEN\"\n"
    );
    // One write, flushed: a script reading the first line sees it at once.
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}
