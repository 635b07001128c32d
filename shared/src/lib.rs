//! tokenlife: the token-lifecycle library shared by every Lambda function and the CLI.
//!
//! It issues short-lived JWT access tokens (RFC 9068 profile) and long-lived opaque refresh
//! tokens, rotates refresh tokens atomically with reuse detection and a grace window
//! (RFC 9700), revokes tokens at once (RFC 7009), and publishes its public keys (RFC 7517).
//!
//! One module per concept:
//! - [`config`]: every setting, read once from the environment.
//! - [`clock`]: the time source (real or manual, for tests).
//! - [`secrets`]: random bytes, base64url, SHA-256, constant-time comparison.
//! - [`keys`]: signers (local keys, KMS), public keys as JWKs, the key registry, rotation,
//!   and the key cache.
//! - [`token`]: access-token claims, encoding and verification.
//! - [`refresh`]: the opaque refresh-token format and its sealing of successors.
//! - [`passwords`]: argon2id hashing and constant-time-ish verification.
//! - [`store`]: storage traits, the in-memory and the DynamoDB implementations.
//! - [`service`]: the lifecycle operations (login, refresh, revoke, authorize, jwks).
//! - [`http`]: the route table, request parsing, one handler per route, the caller check,
//!   responses, cookies, CORS, error mapping.
//! - [`audit`]: the audit trail's events (the `audit` log target) and request spans.
//! - [`metrics`]: counters, the signing-key age and AWS call latencies, as CloudWatch EMF
//!   lines (Lambda) or Prometheus text (`serve`).
//! - [`logging`]: the log subscriber (text or JSON, levels, the runtime's cap).
//! - [`lambda`]: what each Lambda function's `main` runs (HTTP or JSON events, typed
//!   responses, errors as the runtime's `Diagnostic`).
//! - [`authorizer`]: the API Gateway Lambda authorizer's event handling.
//! - [`rotate_keys`]: the rotate-keys Lambda's events (schedule and admin key routes).
//! - [`setup`]: creating the DynamoDB tables and first KMS key of the `aws` backend.
//! - [`app`]: wiring the pieces together, for the embedded default or the AWS backend.
//! - `testkit` (tests only, feature `testkit`): fixtures, the `both_backends!` macro and
//!   the `serve` harness shared by every test crate.

pub mod app;
pub mod audit;
pub mod authorizer;
pub mod clock;
pub mod config;
pub mod custom_resource;
pub mod error;
pub mod http;
pub mod keys;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod passwords;
pub mod refresh;
pub mod rotate_keys;
pub mod secrets;
pub mod service;
pub mod setup;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod token;

pub use app::App;
pub use config::Config;
pub use error::Error;
pub use service::TokenService;
